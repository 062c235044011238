/* SPDX-License-Identifier: MIT */
/*
 * jinja_methods.c - Python methods that templates call on values
 * (str.startswith, str.split, dict.items, dict.get, ...) and the string
 * helpers the filters share (case mapping, strip, replace).
 *
 * Only read-only methods exist: transformers renders in jinja2's
 * ImmutableSandboxedEnvironment, where list.append or dict.update raise a
 * SecurityError, so here they are errors too. Case mapping is per code
 * point through utf8proc; whitespace is Python's str.isspace set.
 */
#include "jinja.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

#define TRY(x) do { int rc_ = (x); if (rc_) return rc_; } while (0)

bool jargs_get(const jargs *a, size_t idx, const char *name, jv *ret)
{
    for (size_t i = 0; name && i < a->nkw; i++) {
        if (!strcmp(a->kw_names[i], name)) {
            *ret = a->kw[i];
            return true;
        }
    }
    if (idx < a->npos) {
        *ret = a->pos[idx];
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Code points                                                               */

static int32_t next_cp(const char *p, size_t n, size_t *len)
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)p,
                                          (utf8proc_ssize_t)n, &cp);

    if (k <= 0) {
        *len = 1;
        return (unsigned char)p[0];
    }
    *len = (size_t)k;
    return cp;
}

bool jpy_isspace(int32_t cp)
{
    if ((cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) ||
        cp == 0x85 || cp == 0xa0 || cp == 0x2028 || cp == 0x2029)
        return true;
    return cp > 0x7f && utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS;
}

