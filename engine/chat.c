/* SPDX-License-Identifier: MIT */
/*
 * chat.c - chat templates: the public entry points over the Jinja
 * interpreter (jinja*.c), the model-or-default choice, and a recognizer
 * that names a template's family for display.
 *
 * Rendering matches Hugging Face transformers' apply_chat_template: the
 * template sees messages, add_generation_prompt, bos_token and eos_token
 * (left undefined when the model has none), tools=None and documents=None
 * unless given, and any extra keyword arguments (enable_thinking, ...).
 * Messages come either as role/content pairs or as a JSON array, which
 * carries the richer fields templates read (tool_calls, reasoning_content).
 */
#include "chat_impl.h"
#include "jinja.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void eng_chat_params_default(eng_chat_params *p)
{
    memset(p, 0, sizeof(*p));
    p->enable_thinking = -1;
}

/* ------------------------------------------------------------------------ */
/* JSON to template values                                                   */

/* A small JSON reader straight into values: unlike a generic parser it
 * keeps Python's int/float distinction (json.loads("2.0") is a float and
 * prints as 2.0) and the key order. */
typedef struct jsrc {
    jctx *c;
    const char *p;
    int depth;
} jsrc;

static void js_ws(jsrc *s)
{
    while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')
        s->p++;
}

static int js_hex4(const char *p, uint32_t *ret)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        int h = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f'
                ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;

        if (h < 0)
            return -1;
        v = v << 4 | (uint32_t)h;
    }
    *ret = v;
    return 0;
}

static int js_string(jsrc *s, jv *ret)
{
    const char *q = ++s->p;
    size_t k = 0;
    char *o;

    while (*q && *q != '"')
        q += *q == '\\' && q[1] ? 2 : 1;
    if (!*q)
        return jctx_fail(s->c, "JSON: unterminated string");
    o = jarena_alloc(&s->c->arena, (size_t)(q - s->p) + 1);
    if (!o)
        return jctx_fail(s->c, "template memory limit exceeded");
    while (*s->p != '"') {
        char ch = *s->p++;
        uint32_t cp, lo;

        if ((unsigned char)ch < 0x20)
            return jctx_fail(s->c, "JSON: control character in string");
        if (ch != '\\') {
            o[k++] = ch;
            continue;
        }
        ch = *s->p++;
        switch (ch) {
        case '"': case '\\': case '/': o[k++] = ch; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u':
            if (js_hex4(s->p, &cp))
                return jctx_fail(s->c, "JSON: bad \\u escape");
            s->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && s->p[0] == '\\' &&
                s->p[1] == 'u' && !js_hex4(s->p + 2, &lo) && lo >= 0xdc00 &&
                lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                s->p += 6;
            } else if (cp >= 0xd800 && cp < 0xe000) {
                return jctx_fail(s->c, "JSON: lone surrogate");
            }
            k += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp,
                                              (utf8proc_uint8_t *)o + k);
            break;
        default:
            return jctx_fail(s->c, "JSON: bad escape");
        }
    }
    s->p++;
    o[k] = '\0';
    *ret = jv_str(o, k);
    return 0;
}

static int js_number(jsrc *s, jv *ret)
{
    const char *st = s->p;
    bool is_float = false;
    char *end;

    if (*s->p == '-')
        s->p++;
    if (!(*s->p >= '0' && *s->p <= '9'))
        return jctx_fail(s->c, "JSON: unexpected character");
    while ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' ||
           *s->p == 'E' || *s->p == '+' || *s->p == '-') {
        is_float |= *s->p == '.' || *s->p == 'e' || *s->p == 'E';
        s->p++;
    }
    if (is_float) {
        *ret = jv_float(strtod(st, &end));
    } else {
        errno = 0;
        *ret = jv_int(strtoll(st, &end, 10));
        if (errno)
            return jctx_fail(s->c, "JSON: integer out of range");
    }
    if (end != s->p)
        return jctx_fail(s->c, "JSON: bad number");
    return 0;
}

static int js_value(jsrc *s, jv *ret);

static int js_container(jsrc *s, bool obj, jv *ret)
{
    jlist *l = NULL;
    jdict *d = NULL;
    jv *items = NULL;
    size_t n = 0, cap = 0;
    char close = obj ? '}' : ']';

    s->p++;
    if (obj && !(d = jdict_new(s->c, 8)))
        return -ENOMEM;
    js_ws(s);
    while (*s->p != close) {
        jv k, v;

        if (n || (d && d->n)) {
            if (*s->p != ',')
                return jctx_fail(s->c, "JSON: expected ',' or '%c'", close);
            s->p++;
            js_ws(s);
        }
        if (obj) {
            if (*s->p != '"' || js_string(s, &k))
                return jctx_fail(s->c, "JSON: expected a key");
            js_ws(s);
            if (*s->p++ != ':')
                return jctx_fail(s->c, "JSON: expected ':'");
        }
        js_ws(s);
        if (js_value(s, &v))
            return -EINVAL;
        js_ws(s);
        if (obj) {
            if (jdict_set(s->c, d, k, v))
                return -ENOMEM;
            continue;
        }
        if (n == cap) {
            jv *w = jarena_alloc(&s->c->arena, (cap = cap ? cap * 2 : 8) *
                                                   sizeof(jv));

            if (!w)
                return jctx_fail(s->c, "template memory limit exceeded");
            if (n)
                memcpy(w, items, n * sizeof(jv));
            items = w;
        }
        items[n++] = v;
    }
    s->p++;
    if (obj) {
        *ret = jv_dict(d);
        return 0;
    }
    if (!(l = jlist_new(s->c, 0, false)))
        return -ENOMEM;
    l->items = items;
    l->n = n;
    *ret = jv_list(l);
    return 0;
}

