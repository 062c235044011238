/* SPDX-License-Identifier: MIT */
/*
 * test_chat_template.c - chat templates (chat.c, jinja*.c).
 *
 *  - Every case of tests/data/chat_templates/cases.tsv (model templates
 *    from ../shared/tokenizers and the common families, system + user +
 *    assistant conversations with and without the generation prompt, tools,
 *    reasoning, enable_thinking) renders byte for byte as the real jinja2
 *    did in chat_reference.py (expected/NAME.txt); "ERROR:" cases must
 *    fail.
 *  - eng_chat_render on real tokenizers (their own templates and BOS/EOS)
 *    and its fallback to the default template.
 *  - Errors: raise_exception, syntax errors, unknown filters, undefined
 *    attribute access, limits (loops, nesting, recursion, output size).
 *  - Fuzz-like: truncated and mutated real templates and random token soup
 *    must render or fail cleanly, never crash.
 *  - The family recognizer.
 */
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char data_dir[1024];

static char *slurp(const char *dir, const char *name)
{
    char path[2048];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return test_slurp(path, NULL);
}

/* Renders src with the JSON messages, returns malloc'd text or NULL. */
static char *render(const char *src, const char *msgs_json, bool gen,
                    const char *kwargs, char *err, size_t errlen, int *ret_rc)
{
    eng_chat_params p;
    char *out = NULL;
    int rc;

    eng_chat_params_default(&p);
    p.messages_json = msgs_json;
    p.kwargs_json = kwargs;
    p.add_generation_prompt = gen;
    rc = eng_chat_template_render(src, NULL, 0, &p, &out, err, errlen);
    if (ret_rc)
        *ret_rc = rc;
    return rc ? NULL : out;
}

/* ------------------------------------------------------------------------ */
/* Reference cases                                                           */

/* kwargs file plus bos/eos merged into one JSON object text. */
static char *case_kwargs(const char *kw_file, const char *bos, const char *eos)
{
    char *kw = strcmp(kw_file, "-") ? slurp(data_dir, kw_file) : NULL;
    size_t cap = (kw ? strlen(kw) : 0) + strlen(bos) + strlen(eos) + 128;
    char *out = malloc(cap), *body;
    size_t n = 0;

    if (!out)
        exit(1);
    n += (size_t)snprintf(out + n, cap - n, "{");
    if (strcmp(bos, "-"))
        n += (size_t)snprintf(out + n, cap - n, "\"bos_token\": \"%s\",", bos);
    if (strcmp(eos, "-"))
        n += (size_t)snprintf(out + n, cap - n, "\"eos_token\": \"%s\",", eos);
    body = kw ? strchr(kw, '{') : NULL;
    if (body) {
        snprintf(out + n, cap - n, "%s", body + 1);
    } else {
        if (out[n - 1] == ',')
            n--;
        snprintf(out + n, cap - n, "}");
    }
    free(kw);
    return out;
}

