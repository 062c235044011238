/* SPDX-License-Identifier: MIT */
/*
 * jinja_value.c - the value model of the chat-template interpreter: arena,
 * output buffer, constructors, Python semantics for truthiness, ==, <,
 * str() and repr(), and json.dumps for the tojson filter.
 *
 * Values are small structs passed by value; strings are (pointer, length)
 * pairs of UTF-8 bytes that borrow from the template source, the caller's
 * variables or the arena. Comparing UTF-8 strings bytewise gives Python's
 * code point order, so only length, indexing and slicing need to decode.
 */
#include "jinja.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Arena                                                                     */

struct jarena_block {
    jarena_block *next;
    size_t used, cap;
    max_align_t data[];
};

void *jarena_alloc(jarena *a, size_t n)
{
    jarena_block *b = a->head;
    size_t need = (n + 15) & ~(size_t)15;

    if (n > a->limit || a->used + need > a->limit)
        return NULL;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > 65536 ? need : 65536;

        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += need;
    a->used += need;
    memset(p, 0, n);
    return p;
}

void jarena_free(jarena *a)
{
    while (a->head) {
        jarena_block *b = a->head;

        a->head = b->next;
        free(b);
    }
    a->used = 0;
}

/* ------------------------------------------------------------------------ */
/* Buffer                                                                    */

