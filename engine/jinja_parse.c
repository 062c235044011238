/* SPDX-License-Identifier: MIT */
/*
 * jinja_parse.c - tokens to syntax tree, following jinja2's grammar and
 * operator precedence (lowest first):
 *
 *   x if c else y  ->  or  ->  and  ->  not  ->  comparisons, in, not in
 *   ->  + -  ->  ~  ->  * / // %  ->  **  ->  unary - +
 *   ->  primary with postfix . [] () and then filters | and tests is
 *
 * Statements: if/elif/else, for (tuple targets, "if" filter, else), set
 * (name, tuple, ns.attr, block form), macro, call, filter, break, continue
 * (the loopcontrols extension) and generation (transformers' assistant
 * tracker; rendered as its body). Every recursion is depth-limited.
 */
#include "jinja_ast.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct parser {
    jctx *c;
    const jtok *t;
    size_t n, i;
    int depth;
} parser;

#define TRY(x) do { if (!(x)) return NULL; } while (0)

static const jtok *cur(parser *P) { return &P->t[P->i]; }
static const jtok *peek(parser *P, size_t k)
{
    return P->i + k < P->n ? &P->t[P->i + k] : &P->t[P->n - 1];
}

static bool is_op(const jtok *t, const char *op)
{
    return t->t == JT_OP && t->n == strlen(op) && !memcmp(t->p, op, t->n);
}

static bool is_name(const jtok *t, const char *name)
{
    return t->t == JT_NAME && t->n == strlen(name) && !memcmp(t->p, name, t->n);
}

static const char *tok_desc(const jtok *t)
{
    switch (t->t) {
    case JT_EOF: return "end of template";
    case JT_TEXT: return "text";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_STRING: return "string";
    case JT_INT: case JT_FLOAT: return "number";
    default: return "token";
    }
}

static void *fail(parser *P, const char *what)
{
    const jtok *t = cur(P);

    if (t->t == JT_NAME || t->t == JT_OP)
        jctx_fail(P->c, "line %d: expected %s, got '%.*s'", t->line, what,
                  (int)(t->n > 40 ? 40 : t->n), t->p);
    else
        jctx_fail(P->c, "line %d: expected %s, got %s", t->line, what,
                  tok_desc(t));
    return NULL;
}

static bool skip_op(parser *P, const char *op)
{
    if (!is_op(cur(P), op))
        return false;
    P->i++;
    return true;
}

static bool skip_name(parser *P, const char *name)
{
    if (!is_name(cur(P), name))
        return false;
    P->i++;
    return true;
}

static bool expect_op(parser *P, const char *op)
{
    char what[16];

    if (skip_op(P, op))
        return true;
    snprintf(what, sizeof(what), "'%s'", op);
    fail(P, what);
    return false;
}

static jnode *node(parser *P, jn_kind k)
{
    jnode *n = jarena_alloc(&P->c->arena, sizeof(*n));

    if (!n) {
        jctx_nomem(P->c);
        return NULL;
    }
    n->k = k;
    n->line = cur(P)->line;
    return n;
}

static const char *dup_name(parser *P, const jtok *t)
{
    char *s = jarena_alloc(&P->c->arena, t->n + 1);

    if (!s) {
        jctx_nomem(P->c);
        return NULL;
    }
    memcpy(s, t->p, t->n);
    return s;
}

static const char *take_name(parser *P)
{
    if (cur(P)->t != JT_NAME)
        return fail(P, "a name");
    return dup_name(P, &P->t[P->i++]);
}

/* Growable node vectors built in the arena. */
typedef struct nvec {
    jnode **v;
    size_t n, cap;
} nvec;

static bool nvec_push(parser *P, nvec *vec, jnode *x)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 4;
        jnode **v = jarena_alloc(&P->c->arena, cap * sizeof(*v));

        if (!v) {
            jctx_nomem(P->c);
            return false;
        }
        if (vec->n)
            memcpy(v, vec->v, vec->n * sizeof(*v));
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = x;
    return true;
}

static bool names_push(parser *P, const char ***v, size_t *n, const char *s)
{
    const char **w = jarena_alloc(&P->c->arena, (*n + 1) * sizeof(*w));

    if (!w || !s) {
        jctx_nomem(P->c);
        return false;
    }
    if (*n)
        memcpy(w, *v, *n * sizeof(*w));
    w[(*n)++] = s;
    *v = w;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Expressions                                                               */

static jnode *parse_expr(parser *P);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, bool with_filter);

