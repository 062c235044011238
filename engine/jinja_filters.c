/* SPDX-License-Identifier: MIT */
/*
 * jinja_filters.c - jinja2's builtin filters and tests that chat templates
 * use, with jinja2 3.1's argument names and defaults, plus transformers'
 * tojson (json.dumps with ensure_ascii=False, indent, sort_keys).
 *
 * Filters and tests are table rows; the parser checks names against the
 * tables, so an unknown filter is a template error even in a branch that
 * never runs, as in jinja2 (which fails at compile time).
 */
#include "jinja.h"

#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TRY(x) do { int rc_ = (x); if (rc_) return rc_; } while (0)

typedef int (*filter_fn)(jctx *c, jv v, const jargs *a, jv *ret);
typedef int (*test_fn)(jctx *c, jv v, const jargs *a, bool *ret);

static jv arg_or(const jargs *a, size_t i, const char *name, jv def)
{
    jv v;

    return jargs_get(a, i, name, &v) ? v : def;
}

static int to_str(jctx *c, jv v, jv *ret)
{
    return jv_str_value(c, v, ret);
}

/* Attribute lookup by a dotted path ("a.b", "0"), as jinja's
 * make_attrgetter does. */
static int get_path(jctx *c, jv obj, jv path, jv *ret)
{
    const char *p;
    size_t n;

    if (path.t == JV_INT) {
        if (obj.t == JV_LIST && path.u.i >= 0 && (size_t)path.u.i < obj.u.l->n)
            *ret = obj.u.l->items[path.u.i];
        else
            *ret = jv_undef(NULL);
        return 0;
    }
    if (path.t != JV_STR)
        return jctx_fail(c, "attribute must be a string");
    p = path.u.s.p;
    n = path.u.s.n;
    *ret = obj;
    while (n) {
        const char *dot = memchr(p, '.', n);
        size_t k = dot ? (size_t)(dot - p) : n;
        char *end;
        long idx = strtol(p, &end, 10);

        if (ret->t == JV_DICT || ret->t == JV_NS) {
            if (!jdict_get_str(ret->u.d, p, k, ret))
                *ret = jv_undef(NULL);
        } else if (ret->t == JV_LIST && end == p + k && k) {
            *ret = idx >= 0 && (size_t)idx < ret->u.l->n ? ret->u.l->items[idx]
                                                          : jv_undef(NULL);
        } else if (ret->t == JV_UNDEF) {
            return jctx_fail(c, "undefined value has no attribute '%.*s'",
                             (int)k, p);
        } else {
            *ret = jv_undef(NULL);
        }
        p += dot ? k + 1 : k;
        n -= dot ? k + 1 : k;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Sorting                                                                   */

typedef struct sort_ctx {
    jctx *c;
    jv attr;          /* JV_UNDEF: the item itself */
    bool case_sensitive;
    int rc;
} sort_ctx;

static int sort_key(sort_ctx *s, jv item, jv *ret)
{
    if (s->attr.t != JV_UNDEF && s->attr.t != JV_NONE)
        TRY(get_path(s->c, item, s->attr, &item));
    if (item.t == JV_STR && !s->case_sensitive)
        return jstr_case(s->c, item, 'l', ret);
    *ret = item;
    return 0;
}

static int key_cmp(sort_ctx *s, jv a, jv b)
{
    int r = 0;

    if (s->rc)
        return 0;
    s->rc = sort_key(s, a, &a);
    if (!s->rc)
        s->rc = sort_key(s, b, &b);
    if (!s->rc)
        s->rc = jv_compare(s->c, a, b, &r);
    return r;
}

/* Stable merge sort that can fail (incomparable values). */
static int merge_sort(sort_ctx *s, jv *v, size_t n, bool reverse)
{
    jv *tmp;

    if (n < 2)
        return 0;
    tmp = jarena_alloc(&s->c->arena, n * sizeof(jv));
    if (!tmp)
        return jctx_nomem(s->c);
    for (size_t w = 1; w < n && !s->rc; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w
                                                                      : n;
            size_t i = lo, j = mid, k = lo;

            while (i < mid && j < hi) {
                int r = key_cmp(s, v[i], v[j]);

                tmp[k++] = (reverse ? r < 0 : r > 0) ? v[j++] : v[i++];
            }
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, n * sizeof(jv));
    }
    return s->rc;
}

static int copy_list(jctx *c, jv v, jlist **ret)
{
    jlist *src, *l;

    TRY(jv_iterate(c, v, &src));
    l = jlist_new(c, src->n, false);
    if (!l)
        return -ENOMEM;
    if (src->n)
        memcpy(l->items, src->items, src->n * sizeof(jv));
    *ret = l;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Filters                                                                   */

static int f_default(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv def = arg_or(a, 0, "default_value", jv_str("", 0));
    bool boolean = jv_truthy(arg_or(a, 1, "boolean", jv_bool(false)));

    *ret = v.t == JV_UNDEF || (boolean && !jv_truthy(v)) ? def : v;
    return 0;
}

static int f_length(jctx *c, jv v, const jargs *a, jv *ret)
{
    switch (v.t) {
    case JV_STR: *ret = jv_int((int64_t)ju8_len(v.u.s.p, v.u.s.n)); return 0;
    case JV_LIST: *ret = jv_int((int64_t)v.u.l->n); return 0;
    case JV_DICT:
    case JV_NS: *ret = jv_int((int64_t)v.u.d->n); return 0;
    case JV_UNDEF: *ret = jv_int(0); return 0;
    default:
        return jctx_fail(c, "object of type '%s' has no len()",
                         jv_type_name(v));
    }
}

static int f_first_last(jctx *c, jv v, bool last, jv *ret)
{
    jlist *l;

    TRY(jv_iterate(c, v, &l));
    *ret = l->n ? l->items[last ? l->n - 1 : 0] : jv_undef(NULL);
    return 0;
}

static int f_first(jctx *c, jv v, const jargs *a, jv *ret)
{
    return f_first_last(c, v, false, ret);
}

static int f_last(jctx *c, jv v, const jargs *a, jv *ret)
{
    return f_first_last(c, v, true, ret);
}

static int f_join(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv sep = arg_or(a, 0, "d", jv_str("", 0)), attr = arg_or(a, 1, "attribute",
                                                             jv_none());
    jbuf b = { .limit = JINJA_MAX_ARENA };
    jlist *l;
    int rc = 0;

    TRY(jv_iterate(c, v, &l));
    TRY(to_str(c, sep, &sep));
    for (size_t i = 0; i < l->n && !rc; i++) {
        jv x = l->items[i];

        if (attr.t != JV_NONE)
            rc = get_path(c, x, attr, &x);
        if (!rc && i && !jbuf_put(&b, sep.u.s.p, sep.u.s.n))
            rc = jctx_nomem(c);
        if (!rc)
            rc = jv_to_str(c, &b, x);
    }
    return jbuf_end(c, &b, rc, ret);
}

static int f_case(jctx *c, jv v, int mode, jv *ret)
{
    TRY(to_str(c, v, &v));
    return jstr_case(c, v, mode, ret);
}

static int f_upper(jctx *c, jv v, const jargs *a, jv *r) { return f_case(c, v, 'u', r); }
static int f_lower(jctx *c, jv v, const jargs *a, jv *r) { return f_case(c, v, 'l', r); }
static int f_capitalize(jctx *c, jv v, const jargs *a, jv *r) { return f_case(c, v, 'c', r); }
static int f_title(jctx *c, jv v, const jargs *a, jv *r) { return f_case(c, v, 'j', r); }

static int f_trim(jctx *c, jv v, const jargs *a, jv *ret)
{
    TRY(to_str(c, v, &v));
    return jstr_strip(c, v, arg_or(a, 0, "chars", jv_none()), 3, ret);
}

static int f_replace(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv old, new_, cnt = arg_or(a, 2, "count", jv_none());

    if (!jargs_get(a, 0, "old", &old) || !jargs_get(a, 1, "new", &new_))
        return jctx_fail(c, "replace expects old and new");
    TRY(to_str(c, v, &v));
    TRY(to_str(c, old, &old));
    TRY(to_str(c, new_, &new_));
    return jstr_replace(c, v, old, new_, cnt.t == JV_INT ? cnt.u.i : -1, ret);
}

static int f_string(jctx *c, jv v, const jargs *a, jv *ret)
{
    return to_str(c, v, ret);
}

static int f_safe(jctx *c, jv v, const jargs *a, jv *ret)
{
    *ret = v;
    return 0;
}

/* Python int(str): optional sign, digits with single underscores. */
static bool parse_int(const char *p, size_t n, int64_t *ret)
{
    char buf[32];
    size_t k = 0;

    while (n && jpy_isspace((unsigned char)*p)) p++, n--;
    while (n && jpy_isspace((unsigned char)p[n - 1])) n--;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '_' && i && i + 1 < n && p[i - 1] != '_')
            continue;
        if (k >= sizeof(buf) - 1)
            return false;
        buf[k++] = p[i];
    }
    buf[k] = '\0';
    if (!k)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);

    if (*end || errno || end == buf || !(buf[0] == '-' || buf[0] == '+' ||
                                          (buf[0] >= '0' && buf[0] <= '9')))
        return false;
    *ret = v;
    return true;
}