static int js_value(jsrc *s, jv *ret)
{
    int rc;

    if (++s->depth > JINJA_MAX_DEPTH)
        return jctx_fail(s->c, "JSON nested too deeply");
    js_ws(s);
    if (*s->p == '{' || *s->p == '[')
        rc = js_container(s, *s->p == '{', ret);
    else if (*s->p == '"')
        rc = js_string(s, ret);
    else if (!strncmp(s->p, "true", 4) || !strncmp(s->p, "null", 4)) {
        *ret = *s->p == 't' ? jv_bool(true) : jv_none();
        s->p += 4;
        rc = 0;
    } else if (!strncmp(s->p, "false", 5)) {
        *ret = jv_bool(false);
        s->p += 5;
        rc = 0;
    } else
        rc = js_number(s, ret);
    s->depth--;
    return rc;
}

static int parse_json(jctx *c, const char *text, const char *what, jv *ret)
{
    jsrc s = { .c = c, .p = text };

    if (js_value(&s, ret))
        return jctx_fail(c, "%s: invalid JSON", what);
    js_ws(&s);
    if (*s.p)
        return jctx_fail(c, "%s: trailing characters after JSON", what);
    return 0;
}

static int messages_value(jctx *c, const eng_message *msgs, int n, jv *ret)
{
    jlist *l = jlist_new(c, (size_t)n, false);

    if (!l)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        jdict *d = jdict_new(c, 2);
        jv content = jv_none();

        if (!d || !msgs[i].role)
            return d ? jctx_fail(c, "message %d has no role", i) : -ENOMEM;
        if (msgs[i].content &&
            jv_str_dup(c, msgs[i].content, strlen(msgs[i].content), &content))
            return -ENOMEM;
        if (jdict_set(c, d, jv_str("role", 4),
                      jv_str(msgs[i].role, strlen(msgs[i].role))) ||
            jdict_set(c, d, jv_str("content", 7), content))
            return -ENOMEM;
        l->items[i] = jv_dict(d);
    }
    *ret = jv_list(l);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Rendering                                                                 */

typedef struct varset {
    jinja_var v[64];
    size_t n;
} varset;

static void var_set(varset *s, const char *name, jv value)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!strcmp(s->v[i].name, name)) {
            s->v[i].value = value;
            return;
        }
    }
    if (s->n < sizeof(s->v) / sizeof(s->v[0]))
        s->v[s->n++] = (jinja_var){ name, value };
}

static bool utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        int k = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0
                ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;

        if (k < 0 || (k == 1 && *p < 0xc2))
            return false;
        p++;
        for (int i = 0; i < k; i++, p++)
            if ((*p & 0xc0) != 0x80)
                return false;
    }
    return true;
}

static int build_vars(jctx *c, const eng_message *msgs, int n,
                      const eng_chat_params *p, varset *vs)
{
    jv v;
    int rc;

    if (p->messages_json)
        rc = parse_json(c, p->messages_json, "messages", &v);
    else
        rc = messages_value(c, msgs, n, &v);
    if (rc)
        return rc;
    if (v.t != JV_LIST)
        return jctx_fail(c, "messages must be a JSON array");
    var_set(vs, "messages", v);
    var_set(vs, "tools", jv_none());
    var_set(vs, "documents", jv_none());
    var_set(vs, "add_generation_prompt", jv_bool(p->add_generation_prompt));
    if (p->bos_token)
        var_set(vs, "bos_token", jv_str(p->bos_token, strlen(p->bos_token)));
    if (p->eos_token)
        var_set(vs, "eos_token", jv_str(p->eos_token, strlen(p->eos_token)));
    if (p->enable_thinking >= 0)
        var_set(vs, "enable_thinking", jv_bool(p->enable_thinking > 0));
    if (p->kwargs_json) {
        rc = parse_json(c, p->kwargs_json, "kwargs", &v);
        if (rc)
            return rc;
        if (v.t != JV_DICT)
            return jctx_fail(c, "kwargs must be a JSON object");
        for (size_t i = 0; i < v.u.d->n; i++) {
            jv k = v.u.d->keys[i];

            /* Keys are arena strings with a NUL (jv_str_dup). */
            var_set(vs, k.u.s.p, v.u.d->vals[i]);
        }
    }
    return 0;
}