static bool is_alpha(int32_t cp)
{
    utf8proc_category_t k = utf8proc_category(cp);

    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

/* mode: 'l' lower, 'u' upper, 'c' capitalize, 't' title (Python str.title),
 * 'j' jinja's title filter (words start after - whitespace ( { [ <). */
int jstr_case(jctx *c, jv s, int mode, jv *ret)
{
    char *o = jarena_alloc(&c->arena, s.u.s.n * 2 + 8);
    size_t k = 0;
    bool start = true;

    if (!o || s.u.s.n > JINJA_MAX_ARENA / 4)
        return jctx_nomem(c);
    for (size_t i = 0; i < s.u.s.n;) {
        size_t len;
        int32_t cp = next_cp(s.u.s.p + i, s.u.s.n - i, &len), out = cp;
        bool up = mode == 'u' || ((mode == 'c' || mode == 't' || mode == 'j') &&
                                  start);

        if (mode != 'u' && mode != 'l' && !up)
            out = utf8proc_tolower(cp);
        else
            out = up ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        if (mode == 'c')
            start = false;
        else if (mode == 't')
            start = !is_alpha(cp);
        else if (mode == 'j')
            start = jpy_isspace(cp) || cp == '-' || cp == '(' || cp == '{' ||
                    cp == '[' || cp == '<';
        if (out < 0 || out > 0x10ffff)
            out = cp;
        k += (size_t)utf8proc_encode_char(out, (utf8proc_uint8_t *)o + k);
        i += len;
    }
    *ret = jv_str(o, k);
    return 0;
}

static bool in_chars(int32_t cp, jv chars)
{
    if (chars.t != JV_STR)
        return jpy_isspace(cp);
    for (size_t i = 0; i < chars.u.s.n;) {
        size_t len;

        if (next_cp(chars.u.s.p + i, chars.u.s.n - i, &len) == cp)
            return true;
        i += len;
    }
    return false;
}

/* sides: 1 left, 2 right, 3 both; chars undefined/none: whitespace. */
int jstr_strip(jctx *c, jv s, jv chars, int sides, jv *ret)
{
    size_t a = 0, b = s.u.s.n;

    if (chars.t != JV_STR && chars.t != JV_NONE && chars.t != JV_UNDEF)
        return jctx_fail(c, "strip arg must be None or str");
    while ((sides & 1) && a < b) {
        size_t len;

        if (!in_chars(next_cp(s.u.s.p + a, b - a, &len), chars))
            break;
        a += len;
    }
    while ((sides & 2) && b > a) {
        size_t st = b - 1, len;

        while (st > a && ((unsigned char)s.u.s.p[st] & 0xc0) == 0x80)
            st--;
        if (!in_chars(next_cp(s.u.s.p + st, b - st, &len), chars))
            break;
        b = st;
    }
    *ret = jv_str(s.u.s.p + a, b - a);
    return 0;
}

int jstr_replace(jctx *c, jv s, jv old, jv new_, int64_t count, jv *ret)
{
    jbuf b = { .limit = JINJA_MAX_ARENA };
    size_t i = 0;
    int64_t done = 0;
    int rc = 0;

    if (old.t != JV_STR || new_.t != JV_STR)
        return jctx_fail(c, "replace arguments must be strings");
    if (!old.u.s.n) {
        /* Python inserts new between every character (and at both ends). */
        while (!rc && (count < 0 || done < count)) {
            size_t len = 0;

            if (!jbuf_put(&b, new_.u.s.p, new_.u.s.n))
                rc = -ENOMEM;
            done++;
            if (i >= s.u.s.n)
                break;
            next_cp(s.u.s.p + i, s.u.s.n - i, &len);
            if (!jbuf_put(&b, s.u.s.p + i, len))
                rc = -ENOMEM;
            i += len;
        }
    } else {
        while (!rc && (count < 0 || done < count)) {
            const char *hit = memmem(s.u.s.p + i, s.u.s.n - i, old.u.s.p,
                                     old.u.s.n);

            if (!hit)
                break;
            if (!jbuf_put(&b, s.u.s.p + i, (size_t)(hit - s.u.s.p) - i) ||
                !jbuf_put(&b, new_.u.s.p, new_.u.s.n))
                rc = -ENOMEM;
            i = (size_t)(hit - s.u.s.p) + old.u.s.n;
            done++;
        }
    }
    if (!rc && !jbuf_put(&b, s.u.s.p + i, s.u.s.n - i))
        rc = -ENOMEM;
    return jbuf_end(c, &b, rc ? jctx_nomem(c) : 0, ret);
}

/* Python's "fmt % args" for the common conversions: %s %r %d %i %f %x %%,
 * with an optional precision (%.2f). args: a tuple or one value. */
int jstr_percent(jctx *c, jv fmt, jv args, jv *ret)
{
    jlist one = { 1, &args, true }, *l = args.t == JV_LIST && args.u.l->tuple
                                           ? args.u.l : &one;
    jbuf b = { .limit = JINJA_MAX_ARENA };
    size_t used = 0;
    int rc = 0;

    for (size_t i = 0; i < fmt.u.s.n && !rc; i++) {
        char ch = fmt.u.s.p[i], tmp[64];
        int prec = -1;

        if (ch != '%') {
            if (!jbuf_put(&b, &ch, 1))
                rc = jctx_nomem(c);
            continue;
        }
        if (++i < fmt.u.s.n && fmt.u.s.p[i] == '.') {
            prec = 0;
            while (++i < fmt.u.s.n && fmt.u.s.p[i] >= '0' &&
                   fmt.u.s.p[i] <= '9' && prec < 100)
                prec = prec * 10 + (fmt.u.s.p[i] - '0');
        }
        if (i >= fmt.u.s.n)
            return jctx_fail(c, "incomplete format");
        ch = fmt.u.s.p[i];
        if (ch == '%') {
            jbuf_put(&b, "%", 1);
            continue;
        }
        if (used >= l->n) {
            rc = jctx_fail(c, "not enough arguments for format string");
            break;
        }
        jv v = l->items[used++];
        long long iv = v.t == JV_FLOAT ? (long long)v.u.f
                       : v.t == JV_INT ? (long long)v.u.i : v.u.b;

        if (ch == 's') {
            rc = jv_to_str(c, &b, v);
            continue;
        }
        if (ch == 'r') {
            rc = jv_repr(c, &b, v);
            continue;
        }
        if (!jv_is_number(v) || !strchr("dixf", ch)) {
            rc = jctx_fail(c, "unsupported format character '%c' for %s", ch,
                           jv_type_name(v));
            break;
        }
        if (ch == 'f')
            snprintf(tmp, sizeof(tmp), "%.*f", prec < 0 ? 6 : prec,
                     jv_as_double(v));
        else if (ch == 'x')
            snprintf(tmp, sizeof(tmp), "%llx", iv);
        else
            snprintf(tmp, sizeof(tmp), "%lld", iv);
        if (!jbuf_puts(&b, tmp))
            rc = jctx_nomem(c);
    }
    if (!rc && used < l->n)
        rc = jctx_fail(c, "not all arguments converted during string "
                       "formatting");
    return jbuf_end(c, &b, rc, ret);
}

/* ------------------------------------------------------------------------ */
/* str methods                                                               */

static int affix(jctx *c, jv s, const jargs *a, bool suffix, jv *ret)
{
    jv arg;
    jlist one = { 1, &arg, true }, *opts = &one;
    bool hit = false;

    if (!jargs_get(a, 0, NULL, &arg))
        return jctx_fail(c, "%s expects an argument",
                         suffix ? "endswith" : "startswith");
    if (arg.t == JV_LIST)
        opts = arg.u.l;
    for (size_t i = 0; i < opts->n && !hit; i++) {
        jv x = opts->items[i];

        if (x.t != JV_STR)
            return jctx_fail(c, "%s arg must be str or a tuple of str",
                             suffix ? "endswith" : "startswith");
        hit = x.u.s.n <= s.u.s.n &&
              !memcmp(s.u.s.p + (suffix ? s.u.s.n - x.u.s.n : 0), x.u.s.p,
                      x.u.s.n);
    }
    *ret = jv_bool(hit);
    return 0;
}

static int split_ws(jctx *c, jv s, int64_t maxsplit, jlist *out)
{
    size_t i = 0;

    for (;;) {
        size_t len, st;

        while (i < s.u.s.n && jpy_isspace(next_cp(s.u.s.p + i, s.u.s.n - i,
                                                  &len)))
            i += len;
        if (i >= s.u.s.n)
            break;
        st = i;
        if (maxsplit >= 0 && (int64_t)out->n >= maxsplit) {
            jv rest;

            TRY(jstr_strip(c, jv_str(s.u.s.p + st, s.u.s.n - st), jv_none(), 2,
                           &rest));
            out->items[out->n++] = rest;
            break;
        }
        while (i < s.u.s.n && !jpy_isspace(next_cp(s.u.s.p + i, s.u.s.n - i,
                                                   &len)))
            i += len;
        out->items[out->n++] = jv_str(s.u.s.p + st, i - st);
    }
    return 0;
}

static int str_split(jctx *c, jv s, const jargs *a, jv *ret)
{
    jv sep = jv_none(), maxv = jv_int(-1);
    int64_t maxsplit;
    jlist *out = jlist_new(c, s.u.s.n + 1, false);

    if (!out)
        return -ENOMEM;
    out->n = 0;
    jargs_get(a, 0, "sep", &sep);
    jargs_get(a, 1, "maxsplit", &maxv);
    maxsplit = maxv.t == JV_INT ? maxv.u.i : -1;
    if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
        TRY(split_ws(c, s, maxsplit, out));
    } else if (sep.t != JV_STR || !sep.u.s.n) {
        return jctx_fail(c, sep.t == JV_STR ? "empty separator"
                                            : "must be str or None");
    } else {
        size_t i = 0;

        for (;;) {
            const char *hit = NULL;

            if (maxsplit < 0 || (int64_t)out->n < maxsplit)
                hit = memmem(s.u.s.p + i, s.u.s.n - i, sep.u.s.p, sep.u.s.n);
            if (!hit) {
                out->items[out->n++] = jv_str(s.u.s.p + i, s.u.s.n - i);
                break;
            }
            out->items[out->n++] = jv_str(s.u.s.p + i,
                                          (size_t)(hit - s.u.s.p) - i);
            i = (size_t)(hit - s.u.s.p) + sep.u.s.n;
        }
    }
    *ret = jv_list(out);
    return 0;
}

