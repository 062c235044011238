/* SPDX-License-Identifier: MIT */
/*
 * jinja_ops.c - Python operators on template values (+ - * / // % ** with
 * int/float promotion and overflow checks, str and list concatenation and
 * repetition, "%" formatting, "in") and the value-building globals range(),
 * namespace(), dict() and strftime_now().
 */
#include "jinja.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TRY(x) do { int rc_ = (x); if (rc_) return rc_; } while (0)

static int undefined_error(jctx *c, jv v)
{
    if (v.undef_name)
        return jctx_fail(c, "'%s' is undefined", v.undef_name);
    return jctx_fail(c, "undefined value used");
}

/* ------------------------------------------------------------------------ */
/* Operators                                                                 */

static int concat_seq(jctx *c, jv a, jv b, jv *ret)
{
    if (a.t == JV_STR) {
        char *s;

        if (a.u.s.n + b.u.s.n >= JINJA_MAX_ARENA)
            return jctx_nomem(c);
        s = jarena_alloc(&c->arena, a.u.s.n + b.u.s.n + 1);
        if (!s)
            return jctx_nomem(c);
        memcpy(s, a.u.s.p, a.u.s.n);
        memcpy(s + a.u.s.n, b.u.s.p, b.u.s.n);
        *ret = jv_str(s, a.u.s.n + b.u.s.n);
        return 0;
    }
    jlist *l = jlist_new(c, a.u.l->n + b.u.l->n, a.u.l->tuple);

    if (!l)
        return -ENOMEM;
    if (a.u.l->n)
        memcpy(l->items, a.u.l->items, a.u.l->n * sizeof(jv));
    if (b.u.l->n)
        memcpy(l->items + a.u.l->n, b.u.l->items, b.u.l->n * sizeof(jv));
    *ret = jv_list(l);
    return 0;
}

static int repeat_seq(jctx *c, jv seq, int64_t k, jv *ret)
{
    jv acc = seq.t == JV_STR ? jv_str("", 0) : jv_list(jlist_new(c, 0, seq.u.l->tuple));
    size_t unit = seq.t == JV_STR ? seq.u.s.n : seq.u.l->n;

    if (seq.t == JV_LIST && !acc.u.l)
        return -ENOMEM;
    if (k > 0 && unit && (uint64_t)k > JINJA_MAX_ARENA / unit)
        return jctx_nomem(c);
    for (int64_t i = 0; i < k; i++)
        TRY(concat_seq(c, acc, seq, &acc));
    *ret = acc;
    return 0;
}

int jinja_arith(jctx *c, int op, jv a, jv b, jv *ret)
{
    if (a.t == JV_UNDEF) return undefined_error(c, a);
    if (b.t == JV_UNDEF) return undefined_error(c, b);
    if (op == '+' && ((a.t == JV_STR && b.t == JV_STR) ||
                      (a.t == JV_LIST && b.t == JV_LIST &&
                       a.u.l->tuple == b.u.l->tuple)))
        return concat_seq(c, a, b, ret);
    if (op == '%' && a.t == JV_STR)
        return jstr_percent(c, a, b, ret);
    if (op == '*' && (a.t == JV_STR || a.t == JV_LIST) && b.t == JV_INT)
        return repeat_seq(c, a, b.u.i, ret);
    if (op == '*' && (b.t == JV_STR || b.t == JV_LIST) && a.t == JV_INT)
        return repeat_seq(c, b, a.u.i, ret);
    if (!jv_is_number(a) || !jv_is_number(b))
        return jctx_fail(c, "unsupported operand type(s) for %s: '%s' and '%s'",
                         op == 'F' ? "//" : op == 'P' ? "**" : (char[]){ (char)op, 0 },
                         jv_type_name(a), jv_type_name(b));
    bool ints = a.t != JV_FLOAT && b.t != JV_FLOAT;
    int64_t x = a.t == JV_INT ? a.u.i : a.u.b, y = b.t == JV_INT ? b.u.i : b.u.b;
    double fx = jv_as_double(a), fy = jv_as_double(b);
    int64_t r;

    if ((op == '/' || op == 'F' || op == '%') && (ints ? y == 0 : fy == 0))
        return jctx_fail(c, "division by zero");
    switch (op) {
    case '+':
        if (!ints) { *ret = jv_float(fx + fy); return 0; }
        if (__builtin_add_overflow(x, y, &r)) goto overflow;
        *ret = jv_int(r);
        return 0;
    case '-':
        if (!ints) { *ret = jv_float(fx - fy); return 0; }
        if (__builtin_sub_overflow(x, y, &r)) goto overflow;
        *ret = jv_int(r);
        return 0;
    case '*':
        if (!ints) { *ret = jv_float(fx * fy); return 0; }
        if (__builtin_mul_overflow(x, y, &r)) goto overflow;
        *ret = jv_int(r);
        return 0;
    case '/':
        *ret = jv_float(fx / fy);
        return 0;
    case 'F':
        if (!ints) { *ret = jv_float(floor(fx / fy)); return 0; }
        if (x == INT64_MIN && y == -1) goto overflow;
        r = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0)))
            r--;
        *ret = jv_int(r);
        return 0;
    case '%':
        if (!ints) {
            double m = fmod(fx, fy);

            if (m != 0 && ((m < 0) != (fy < 0)))
                m += fy;
            *ret = jv_float(m);
            return 0;
        }
        if (y == -1) { *ret = jv_int(0); return 0; }
        r = x % y;
        if (r != 0 && ((r < 0) != (y < 0)))
            r += y;
        *ret = jv_int(r);
        return 0;
    case 'P':
        if (ints && y >= 0) {
            int64_t acc = 1;

            for (int64_t i = 0; i < y; i++) {
                if (__builtin_mul_overflow(acc, x, &acc)) goto overflow;
                if (acc == 0 || acc == 1) break;
            }
            *ret = jv_int(acc);
            return 0;
        }
        *ret = jv_float(pow(fx, fy));
        return 0;
    }
    return jctx_fail(c, "bad operator");