static bool enter(parser *P)
{
    if (++P->depth > JINJA_MAX_DEPTH) {
        jctx_fail(P->c, "line %d: template nested too deeply", cur(P)->line);
        return false;
    }
    return true;
}

/* Arguments of a call, filter or test after "(": positional, then name=. */
static bool parse_args(parser *P, jnode *n)
{
    nvec pos = { 0 }, kw = { 0 };

    while (!is_op(cur(P), ")")) {
        if (pos.n + kw.n && !expect_op(P, ","))
            return false;
        if (is_op(cur(P), ")"))
            break;
        if (cur(P)->t == JT_NAME && is_op(peek(P, 1), "=")) {
            const char *k = take_name(P);

            P->i++;
            jnode *v = parse_expr(P);

            if (!v || !names_push(P, &n->names, &n->nnames, k) ||
                !nvec_push(P, &kw, v))
                return false;
        } else {
            jnode *v = parse_expr(P);

            if (!v)
                return false;
            if (kw.n) {
                fail(P, "keyword argument after positional");
                return false;
            }
            if (!nvec_push(P, &pos, v))
                return false;
        }
    }
    P->i++;
    n->kids = pos.v;
    n->nkids = pos.n;
    n->kids2 = kw.v;
    n->nkids2 = kw.n;
    return true;
}

/* Comma-separated expressions up to close; returns tuple-ness. */
static bool parse_seq(parser *P, const char *close, nvec *out, bool *ret_comma)
{
    *ret_comma = false;
    while (!is_op(cur(P), close)) {
        if (out->n) {
            if (!expect_op(P, ","))
                return false;
            *ret_comma = true;
            if (is_op(cur(P), close))
                break;
        }
        jnode *x = parse_expr(P);

        if (!x || !nvec_push(P, out, x))
            return false;
    }
    P->i++;
    return true;
}

static jnode *parse_dict(parser *P)
{
    jnode *n = node(P, JN_DICT);
    nvec k = { 0 }, v = { 0 };

    TRY(n);
    while (!is_op(cur(P), "}")) {
        if (k.n && !expect_op(P, ","))
            return NULL;
        if (is_op(cur(P), "}"))
            break;
        jnode *key = parse_expr(P), *val;

        TRY(key && expect_op(P, ":"));
        val = parse_expr(P);
        TRY(val && nvec_push(P, &k, key) && nvec_push(P, &v, val));
    }
    P->i++;
    n->kids = k.v;
    n->nkids = k.n;
    n->kids2 = v.v;
    n->nkids2 = v.n;
    return n;
}

static jnode *parse_primary(parser *P)
{
    const jtok *t = cur(P);
    jnode *n;

    if (t->t == JT_NAME) {
        static const struct { const char *s; int v; } lits[] = {
            { "true", 1 }, { "True", 1 }, { "false", 0 }, { "False", 0 },
            { "none", 2 }, { "None", 2 },
        };
        for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
            if (is_name(t, lits[i].s)) {
                TRY(n = node(P, JN_CONST));
                n->val = lits[i].v == 2 ? jv_none() : jv_bool(lits[i].v);
                P->i++;
                return n;
            }
        }
        TRY(n = node(P, JN_NAME));
        TRY(n->name = take_name(P));
        return n;
    }
    if (t->t == JT_STRING) {
        /* Adjacent literals concatenate, as in Python. */
        size_t total = 0, k = 0;
        char *s;

        for (size_t j = P->i; P->t[j].t == JT_STRING; j++)
            total += P->t[j].n;
        TRY(n = node(P, JN_CONST));
        s = jarena_alloc(&P->c->arena, total + 1);
        if (!s)
            return fail(P, "memory");
        while (cur(P)->t == JT_STRING) {
            memcpy(s + k, cur(P)->p, cur(P)->n);
            k += cur(P)->n;
            P->i++;
        }
        n->val = jv_str(s, k);
        return n;
    }
    if (t->t == JT_INT || t->t == JT_FLOAT) {
        TRY(n = node(P, JN_CONST));
        n->val = t->t == JT_INT ? jv_int(t->i) : jv_float(t->f);
        P->i++;
        return n;
    }
    if (is_op(t, "(") || is_op(t, "[")) {
        bool paren = is_op(t, "("), comma;
        nvec items = { 0 };

        TRY(n = node(P, paren ? JN_TUPLE : JN_LIST));
        P->i++;
        TRY(parse_seq(P, paren ? ")" : "]", &items, &comma));
        if (paren && items.n == 1 && !comma)
            return items.v[0];
        n->kids = items.v;
        n->nkids = items.n;
        return n;
    }
    if (is_op(t, "{")) {
        P->i++;
        return parse_dict(P);
    }
    return fail(P, "an expression");
}