static void test_reference_cases(void)
{
    char *tsv = slurp(data_dir, "cases.tsv"), *save = NULL;
    int n = 0, bad = 0;

    CHECK(tsv != NULL);
    if (!tsv)
        return;
    for (char *line = strtok_r(tsv, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[7], *s2 = NULL, path[512], err[512] = "";
        int k = 0, rc;

        if (line[0] == '#' || !line[0])
            continue;
        for (char *t = strtok_r(line, "\t", &s2); t && k < 7;
             t = strtok_r(NULL, "\t", &s2))
            f[k++] = t;
        CHECK(k == 7);
        if (k != 7)
            continue;
        snprintf(path, sizeof(path), "templates/%s", f[1]);
        char *tmpl = slurp(data_dir, path);
        snprintf(path, sizeof(path), "messages/%s", f[2]);
        char *msgs = slurp(data_dir, path);
        char kwpath[512];

        snprintf(kwpath, sizeof(kwpath), "kwargs/%s", f[6]);
        char *kw = case_kwargs(strcmp(f[6], "-") ? kwpath : "-", f[4], f[5]);
        snprintf(path, sizeof(path), "expected/%s.txt", f[0]);
        char *exp = slurp(data_dir, path);

        CHECK(tmpl && msgs && exp);
        if (tmpl && msgs && exp) {
            char *out = render(tmpl, msgs, f[3][0] == '1', kw, err,
                               sizeof(err), &rc);
            bool want_err = !strncmp(exp, "ERROR: ", 7);
            bool ok = want_err ? out == NULL && rc == -EINVAL
                               : out && !strcmp(out, exp);

            if (!ok) {
                fprintf(stderr, "case %s: %s\n--- expected\n%s\n--- got "
                        "(rc %d)\n%s\n", f[0], want_err ? "should fail" :
                        "differs", exp, rc, out ? out : err);
                bad++;
            }
            /* raise_exception's message reaches the caller. */
            if (want_err && !out)
                CHECK(strstr(err, exp + 7) != NULL);
            free(out);
        }
        n++;
        free(tmpl);
        free(msgs);
        free(kw);
        free(exp);
    }
    free(tsv);
    printf("reference cases: %d/%d match jinja2\n", n - bad, n);
    CHECK(n >= 100);
    CHECK(bad == 0);
}

/* ------------------------------------------------------------------------ */
/* eng_chat_render                                                           */

static const eng_message sua[] = {
    { "system", "You are a helpful assistant." },
    { "user", "Hello! What's 2+2?" },
    { "assistant", "  2 + 2 = 4.\nAnything else?  " },
};

static void test_render_tokenizer(const char *tok_dir, const char *expected)
{
    char path[1200], err[256] = "";
    eng_tokenizer *t = NULL;
    char *out = NULL, *exp;
    eng_chat_source src = ENG_CHAT_SRC_DEFAULT;
    int rc;

    snprintf(path, sizeof(path), "%s/../tokenizers/%s", data_dir, tok_dir);
    rc = eng_tokenizer_load_hf(path, &t, err, sizeof(err));
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "load %s: %s\n", path, err);
        return;
    }
    CHECK(t->chat_template != NULL);
    snprintf(path, sizeof(path), "expected/%s", expected);
    exp = slurp(data_dir, path);
    CHECK(exp != NULL);
    rc = eng_chat_render(t, sua, 3, strstr(expected, "-gen") != NULL, &out,
                         &src, err, sizeof(err));
    CHECK(rc == 0 && src == ENG_CHAT_SRC_MODEL);
    if (!rc && exp && strcmp(out, exp))
        fprintf(stderr, "%s via eng_chat_render:\n%s\n--- expected\n%s\n",
                tok_dir, out, exp);
    CHECK(!rc && exp && !strcmp(out, exp));
    free(out);
    free(exp);
    eng_tokenizer_unref(t);
}

static int fake_piece(const eng_tokenizer *t, int32_t prev, int32_t id,
                      const char **ret)
{
    *ret = id == 1 ? "<s>" : id == 2 ? "</s>" : "x";
    return (int)strlen(*ret);
}

static int fake_encode(const eng_tokenizer *t, const char *text, size_t len,
                       bool special, int32_t *out, int cap, int *ret_n)
{
    *ret_n = 0;
    return 0;
}

static void fake_free(void *impl) { (void)impl; }

static const eng_tok_ops fake_ops = { fake_encode, fake_piece, fake_free };