static int str_join(jctx *c, jv s, const jargs *a, jv *ret)
{
    jv seq;
    jlist *l;
    jbuf b = { .limit = JINJA_MAX_ARENA };
    int rc = 0;

    if (!jargs_get(a, 0, NULL, &seq))
        return jctx_fail(c, "join expects an iterable");
    TRY(jv_iterate(c, seq, &l));
    for (size_t i = 0; i < l->n && !rc; i++) {
        if (l->items[i].t != JV_STR)
            rc = jctx_fail(c, "sequence item %zu: expected str instance, %s "
                           "found", i, jv_type_name(l->items[i]));
        else if ((i && !jbuf_put(&b, s.u.s.p, s.u.s.n)) ||
                 !jbuf_put(&b, l->items[i].u.s.p, l->items[i].u.s.n))
            rc = jctx_nomem(c);
    }
    return jbuf_end(c, &b, rc, ret);
}

static int str_find(jctx *c, jv s, const jargs *a, bool count, jv *ret)
{
    jv sub;
    int64_t n = 0;

    if (!jargs_get(a, 0, NULL, &sub) || sub.t != JV_STR)
        return jctx_fail(c, "must be str");
    const char *hit = memmem(s.u.s.p, s.u.s.n, sub.u.s.p, sub.u.s.n);

    if (!count) {
        *ret = jv_int(hit ? (int64_t)ju8_len(s.u.s.p, (size_t)(hit - s.u.s.p))
                          : -1);
        return 0;
    }
    for (size_t i = 0; sub.u.s.n && i <= s.u.s.n;) {
        hit = memmem(s.u.s.p + i, s.u.s.n - i, sub.u.s.p, sub.u.s.n);
        if (!hit)
            break;
        n++;
        i = (size_t)(hit - s.u.s.p) + sub.u.s.n;
    }
    *ret = jv_int(sub.u.s.n ? n : (int64_t)ju8_len(s.u.s.p, s.u.s.n) + 1);
    return 0;
}