static bool parse_float(const char *p, size_t n, double *ret)
{
    char buf[64], *end;

    while (n && jpy_isspace((unsigned char)*p)) p++, n--;
    while (n && jpy_isspace((unsigned char)p[n - 1])) n--;
    if (!n || n >= sizeof(buf) || memchr(p, 'x', n) || memchr(p, 'X', n))
        return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    *ret = strtod(buf, &end);
    return *end == '\0';
}

static int f_int(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv def = arg_or(a, 0, "default", jv_int(0));
    int64_t i;
    double f;

    if (v.t == JV_INT || v.t == JV_BOOL) {
        *ret = jv_int(v.t == JV_INT ? v.u.i : v.u.b);
    } else if (v.t == JV_FLOAT && isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) {
        *ret = jv_int((int64_t)v.u.f);
    } else if (v.t == JV_STR && parse_int(v.u.s.p, v.u.s.n, &i)) {
        *ret = jv_int(i);
    } else if (v.t == JV_STR && parse_float(v.u.s.p, v.u.s.n, &f) &&
               isfinite(f) && fabs(f) < 9.2e18) {
        *ret = jv_int((int64_t)f);
    } else {
        *ret = def;
    }
    return 0;
}

static int f_float(jctx *c, jv v, const jargs *a, jv *ret)
{
    double f;

    if (jv_is_number(v))
        *ret = jv_float(jv_as_double(v));
    else if (v.t == JV_STR && parse_float(v.u.s.p, v.u.s.n, &f))
        *ret = jv_float(f);
    else
        *ret = arg_or(a, 0, "default", jv_float(0.0));
    return 0;
}