static jnode *parse_subscript(parser *P, jnode *obj)
{
    jnode *parts[3] = { NULL, NULL, NULL }, *n;
    int k = 0;
    bool slice = false;

    for (;;) {
        if (is_op(cur(P), ":")) {
            if (++k > 2)
                return fail(P, "']'");
            slice = true;
            P->i++;
            continue;
        }
        if (is_op(cur(P), "]"))
            break;
        if (parts[k])
            return fail(P, "']'");
        TRY(parts[k] = parse_expr(P));
    }
    P->i++;
    if (!slice) {
        if (!parts[0])
            return fail(P, "a subscript");
        TRY(n = node(P, JN_ITEM));
        n->a = obj;
        n->b = parts[0];
        return n;
    }
    TRY(n = node(P, JN_SLICE));
    n->kids = jarena_alloc(&P->c->arena, 3 * sizeof(jnode *));
    if (!n->kids)
        return fail(P, "memory");
    memcpy(n->kids, parts, sizeof(parts));
    n->nkids = 3;
    n->a = obj;
    return n;
}

static jnode *parse_postfix(parser *P, jnode *n)
{
    for (;;) {
        jnode *m;

        if (skip_op(P, ".")) {
            if (cur(P)->t == JT_INT) {
                TRY(m = node(P, JN_ITEM));
                TRY(m->b = node(P, JN_CONST));
                m->b->val = jv_int(cur(P)->i);
                P->i++;
            } else {
                TRY(m = node(P, JN_ATTR));
                TRY(m->name = take_name(P));
            }
            m->a = n;
            n = m;
        } else if (skip_op(P, "[")) {
            TRY(n = parse_subscript(P, n));
        } else if (skip_op(P, "(")) {
            TRY(m = node(P, JN_CALL));
            m->a = n;
            TRY(parse_args(P, m));
            n = m;
        } else {
            return n;
        }
    }
}

/* Filter or test name: dotted names allowed. */
static const char *parse_dotted(parser *P)
{
    const char *s = take_name(P);

    while (s && is_op(cur(P), ".") && peek(P, 1)->t == JT_NAME) {
        const jtok *t = peek(P, 1);
        size_t a = strlen(s);
        char *w = jarena_alloc(&P->c->arena, a + t->n + 2);

        if (!w)
            return fail(P, "memory");
        memcpy(w, s, a);
        w[a] = '.';
        memcpy(w + a + 1, t->p, t->n);
        s = w;
        P->i += 2;
    }
    return s;
}

static jnode *parse_filter_expr(parser *P, jnode *n)
{
    for (;;) {
        jnode *m;

        if (skip_op(P, "|")) {
            TRY(m = node(P, JN_FILTER));
            TRY(m->name = parse_dotted(P));
            m->a = n;
            if (skip_op(P, "("))
                TRY(parse_args(P, m));
            n = m;
        } else if (skip_name(P, "is")) {
            const jtok *t;

            TRY(m = node(P, JN_TEST));
            m->flag = skip_name(P, "not");
            TRY(m->name = parse_dotted(P));
            m->a = n;
            t = cur(P);
            if (skip_op(P, "(")) {
                TRY(parse_args(P, m));
            } else if ((t->t == JT_NAME || t->t == JT_STRING || t->t == JT_INT ||
                        t->t == JT_FLOAT || is_op(t, "(") || is_op(t, "[") ||
                        is_op(t, "{")) && !is_name(t, "else") &&
                       !is_name(t, "or") && !is_name(t, "and")) {
                jnode *arg;

                if (is_name(t, "is"))
                    return fail(P, "a test argument (tests cannot chain)");
                TRY(arg = parse_primary(P));
                TRY(arg = parse_postfix(P, arg));
                m->kids = jarena_alloc(&P->c->arena, sizeof(jnode *));
                if (!m->kids)
                    return fail(P, "memory");
                m->kids[0] = arg;
                m->nkids = 1;
            }
            n = m;
        } else if (skip_op(P, "(")) {
            TRY(m = node(P, JN_CALL));
            m->a = n;
            TRY(parse_args(P, m));
            n = m;
        } else {
            return n;
        }
    }
}