bool jbuf_put(jbuf *b, const char *s, size_t n)
{
    if (b->overflow)
        return false;
    if (n > b->limit - b->n) {
        b->overflow = true;
        return false;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;

        while (cap < b->n + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->overflow = true;
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

bool jbuf_puts(jbuf *b, const char *s)
{
    return jbuf_put(b, s, strlen(s));
}

void jbuf_free(jbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

int jctx_fail(jctx *c, const char *fmt, ...)
{
    va_list ap;

    if (c->failed)
        return -EINVAL;
    c->failed = true;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

jarena *jctx_arena(jctx *c)
{
    return &c->arena;
}

/* ------------------------------------------------------------------------ */
/* Constructors                                                              */

jv jv_undef(const char *name)
{
    jv v = { .t = JV_UNDEF };

    v.undef_name = name;
    return v;
}

jv jv_none(void) { return (jv){ .t = JV_NONE }; }
jv jv_bool(bool b) { return (jv){ .t = JV_BOOL, .u.b = b }; }
jv jv_int(int64_t i) { return (jv){ .t = JV_INT, .u.i = i }; }
jv jv_float(double f) { return (jv){ .t = JV_FLOAT, .u.f = f }; }
jv jv_list(jlist *l) { return (jv){ .t = JV_LIST, .u.l = l }; }
jv jv_dict(jdict *d) { return (jv){ .t = JV_DICT, .u.d = d }; }

jv jv_str(const char *p, size_t n)
{
    jv v = { .t = JV_STR };

    v.u.s.p = p ? p : "";
    v.u.s.n = n;
    return v;
}

int jctx_nomem(jctx *c)
{
    return jctx_fail(c, "template memory limit exceeded");
}

int jbuf_end(jctx *c, jbuf *b, int rc, jv *ret)
{
    if (!rc)
        rc = jv_str_dup(c, b->p ? b->p : "", b->n, ret);
    jbuf_free(b);
    return rc;
}

int jv_str_dup(jctx *c, const char *p, size_t n, jv *ret)
{
    char *q = jarena_alloc(&c->arena, n + 1);

    if (!q)
        return jctx_nomem(c);
    if (n)
        memcpy(q, p, n);
    *ret = jv_str(q, n);
    return 0;
}

jlist *jlist_new(jctx *c, size_t n, bool tuple)
{
    jlist *l = jarena_alloc(&c->arena, sizeof(*l));

    if (!l || (n && n > SIZE_MAX / sizeof(jv)))
        goto fail;
    l->items = n ? jarena_alloc(&c->arena, n * sizeof(jv)) : NULL;
    if (n && !l->items)
        goto fail;
    l->n = n;
    l->tuple = tuple;
    return l;
fail:
    jctx_nomem(c);
    return NULL;
}

jdict *jdict_new(jctx *c, size_t cap)
{
    jdict *d = jarena_alloc(&c->arena, sizeof(*d));

    if (!d) {
        jctx_nomem(c);
        return NULL;
    }
    d->cap = 0;
    (void)cap;
    return d;
}

static bool key_eq(jv a, jv b)
{
    if (a.t == JV_STR && b.t == JV_STR)
        return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    return jv_equal(a, b);
}

int jdict_set(jctx *c, jdict *d, jv key, jv val)
{
    for (size_t i = 0; i < d->n; i++) {
        if (key_eq(d->keys[i], key)) {
            d->vals[i] = val;
            return 0;
        }
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jv *k = jarena_alloc(&c->arena, cap * sizeof(jv));
        jv *v = jarena_alloc(&c->arena, cap * sizeof(jv));

        if (!k || !v)
            return jctx_nomem(c);
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof(jv));
            memcpy(v, d->vals, d->n * sizeof(jv));
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return 0;
}

bool jdict_get(const jdict *d, jv key, jv *ret)
{
    for (size_t i = 0; i < d->n; i++) {
        if (key_eq(d->keys[i], key)) {
            *ret = d->vals[i];
            return true;
        }
    }
    return false;
}

bool jdict_get_str(const jdict *d, const char *key, size_t n, jv *ret)
{
    return jdict_get(d, jv_str(key, n), ret);
}

/* ------------------------------------------------------------------------ */
/* Truth, equality, order                                                    */

bool jv_is_number(jv v)
{
    return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
}

double jv_as_double(jv v)
{
    switch (v.t) {
    case JV_INT: return (double)v.u.i;
    case JV_FLOAT: return v.u.f;
    case JV_BOOL: return v.u.b;
    default: return 0;
    }
}

bool jv_truthy(jv v)
{
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.u.s.n != 0;
    case JV_LIST: return v.u.l->n != 0;
    case JV_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static bool dict_equal(const jdict *a, const jdict *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        jv o;

        if (!jdict_get(b, a->keys[i], &o) || !jv_equal(a->vals[i], o))
            return false;
    }
    return true;
}

bool jv_equal(jv a, jv b)
{
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) {
            int64_t x = a.t == JV_INT ? a.u.i : a.u.b;
            int64_t y = b.t == JV_INT ? b.u.i : b.u.b;

            return x == y;
        }
        return jv_as_double(a) == jv_as_double(b);
    }
    if (a.t != b.t)
        return false;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR:
        return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    case JV_LIST:
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->items[i], b.u.l->items[i]))
                return false;
        return true;
    case JV_DICT:
        return dict_equal(a.u.d, b.u.d);
    case JV_NS: return a.u.d == b.u.d;
    case JV_FUNC: return a.u.fn == b.u.fn;
    case JV_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

const char *jv_type_name(jv v)
{
    static const char *names[] = { "Undefined", "NoneType", "bool", "int",
                                   "float", "str", "list", "dict",
                                   "Namespace", "function", "LoopContext" };

    if (v.t == JV_LIST && v.u.l->tuple)
        return "tuple";
    return names[v.t];
}

int jv_compare(jctx *c, jv a, jv b, int *ret)
{
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.t == JV_INT && b.t == JV_INT)
            *ret = (a.u.i > b.u.i) - (a.u.i < b.u.i);
        else {
            double x = jv_as_double(a), y = jv_as_double(b);

            *ret = (x > y) - (x < y);
        }
        return 0;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int r = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;

        *ret = r ? (r > 0) - (r < 0) : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
        return 0;
    }
    if (a.t == JV_LIST && b.t == JV_LIST && a.u.l->tuple == b.u.l->tuple) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;

        for (size_t i = 0; i < n; i++) {
            if (jv_equal(a.u.l->items[i], b.u.l->items[i]))
                continue;
            return jv_compare(c, a.u.l->items[i], b.u.l->items[i], ret);
        }
        *ret = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return 0;
    }
    return jctx_fail(c, "'<' not supported between instances of '%s' and '%s'",
                     jv_type_name(a), jv_type_name(b));
}

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */

static size_t u8_seqlen(unsigned char ch)
{
    if (ch < 0x80) return 1;
    if ((ch & 0xe0) == 0xc0) return 2;
    if ((ch & 0xf0) == 0xe0) return 3;
    if ((ch & 0xf8) == 0xf0) return 4;
    return 1;
}

size_t ju8_len(const char *p, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] & 0xc0) != 0x80)
            k++;
    return k;
}

size_t ju8_offset(const char *p, size_t n, size_t cp)
{
    size_t i = 0;

    while (cp > 0 && i < n) {
        i += u8_seqlen((unsigned char)p[i]);
        cp--;
    }
    return i < n ? i : n;
}

static uint32_t u8_decode(const char *p, size_t n, size_t *len)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t k = u8_seqlen(s[0]);
    uint32_t cp;

    if (k > n)
        k = 1;
    *len = k;
    if (k == 1)
        return s[0];
    cp = s[0] & (0x7f >> k);
    for (size_t i = 1; i < k; i++)
        cp = cp << 6 | (s[i] & 0x3f);
    return cp;
}