static int f_abs(jctx *c, jv v, const jargs *a, jv *ret)
{
    if (v.t == JV_INT && v.u.i != INT64_MIN)
        *ret = jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    else if (v.t == JV_FLOAT)
        *ret = jv_float(fabs(v.u.f));
    else if (v.t == JV_BOOL)
        *ret = jv_int(v.u.b);
    else
        return jctx_fail(c, "bad operand type for abs(): '%s'", jv_type_name(v));
    return 0;
}

static int f_round(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv prec = arg_or(a, 0, "precision", jv_int(0));
    jv method = arg_or(a, 1, "method", jv_str("common", 6));
    double f = jv_as_double(v), m;

    if (!jv_is_number(v) || prec.t != JV_INT || method.t != JV_STR)
        return jctx_fail(c, "round expects a number");
    m = pow(10, (double)prec.u.i);
    if (method.u.s.n == 4 && !memcmp(method.u.s.p, "ceil", 4))
        f = ceil(f * m) / m;
    else if (method.u.s.n == 5 && !memcmp(method.u.s.p, "floor", 5))
        f = floor(f * m) / m;
    else
        f = round(f * m) / m;
    *ret = jv_float(f);
    return 0;
}

static int f_items(jctx *c, jv v, const jargs *a, jv *ret)
{
    jlist *l;

    if (v.t == JV_UNDEF) {
        l = jlist_new(c, 0, false);
        if (!l)
            return -ENOMEM;
        *ret = jv_list(l);
        return 0;
    }
    if (v.t != JV_DICT)
        return jctx_fail(c, "Can only get item pairs from a mapping.");
    bool handled;
    jargs none = { 0 };

    return jinja_method(c, v, "items", &none, &handled, ret);
}