int eng_chat_template_render(const char *tmpl, const eng_message *msgs, int n,
                             const eng_chat_params *p, char **ret_text,
                             char *err, size_t errlen)
{
    eng_chat_params def;
    jctx *c;
    varset vs = { .n = 0 };
    jinja_render_params rp = { 0 };
    char *out = NULL;
    int rc;

    if (!p) {
        eng_chat_params_default(&def);
        p = &def;
    }
    if (!tmpl || !ret_text || n < 0 || (n && !msgs && !p->messages_json)) {
        if (err && errlen)
            snprintf(err, errlen, "invalid arguments");
        return -EINVAL;
    }
    if (!utf8_ok(tmpl)) {
        if (err && errlen)
            snprintf(err, errlen, "template is not valid UTF-8");
        return -EINVAL;
    }
    for (int i = 0; i < n && msgs && !p->messages_json; i++) {
        if ((msgs[i].content && !utf8_ok(msgs[i].content)) ||
            (msgs[i].role && !utf8_ok(msgs[i].role))) {
            if (err && errlen)
                snprintf(err, errlen, "message %d is not valid UTF-8", i);
            return -EINVAL;
        }
    }
    c = jinja_ctx_new();
    if (!c)
        return -ENOMEM;
    rc = build_vars(c, msgs, n, p, &vs);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "%s", c->failed ? c->err : "out of memory");
        jinja_ctx_free(c);
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    rp.vars = vs.v;
    rp.n_vars = vs.n;
    rp.max_output = p->max_output;
    rc = jinja_render(c, tmpl, strlen(tmpl), &rp, &out, NULL, err, errlen);
    jinja_ctx_free(c);
    if (rc)
        return rc;
    *ret_text = out;
    return 0;
}

const char *eng_chat_token_text(const eng_tokenizer *t, int32_t id, char *buf,
                                size_t cap)
{
    const char *p;
    int k;

    if (id < 0)
        return NULL;
    k = eng_tokenizer_piece(t, -1, id, &p);
    if (k <= 0 || (size_t)k >= cap)
        return NULL;
    memcpy(buf, p, (size_t)k);
    buf[k] = '\0';
    return buf;
}

int eng_chat_render(const eng_tokenizer *t, const eng_message *msgs, int n,
                    bool add_generation_prompt, char **ret_text,
                    eng_chat_source *ret_source, char *err, size_t errlen)
{
    eng_chat_params p;
    char bos[128], eos[128], why[256] = "the model has no chat template";
    char *out = NULL;
    int rc;

    if (!ret_text || n < 0 || (n && !msgs))
        return -EINVAL;
    if (t && t->chat_template) {
        eng_chat_params_default(&p);
        p.add_generation_prompt = add_generation_prompt;
        p.bos_token = eng_chat_token_text(t, t->bos_id, bos, sizeof(bos));
        p.eos_token = eng_chat_token_text(t, t->eos_id, eos, sizeof(eos));
        rc = eng_chat_template_render(t->chat_template, msgs, n, &p, &out, why,
                                      sizeof(why));
        if (!rc) {
            *ret_text = out;
            if (ret_source)
                *ret_source = ENG_CHAT_SRC_MODEL;
            return 0;
        }
        if (rc == -ENOMEM)
            return rc;
    }
    rc = eng_chat_render_default(msgs, n, add_generation_prompt, &out);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "default chat template failed: %s", why);
        return rc;
    }
    if (err && errlen)
        snprintf(err, errlen, "%s%s", t && t->chat_template
                                          ? "model chat template failed, used "
                                            "the default: "
                                          : "used the default: ", why);
    *ret_text = out;
    if (ret_source)
        *ret_source = ENG_CHAT_SRC_DEFAULT;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Families                                                                  */

eng_chat_family eng_chat_template_family(const char *tmpl)
{
#define HAS(s) (strstr(tmpl, (s)) != NULL)
    if (!tmpl)
        return ENG_CHAT_UNKNOWN;
    if (HAS("<|im_start|>"))
        return HAS("<think>") || HAS("reasoning_content") ? ENG_CHAT_QWEN3
                                                          : ENG_CHAT_CHATML;
    if (HAS("<|start_header_id|>") && HAS("<|eot_id|>"))
        return ENG_CHAT_LLAMA3;
    if (HAS("<start_of_turn>"))
        return ENG_CHAT_GEMMA;
    if (HAS("<|user|>") && HAS("<|end|>"))
        return ENG_CHAT_PHI3;
    if (HAS("<|user|>") && HAS("<|assistant|>"))
        return ENG_CHAT_ZEPHYR;
    if (HAS("[INST]"))
        return HAS("<<SYS>>") ? ENG_CHAT_LLAMA2 : ENG_CHAT_MISTRAL;
    return ENG_CHAT_UNKNOWN;
#undef HAS
}

const char *eng_chat_family_name(eng_chat_family f)
{
    static const char *const names[] = { "unknown", "chatml", "llama2",
                                         "llama3", "mistral", "gemma",
                                         "zephyr", "phi3", "qwen3" };

    return (unsigned)f < sizeof(names) / sizeof(names[0]) ? names[f]
                                                           : "unknown";
}