static int str_is(jv s, const char *name, jv *ret)
{
    bool all = s.u.s.n > 0;

    for (size_t i = 0; i < s.u.s.n && all;) {
        size_t len;
        int32_t cp = next_cp(s.u.s.p + i, s.u.s.n - i, &len);
        utf8proc_category_t k = utf8proc_category(cp);

        if (!strcmp(name, "isspace")) all = jpy_isspace(cp);
        else if (!strcmp(name, "isdigit")) all = k == UTF8PROC_CATEGORY_ND;
        else if (!strcmp(name, "isalpha")) all = is_alpha(cp);
        else all = is_alpha(cp) || k == UTF8PROC_CATEGORY_ND;
        i += len;
    }
    *ret = jv_bool(all);
    return 0;
}

static int str_method(jctx *c, jv s, const char *name, const jargs *a,
                      bool *handled, jv *ret)
{
    jv x = jv_none(), y;

    *handled = true;
    if (!strcmp(name, "startswith")) return affix(c, s, a, false, ret);
    if (!strcmp(name, "endswith")) return affix(c, s, a, true, ret);
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") ||
        !strcmp(name, "rstrip")) {
        jargs_get(a, 0, "chars", &x);
        return jstr_strip(c, s, x, name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3,
                          ret);
    }
    if (!strcmp(name, "split")) return str_split(c, s, a, ret);
    if (!strcmp(name, "upper")) return jstr_case(c, s, 'u', ret);
    if (!strcmp(name, "lower")) return jstr_case(c, s, 'l', ret);
    if (!strcmp(name, "title")) return jstr_case(c, s, 't', ret);
    if (!strcmp(name, "capitalize")) return jstr_case(c, s, 'c', ret);
    if (!strcmp(name, "replace")) {
        jv cnt = jv_int(-1);

        if (!jargs_get(a, 0, NULL, &x) || !jargs_get(a, 1, NULL, &y))
            return jctx_fail(c, "replace expects 2 arguments");
        jargs_get(a, 2, "count", &cnt);
        return jstr_replace(c, s, x, y, cnt.t == JV_INT ? cnt.u.i : -1, ret);
    }
    if (!strcmp(name, "join")) return str_join(c, s, a, ret);
    if (!strcmp(name, "find")) return str_find(c, s, a, false, ret);
    if (!strcmp(name, "count")) return str_find(c, s, a, true, ret);
    if (!strcmp(name, "isspace") || !strcmp(name, "isdigit") ||
        !strcmp(name, "isalpha") || !strcmp(name, "isalnum"))
        return str_is(s, name, ret);
    if (!strcmp(name, "splitlines")) {
        jargs none = { 0 };
        jv nl = jv_str("\n", 1);
        jargs one = { .pos = &nl, .npos = 1 };
        jlist *l;

        (void)none;
        TRY(str_split(c, s, &one, ret));
        l = ret->u.l;
        if (l->n && !l->items[l->n - 1].u.s.n)
            l->n--;
        return 0;
    }
    *handled = false;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* dict methods                                                              */

