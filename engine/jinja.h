/* SPDX-License-Identifier: MIT */
/*
 * jinja.h - engine-internal Jinja2 interpreter for chat templates.
 *
 * A small interpreter for the subset of Jinja2 that Hugging Face chat
 * templates use, with the settings transformers renders them with:
 * ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) plus
 * the loopcontrols extension, the globals raise_exception(msg) and
 * strftime_now(fmt), and a tojson filter that is json.dumps(ensure_ascii=
 * False). Values follow Python and jinja2 semantics (str(), repr(), ==,
 * truthiness, the Undefined type).
 *
 * Pipeline: jinja_lex.c turns the source into tokens (text, tag delimiters
 * with whitespace control already applied, expression tokens);
 * jinja_parse.c builds an AST; jinja_eval.c walks it; jinja_value.c holds
 * the value model, jinja_builtins.c the filters, tests and methods.
 *
 * Memory: everything of one render (AST, values, scopes) lives in one arena
 * freed at the end, so values are shared freely and never freed one by one.
 * Lists and dicts are immutable once built (the sandbox forbids mutation);
 * only namespace() objects change. Every user-controlled quantity is capped:
 * arena bytes, output bytes, loop iterations, recursion depth.
 *
 * Only engine/ includes this header.
 */
#ifndef TUNA_ENGINE_JINJA_H
#define TUNA_ENGINE_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Limits                                                                    */

#define JINJA_MAX_DEPTH 200              /* nesting: parse and eval */
#define JINJA_MAX_ITERATIONS 1000000L    /* loop iterations, all loops */
#define JINJA_DEFAULT_MAX_OUTPUT (4u << 20)
#define JINJA_MAX_ARENA (128u << 20)

/* ------------------------------------------------------------------------ */
/* Arena                                                                     */

typedef struct jarena_block jarena_block;
typedef struct jarena {
    jarena_block *head;
    size_t used;   /* bytes handed out, all blocks */
    size_t limit;
} jarena;

void *jarena_alloc(jarena *a, size_t n);   /* zeroed; NULL past the limit */
void jarena_free(jarena *a);

/* ------------------------------------------------------------------------ */
/* Values                                                                    */

typedef enum {
    JV_UNDEF = 0,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,   /* list or tuple */
    JV_DICT,
    JV_NS,     /* namespace(): a mutable dict with attribute access */
    JV_FUNC,   /* global function or macro */
    JV_LOOP,   /* the loop variable of a for */
} jv_type;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    jv_type t;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        jlist *l;
        jdict *d;
        jfunc *fn;
        jloop *loop;
    } u;
    const char *undef_name; /* JV_UNDEF: what was missing, for messages */
} jv;

struct jlist {
    size_t n;
    jv *items;
    bool tuple;
};

struct jdict {
    size_t n, cap;
    jv *keys;
    jv *vals;
};

/* ------------------------------------------------------------------------ */
/* Growable byte buffer (malloc'd, capped)                                   */

typedef struct jbuf {
    char *p;
    size_t n, cap, limit;
    bool overflow; /* a write went past limit (or out of memory) */
} jbuf;

bool jbuf_put(jbuf *b, const char *s, size_t n);
bool jbuf_puts(jbuf *b, const char *s);
void jbuf_free(jbuf *b);

/* ------------------------------------------------------------------------ */
/* Render context and errors                                                 */

typedef struct jscope jscope;
typedef struct jctx {
    jarena arena;
    char err[320];
    bool failed;
    int line;           /* line of the node being evaluated */
    long iterations;    /* loop iterations so far */
    int depth;          /* eval recursion depth */
    jscope *scope;      /* innermost */
    jscope *root;       /* template globals */
    jbuf *out;          /* current output (set blocks capture) */
    int loop_ctl;       /* 1 break, 2 continue pending */
} jctx;

/* Records the first error (printf-style) with the current line; returns
 * -EINVAL (or rc where given through jctx_fail_rc). */