static jnode *parse_unary(parser *P, bool with_filter)
{
    jnode *n;

    TRY(enter(P));
    if (is_op(cur(P), "-") || is_op(cur(P), "+")) {
        TRY(n = node(P, is_op(cur(P), "-") ? JN_NEG : JN_POS));
        P->i++;
        TRY(n->a = parse_unary(P, false));
    } else {
        TRY(n = parse_primary(P));
    }
    TRY(n = parse_postfix(P, n));
    if (with_filter)
        TRY(n = parse_filter_expr(P, n));
    P->depth--;
    return n;
}

static jnode *binary(parser *P, int op, jnode *l, jnode *r)
{
    jnode *n;

    TRY(l && r && (n = node(P, JN_BIN)));
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_pow(parser *P)
{
    jnode *l = parse_unary(P, true);

    while (l && skip_op(P, "**"))
        l = binary(P, 'P', l, parse_unary(P, true));
    return l;
}

static jnode *parse_math2(parser *P)
{
    jnode *l = parse_pow(P);

    while (l) {
        int op = is_op(cur(P), "*") ? '*' : is_op(cur(P), "/") ? '/'
                 : is_op(cur(P), "//") ? 'F' : is_op(cur(P), "%") ? '%' : 0;

        if (!op)
            break;
        P->i++;
        l = binary(P, op, l, parse_pow(P));
    }
    return l;
}

static jnode *parse_concat(parser *P)
{
    jnode *l = parse_math2(P), *n;
    nvec parts = { 0 };

    if (!l || !is_op(cur(P), "~"))
        return l;
    TRY(nvec_push(P, &parts, l));
    while (skip_op(P, "~")) {
        jnode *r = parse_math2(P);

        TRY(r && nvec_push(P, &parts, r));
    }
    TRY(n = node(P, JN_CONCAT));
    n->kids = parts.v;
    n->nkids = parts.n;
    return n;
}

static jnode *parse_math1(parser *P)
{
    jnode *l = parse_concat(P);

    while (l && (is_op(cur(P), "+") || is_op(cur(P), "-"))) {
        int op = *cur(P)->p;

        P->i++;
        l = binary(P, op, l, parse_concat(P));
    }
    return l;
}

static jnode *parse_compare(parser *P)
{
    static const struct { const char *s; char op; } cmps[] = {
        { "==", 'E' }, { "!=", 'N' }, { "<", '<' }, { "<=", 'L' },
        { ">", '>' }, { ">=", 'G' },
    };
    jnode *first = parse_math1(P), *n;
    nvec rest = { 0 };
    char ops[64];

    while (first && rest.n < sizeof(ops)) {
        char op = 0;

        for (size_t i = 0; i < sizeof(cmps) / sizeof(cmps[0]); i++)
            if (is_op(cur(P), cmps[i].s))
                op = cmps[i].op;
        if (op) {
            P->i++;
        } else if (is_name(cur(P), "in")) {
            op = 'I';
            P->i++;
        } else if (is_name(cur(P), "not") && is_name(peek(P, 1), "in")) {
            op = 'X';
            P->i += 2;
        } else {
            break;
        }
        ops[rest.n] = op;
        jnode *r = parse_math1(P);

        TRY(r && nvec_push(P, &rest, r));
    }
    if (!first || !rest.n)
        return first;
    TRY(n = node(P, JN_COMPARE));
    n->a = first;
    n->kids = rest.v;
    n->nkids = rest.n;
    n->ops = jarena_alloc(&P->c->arena, rest.n);
    if (!n->ops)
        return fail(P, "memory");
    memcpy(n->ops, ops, rest.n);
    return n;
}

static jnode *parse_not(parser *P)
{
    jnode *n;

    if (is_name(cur(P), "not")) {
        TRY(enter(P));
        TRY(n = node(P, JN_NOT));
        P->i++;
        TRY(n->a = parse_not(P));
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static jnode *parse_logic(parser *P, bool is_or)
{
    jnode *l = is_or ? parse_logic(P, false) : parse_not(P), *n;

    while (l && skip_name(P, is_or ? "or" : "and")) {
        TRY(n = node(P, is_or ? JN_OR : JN_AND));
        n->a = l;
        TRY(n->b = is_or ? parse_logic(P, false) : parse_not(P));
        l = n;
    }
    return l;
}

static jnode *parse_or(parser *P)
{
    return parse_logic(P, true);
}

static jnode *parse_expr_cond(parser *P, bool with_cond)
{
    jnode *l, *n;

    TRY(enter(P));
    l = parse_or(P);
    while (with_cond && l && skip_name(P, "if")) {
        TRY(n = node(P, JN_COND));
        n->a = l;
        TRY(n->b = parse_or(P));
        if (skip_name(P, "else"))
            TRY(n->c = parse_expr_cond(P, true));
        l = n;
    }
    P->depth--;
    return l;
}

static jnode *parse_expr(parser *P)
{
    return parse_expr_cond(P, true);
}

/* Top-level expression of {{ }} and set: a bare "a, b" is a tuple. */
static jnode *parse_tuple(parser *P, bool with_cond)
{
    jnode *first = parse_expr_cond(P, with_cond), *n;
    nvec items = { 0 };

    if (!first || !is_op(cur(P), ","))
        return first;
    TRY(nvec_push(P, &items, first));
    while (skip_op(P, ",")) {
        jnode *x;

        if (cur(P)->t == JT_VAR_END || cur(P)->t == JT_BLOCK_END)
            break;
        TRY(x = parse_expr_cond(P, with_cond));
        TRY(nvec_push(P, &items, x));
    }
    TRY(n = node(P, JN_TUPLE));
    n->kids = items.v;
    n->nkids = items.n;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Statements                                                                */

static jnode *parse_body(parser *P, const char *const *ends, const char **ret_end);

static bool expect_block_end(parser *P)
{
    if (cur(P)->t == JT_BLOCK_END) {
        P->i++;
        return true;
    }
    fail(P, "'%}'");
    return false;
}

static bool parse_targets(parser *P, jnode *n)
{
    bool paren = skip_op(P, "(");

    do {
        if (paren && is_op(cur(P), ")"))
            break;
        if (!names_push(P, &n->names, &n->nnames, take_name(P)))
            return false;
    } while (skip_op(P, ","));
    return !paren || expect_op(P, ")");
}

static jnode *parse_for(parser *P)
{
    static const char *const ends[] = { "else", "endfor", NULL };
    jnode *n = node(P, JN_FOR), *body;
    const char *end;

    TRY(n && parse_targets(P, n));
    if (!skip_name(P, "in"))
        return fail(P, "'in'");
    TRY(n->a = parse_tuple(P, false));
    if (skip_name(P, "if"))
        TRY(n->b = parse_expr(P));
    n->flag = skip_name(P, "recursive");
    TRY(expect_block_end(P));
    TRY(body = parse_body(P, ends, &end));
    n->kids = body->kids;
    n->nkids = body->nkids;
    if (!strcmp(end, "else")) {
        static const char *const ends2[] = { "endfor", NULL };

        TRY(expect_block_end(P));
        TRY(body = parse_body(P, ends2, &end));
        n->kids2 = body->kids;
        n->nkids2 = body->nkids;
    }
    return expect_block_end(P) ? n : NULL;
}

static jnode *parse_if(parser *P)
{
    static const char *const ends[] = { "elif", "else", "endif", NULL };
    jnode *n = node(P, JN_IF), *body;
    const char *end;

    TRY(n && (n->a = parse_tuple(P, true)) && expect_block_end(P));
    TRY(body = parse_body(P, ends, &end));
    n->kids = body->kids;
    n->nkids = body->nkids;
    if (!strcmp(end, "elif")) {
        jnode *e;

        TRY(e = parse_if(P));  /* consumes through endif */
        n->kids2 = jarena_alloc(&P->c->arena, sizeof(jnode *));
        if (!n->kids2)
            return fail(P, "memory");
        n->kids2[0] = e;
        n->nkids2 = 1;
        return n;
    }
    if (!strcmp(end, "else")) {
        static const char *const ends2[] = { "endif", NULL };

        TRY(expect_block_end(P));
        TRY(body = parse_body(P, ends2, &end));
        n->kids2 = body->kids;
        n->nkids2 = body->nkids;
    }
    return expect_block_end(P) ? n : NULL;
}

static jnode *parse_set(parser *P)
{
    static const char *const ends[] = { "endset", NULL };
    jnode *n = node(P, JN_SET), *body;
    const char *end;

    TRY(n);
    if (cur(P)->t == JT_NAME && is_op(peek(P, 1), ".")) {
        TRY(names_push(P, &n->names, &n->nnames, take_name(P)));
        P->i++;
        TRY(n->attr = take_name(P));
    } else {
        TRY(parse_targets(P, n));
    }
    if (skip_op(P, "=")) {
        TRY(n->a = parse_tuple(P, true));
        return expect_block_end(P) ? n : NULL;
    }
    if (n->attr || n->nnames != 1)
        return fail(P, "'='");
    n->k = JN_SET_BLOCK;
    TRY(expect_block_end(P));
    TRY(body = parse_body(P, ends, &end));
    n->kids = body->kids;
    n->nkids = body->nkids;
    return expect_block_end(P) ? n : NULL;
}

/* macro name(a, b=1) or call(a) for call blocks: params with defaults. */
static bool parse_params(parser *P, jnode *n)
{
    nvec defs = { 0 };

    if (!expect_op(P, "("))
        return false;
    while (!skip_op(P, ")")) {
        jnode *d = NULL;

        if (n->nnames && !expect_op(P, ","))
            return false;
        if (skip_op(P, ")"))
            break;
        if (!names_push(P, &n->names, &n->nnames, take_name(P)))
            return false;
        if (skip_op(P, "=") && !(d = parse_expr(P)))
            return false;
        if (!nvec_push(P, &defs, d))
            return false;
    }
    n->kids2 = defs.v;
    n->nkids2 = defs.n;
    return true;
}

static jnode *parse_macro(parser *P, bool is_call)
{
    static const char *const mends[] = { "endmacro", NULL };
    static const char *const cends[] = { "endcall", NULL };
    jnode *n = node(P, is_call ? JN_CALL_BLOCK : JN_MACRO), *body;
    const char *end;

    TRY(n);
    if (is_call) {
        if (is_op(cur(P), "("))
            TRY(parse_params(P, n));
        TRY(n->a = parse_expr(P));
        if (n->a->k != JN_CALL)
            return fail(P, "a call");
    } else {
        TRY(n->name = take_name(P));
        TRY(parse_params(P, n));
    }
    TRY(expect_block_end(P));
    TRY(body = parse_body(P, is_call ? cends : mends, &end));
    n->kids = body->kids;
    n->nkids = body->nkids;
    return expect_block_end(P) ? n : NULL;
}

static jnode *parse_statement(parser *P)
{
    const jtok *t = cur(P);
    jnode *n;

    if (t->t != JT_NAME)
        return fail(P, "a statement name");
    P->i++;
    if (is_name(t, "if")) return parse_if(P);
    if (is_name(t, "for")) return parse_for(P);
    if (is_name(t, "set")) return parse_set(P);
    if (is_name(t, "macro")) return parse_macro(P, false);
    if (is_name(t, "call")) return parse_macro(P, true);
    if (is_name(t, "filter")) {
        /* Re-enter through a synthetic "|": the filter name follows. */
        jnode *v, *f;
        static const char *const ends[] = { "endfilter", NULL };
        const char *end;
        jnode *body;

        TRY(n = node(P, JN_FILTER_BLOCK));
        TRY(v = node(P, JN_BLOCK_VALUE));
        TRY(f = node(P, JN_FILTER));
        TRY(f->name = parse_dotted(P));
        f->a = v;
        if (skip_op(P, "("))
            TRY(parse_args(P, f));
        TRY(n->a = parse_filter_expr(P, f));
        TRY(expect_block_end(P));
        TRY(body = parse_body(P, ends, &end));
        n->kids = body->kids;
        n->nkids = body->nkids;
        return expect_block_end(P) ? n : NULL;
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        TRY(n = node(P, is_name(t, "break") ? JN_BREAK : JN_CONTINUE));
        return expect_block_end(P) ? n : NULL;
    }
    if (is_name(t, "generation")) {
        static const char *const ends[] = { "endgeneration", NULL };
        const char *end;

        TRY(expect_block_end(P));
        TRY(n = parse_body(P, ends, &end));
        return expect_block_end(P) ? n : NULL;
    }
    P->i--;
    jctx_fail(P->c, "line %d: unknown or unsupported tag '%.*s'", t->line,
              (int)(t->n > 40 ? 40 : t->n), t->p);
    return NULL;
}

/* Parses statements until "{% <one of ends>" (left positioned after the
 * end keyword, before its arguments or "%}") or EOF when ends is NULL. */
static jnode *parse_body(parser *P, const char *const *ends, const char **ret_end)
{
    jnode *body = node(P, JN_BODY), *n;
    nvec kids = { 0 };

    TRY(body && enter(P));
    for (;;) {
        const jtok *t = cur(P);

        if (t->t == JT_EOF) {
            if (ends) {
                char want[96] = "";

                for (size_t i = 0; ends[i]; i++)
                    snprintf(want + strlen(want), sizeof(want) - strlen(want),
                             "%s'%s'", i ? " or " : "", ends[i]);
                jctx_fail(P->c, "line %d: unexpected end of template, "
                          "expected %s", t->line, want);
                return NULL;
            }
            break;
        }
        if (t->t == JT_TEXT) {
            TRY(n = node(P, JN_TEXT));
            n->val = jv_str(t->p, t->n);
            P->i++;
        } else if (t->t == JT_VAR_BEGIN) {
            P->i++;
            TRY(n = node(P, JN_OUTPUT));
            TRY(n->a = parse_tuple(P, true));
            if (cur(P)->t != JT_VAR_END)
                return fail(P, "'}}'");
            P->i++;
        } else if (t->t == JT_BLOCK_BEGIN) {
            const jtok *kw = peek(P, 1);
            bool is_end = false;

            for (size_t i = 0; ends && ends[i]; i++) {
                if (is_name(kw, ends[i])) {
                    *ret_end = ends[i];
                    is_end = true;
                }
            }
            if (is_end) {
                P->i += 2;
                break;
            }
            P->i++;
            TRY(n = parse_statement(P));
        } else {
            return fail(P, "text or a tag");
        }
        TRY(nvec_push(P, &kids, n));
    }
    body->kids = kids.v;
    body->nkids = kids.n;
    P->depth--;
    return body;
}

/* Unknown filters and tests fail at compile time in jinja2, except inside
 * {% if %} and x-if-c-else-y ("soft" frames), where they fail only when
 * run; for, macro and block bodies are hard again. */
static int check_names(jctx *c, const jnode *n, bool soft, int depth)
{
    bool inner_soft = soft;
    int rc = 0;

    if (!n)
        return 0;
    if (depth > 4 * JINJA_MAX_DEPTH)
        return jctx_fail(c, "template nested too deeply");
    if (!soft && n->k == JN_FILTER && !jinja_filter_exists(n->name))
        return jctx_fail(c, "line %d: no filter named '%s'", n->line, n->name);
    if (!soft && n->k == JN_TEST && !jinja_test_exists(n->name))
        return jctx_fail(c, "line %d: no test named '%s'", n->line, n->name);
    if (n->k == JN_IF || n->k == JN_COND)
        soft = inner_soft = true;
    if (n->k == JN_FOR || n->k == JN_MACRO || n->k == JN_CALL_BLOCK ||
        n->k == JN_SET_BLOCK || n->k == JN_FILTER_BLOCK)
        inner_soft = false;
    rc = check_names(c, n->a, soft, depth + 1);
    if (!rc) rc = check_names(c, n->b, soft, depth + 1);
    if (!rc) rc = check_names(c, n->c, soft, depth + 1);
    for (size_t i = 0; !rc && i < n->nkids; i++)
        rc = check_names(c, n->kids[i], n->k == JN_FOR || n->k == JN_MACRO ||
                         n->k == JN_SET_BLOCK || n->k == JN_FILTER_BLOCK ||
                         n->k == JN_CALL_BLOCK ? inner_soft : soft, depth + 1);
    for (size_t i = 0; !rc && i < n->nkids2; i++)
        rc = check_names(c, n->kids2[i], soft, depth + 1);
    return rc;
}

int jinja_parse(jctx *c, const jtok *toks, size_t n, jnode **ret_root)
{
    parser P = { .c = c, .t = toks, .n = n };
    jnode *root = parse_body(&P, NULL, NULL);

    if (!root)
        return c->failed ? -EINVAL : jctx_fail(c, "parse error");
    if (check_names(c, root, false, 0))
        return -EINVAL;
    *ret_root = root;
    return 0;
}