static int f_list(jctx *c, jv v, const jargs *a, jv *ret)
{
    jlist *l;

    TRY(copy_list(c, v, &l));
    *ret = jv_list(l);
    return 0;
}

static int f_reverse(jctx *c, jv v, const jargs *a, jv *ret)
{
    jlist *l;

    TRY(copy_list(c, v, &l));
    for (size_t i = 0; i < l->n / 2; i++) {
        jv t = l->items[i];

        l->items[i] = l->items[l->n - 1 - i];
        l->items[l->n - 1 - i] = t;
    }
    if (v.t != JV_STR) {
        *ret = jv_list(l);
        return 0;
    }
    jargs one = { .pos = &(jv){ .t = JV_LIST, .u.l = l }, .npos = 1 };
    bool handled;

    return jinja_method(c, jv_str("", 0), "join", &one, &handled, ret);
}

static int f_sort(jctx *c, jv v, const jargs *a, jv *ret)
{
    sort_ctx s = { .c = c };
    bool reverse = jv_truthy(arg_or(a, 0, "reverse", jv_bool(false)));
    jlist *l;

    s.case_sensitive = jv_truthy(arg_or(a, 1, "case_sensitive", jv_bool(false)));
    s.attr = arg_or(a, 2, "attribute", jv_undef(NULL));
    TRY(copy_list(c, v, &l));
    TRY(merge_sort(&s, l->items, l->n, reverse));
    *ret = jv_list(l);
    return 0;
}

static int f_minmax(jctx *c, jv v, const jargs *a, bool max, jv *ret)
{
    sort_ctx s = { .c = c };
    jlist *l;

    s.case_sensitive = jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(false)));
    s.attr = arg_or(a, 1, "attribute", jv_undef(NULL));
    TRY(jv_iterate(c, v, &l));
    if (!l->n) {
        *ret = jv_undef(NULL);
        return 0;
    }
    *ret = l->items[0];
    for (size_t i = 1; i < l->n; i++) {
        int r = key_cmp(&s, l->items[i], *ret);

        if (s.rc)
            return s.rc;
        if (max ? r > 0 : r < 0)
            *ret = l->items[i];
    }
    return 0;
}

static int f_max(jctx *c, jv v, const jargs *a, jv *r) { return f_minmax(c, v, a, true, r); }
static int f_min(jctx *c, jv v, const jargs *a, jv *r) { return f_minmax(c, v, a, false, r); }

static int f_unique(jctx *c, jv v, const jargs *a, jv *ret)
{
    sort_ctx s = { .c = c };
    jlist *l, *out;

    s.case_sensitive = jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(false)));
    s.attr = arg_or(a, 1, "attribute", jv_undef(NULL));
    TRY(jv_iterate(c, v, &l));
    out = jlist_new(c, l->n, false);
    if (!out)
        return -ENOMEM;
    out->n = 0;
    for (size_t i = 0; i < l->n; i++) {
        jv k;
        bool seen = false;

        TRY(sort_key(&s, l->items[i], &k));
        for (size_t j = 0; j < out->n && !seen; j++) {
            jv o;

            TRY(sort_key(&s, out->items[j], &o));
            seen = jv_equal(k, o);
        }
        if (!seen)
            out->items[out->n++] = l->items[i];
    }
    *ret = jv_list(out);
    return 0;
}

