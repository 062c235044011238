/* SPDX-License-Identifier: MIT */
/*
 * jinja_ast.h - syntax tree shared by jinja_parse.c and jinja_eval.c.
 * One generic node type; the comment on each kind says which fields it uses.
 */
#ifndef TUNA_ENGINE_JINJA_AST_H
#define TUNA_ENGINE_JINJA_AST_H

#include "jinja.h"

typedef enum {
    /* statements */
    JN_BODY,        /* kids: statements */
    JN_TEXT,        /* val: the text */
    JN_OUTPUT,      /* a: expression */
    JN_IF,          /* a: condition, kids: then, kids2: else */
    JN_FOR,         /* names: targets, a: iterable, b: filter or NULL,
                       kids: body, kids2: else, flag: recursive */
    JN_SET,         /* names: targets or name + attr; a: value */
    JN_SET_BLOCK,   /* name, kids: body */
    JN_MACRO,       /* name, names: params, kids2: defaults (NULL ok), kids */
    JN_BREAK,
    JN_CONTINUE,
    JN_FILTER_BLOCK, /* a: filter chain over JN_BLOCK_VALUE, kids: body */
    JN_CALL_BLOCK,  /* a: the call, names/kids2: caller params, kids: body */
    /* expressions */
    JN_CONST,       /* val */
    JN_NAME,        /* name */
    JN_BLOCK_VALUE, /* the body text of a filter block */
    JN_ATTR,        /* a.name */
    JN_ITEM,        /* a[b] */
    JN_SLICE,       /* a[kids[0]:kids[1]:kids[2]], entries may be NULL */
    JN_CALL,        /* a(kids..., names[i]=kids2[i]...) */
    JN_FILTER,      /* a|name(kids..., names=kids2) */
    JN_TEST,        /* a is [not] name(kids...); flag: not */
    JN_NEG,         /* -a */
    JN_POS,         /* +a */
    JN_NOT,         /* not a */
    JN_BIN,         /* a op b: + - * / % F(//) P(**) */
    JN_CONCAT,      /* kids joined with ~ */
    JN_AND,
    JN_OR,
    JN_COMPARE,     /* a, then ops[i] kids[i]: E N < L > G I(in) X(not in) */
    JN_COND,        /* a if b else c (c may be NULL) */
    JN_LIST,        /* kids */
    JN_TUPLE,       /* kids */
    JN_DICT,        /* kids: keys, kids2: values */
} jn_kind;

struct jnode {
    jn_kind k;
    int line;
    int op;
    bool flag;
    const char *name;
    const char *attr;    /* JN_SET: ns.attr target */
    jv val;
    jnode *a, *b, *c;
    jnode **kids;
    size_t nkids;
    jnode **kids2;
    size_t nkids2;
    const char **names;
    size_t nnames;
    char *ops;
};

#endif