static int dict_method(jctx *c, jv d, const char *name, const jargs *a,
                       bool *handled, jv *ret)
{
    const jdict *m = d.u.d;
    jlist *l;

    *handled = true;
    if (!strcmp(name, "get")) {
        jv key, def = jv_none();

        if (!jargs_get(a, 0, NULL, &key))
            return jctx_fail(c, "get expected at least 1 argument");
        jargs_get(a, 1, NULL, &def);
        if (!jdict_get(m, key, ret))
            *ret = def;
        return 0;
    }
    if (!strcmp(name, "items") || !strcmp(name, "keys") ||
        !strcmp(name, "values")) {
        l = jlist_new(c, m->n, false);
        if (!l)
            return -ENOMEM;
        for (size_t i = 0; i < m->n; i++) {
            if (name[0] == 'k') {
                l->items[i] = m->keys[i];
            } else if (name[0] == 'v') {
                l->items[i] = m->vals[i];
            } else {
                jlist *p = jlist_new(c, 2, true);

                if (!p)
                    return -ENOMEM;
                p->items[0] = m->keys[i];
                p->items[1] = m->vals[i];
                l->items[i] = jv_list(p);
            }
        }
        *ret = jv_list(l);
        return 0;
    }
    if (!strcmp(name, "pop") || !strcmp(name, "update") ||
        !strcmp(name, "setdefault") || !strcmp(name, "clear") ||
        !strcmp(name, "popitem"))
        return jctx_fail(c, "access to attribute '%s' of 'dict' object is "
                         "unsafe", name);
    *handled = false;
    return 0;
}

int jinja_method(jctx *c, jv obj, const char *name, const jargs *a,
                 bool *handled, jv *ret)
{
    *handled = false;
    if (obj.t == JV_STR)
        return str_method(c, obj, name, a, handled, ret);
    if (obj.t == JV_DICT)
        return dict_method(c, obj, name, a, handled, ret);
    if (obj.t == JV_LIST) {
        if (!strcmp(name, "append") || !strcmp(name, "extend") ||
            !strcmp(name, "pop") || !strcmp(name, "insert") ||
            !strcmp(name, "remove") || !strcmp(name, "sort") ||
            !strcmp(name, "reverse") || !strcmp(name, "clear"))
            return jctx_fail(c, "access to attribute '%s' of 'list' object "
                             "is unsafe", name);
        if (!strcmp(name, "index") || !strcmp(name, "count")) {
            jv x;
            int64_t k = 0, at = -1;

            *handled = true;
            if (!jargs_get(a, 0, NULL, &x))
                return jctx_fail(c, "%s expects an argument", name);
            for (size_t i = 0; i < obj.u.l->n; i++) {
                if (jv_equal(obj.u.l->items[i], x)) {
                    if (at < 0)
                        at = (int64_t)i;
                    k++;
                }
            }
            if (name[0] == 'i' && at < 0)
                return jctx_fail(c, "value is not in list");
            *ret = jv_int(name[0] == 'i' ? at : k);
        }
    }
    return 0;
}