static int f_sum(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv attr = arg_or(a, 0, "attribute", jv_none()), acc = arg_or(a, 1, "start",
                                                                jv_int(0));
    jlist *l;

    TRY(jv_iterate(c, v, &l));
    for (size_t i = 0; i < l->n; i++) {
        jv x = l->items[i];

        if (attr.t != JV_NONE)
            TRY(get_path(c, x, attr, &x));
        if (!jv_is_number(x) || !jv_is_number(acc))
            return jctx_fail(c, "sum needs numbers");
        acc = acc.t == JV_FLOAT || x.t == JV_FLOAT
                  ? jv_float(jv_as_double(acc) + jv_as_double(x))
                  : jv_int((acc.t == JV_INT ? acc.u.i : acc.u.b) +
                           (x.t == JV_INT ? x.u.i : x.u.b));
    }
    *ret = acc;
    return 0;
}

static int f_tojson(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv indent = arg_or(a, 1, "indent", jv_none());
    bool sort_keys = jv_truthy(arg_or(a, 3, "sort_keys", jv_bool(false)));
    jbuf b = { .limit = JINJA_MAX_ARENA };
    int rc;

    if (jv_truthy(arg_or(a, 0, "ensure_ascii", jv_bool(false))))
        return jctx_fail(c, "tojson: ensure_ascii=True is not supported");
    if (indent.t != JV_NONE && (indent.t != JV_INT || indent.u.i < 0 ||
                                indent.u.i > 64))
        return jctx_fail(c, "tojson: indent must be a small integer");
    rc = jv_tojson(c, &b, v, indent.t == JV_INT ? (int)indent.u.i : -1,
                   sort_keys, 0);
    return jbuf_end(c, &b, rc, ret);
}

static int f_escape(jctx *c, jv v, const jargs *a, jv *ret)
{
    jbuf b = { .limit = JINJA_MAX_ARENA };
    int rc = 0;

    TRY(to_str(c, v, &v));
    for (size_t i = 0; i < v.u.s.n && !rc; i++) {
        const char *e = NULL;

        switch (v.u.s.p[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&#34;"; break;
        case '\'': e = "&#39;"; break;
        }
        if (!(e ? jbuf_puts(&b, e) : jbuf_put(&b, v.u.s.p + i, 1)))
            rc = jctx_nomem(c);
    }
    return jbuf_end(c, &b, rc, ret);
}

static int f_indent(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv width = arg_or(a, 0, "width", jv_int(4));
    bool first = jv_truthy(arg_or(a, 1, "first", jv_bool(false)));
    bool blank = jv_truthy(arg_or(a, 2, "blank", jv_bool(false)));
    jbuf b = { .limit = JINJA_MAX_ARENA };
    jv ind;
    int rc = 0;

    TRY(to_str(c, v, &v));
    if (width.t == JV_INT && width.u.i >= 0 && width.u.i <= 256) {
        char sp[257];

        memset(sp, ' ', (size_t)width.u.i);
        TRY(jv_str_dup(c, sp, (size_t)width.u.i, &ind));
    } else if (width.t == JV_STR) {
        ind = width;
    } else {
        return jctx_fail(c, "indent: bad width");
    }
    /* Lines as str.splitlines() of s + "\n" sees them. */
    for (size_t i = 0, ln = 0; i < v.u.s.n && !rc; ln++) {
        const char *nl = memchr(v.u.s.p + i, '\n', v.u.s.n - i);
        size_t e = nl ? (size_t)(nl - v.u.s.p) : v.u.s.n;
        bool empty = e == i;

        if (ln && !jbuf_put(&b, "\n", 1))
            rc = -ENOMEM;
        if ((ln ? (blank || !empty) : first) &&
            !jbuf_put(&b, ind.u.s.p, ind.u.s.n))
            rc = -ENOMEM;
        if (!jbuf_put(&b, v.u.s.p + i, e - i))
            rc = -ENOMEM;
        i = e + 1;
    }
    if (!v.u.s.n && first && !jbuf_put(&b, ind.u.s.p, ind.u.s.n))
        rc = -ENOMEM;
    return jbuf_end(c, &b, rc ? jctx_nomem(c) : 0, ret);
}

static int f_dictsort(jctx *c, jv v, const jargs *a, jv *ret)
{
    sort_ctx s = { .c = c };
    jv by = arg_or(a, 1, "by", jv_str("key", 3));
    bool reverse = jv_truthy(arg_or(a, 2, "reverse", jv_bool(false)));

    s.case_sensitive = jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(false)));
    s.attr = jv_int(by.t == JV_STR && by.u.s.n == 5 ? 1 : 0);
    TRY(f_items(c, v, a, ret));
    return merge_sort(&s, ret->u.l->items, ret->u.l->n, reverse);
}