/* ------------------------------------------------------------------------ */
/* str() and repr()                                                          */

void jv_format_float(double f, char *out, size_t cap)
{
    char tmp[40], digits[24];
    int prec, exp, nd = 0;
    const char *sign = signbit(f) ? "-" : "";

    if (isnan(f)) { snprintf(out, cap, "nan"); return; }
    if (isinf(f)) { snprintf(out, cap, "%sinf", sign); return; }
    if (f == 0) { snprintf(out, cap, "%s0.0", sign); return; }
    for (prec = 0; prec < 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec, fabs(f));
        if (strtod(tmp, NULL) == fabs(f))
            break;
    }
    /* tmp is d[.ddd]e±XX: collect the digits and the exponent. */
    for (const char *q = tmp; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            digits[nd++] = *q;
    digits[nd] = '\0';
    exp = atoi(strchr(tmp, 'e') + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = '\0';
    if (exp >= -4 && exp < 16) {
        char buf[64];
        size_t k = 0;

        if (exp < 0) {
            k += (size_t)snprintf(buf, sizeof(buf), "0.");
            for (int i = 0; i < -exp - 1; i++)
                buf[k++] = '0';
            k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%s", digits);
        } else {
            for (int i = 0; i <= exp; i++)
                buf[k++] = i < nd ? digits[i] : '0';
            buf[k++] = '.';
            if (nd > exp + 1)
                k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%s",
                                      digits + exp + 1);
            else
                buf[k++] = '0';
            buf[k] = '\0';
        }
        snprintf(out, cap, "%s%s", sign, buf);
    } else {
        snprintf(out, cap, "%s%c%s%s%se%c%02d", sign, digits[0],
                 nd > 1 ? "." : "", nd > 1 ? digits + 1 : "", "",
                 exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static int put(jctx *c, jbuf *b, const char *s, size_t n)
{
    if (!jbuf_put(b, s, n))
        return jctx_fail(c, "output size limit exceeded");
    return 0;
}

static int puts_(jctx *c, jbuf *b, const char *s)
{
    return put(c, b, s, strlen(s));
}

static bool py_printable(uint32_t cp)
{
    return !(cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp == 0xad ||
             cp == 0x2028 || cp == 0x2029 || (cp >= 0x200b && cp <= 0x200f) ||
             cp == 0xfeff);
}

static int repr_str(jctx *c, jbuf *b, const char *p, size_t n)
{
    bool sq = memchr(p, '\'', n) != NULL, dq = memchr(p, '"', n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    int rc = put(c, b, &q, 1);

    for (size_t i = 0; !rc && i < n;) {
        size_t k;
        uint32_t cp = u8_decode(p + i, n - i, &k);
        char esc[16];

        if (cp == '\\' || cp == (uint32_t)q) {
            esc[0] = '\\';
            esc[1] = (char)cp;
            rc = put(c, b, esc, 2);
        } else if (cp == '\n') rc = puts_(c, b, "\\n");
        else if (cp == '\r') rc = puts_(c, b, "\\r");
        else if (cp == '\t') rc = puts_(c, b, "\\t");
        else if (!py_printable(cp)) {
            if (cp < 0x100)
                snprintf(esc, sizeof(esc), "\\x%02x", cp);
            else
                snprintf(esc, sizeof(esc), "\\u%04x", cp);
            rc = puts_(c, b, esc);
        } else
            rc = put(c, b, p + i, k);
        i += k;
    }
    return rc ? rc : put(c, b, &q, 1);
}

static int repr_seq(jctx *c, jbuf *b, jv v)
{
    const jlist *l = v.u.l;
    int rc = puts_(c, b, l->tuple ? "(" : "[");

    for (size_t i = 0; !rc && i < l->n; i++) {
        if (i)
            rc = puts_(c, b, ", ");
        if (!rc)
            rc = jv_repr(c, b, l->items[i]);
    }
    if (!rc && l->tuple && l->n == 1)
        rc = puts_(c, b, ",");
    return rc ? rc : puts_(c, b, l->tuple ? ")" : "]");
}

static int repr_dict(jctx *c, jbuf *b, const jdict *d)
{
    int rc = puts_(c, b, "{");

    for (size_t i = 0; !rc && i < d->n; i++) {
        if (i)
            rc = puts_(c, b, ", ");
        if (!rc)
            rc = jv_repr(c, b, d->keys[i]);
        if (!rc)
            rc = puts_(c, b, ": ");
        if (!rc)
            rc = jv_repr(c, b, d->vals[i]);
    }
    return rc ? rc : puts_(c, b, "}");
}

int jv_repr(jctx *c, jbuf *b, jv v)
{
    if (++c->depth > JINJA_MAX_DEPTH) {
        c->depth--;
        return jctx_fail(c, "value nested too deeply");
    }
    int rc;

    switch (v.t) {
    case JV_STR: rc = repr_str(c, b, v.u.s.p, v.u.s.n); break;
    case JV_LIST: rc = repr_seq(c, b, v); break;
    case JV_DICT: rc = repr_dict(c, b, v.u.d); break;
    case JV_UNDEF: rc = puts_(c, b, "Undefined"); break;
    default: rc = jv_to_str(c, b, v); break;
    }
    c->depth--;
    return rc;
}

int jv_to_str(jctx *c, jbuf *b, jv v)
{
    char tmp[64];

    switch (v.t) {
    case JV_UNDEF: return 0;
    case JV_NONE: return puts_(c, b, "None");
    case JV_BOOL: return puts_(c, b, v.u.b ? "True" : "False");
    case JV_INT:
        snprintf(tmp, sizeof(tmp), "%" PRId64, v.u.i);
        return puts_(c, b, tmp);
    case JV_FLOAT:
        jv_format_float(v.u.f, tmp, sizeof(tmp));
        return puts_(c, b, tmp);
    case JV_STR: return put(c, b, v.u.s.p, v.u.s.n);
    case JV_LIST:
    case JV_DICT: return jv_repr(c, b, v);
    case JV_NS: {
        int rc = puts_(c, b, "<Namespace ");

        if (!rc)
            rc = repr_dict(c, b, v.u.d);
        return rc ? rc : puts_(c, b, ">");
    }
    case JV_FUNC: return puts_(c, b, "<function>");
    case JV_LOOP: return puts_(c, b, "<LoopContext>");
    }
    return 0;
}

int jv_str_value(jctx *c, jv v, jv *ret)
{
    jbuf b = { .limit = JINJA_MAX_ARENA };
    int rc;

    if (v.t == JV_STR) {
        *ret = v;
        return 0;
    }
    if (v.t == JV_UNDEF) {
        *ret = jv_str("", 0);
        return 0;
    }
    rc = jv_to_str(c, &b, v);
    return jbuf_end(c, &b, rc, ret);
}

/* ------------------------------------------------------------------------ */
/* json.dumps(ensure_ascii=False)                                            */

static int json_str(jctx *c, jbuf *b, const char *p, size_t n)
{
    int rc = puts_(c, b, "\"");
    size_t run = 0;

    for (size_t i = 0; !rc && i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        char esc[8];

        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        rc = put(c, b, p + run, i - run);
        run = i + 1;
        if (rc)
            break;
        switch (ch) {
        case '"': rc = puts_(c, b, "\\\""); break;
        case '\\': rc = puts_(c, b, "\\\\"); break;
        case '\n': rc = puts_(c, b, "\\n"); break;
        case '\r': rc = puts_(c, b, "\\r"); break;
        case '\t': rc = puts_(c, b, "\\t"); break;
        case '\b': rc = puts_(c, b, "\\b"); break;
        case '\f': rc = puts_(c, b, "\\f"); break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            rc = puts_(c, b, esc);
        }
    }
    if (!rc)
        rc = put(c, b, p + run, n - run);
    return rc ? rc : puts_(c, b, "\"");
}

static int json_newline(jctx *c, jbuf *b, int indent, int level)
{
    int rc = puts_(c, b, "\n");

    for (int i = 0; !rc && i < indent * level; i++)
        rc = puts_(c, b, " ");
    return rc;
}

static int json_scalar(jctx *c, jbuf *b, jv v)
{
    char tmp[64];

    switch (v.t) {
    case JV_NONE: return puts_(c, b, "null");
    case JV_BOOL: return puts_(c, b, v.u.b ? "true" : "false");
    case JV_INT:
        snprintf(tmp, sizeof(tmp), "%" PRId64, v.u.i);
        return puts_(c, b, tmp);
    case JV_FLOAT:
        if (isnan(v.u.f))
            return puts_(c, b, "NaN");
        if (isinf(v.u.f))
            return puts_(c, b, v.u.f < 0 ? "-Infinity" : "Infinity");
        jv_format_float(v.u.f, tmp, sizeof(tmp));
        return puts_(c, b, tmp);
    case JV_STR: return json_str(c, b, v.u.s.p, v.u.s.n);
    default:
        return jctx_fail(c, "Object of type %s is not JSON serializable",
                         jv_type_name(v));
    }
}

static int json_key(jctx *c, jbuf *b, jv k)
{
    jbuf tmp = { .limit = 64 };
    int rc;

    if (k.t == JV_STR)
        return json_str(c, b, k.u.s.p, k.u.s.n);
    if (k.t != JV_INT && k.t != JV_FLOAT && k.t != JV_BOOL && k.t != JV_NONE)
        return jctx_fail(c, "keys must be str, int, float, bool or None, "
                            "not %s", jv_type_name(k));
    rc = json_scalar(c, &tmp, k);
    if (!rc)
        rc = json_str(c, b, tmp.p, tmp.n);
    jbuf_free(&tmp);
    return rc;
}

static int cmp_keys(const void *x, const void *y)
{
    const jv *a = *(const jv *const *)x, *b = *(const jv *const *)y;
    size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
    int r = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;

    return r ? r : (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
}

static int json_dict(jctx *c, jbuf *b, const jdict *d, int indent,
                     bool sort_keys, int depth)
{
    const jv **order;
    int rc;

    if (!d->n)
        return puts_(c, b, "{}");
    order = jarena_alloc(&c->arena, d->n * sizeof(*order));
    if (!order)
        return jctx_nomem(c);
    for (size_t i = 0; i < d->n; i++)
        order[i] = &d->keys[i];
    if (sort_keys) {
        for (size_t i = 0; i < d->n; i++)
            if (d->keys[i].t != JV_STR)
                return jctx_fail(c, "sort_keys needs string keys");
        qsort(order, d->n, sizeof(*order), cmp_keys);
    }
    rc = puts_(c, b, "{");
    for (size_t i = 0; !rc && i < d->n; i++) {
        size_t k = (size_t)(order[i] - d->keys);

        if (i)
            rc = puts_(c, b, indent >= 0 ? "," : ", ");
        if (!rc && indent >= 0)
            rc = json_newline(c, b, indent, depth + 1);
        if (!rc)
            rc = json_key(c, b, d->keys[k]);
        if (!rc)
            rc = puts_(c, b, ": ");
        if (!rc)
            rc = jv_tojson(c, b, d->vals[k], indent, sort_keys, depth + 1);
    }
    if (!rc && indent >= 0)
        rc = json_newline(c, b, indent, depth);
    return rc ? rc : puts_(c, b, "}");
}

int jv_tojson(jctx *c, jbuf *b, jv v, int indent, bool sort_keys, int depth)
{
    int rc;

    if (depth > JINJA_MAX_DEPTH)
        return jctx_fail(c, "value nested too deeply for tojson");
    if (v.t == JV_DICT)
        return json_dict(c, b, v.u.d, indent, sort_keys, depth);
    if (v.t != JV_LIST)
        return json_scalar(c, b, v);
    if (!v.u.l->n)
        return puts_(c, b, "[]");
    rc = puts_(c, b, "[");
    for (size_t i = 0; !rc && i < v.u.l->n; i++) {
        if (i)
            rc = puts_(c, b, indent >= 0 ? "," : ", ");
        if (!rc && indent >= 0)
            rc = json_newline(c, b, indent, depth + 1);
        if (!rc)
            rc = jv_tojson(c, b, v.u.l->items[i], indent, sort_keys, depth + 1);
    }
    if (!rc && indent >= 0)
        rc = json_newline(c, b, indent, depth);
    return rc ? rc : puts_(c, b, "]");
}

/* ------------------------------------------------------------------------ */
/* Iteration                                                                 */

int jv_iterate(jctx *c, jv v, jlist **ret)
{
    jlist *l;

    switch (v.t) {
    case JV_LIST:
        *ret = v.u.l;
        return 0;
    case JV_UNDEF:
        l = jlist_new(c, 0, false);
        break;
    case JV_DICT:
    case JV_NS:
        l = jlist_new(c, v.u.d->n, false);
        if (l && v.u.d->n)
            memcpy(l->items, v.u.d->keys, v.u.d->n * sizeof(jv));
        break;
    case JV_STR: {
        size_t n = ju8_len(v.u.s.p, v.u.s.n), off = 0;

        l = jlist_new(c, n, false);
        for (size_t i = 0; l && i < n; i++) {
            size_t k = u8_seqlen((unsigned char)v.u.s.p[off]);

            if (off + k > v.u.s.n)
                k = v.u.s.n - off;
            l->items[i] = jv_str(v.u.s.p + off, k);
            off += k;
        }
        break;
    }
    default:
        return jctx_fail(c, "'%s' object is not iterable", jv_type_name(v));
    }
    if (!l)
        return -ENOMEM;
    *ret = l;
    return 0;
}
