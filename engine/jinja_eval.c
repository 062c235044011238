/* SPDX-License-Identifier: MIT */
/*
 * jinja_eval.c - walks the syntax tree: statements write to the current
 * output buffer, expressions produce values with jinja2's semantics.
 *
 * Scopes follow jinja2: the template body is the root scope; each for-loop
 * iteration and each macro call gets a fresh child scope, so a {% set %}
 * inside a loop is gone at the next iteration and after the loop (that is
 * what namespace() is for), while {% if %} opens no scope. Name lookup walks
 * outwards, then the globals (range, namespace, dict, raise_exception,
 * strftime_now). A missing name is Undefined: it prints as "", is falsy,
 * iterates as empty, and fails on attribute access and arithmetic.
 *
 * Limits: recursion depth (JINJA_MAX_DEPTH), total loop iterations
 * (JINJA_MAX_ITERATIONS), output bytes (the buffer's limit), arena bytes.
 */
#include "jinja_ast.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jscope {
    jscope *parent;
    size_t n, cap;
    const char **names;
    jv *vals;
};

enum { FN_MACRO, FN_RANGE, FN_NAMESPACE, FN_DICT, FN_RAISE, FN_STRFTIME,
       FN_CYCLE };

struct jfunc {
    int kind;
    const jnode *macro;
    jloop *loop;       /* FN_CYCLE */
};

struct jloop {
    jlist *items;
    size_t i;
};

static int eval(jctx *c, const jnode *n, jv *ret);
static int exec_body(jctx *c, jnode *const *kids, size_t n);

#define TRY(x) do { int rc_ = (x); if (rc_) return rc_; } while (0)

/* ------------------------------------------------------------------------ */
/* Scopes                                                                    */

static jscope *scope_push(jctx *c)
{
    jscope *s = jarena_alloc(&c->arena, sizeof(*s));

    if (!s) {
        jctx_nomem(c);
        return NULL;
    }
    s->parent = c->scope;
    c->scope = s;
    return s;
}

static int scope_set(jctx *c, jscope *s, const char *name, jv v)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!strcmp(s->names[i], name)) {
            s->vals[i] = v;
            return 0;
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **nm = jarena_alloc(&c->arena, cap * sizeof(*nm));
        jv *vl = jarena_alloc(&c->arena, cap * sizeof(*vl));

        if (!nm || !vl)
            return jctx_nomem(c);
        if (s->n) {
            memcpy(nm, s->names, s->n * sizeof(*nm));
            memcpy(vl, s->vals, s->n * sizeof(*vl));
        }
        s->names = nm;
        s->vals = vl;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n++] = v;
    return 0;
}

static jv func_value(jctx *c, int kind)
{
    jfunc *f = jarena_alloc(&c->arena, sizeof(*f));

    if (!f)
        return jv_undef(NULL);
    f->kind = kind;
    return (jv){ .t = JV_FUNC, .u.fn = f };
}

static jv lookup(jctx *c, const char *name)
{
    static const struct { const char *name; int kind; } globals[] = {
        { "range", FN_RANGE }, { "namespace", FN_NAMESPACE },
        { "dict", FN_DICT }, { "raise_exception", FN_RAISE },
        { "strftime_now", FN_STRFTIME },
    };
    for (jscope *s = c->scope; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (!strcmp(s->names[i], name))
                return s->vals[i];
    for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++)
        if (!strcmp(globals[i].name, name))
            return func_value(c, globals[i].kind);
    return jv_undef(name);
}

static int undefined_error(jctx *c, jv v)
{
    if (v.undef_name)
        return jctx_fail(c, "'%s' is undefined", v.undef_name);
    return jctx_fail(c, "undefined value used");
}

/* ------------------------------------------------------------------------ */
/* Attribute and item access                                                 */