int jctx_fail(jctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
jarena *jctx_arena(jctx *c);

/* Value constructors and helpers (jinja_value.c). */
jv jv_undef(const char *name);
jv jv_none(void);
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_str(const char *p, size_t n);        /* borrows p */
int jv_str_dup(jctx *c, const char *p, size_t n, jv *ret);
/* jctx_fail's out-of-memory error (the arena or a buffer hit its limit). */
int jctx_nomem(jctx *c);
/* The end of a string built in b: its bytes as a string value into ret
 * when rc is 0; b freed either way; returns rc (or jv_str_dup's error). */
int jbuf_end(jctx *c, jbuf *b, int rc, jv *ret);
jv jv_list(jlist *l);
jv jv_dict(jdict *d);
jlist *jlist_new(jctx *c, size_t n, bool tuple);
jdict *jdict_new(jctx *c, size_t cap);
int jdict_set(jctx *c, jdict *d, jv key, jv val);
bool jdict_get(const jdict *d, jv key, jv *ret);
bool jdict_get_str(const jdict *d, const char *key, size_t n, jv *ret);

bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
/* Python ordering: numbers, strings (code points = bytes order in UTF-8),
 * lists. *ret is <0, 0, >0. Fails on incomparable types. */
int jv_compare(jctx *c, jv a, jv b, int *ret);
const char *jv_type_name(jv v);
bool jv_is_number(jv v);
double jv_as_double(jv v);

/* str() and repr() as Python/jinja2 print them; into b. */
int jv_to_str(jctx *c, jbuf *b, jv v);
int jv_repr(jctx *c, jbuf *b, jv v);
int jv_str_value(jctx *c, jv v, jv *ret);   /* str(v) as a JV_STR */
/* json.dumps(v, ensure_ascii=False, indent=indent (<0: None)). */
int jv_tojson(jctx *c, jbuf *b, jv v, int indent, bool sort_keys, int depth);
void jv_format_float(double f, char *out, size_t cap); /* Python repr */

/* UTF-8 helpers for code-point based string operations. */
size_t ju8_len(const char *p, size_t n);
size_t ju8_offset(const char *p, size_t n, size_t cp); /* byte of cp index */

/* Iterates v as Python would (list items, dict keys, string chars). */
int jv_iterate(jctx *c, jv v, jlist **ret);

/* ------------------------------------------------------------------------ */
/* Lexer and parser                                                          */

typedef enum {
    JT_EOF = 0,
    JT_TEXT,
    JT_VAR_BEGIN,
    JT_VAR_END,
    JT_BLOCK_BEGIN,
    JT_BLOCK_END,
    JT_NAME,
    JT_STRING,
    JT_INT,
    JT_FLOAT,
    JT_OP,
} jtok_type;

typedef struct jtok {
    jtok_type t;
    int line;
    const char *p;  /* text, name, operator, decoded string (arena) */
    size_t n;
    int64_t i;
    double f;
} jtok;

/* Tokenizes a template; *ret_toks in the arena, ends with JT_EOF. */
int jinja_lex(jctx *c, const char *src, size_t len, jtok **ret_toks,
              size_t *ret_n);

typedef struct jnode jnode;
int jinja_parse(jctx *c, const jtok *toks, size_t n, jnode **ret_root);

/* ------------------------------------------------------------------------ */
/* Filters, tests, methods (jinja_builtins.c), used by jinja_eval.c          */

typedef struct jargs {
    jv *pos;
    size_t npos;
    const char **kw_names;
    jv *kw;
    size_t nkw;
} jargs;

/* Looks up keyword name or position idx; returns false if absent. */
bool jargs_get(const jargs *a, size_t idx, const char *name, jv *ret);

bool jinja_filter_exists(const char *name);
bool jinja_test_exists(const char *name);
int jinja_filter(jctx *c, const char *name, jv v, const jargs *a, jv *ret);
int jinja_test(jctx *c, const char *name, jv v, const jargs *a, bool *ret);
/* Method call obj.name(args) on str, list or dict; *handled false if the
 * name is not a method of that type. */
int jinja_method(jctx *c, jv obj, const char *name, const jargs *a,
                 bool *handled, jv *ret);
/* String helpers (jinja_methods.c). mode of jstr_case: 'l' lower, 'u' upper,
 * 'c' capitalize, 't' str.title, 'j' jinja's title filter. sides of
 * jstr_strip: 1 left, 2 right, 3 both; chars not a string: whitespace. */
int jstr_case(jctx *c, jv s, int mode, jv *ret);
int jstr_strip(jctx *c, jv s, jv chars, int sides, jv *ret);
int jstr_replace(jctx *c, jv s, jv old, jv new_, int64_t count, jv *ret);
bool jpy_isspace(int32_t cp);
int jstr_percent(jctx *c, jv fmt, jv args, jv *ret);

/* Operators and value-building globals (jinja_ops.c). op: + - * / % and
 * 'F' (//), 'P' (**). */
int jinja_arith(jctx *c, int op, jv a, jv b, jv *ret);
int jinja_contains(jctx *c, jv item, jv seq, bool *ret);
int jinja_range(jctx *c, const jargs *a, jv *ret);
int jinja_mapping(jctx *c, const jargs *a, bool ns, jv *ret);
int jinja_strftime_now(jctx *c, const jargs *a, jv *ret);

/* Calls a callable value (macros, globals, the filters' "map" helpers). */
int jinja_call(jctx *c, jv fn, const jargs *a, jv *ret);

/* ------------------------------------------------------------------------ */
/* Entry point                                                               */

typedef struct jinja_var {
    const char *name;
    jv value;
} jinja_var;

/* Renders src with the given variables (values may live in c's arena or
 * be borrowed from the caller until the call returns) into a malloc'd
 * string. On error returns -EINVAL (-ENOMEM when out of memory) and writes
 * "line N: message" into err. One jctx renders one template. */
typedef struct jinja_render_params {
    const jinja_var *vars;
    size_t n_vars;
    size_t max_output;   /* 0: JINJA_DEFAULT_MAX_OUTPUT */
} jinja_render_params;

jctx *jinja_ctx_new(void);
void jinja_ctx_free(jctx *c);
int jinja_render(jctx *c, const char *src, size_t len,
                 const jinja_render_params *p, char **ret_text,
                 size_t *ret_len, char *err, size_t errlen);

#endif