static void test_render_fallback(void)
{
    eng_tokenizer *t = eng_tokenizer_wrap(&fake_ops, NULL, 3, 1, 2);
    char *out = NULL, *def = NULL, err[256] = "";
    eng_chat_source src;

    CHECK(t != NULL);
    if (!t)
        return;
    CHECK(eng_chat_render_default(sua, 3, true, &def) == 0);
    /* no template: the default, and err says why */
    CHECK(eng_chat_render(t, sua, 3, true, &out, &src, err, sizeof(err)) == 0);
    CHECK(src == ENG_CHAT_SRC_DEFAULT && out && def && !strcmp(out, def));
    CHECK(strstr(err, "no chat template") != NULL);
    free(out);
    out = NULL;
    /* a working template sees the tokenizer's bos/eos texts */
    t->chat_template = strdup("{{ bos_token }}{% for m in messages %}"
                              "{{ m.role }}:{{ m.content }}{{ eos_token }}"
                              "{% endfor %}");
    CHECK(eng_chat_render(t, sua + 1, 1, false, &out, &src, err,
                          sizeof(err)) == 0);
    CHECK(src == ENG_CHAT_SRC_MODEL && out &&
          !strcmp(out, "<s>user:Hello! What's 2+2?</s>"));
    free(out);
    out = NULL;
    /* a failing template (raise_exception) falls back, with the reason */
    free(t->chat_template);
    t->chat_template = strdup("{{ raise_exception('no system role') }}");
    CHECK(eng_chat_render(t, sua, 3, true, &out, &src, err, sizeof(err)) == 0);
    CHECK(src == ENG_CHAT_SRC_DEFAULT && out && def && !strcmp(out, def));
    CHECK(strstr(err, "no system role") != NULL);
    free(out);
    out = NULL;
    /* NULL tokenizer: default */
    CHECK(eng_chat_render(NULL, sua, 3, true, &out, &src, NULL, 0) == 0);
    CHECK(src == ENG_CHAT_SRC_DEFAULT);
    free(out);
    free(def);
    eng_tokenizer_unref(t);
}

/* role/content messages (not JSON), content NULL is None */
static void test_message_structs(void)
{
    eng_message m[] = { { "user", "hi" }, { "assistant", NULL } };
    eng_chat_params p;
    char *out = NULL;

    eng_chat_params_default(&p);
    p.add_generation_prompt = true;
    p.bos_token = "<s>";
    CHECK(eng_chat_template_render(
              "{{ bos_token }}{% for x in messages %}[{{ x.role }}|"
              "{{ x.content }}|{{ x.content is none }}]{% endfor %}"
              "{{ add_generation_prompt }}{{ eos_token is defined }}"
              "{{ tools is none }}",
              m, 2, &p, &out, NULL, 0) == 0);
    CHECK(out && !strcmp(out, "<s>[user|hi|False][assistant|None|True]True"
                              "FalseTrue"));
    free(out);
    out = NULL;
    p.enable_thinking = 0;
    CHECK(eng_chat_template_render("{{ enable_thinking is false }}", m, 2, &p,
                                   &out, NULL, 0) == 0);
    CHECK(out && !strcmp(out, "True"));
    free(out);
    out = NULL;
    /* NULL params, zero messages */
    CHECK(eng_chat_template_render("{{ messages|length }}", NULL, 0, NULL, &out,
                                   NULL, 0) == 0);
    CHECK(out && !strcmp(out, "0"));
    free(out);
}

/* ------------------------------------------------------------------------ */
/* Errors and limits                                                         */

static void expect_error(const char *tmpl, const char *needle)
{
    char err[512] = "";
    int rc = 0;
    char *out = render(tmpl, "[]", false, NULL, err, sizeof(err), &rc);

    CHECK(out == NULL && rc == -EINVAL);
    if (needle && !strstr(err, needle))
        fprintf(stderr, "template %.60s: error \"%s\" lacks \"%s\"\n", tmpl,
                err, needle);
    CHECK(!needle || strstr(err, needle));
    free(out);
}