static int loop_attr(jctx *c, jloop *l, const char *name, jv *ret)
{
    size_t n = l->items->n, i = l->i;

    if (!strcmp(name, "index")) *ret = jv_int((int64_t)i + 1);
    else if (!strcmp(name, "index0")) *ret = jv_int((int64_t)i);
    else if (!strcmp(name, "revindex")) *ret = jv_int((int64_t)(n - i));
    else if (!strcmp(name, "revindex0")) *ret = jv_int((int64_t)(n - i - 1));
    else if (!strcmp(name, "first")) *ret = jv_bool(i == 0);
    else if (!strcmp(name, "last")) *ret = jv_bool(i + 1 == n);
    else if (!strcmp(name, "length")) *ret = jv_int((int64_t)n);
    else if (!strcmp(name, "depth")) *ret = jv_int(1);
    else if (!strcmp(name, "depth0")) *ret = jv_int(0);
    else if (!strcmp(name, "previtem"))
        *ret = i ? l->items->items[i - 1] : jv_undef("previtem");
    else if (!strcmp(name, "nextitem"))
        *ret = i + 1 < n ? l->items->items[i + 1] : jv_undef("nextitem");
    else if (!strcmp(name, "cycle")) {
        *ret = func_value(c, FN_CYCLE);
        if (ret->t == JV_FUNC)
            ret->u.fn->loop = l;
    } else
        *ret = jv_undef(name);
    return 0;
}

static int get_attr(jctx *c, jv obj, const char *name, jv *ret)
{
    switch (obj.t) {
    case JV_UNDEF:
        return undefined_error(c, obj);
    case JV_DICT:
    case JV_NS:
        if (!jdict_get_str(obj.u.d, name, strlen(name), ret))
            *ret = jv_undef(name);
        return 0;
    case JV_LOOP:
        return loop_attr(c, obj.u.loop, name, ret);
    default:
        *ret = jv_undef(name);
        return 0;
    }
}

static bool norm_index(int64_t *i, size_t n)
{
    if (*i < 0)
        *i += (int64_t)n;
    return *i >= 0 && (uint64_t)*i < n;
}

static int get_item(jctx *c, jv obj, jv key, jv *ret)
{
    int64_t i = key.t == JV_INT ? key.u.i : key.t == JV_BOOL ? key.u.b : 0;
    bool int_key = key.t == JV_INT || key.t == JV_BOOL;

    *ret = jv_undef(key.t == JV_STR ? key.u.s.p : NULL);
    switch (obj.t) {
    case JV_UNDEF:
        return undefined_error(c, obj);
    case JV_LIST:
        if (int_key && norm_index(&i, obj.u.l->n))
            *ret = obj.u.l->items[i];
        return 0;
    case JV_STR:
        if (int_key && norm_index(&i, ju8_len(obj.u.s.p, obj.u.s.n))) {
            size_t a = ju8_offset(obj.u.s.p, obj.u.s.n, (size_t)i);
            size_t b = ju8_offset(obj.u.s.p, obj.u.s.n, (size_t)i + 1);

            *ret = jv_str(obj.u.s.p + a, b - a);
        }
        return 0;
    case JV_DICT:
    case JV_NS:
        jdict_get(obj.u.d, key, ret);
        return 0;
    case JV_LOOP:
        if (key.t == JV_STR) {
            char name[32];

            snprintf(name, sizeof(name), "%.*s", (int)key.u.s.n, key.u.s.p);
            return loop_attr(c, obj.u.loop, name, ret);
        }
        return 0;
    default:
        return 0;
    }
}

/* Python slice indices for length n. */
static int slice_bounds(jctx *c, const jv *parts, size_t n, int64_t *start,
                        int64_t *stop, int64_t *step)
{
    int64_t len = (int64_t)n;

    for (int k = 0; k < 3; k++)
        if (parts[k].t != JV_UNDEF && parts[k].t != JV_NONE &&
            parts[k].t != JV_INT)
            return jctx_fail(c, "slice indices must be integers or None");
    *step = parts[2].t == JV_INT ? parts[2].u.i : 1;
    if (*step == 0)
        return jctx_fail(c, "slice step cannot be zero");
    if (parts[0].t == JV_INT) {
        *start = parts[0].u.i < 0 ? parts[0].u.i + len : parts[0].u.i;
        if (*start < 0) *start = *step < 0 ? -1 : 0;
        if (*start >= len) *start = *step < 0 ? len - 1 : len;
    } else {
        *start = *step < 0 ? len - 1 : 0;
    }
    if (parts[1].t == JV_INT) {
        *stop = parts[1].u.i < 0 ? parts[1].u.i + len : parts[1].u.i;
        if (*stop < 0) *stop = *step < 0 ? -1 : 0;
        if (*stop >= len) *stop = *step < 0 ? len - 1 : len;
    } else {
        *stop = *step < 0 ? -1 : len;
    }
    return 0;
}