overflow:
    return jctx_fail(c, "integer overflow");
}

int jinja_contains(jctx *c, jv item, jv seq, bool *ret)
{
    *ret = false;
    switch (seq.t) {
    case JV_UNDEF:
        return 0;
    case JV_STR:
        if (item.t != JV_STR)
            return jctx_fail(c, "'in <string>' requires string as left "
                             "operand, not %s", jv_type_name(item));
        *ret = item.u.s.n == 0 ||
               memmem(seq.u.s.p, seq.u.s.n, item.u.s.p, item.u.s.n) != NULL;
        return 0;
    case JV_LIST:
        for (size_t i = 0; i < seq.u.l->n && !*ret; i++)
            *ret = jv_equal(seq.u.l->items[i], item);
        return 0;
    case JV_DICT:
    case JV_NS: {
        jv dummy;

        *ret = jdict_get(seq.u.d, item, &dummy);
        return 0;
    }
    default:
        return jctx_fail(c, "argument of type '%s' is not iterable",
                         jv_type_name(seq));
    }
}

/* ------------------------------------------------------------------------ */
/* Globals                                                                   */

int jinja_range(jctx *c, const jargs *a, jv *ret)
{
    int64_t v[3] = { 0, 0, 1 }, cnt = 0;

    if (a->npos < 1 || a->npos > 3)
        return jctx_fail(c, "range expects 1 to 3 arguments");
    for (size_t i = 0; i < a->npos; i++) {
        if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL)
            return jctx_fail(c, "range arguments must be integers");
        v[a->npos == 1 ? 1 : i] = a->pos[i].t == JV_INT ? a->pos[i].u.i
                                                        : a->pos[i].u.b;
    }
    if (v[2] == 0)
        return jctx_fail(c, "range() arg 3 must not be zero");
    for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2])
        if (++cnt > JINJA_MAX_ITERATIONS)
            return jctx_fail(c, "range too large");
    jlist *l = jlist_new(c, (size_t)cnt, false);

    if (!l)
        return -ENOMEM;
    cnt = 0;
    for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2])
        l->items[cnt++] = jv_int(i);
    *ret = jv_list(l);
    return 0;
}

int jinja_mapping(jctx *c, const jargs *a, bool ns, jv *ret)
{
    jdict *d = jdict_new(c, a->nkw);

    if (!d)
        return -ENOMEM;
    for (size_t i = 0; i < a->npos; i++) {
        if (a->pos[i].t != JV_DICT)
            return jctx_fail(c, "%s() positional argument must be a dict",
                             ns ? "namespace" : "dict");
        for (size_t k = 0; k < a->pos[i].u.d->n; k++)
            TRY(jdict_set(c, d, a->pos[i].u.d->keys[k], a->pos[i].u.d->vals[k]));
    }
    for (size_t i = 0; i < a->nkw; i++)
        TRY(jdict_set(c, d, jv_str(a->kw_names[i], strlen(a->kw_names[i])),
                      a->kw[i]));
    *ret = (jv){ .t = ns ? JV_NS : JV_DICT, .u.d = d };
    return 0;
}

int jinja_strftime_now(jctx *c, const jargs *a, jv *ret)
{
    jv fmt;
    char out[256], f[128];
    time_t now = time(NULL);
    struct tm tm;

    if (!jargs_get(a, 0, "format", &fmt) || fmt.t != JV_STR ||
        fmt.u.s.n >= sizeof(f))
        return jctx_fail(c, "strftime_now expects a format string");
    memcpy(f, fmt.u.s.p, fmt.u.s.n);
    f[fmt.u.s.n] = '\0';
    localtime_r(&now, &tm);
    size_t n = strftime(out, sizeof(out), f, &tm);

    return jv_str_dup(c, out, n, ret);
}