/* map, select, reject, selectattr, rejectattr */
static int f_map(jctx *c, jv v, const jargs *a, jv *ret)
{
    jlist *l, *out;
    jv attr;

    TRY(jv_iterate(c, v, &l));
    out = jlist_new(c, l->n, false);
    if (!out)
        return -ENOMEM;
    if (jargs_get(a, (size_t)-1, "attribute", &attr)) {
        jv def = arg_or(a, (size_t)-1, "default", jv_undef(NULL));

        for (size_t i = 0; i < l->n; i++) {
            TRY(get_path(c, l->items[i], attr, &out->items[i]));
            if (out->items[i].t == JV_UNDEF && def.t != JV_UNDEF)
                out->items[i] = def;
        }
    } else {
        jv name;

        if (!jargs_get(a, 0, NULL, &name) || name.t != JV_STR)
            return jctx_fail(c, "map expects a filter name or attribute=");
        jargs rest = { a->pos + 1, a->npos - 1, a->kw_names, a->kw, a->nkw };
        char fname[64];

        snprintf(fname, sizeof(fname), "%.*s", (int)name.u.s.n, name.u.s.p);
        for (size_t i = 0; i < l->n; i++)
            TRY(jinja_filter(c, fname, l->items[i], &rest, &out->items[i]));
    }
    *ret = jv_list(out);
    return 0;
}

static int select_common(jctx *c, jv v, const jargs *a, bool attr_mode,
                         bool keep, jv *ret)
{
    jlist *l, *out;
    size_t skip = attr_mode ? 1 : 0;
    jv attr = jv_none(), test;
    char tname[64] = "";

    TRY(jv_iterate(c, v, &l));
    if (attr_mode && !jargs_get(a, 0, NULL, &attr))
        return jctx_fail(c, "missing attribute");
    if (jargs_get(a, skip, NULL, &test)) {
        if (test.t != JV_STR)
            return jctx_fail(c, "test name must be a string");
        snprintf(tname, sizeof(tname), "%.*s", (int)test.u.s.n, test.u.s.p);
    }
    jargs rest = { a->pos + (a->npos > skip ? skip + 1 : a->npos),
                   a->npos > skip ? a->npos - skip - 1 : 0, a->kw_names,
                   a->kw, a->nkw };

    out = jlist_new(c, l->n, false);
    if (!out)
        return -ENOMEM;
    out->n = 0;
    for (size_t i = 0; i < l->n; i++) {
        jv x = l->items[i];
        bool t;

        if (attr_mode)
            TRY(get_path(c, x, attr, &x));
        if (tname[0])
            TRY(jinja_test(c, tname, x, &rest, &t));
        else
            t = jv_truthy(x);
        if (t == keep)
            out->items[out->n++] = l->items[i];
    }
    *ret = jv_list(out);
    return 0;
}

static int f_select(jctx *c, jv v, const jargs *a, jv *r) { return select_common(c, v, a, false, true, r); }
static int f_reject(jctx *c, jv v, const jargs *a, jv *r) { return select_common(c, v, a, false, false, r); }
static int f_selectattr(jctx *c, jv v, const jargs *a, jv *r) { return select_common(c, v, a, true, true, r); }
static int f_rejectattr(jctx *c, jv v, const jargs *a, jv *r) { return select_common(c, v, a, true, false, r); }