static void test_errors(void)
{
    char *big;
    char err[256];
    int rc;

    expect_error("a{{ raise_exception('Roles must alternate') }}",
                 "Roles must alternate");
    expect_error("line1\n\n{% if x %}unclosed", "endif");
    expect_error("\n\n{{ 1 + }}", "line 3");
    expect_error("{{ x|no_such_filter }}", "no_such_filter");
    expect_error("{{ x is no_such_test }}", "no_such_test");
    expect_error("{{ missing.attr }}", "'missing' is undefined");
    expect_error("{{ 'a' + 1 }}", NULL);
    expect_error("{{ 1 < 'a' }}", NULL);
    expect_error("{{ 1 // 0 }}", "division by zero");
    expect_error("{% endfor %}", NULL);
    expect_error("{% include 'x.html' %}", "include");
    expect_error("{{ 'unterminated }}", "unterminated");
    expect_error("{{ [].append(1) }}", "unsafe");
    expect_error("{% set x = 1 %}{% set x.y = 2 %}", "namespace");
    expect_error("{{ messages|tojson(ensure_ascii=true) }}", NULL);
    /* limits */
    expect_error("{% for i in range(100000) %}{% for j in range(100000) %}"
                 "{% endfor %}{% endfor %}", "iterations");
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                 "deep");
    expect_error("{{ range(100000000)|length }}", "range");
    expect_error("{% set s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' %}"
                 "{% for i in range(1000000) %}{{ s }}{% endfor %}", "limit");
    big = malloc(200001);
    if (big) {
        for (int i = 0; i < 100000; i++) {
            big[i] = '(';
            big[100000 + i] = ')';
        }
        big[200000] = '\0';
        memcpy(big, "{{", 2);
        memcpy(big + 199998, "}}", 2);
        expect_error(big, "deep");
        free(big);
    }
    /* output limit from the caller */
    {
        eng_chat_params p;
        char *out = NULL;

        eng_chat_params_default(&p);
        p.max_output = 10;
        rc = eng_chat_template_render("0123456789A", NULL, 0, &p, &out, err,
                                      sizeof(err));
        CHECK(rc == -EINVAL && strstr(err, "output"));
        p.messages_json = "[{\"role\": \"user\", \"content\": \"x\"";
        rc = eng_chat_template_render("x", NULL, 0, &p, &out, err, sizeof(err));
        CHECK(rc == -EINVAL && strstr(err, "JSON"));
    }
    /* invalid UTF-8 template */
    rc = eng_chat_template_render("\xff{{ 1 }}", NULL, 0, NULL, &(char *){ 0 },
                                  err, sizeof(err));
    CHECK(rc == -EINVAL);
    CHECK(eng_chat_template_render(NULL, NULL, 0, NULL, &(char *){ 0 }, NULL,
                                   0) == -EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Fuzz-like robustness                                                      */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static long fuzz_runs, fuzz_ok;

static void fuzz_one(const char *tmpl, const char *msgs)
{
    char err[256];
    int rc = 0;
    char *out = render(tmpl, msgs, next_rand() & 1,
                       "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", "
                       "\"tools\": [{\"type\": \"function\", \"function\": "
                       "{\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}",
                       err, sizeof(err), &rc);

    CHECK(out ? rc == 0 : (rc == -EINVAL || rc == -ENOMEM));
    fuzz_runs++;
    fuzz_ok += out != NULL;
    free(out);
}

static void test_fuzz(void)
{
    static const char *const names[] = {
        "qwen3.jinja", "llama3.1.jinja", "gemma3.jinja", "llama2.jinja",
        "zephyr-tinyllama.jinja", "phi3-mini.jinja", "deepseek-coder.jinja",
        "command-r.jinja",
    };
    static const char *const soup[] = {
        "{{", "}}", "{%", "%}", "{#", "#}", "-", "+", " if ", " for ",
        " in ", " endif ", " endfor ", " else ", " set ", "=", "x", "y", "ns",
        ".", "[", "]", "(", ")", "'s'", "\"", "1", "|", "length", " is ",
        " not ", "loop", "messages", "~", ",", ":", "{", "}", "\n", " ",
        "namespace(a=1)", "tojson", "macro", "endmacro", "raise_exception",
        "[::-1]", "**", "//", "%", "none", "true", "range(99)", "raw",
        "endraw", "selectattr", "map", "join", "*", "1e309", "'\\u12'",
    };
    char *msgs = slurp(data_dir, "messages/qwen3_tools.json");
    char buf[4096];

    CHECK(msgs != NULL);
    if (!msgs)
        return;
    for (size_t t = 0; t < sizeof(names) / sizeof(names[0]); t++) {
        char path[256], *src;
        size_t n;

        snprintf(path, sizeof(path), "templates/%s", names[t]);
        src = slurp(data_dir, path);
        CHECK(src != NULL);
        if (!src)
            continue;
        n = strlen(src);
        /* every prefix (in steps) */
        for (size_t cut = 0; cut < n; cut += 1 + n / 150) {
            char *p = strndup(src, cut);

            if (p)
                fuzz_one(p, msgs);
            free(p);
        }
        /* byte mutations, kept valid-ish ASCII */
        for (int r = 0; r < 150; r++) {
            char *p = strdup(src);

            for (int k = 0; p && k < 1 + (int)(next_rand() % 4); k++)
                p[next_rand() % n] = " {}%#-+|.()[]'\"xn\n0~"[next_rand() % 21];
            if (p)
                fuzz_one(p, msgs);
            free(p);
        }
        free(src);
    }
    /* token soup */
    for (int r = 0; r < 1500; r++) {
        size_t len = 0;
        int k = 1 + (int)(next_rand() % 40);

        for (int i = 0; i < k; i++) {
            const char *w = soup[next_rand() % (sizeof(soup) / sizeof(soup[0]))];
            size_t wl = strlen(w);

            if (len + wl >= sizeof(buf))
                break;
            memcpy(buf + len, w, wl);
            len += wl;
        }
        buf[len] = '\0';
        fuzz_one(buf, msgs);
    }
    printf("fuzz: %ld templates, %ld rendered, the rest failed cleanly\n",
           fuzz_runs, fuzz_ok);
    free(msgs);
}

/* ------------------------------------------------------------------------ */
/* Families                                                                  */

static void test_families(void)
{
    static const struct { const char *file; const char *family; } k[] = {
        { "chatml.jinja", "chatml" }, { "qwen3.jinja", "qwen3" },
        { "llama2.jinja", "llama2" }, { "llama3.jinja", "llama3" },
        { "llama3.1.jinja", "llama3" },
        { "mistral-instruct-v0.1.jinja", "mistral" },
        { "gemma.jinja", "gemma" }, { "gemma3.jinja", "gemma" },
        { "zephyr-tinyllama.jinja", "zephyr" }, { "phi3-mini.jinja", "phi3" },
        { "openchat.jinja", "unknown" },
    };
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        char path[256], *src;

        snprintf(path, sizeof(path), "templates/%s", k[i].file);
        src = slurp(data_dir, path);
        CHECK(src != NULL);
        if (!src)
            continue;
        const char *got = eng_chat_family_name(eng_chat_template_family(src));

        if (strcmp(got, k[i].family))
            fprintf(stderr, "%s: family %s, want %s\n", k[i].file, got,
                    k[i].family);
        CHECK(!strcmp(got, k[i].family));
        free(src);
    }
    CHECK(eng_chat_template_family(NULL) == ENG_CHAT_UNKNOWN);
    CHECK(!strcmp(eng_chat_family_name((eng_chat_family)99), "unknown"));
}

int main(void)
{
    test_path(data_dir, sizeof(data_dir), "tests/data/chat_templates");
    test_reference_cases();
    test_render_tokenizer("tinyllama-1.1b-chat-v1.0",
                          "zephyr-tinyllama-sua-gen.txt");
    test_render_tokenizer("tinyllama-1.1b-chat-v1.0",
                          "zephyr-tinyllama-sua-nogen.txt");
    test_render_tokenizer("qwen3", "qwen3-sua-gen.txt");
    test_render_tokenizer("phi-3-mini-4k-instruct", "phi3-mini-sua-nogen.txt");
    test_render_fallback();
    test_message_structs();
    test_errors();
    test_fuzz();
    test_families();
    return test_done("chat_template");
}