static int eval_slice(jctx *c, const jnode *n, jv *ret)
{
    jv obj, parts[3];
    int64_t a = 0, b = 0, st = 1, cnt = 0;

    TRY(eval(c, n->a, &obj));
    for (int k = 0; k < 3; k++) {
        parts[k] = jv_none();
        if (n->kids[k])
            TRY(eval(c, n->kids[k], &parts[k]));
    }
    if (obj.t == JV_UNDEF)
        return undefined_error(c, obj);
    if (obj.t != JV_LIST && obj.t != JV_STR) {
        *ret = jv_undef(NULL);
        return 0;
    }
    jlist *src = NULL;

    if (obj.t == JV_STR)
        TRY(jv_iterate(c, obj, &src));
    else
        src = obj.u.l;
    TRY(slice_bounds(c, parts, src->n, &a, &b, &st));
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
        cnt++;
    jlist *out = jlist_new(c, (size_t)cnt, src->tuple);

    if (!out)
        return -ENOMEM;
    cnt = 0;
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
        out->items[cnt++] = src->items[i];
    if (obj.t == JV_LIST) {
        *ret = jv_list(out);
        return 0;
    }
    size_t total = 0;

    for (size_t i = 0; i < out->n; i++)
        total += out->items[i].u.s.n;
    char *s = jarena_alloc(&c->arena, total + 1);

    if (!s)
        return jctx_nomem(c);
    total = 0;
    for (size_t i = 0; i < out->n; i++) {
        memcpy(s + total, out->items[i].u.s.p, out->items[i].u.s.n);
        total += out->items[i].u.s.n;
    }
    *ret = jv_str(s, total);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Operators                                                                 */

static int eval_compare(jctx *c, const jnode *n, jv *ret)
{
    jv left, right;
    bool ok = true;

    TRY(eval(c, n->a, &left));
    for (size_t i = 0; i < n->nkids && ok; i++) {
        int cmp;

        TRY(eval(c, n->kids[i], &right));
        switch (n->ops[i]) {
        case 'E': ok = jv_equal(left, right); break;
        case 'N': ok = !jv_equal(left, right); break;
        case 'I': TRY(jinja_contains(c, left, right, &ok)); break;
        case 'X': TRY(jinja_contains(c, left, right, &ok)); ok = !ok; break;
        default:
            TRY(jv_compare(c, left, right, &cmp));
            ok = n->ops[i] == '<' ? cmp < 0 : n->ops[i] == 'L' ? cmp <= 0
                 : n->ops[i] == '>' ? cmp > 0 : cmp >= 0;
        }
        left = right;
    }
    *ret = jv_bool(ok);
    return 0;
}

static int eval_concat(jctx *c, const jnode *n, jv *ret)
{
    jbuf b = { .limit = JINJA_MAX_ARENA };
    int rc = 0;

    for (size_t i = 0; i < n->nkids && !rc; i++) {
        jv v;

        rc = eval(c, n->kids[i], &v);
        if (!rc)
            rc = jv_to_str(c, &b, v);
    }
    return jbuf_end(c, &b, rc, ret);
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                     */

static int eval_args(jctx *c, const jnode *n, jargs *a)
{
    memset(a, 0, sizeof(*a));
    a->npos = n->nkids;
    a->nkw = n->nkids2;
    a->kw_names = n->names;
    a->pos = a->npos ? jarena_alloc(&c->arena, a->npos * sizeof(jv)) : NULL;
    a->kw = a->nkw ? jarena_alloc(&c->arena, a->nkw * sizeof(jv)) : NULL;
    if ((a->npos && !a->pos) || (a->nkw && !a->kw))
        return jctx_nomem(c);
    for (size_t i = 0; i < a->npos; i++)
        TRY(eval(c, n->kids[i], &a->pos[i]));
    for (size_t i = 0; i < a->nkw; i++)
        TRY(eval(c, n->kids2[i], &a->kw[i]));
    return 0;
}

static int call_macro(jctx *c, const jnode *m, const jargs *a, jv *ret)
{
    jscope *saved = c->scope;
    jbuf *saved_out = c->out, out = { .limit = saved_out->limit };
    int rc = 0;

    if (a->npos > m->nnames)
        return jctx_fail(c, "macro '%s' takes not more than %zu argument(s)",
                         m->name, m->nnames);
    c->scope = c->root;
    if (!scope_push(c)) {
        c->scope = saved;
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->nnames && !rc; i++) {
        jv v = jv_undef(m->names[i]);

        if (!jargs_get(a, i, m->names[i], &v) && m->kids2[i])
            rc = eval(c, m->kids2[i], &v);
        if (!rc)
            rc = scope_set(c, c->scope, m->names[i], v);
    }
    c->out = &out;
    if (!rc)
        rc = exec_body(c, m->kids, m->nkids);
    c->loop_ctl = 0;
    c->out = saved_out;
    c->scope = saved;
    if (!rc && out.overflow)
        rc = jctx_fail(c, "output size limit exceeded");
    if (!rc)
        rc = jv_str_dup(c, out.p ? out.p : "", out.n, ret);
    jbuf_free(&out);
    return rc;
}

int jinja_call(jctx *c, jv fn, const jargs *a, jv *ret)
{
    jv msg;

    if (fn.t == JV_UNDEF)
        return undefined_error(c, fn);
    if (fn.t != JV_FUNC)
        return jctx_fail(c, "'%s' object is not callable", jv_type_name(fn));
    switch (fn.u.fn->kind) {
    case FN_MACRO: return call_macro(c, fn.u.fn->macro, a, ret);
    case FN_RANGE: return jinja_range(c, a, ret);
    case FN_NAMESPACE: return jinja_mapping(c, a, true, ret);
    case FN_DICT: return jinja_mapping(c, a, false, ret);
    case FN_STRFTIME: return jinja_strftime_now(c, a, ret);
    case FN_CYCLE:
        if (!a->npos)
            return jctx_fail(c, "no items for cycling given");
        *ret = a->pos[fn.u.fn->loop->i % a->npos];
        return 0;
    case FN_RAISE: {
        jbuf b = { .limit = 256 };

        if (jargs_get(a, 0, "message", &msg))
            jv_to_str(c, &b, msg);
        c->failed = false;
        jctx_fail(c, "raise_exception: %s", b.p ? b.p : "");
        jbuf_free(&b);
        return -EINVAL;
    }
    }
    return jctx_fail(c, "not callable");
}

static int eval_call(jctx *c, const jnode *n, jv *ret)
{
    jargs a;
    jv fn;

    if (n->a->k == JN_ATTR) {
        jv obj;
        bool handled = false;

        TRY(eval(c, n->a->a, &obj));
        if (obj.t == JV_STR || obj.t == JV_LIST || obj.t == JV_DICT) {
            TRY(eval_args(c, n, &a));
            TRY(jinja_method(c, obj, n->a->name, &a, &handled, ret));
            if (handled)
                return 0;
        }
        TRY(get_attr(c, obj, n->a->name, &fn));
    } else {
        TRY(eval(c, n->a, &fn));
    }
    TRY(eval_args(c, n, &a));
    return jinja_call(c, fn, &a, ret);
}

/* ------------------------------------------------------------------------ */
/* Expressions                                                               */

static int eval_literal(jctx *c, const jnode *n, jv *ret)
{
    if (n->k == JN_DICT) {
        jdict *d = jdict_new(c, n->nkids);

        if (!d)
            return -ENOMEM;
        for (size_t i = 0; i < n->nkids; i++) {
            jv k, v;

            TRY(eval(c, n->kids[i], &k));
            TRY(eval(c, n->kids2[i], &v));
            TRY(jdict_set(c, d, k, v));
        }
        *ret = jv_dict(d);
        return 0;
    }
    jlist *l = jlist_new(c, n->nkids, n->k == JN_TUPLE);

    if (!l)
        return -ENOMEM;
    for (size_t i = 0; i < n->nkids; i++)
        TRY(eval(c, n->kids[i], &l->items[i]));
    *ret = jv_list(l);
    return 0;
}

static int eval_inner(jctx *c, const jnode *n, jv *ret)
{
    jv a, b;
    jargs args;
    bool t;

    switch (n->k) {
    case JN_CONST: *ret = n->val; return 0;
    case JN_NAME: *ret = lookup(c, n->name); return 0;
    case JN_BLOCK_VALUE: *ret = lookup(c, " block"); return 0;
    case JN_ATTR:
        TRY(eval(c, n->a, &a));
        return get_attr(c, a, n->name, ret);
    case JN_ITEM:
        TRY(eval(c, n->a, &a));
        TRY(eval(c, n->b, &b));
        return get_item(c, a, b, ret);
    case JN_SLICE: return eval_slice(c, n, ret);
    case JN_CALL: return eval_call(c, n, ret);
    case JN_FILTER:
        TRY(eval(c, n->a, &a));
        TRY(eval_args(c, n, &args));
        return jinja_filter(c, n->name, a, &args, ret);
    case JN_TEST:
        TRY(eval(c, n->a, &a));
        TRY(eval_args(c, n, &args));
        TRY(jinja_test(c, n->name, a, &args, &t));
        *ret = jv_bool(t != n->flag);
        return 0;
    case JN_NEG:
    case JN_POS:
        TRY(eval(c, n->a, &a));
        if (a.t == JV_FLOAT) {
            *ret = jv_float(n->k == JN_NEG ? -a.u.f : a.u.f);
            return 0;
        }
        if (!jv_is_number(a) && a.t != JV_UNDEF)
            return jctx_fail(c, "bad operand type for unary %c: '%s'",
                             n->k == JN_NEG ? '-' : '+', jv_type_name(a));
        return jinja_arith(c, n->k == JN_NEG ? '-' : '+', jv_int(0), a, ret);
    case JN_NOT:
        TRY(eval(c, n->a, &a));
        *ret = jv_bool(!jv_truthy(a));
        return 0;
    case JN_BIN:
        TRY(eval(c, n->a, &a));
        TRY(eval(c, n->b, &b));
        return jinja_arith(c, n->op, a, b, ret);
    case JN_CONCAT: return eval_concat(c, n, ret);
    case JN_AND:
    case JN_OR:
        TRY(eval(c, n->a, &a));
        if (jv_truthy(a) == (n->k == JN_OR)) {
            *ret = a;
            return 0;
        }
        return eval(c, n->b, ret);
    case JN_COMPARE: return eval_compare(c, n, ret);
    case JN_COND:
        TRY(eval(c, n->b, &a));
        if (jv_truthy(a))
            return eval(c, n->a, ret);
        if (n->c)
            return eval(c, n->c, ret);
        *ret = jv_undef(NULL);
        return 0;
    case JN_LIST:
    case JN_TUPLE:
    case JN_DICT:
        return eval_literal(c, n, ret);
    default:
        return jctx_fail(c, "statement used as an expression");
    }
}

static int eval(jctx *c, const jnode *n, jv *ret)
{
    int rc;

    if (++c->depth > JINJA_MAX_DEPTH) {
        c->depth--;
        return jctx_fail(c, "template recursion too deep");
    }
    c->line = n->line;
    rc = eval_inner(c, n, ret);
    c->depth--;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Statements                                                                */

static int assign(jctx *c, const char *const *names, size_t n, jv v)
{
    if (n == 1)
        return scope_set(c, c->scope, names[0], v);
    jlist *l;

    if (v.t != JV_LIST && v.t != JV_STR && v.t != JV_DICT)
        return jctx_fail(c, "cannot unpack non-iterable %s", jv_type_name(v));
    TRY(jv_iterate(c, v, &l));
    if (l->n != n)
        return jctx_fail(c, "cannot unpack %zu values into %zu names", l->n, n);
    for (size_t i = 0; i < n; i++)
        TRY(scope_set(c, c->scope, names[i], l->items[i]));
    return 0;
}

static int exec_for(jctx *c, const jnode *n)
{
    jscope *saved = c->scope;
    jlist *items, *kept;
    jv it;
    int rc = 0;

    TRY(eval(c, n->a, &it));
    TRY(jv_iterate(c, it, &items));
    if (n->flag)
        return jctx_fail(c, "recursive loops are not supported");
    kept = items;
    if (n->b) {  /* the "if" filter runs before loop.* counts */
        kept = jlist_new(c, items->n, false);
        if (!kept)
            return -ENOMEM;
        kept->n = 0;
        jscope *fs = scope_push(c);

        c->scope = saved;
        if (!fs)
            return -ENOMEM;
        for (size_t i = 0; i < items->n && !rc; i++) {
            jv keep;

            if (++c->iterations > JINJA_MAX_ITERATIONS)
                return jctx_fail(c, "too many loop iterations");
            fs->n = 0;
            c->scope = fs;
            rc = assign(c, n->names, n->nnames, items->items[i]);
            if (!rc)
                rc = eval(c, n->b, &keep);
            c->scope = saved;
            if (!rc && jv_truthy(keep))
                kept->items[kept->n++] = items->items[i];
        }
        TRY(rc);
    }
    if (!kept->n)
        return exec_body(c, n->kids2, n->nkids2);
    jloop *loop = jarena_alloc(&c->arena, sizeof(*loop));

    if (!loop)
        return jctx_nomem(c);
    loop->items = kept;
    /* One scope reused by every iteration: each starts empty. */
    jscope *iter = scope_push(c);

    c->scope = saved;
    if (!iter)
        return -ENOMEM;
    for (size_t i = 0; i < kept->n && !rc; i++) {
        if (++c->iterations > JINJA_MAX_ITERATIONS)
            return jctx_fail(c, "too many loop iterations");
        loop->i = i;
        iter->n = 0;
        c->scope = iter;
        rc = assign(c, n->names, n->nnames, kept->items[i]);
        if (!rc)
            rc = scope_set(c, c->scope, "loop",
                           (jv){ .t = JV_LOOP, .u.loop = loop });
        if (!rc)
            rc = exec_body(c, n->kids, n->nkids);
        c->scope = saved;
        if (c->loop_ctl == 1) {
            c->loop_ctl = 0;
            break;
        }
        c->loop_ctl = 0;
    }
    return rc;
}

static int exec_set(jctx *c, const jnode *n)
{
    jv v, target;

    if (n->k == JN_SET_BLOCK) {
        jbuf *saved = c->out, out = { .limit = saved->limit };
        int rc;

        c->out = &out;
        rc = exec_body(c, n->kids, n->nkids);
        c->out = saved;
        if (!rc)
            rc = jv_str_dup(c, out.p ? out.p : "", out.n, &v);
        jbuf_free(&out);
        return rc ? rc : scope_set(c, c->scope, n->names[0], v);
    }
    TRY(eval(c, n->a, &v));
    if (!n->attr)
        return assign(c, n->names, n->nnames, v);
    target = lookup(c, n->names[0]);
    if (target.t != JV_NS)
        return jctx_fail(c, "cannot assign attribute on non-namespace object");
    return jdict_set(c, target.u.d, jv_str(n->attr, strlen(n->attr)), v);
}

static int exec_filter_block(jctx *c, const jnode *n)
{
    jbuf *saved = c->out, out = { .limit = saved->limit };
    jv body, v;
    int rc;

    c->out = &out;
    rc = exec_body(c, n->kids, n->nkids);
    c->out = saved;
    if (!rc)
        rc = jv_str_dup(c, out.p ? out.p : "", out.n, &body);
    jbuf_free(&out);
    if (!rc && scope_push(c)) {
        jscope *s = c->scope;

        rc = scope_set(c, s, " block", body);
        if (!rc)
            rc = eval(c, n->a, &v);
        c->scope = s->parent;
        if (!rc)
            rc = jv_to_str(c, c->out, v);
    }
    return rc;
}

static int exec_node(jctx *c, const jnode *n)
{
    jv v;

    c->line = n->line;
    switch (n->k) {
    case JN_BODY: return exec_body(c, n->kids, n->nkids);
    case JN_TEXT:
        if (!jbuf_put(c->out, n->val.u.s.p, n->val.u.s.n))
            return jctx_fail(c, "output size limit exceeded");
        return 0;
    case JN_OUTPUT:
        TRY(eval(c, n->a, &v));
        return jv_to_str(c, c->out, v);
    case JN_IF:
        TRY(eval(c, n->a, &v));
        if (jv_truthy(v))
            return exec_body(c, n->kids, n->nkids);
        return exec_body(c, n->kids2, n->nkids2);
    case JN_FOR: return exec_for(c, n);
    case JN_SET:
    case JN_SET_BLOCK: return exec_set(c, n);
    case JN_MACRO:
        v = func_value(c, FN_MACRO);
        if (v.t != JV_FUNC)
            return jctx_nomem(c);
        v.u.fn->macro = n;
        return scope_set(c, c->scope, n->name, v);
    case JN_BREAK: c->loop_ctl = 1; return 0;
    case JN_CONTINUE: c->loop_ctl = 2; return 0;
    case JN_FILTER_BLOCK: return exec_filter_block(c, n);
    default:
        return jctx_fail(c, "unsupported statement");
    }
}

static int exec_body(jctx *c, jnode *const *kids, size_t n)
{
    int rc = 0;

    if (++c->depth > JINJA_MAX_DEPTH) {
        c->depth--;
        return jctx_fail(c, "template recursion too deep");
    }
    for (size_t i = 0; i < n && !rc && !c->loop_ctl; i++)
        rc = exec_node(c, kids[i]);
    c->depth--;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Entry                                                                     */

jctx *jinja_ctx_new(void)
{
    jctx *c = calloc(1, sizeof(*c));

    if (c)
        c->arena.limit = JINJA_MAX_ARENA;
    return c;
}

void jinja_ctx_free(jctx *c)
{
    if (!c)
        return;
    jarena_free(&c->arena);
    free(c);
}

int jinja_render(jctx *c, const char *src, size_t len,
                 const jinja_render_params *p, char **ret_text,
                 size_t *ret_len, char *err, size_t errlen)
{
    jbuf out = { .limit = p->max_output ? p->max_output
                                        : JINJA_DEFAULT_MAX_OUTPUT };
    jtok *toks;
    size_t ntok;
    jnode *root;
    int rc;

    c->out = &out;
    rc = jinja_lex(c, src, len, &toks, &ntok);
    if (!rc)
        rc = jinja_parse(c, toks, ntok, &root);
    if (!rc && !(c->root = scope_push(c)))
        rc = -ENOMEM;
    for (size_t i = 0; !rc && i < p->n_vars; i++)
        rc = scope_set(c, c->root, p->vars[i].name, p->vars[i].value);
    if (!rc)
        rc = exec_body(c, root->kids, root->nkids);
    if (!rc && out.overflow)
        rc = jctx_fail(c, "output size limit exceeded");
    if (rc) {
        if (!c->failed)
            jctx_fail(c, "render failed (%d)", rc);
        if (err && errlen && !strncmp(c->err, "line ", 5))
            snprintf(err, errlen, "%s", c->err);
        else if (err && errlen)
            snprintf(err, errlen, "line %d: %s", c->line, c->err);
        jbuf_free(&out);
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    if (!out.p && !(out.p = calloc(1, 1)))
        return -ENOMEM;
    *ret_text = out.p;
    if (ret_len)
        *ret_len = out.n;
    return 0;
}