static int f_attr(jctx *c, jv v, const jargs *a, jv *ret)
{
    jv name;

    if (!jargs_get(a, 0, "name", &name) || name.t != JV_STR)
        return jctx_fail(c, "attr expects a name");
    if (v.t == JV_DICT || v.t == JV_NS) {
        if (!jdict_get(v.u.d, name, ret))
            *ret = jv_undef(NULL);
    } else {
        *ret = jv_undef(NULL);
    }
    return 0;
}

static int f_format(jctx *c, jv v, const jargs *a, jv *ret)
{
    jlist *l = jlist_new(c, a->npos, true);

    if (!l)
        return -ENOMEM;
    if (a->nkw)
        return jctx_fail(c, "format: keyword arguments are not supported");
    if (a->npos)
        memcpy(l->items, a->pos, a->npos * sizeof(jv));
    TRY(to_str(c, v, &v));
    return jstr_percent(c, v, jv_list(l), ret);
}

static const struct { const char *name; filter_fn fn; } filters[] = {
    { "format", f_format },
    { "abs", f_abs }, { "attr", f_attr }, { "capitalize", f_capitalize },
    { "count", f_length }, { "d", f_default }, { "default", f_default },
    { "dictsort", f_dictsort }, { "e", f_escape }, { "escape", f_escape },
    { "first", f_first }, { "float", f_float }, { "forceescape", f_escape },
    { "indent", f_indent }, { "int", f_int }, { "items", f_items },
    { "join", f_join }, { "last", f_last }, { "length", f_length },
    { "list", f_list }, { "lower", f_lower }, { "map", f_map },
    { "max", f_max }, { "min", f_min }, { "reject", f_reject },
    { "rejectattr", f_rejectattr }, { "replace", f_replace },
    { "reverse", f_reverse }, { "round", f_round }, { "safe", f_safe },
    { "select", f_select }, { "selectattr", f_selectattr },
    { "sort", f_sort }, { "string", f_string }, { "sum", f_sum },
    { "title", f_title }, { "tojson", f_tojson }, { "trim", f_trim },
    { "unique", f_unique }, { "upper", f_upper },
};

bool jinja_filter_exists(const char *name)
{
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
        if (!strcmp(filters[i].name, name))
            return true;
    return false;
}

int jinja_filter(jctx *c, const char *name, jv v, const jargs *a, jv *ret)
{
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
        if (!strcmp(filters[i].name, name))
            return filters[i].fn(c, v, a, ret);
    return jctx_fail(c, "No filter named '%s'.", name);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */

static int test_cmp(jctx *c, jv v, const jargs *a, const char *op, bool *ret)
{
    jv o;
    int r;

    if (!jargs_get(a, 0, NULL, &o))
        return jctx_fail(c, "test expects an argument");
    if (op[0] == '=' || op[0] == '!') {
        *ret = jv_equal(v, o) == (op[0] == '=');
        return 0;
    }
    TRY(jv_compare(c, v, o, &r));
    *ret = op[0] == '<' ? (op[1] ? r <= 0 : r < 0) : (op[1] ? r >= 0 : r > 0);
    return 0;
}

static bool str_all_case(jctx *c, jv v, int mode)
{
    jv conv;
    bool cased = false;

    if (v.t != JV_STR || jstr_case(c, v, mode, &conv))
        return false;
    for (size_t i = 0; i < v.u.s.n; i++)
        if ((v.u.s.p[i] >= 'a' && v.u.s.p[i] <= 'z') ||
            (v.u.s.p[i] >= 'A' && v.u.s.p[i] <= 'Z') ||
            (unsigned char)v.u.s.p[i] >= 0x80)
            cased = true;
    return cased && conv.u.s.n == v.u.s.n && !memcmp(conv.u.s.p, v.u.s.p,
                                                     v.u.s.n);
}

int jinja_test(jctx *c, const char *name, jv v, const jargs *a, bool *ret)
{
    jv o;

    if (!strcmp(name, "defined")) *ret = v.t != JV_UNDEF;
    else if (!strcmp(name, "undefined")) *ret = v.t == JV_UNDEF;
    else if (!strcmp(name, "none")) *ret = v.t == JV_NONE;
    else if (!strcmp(name, "boolean")) *ret = v.t == JV_BOOL;
    else if (!strcmp(name, "true")) *ret = v.t == JV_BOOL && v.u.b;
    else if (!strcmp(name, "false")) *ret = v.t == JV_BOOL && !v.u.b;
    else if (!strcmp(name, "integer")) *ret = v.t == JV_INT;
    else if (!strcmp(name, "float")) *ret = v.t == JV_FLOAT;
    else if (!strcmp(name, "number")) *ret = jv_is_number(v);
    else if (!strcmp(name, "string")) *ret = v.t == JV_STR;
    else if (!strcmp(name, "mapping")) *ret = v.t == JV_DICT;
    else if (!strcmp(name, "iterable"))
        *ret = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT ||
               v.t == JV_UNDEF;
    else if (!strcmp(name, "sequence"))
        *ret = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT ||
               v.t == JV_UNDEF;
    else if (!strcmp(name, "callable")) *ret = v.t == JV_FUNC;
    else if (!strcmp(name, "escaped")) *ret = false;
    else if (!strcmp(name, "lower")) *ret = str_all_case(c, v, 'l');
    else if (!strcmp(name, "upper")) *ret = str_all_case(c, v, 'u');
    else if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        if (v.t != JV_INT && v.t != JV_BOOL)
            return jctx_fail(c, "%s test needs an integer", name);
        *ret = ((v.t == JV_INT ? v.u.i : v.u.b) & 1) == (name[0] == 'o');
    } else if (!strcmp(name, "divisibleby")) {
        if (!jargs_get(a, 0, "num", &o) || o.t != JV_INT || !o.u.i ||
            v.t != JV_INT)
            return jctx_fail(c, "divisibleby needs integers");
        *ret = v.u.i % o.u.i == 0;
    } else if (!strcmp(name, "sameas")) {
        if (!jargs_get(a, 0, "other", &o))
            return jctx_fail(c, "sameas expects an argument");
        *ret = v.t == o.t && jv_equal(v, o);
    } else if (!strcmp(name, "in")) {
        if (!jargs_get(a, 0, "seq", &o))
            return jctx_fail(c, "in expects an argument");
        jlist *l;

        if (o.t == JV_STR && v.t == JV_STR) {
            *ret = !v.u.s.n || memmem(o.u.s.p, o.u.s.n, v.u.s.p, v.u.s.n);
            return 0;
        }
        if (o.t == JV_DICT)
            return (*ret = jdict_get(o.u.d, v, &o)), 0;
        TRY(jv_iterate(c, o, &l));
        *ret = false;
        for (size_t i = 0; i < l->n && !*ret; i++)
            *ret = jv_equal(l->items[i], v);
    }
    else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "=="))
        return test_cmp(c, v, a, "=", ret);
    else if (!strcmp(name, "ne") || !strcmp(name, "!="))
        return test_cmp(c, v, a, "!", ret);
    else if (!strcmp(name, "lt") || !strcmp(name, "lessthan") || !strcmp(name, "<"))
        return test_cmp(c, v, a, "<", ret);
    else if (!strcmp(name, "le") || !strcmp(name, "<="))
        return test_cmp(c, v, a, "<=", ret);
    else if (!strcmp(name, "gt") || !strcmp(name, "greaterthan") || !strcmp(name, ">"))
        return test_cmp(c, v, a, ">", ret);
    else if (!strcmp(name, "ge") || !strcmp(name, ">="))
        return test_cmp(c, v, a, ">=", ret);
    else
        return jctx_fail(c, "No test named '%s'.", name);
    return 0;
}

bool jinja_test_exists(const char *name)
{
    static const char *const names[] = {
        "defined", "undefined", "none", "boolean", "true", "false", "integer",
        "float", "number", "string", "mapping", "iterable", "sequence",
        "callable", "escaped", "lower", "upper", "odd", "even", "divisibleby",
        "sameas", "in", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan",
        "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", NULL,
    };
    for (size_t i = 0; names[i]; i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}
