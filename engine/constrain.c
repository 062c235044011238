/* SPDX-License-Identifier: MIT */
/*
 * constrain.c - JSON-schema constrained decoding (see constrain.h).
 *
 * Schema. Compiled from cJSON into a tree of nodes: object (properties in
 * order, required bits), array (items), string, number, integer, boolean,
 * null, literal set (enum/const values serialized once, and true/false),
 * any value, and "any object" (json_object mode: free keys, any values).
 *
 * Automaton. A pushdown machine over bytes: a stack of frames, the top one
 * consuming the next byte. VAL frames wait for a value of a node and turn
 * into the concrete frame on its first byte; OBJ walks '{' "key" ':' value
 * (',' ...) '}' with the key one of a candidate set of quoted literals
 * (properties from the next index on, skipping only optional ones); ANYOBJ
 * takes any string key; ARR '[' value (',' value)* ']'; STR tracks escapes
 * and UTF-8 sequences (valid RFC 3629 only, no control bytes); NUM the JSON
 * number grammar; LIT a set of literals matched byte by byte. Numbers (and
 * literal sets where one is a prefix of another) end on the first byte they
 * cannot take, which is then given to the frame below. A child that
 * completes pops and advances its parent; an empty stack is a complete
 * value.
 *
 * Masks. The vocabulary's byte strings sit in a trie; a depth-first walk
 * feeds each edge's byte to a copy of the automaton and prunes the subtree
 * on rejection, so shared prefixes are checked once. Under a token budget
 * a token is kept only if the value can still be closed in the tokens left
 * after it, one byte per token at worst: min_close() sums, frame by frame,
 * the fewest bytes that finish each open construct (required properties
 * included). Byte-fallback or byte-level vocabularies can always spell
 * them, so the value closes within the budget.
 */
#include "constrain.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DEPTH = 24, MAX_PROPS = 64, MAX_LITS = 64, MAX_NUM_DIGITS = 15 };

typedef enum {
    K_ANY, K_ANYOBJ, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER,
    K_LITS,
} node_kind;

typedef struct node node;
struct node {
    node_kind kind;
    /* K_OBJECT */
    int n_props;
    char **keys;            /* quoted: "\"name\"" */
    int *key_len;
    node **props;
    uint64_t required;
    /* K_ARRAY */
    node *items;
    /* K_LITS: serialized JSON literals */
    int n_lits;
    char **lits;
    int *lit_len;
    int min_len;            /* shortest complete value, bytes */
};

struct eng_json_schema {
    node *root;
};

/* ------------------------------------------------------------------------ */
/* Schema compilation                                                        */

static void node_free(node *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n_props; i++) {
        free(n->keys[i]);
        node_free(n->props[i]);
    }
    free(n->keys);
    free(n->key_len);
    free(n->props);
    node_free(n->items);
    for (int i = 0; i < n->n_lits; i++)
        free(n->lits[i]);
    free(n->lits);
    free(n->lit_len);
    free(n);
}

static node *node_new(node_kind k)
{
    node *n = calloc(1, sizeof(*n));

    if (n)
        n->kind = k;
    return n;
}

static int add_lit(node *n, const char *text)
{
    char **l = realloc(n->lits, (size_t)(n->n_lits + 1) * sizeof(*l));
    int *ll;

    if (!l)
        return -ENOMEM;
    n->lits = l;
    ll = realloc(n->lit_len, (size_t)(n->n_lits + 1) * sizeof(*ll));
    if (!ll)
        return -ENOMEM;
    n->lit_len = ll;
    if (!(n->lits[n->n_lits] = strdup(text)))
        return -ENOMEM;
    n->lit_len[n->n_lits++] = (int)strlen(text);
    return 0;
}

static int lits_from(node *n, const cJSON *vals, char *err, size_t errlen)
{
    const cJSON *v;

    cJSON_ArrayForEach(v, vals) {
        char *t = cJSON_PrintUnformatted(v);
        int rc;

        if (!t)
            return -ENOMEM;
        rc = n->n_lits >= MAX_LITS ? -EINVAL : add_lit(n, t);
        free(t);
        if (rc) {
            snprintf(err, errlen, "enum has more than %d values", MAX_LITS);
            return rc;
        }
    }
    if (!n->n_lits) {
        snprintf(err, errlen, "empty enum");
        return -EINVAL;
    }
    return 0;
}

static int compile(const cJSON *j, int depth, node **ret, char *err,
                   size_t errlen);

static int compile_object(node *n, const cJSON *j, int depth, char *err,
                          size_t errlen)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(j, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(j, "required");
    const cJSON *p, *r;
    int k = 0, rc;

    n->n_props = cJSON_GetArraySize(props);
    if (n->n_props > MAX_PROPS) {
        snprintf(err, errlen, "more than %d properties", MAX_PROPS);
        return -EINVAL;
    }
    n->keys = calloc((size_t)n->n_props + 1, sizeof(*n->keys));
    n->key_len = calloc((size_t)n->n_props + 1, sizeof(*n->key_len));
    n->props = calloc((size_t)n->n_props + 1, sizeof(*n->props));
    if (!n->keys || !n->key_len || !n->props)
        return -ENOMEM;
    cJSON_ArrayForEach(p, props) {
        cJSON *ks = cJSON_CreateString(p->string ? p->string : "");
        char *q = ks ? cJSON_PrintUnformatted(ks) : NULL;

        cJSON_Delete(ks);
        if (!q)
            return -ENOMEM;
        n->keys[k] = q;
        n->key_len[k] = (int)strlen(q);
        if ((rc = compile(p, depth + 1, &n->props[k], err, errlen)))
            return rc;
        cJSON_ArrayForEach(r, req)
            if (cJSON_IsString(r) && !strcmp(r->valuestring, p->string))
                n->required |= 1ull << k;
        k++;
    }
    n->min_len = 2;
    for (int i = 0, c = 0; i < n->n_props; i++)
        if (n->required >> i & 1)
            n->min_len += (c++ ? 1 : 0) + n->key_len[i] + 1 +
                          n->props[i]->min_len;
    return 0;
}

static int compile(const cJSON *j, int depth, node **ret, char *err,
                   size_t errlen)
{
    const cJSON *type, *e;
    const char *t = NULL;
    node *n = NULL;
    int rc = 0;

    if (depth > MAX_DEPTH) {
        snprintf(err, errlen, "schema nested deeper than %d", MAX_DEPTH);
        return -EINVAL;
    }
    if (!cJSON_IsObject(j)) {
        snprintf(err, errlen, "a schema must be an object");
        return -EINVAL;
    }
    for (const char *const *u = (const char *const[]){ "$ref", "oneOf",
             "anyOf", "allOf", "patternProperties", "not", NULL }; *u; u++)
        if (cJSON_GetObjectItemCaseSensitive(j, *u)) {
            snprintf(err, errlen, "unsupported schema keyword '%s'", *u);
            return -EINVAL;
        }
    type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (cJSON_IsString(type))
        t = type->valuestring;
    else if (type) {
        snprintf(err, errlen, "'type' must be a string");
        return -EINVAL;
    }
    if ((e = cJSON_GetObjectItemCaseSensitive(j, "enum")) ||
        (e = cJSON_GetObjectItemCaseSensitive(j, "const"))) {
        cJSON *arr = NULL;

        if (!(n = node_new(K_LITS)))
            return -ENOMEM;
        if (!cJSON_IsArray(e)) {
            arr = cJSON_CreateArray();
            cJSON_AddItemReferenceToArray(arr, (cJSON *)e);
        }
        rc = lits_from(n, arr ? arr : e, err, errlen);
        cJSON_Delete(arr);
    } else if (!t) {
        n = node_new(cJSON_GetObjectItemCaseSensitive(j, "properties")
                         ? K_OBJECT : K_ANY);
        if (n && n->kind == K_OBJECT)
            rc = compile_object(n, j, depth, err, errlen);
    } else if (!strcmp(t, "object")) {
        n = node_new(cJSON_GetObjectItemCaseSensitive(j, "properties")
                         ? K_OBJECT : K_ANYOBJ);
        if (n && n->kind == K_OBJECT)
            rc = compile_object(n, j, depth, err, errlen);
    } else if (!strcmp(t, "array")) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, "items");

        if ((n = node_new(K_ARRAY)))
            rc = it ? compile(it, depth + 1, &n->items, err, errlen)
                    : (n->items = node_new(K_ANY)) ? 0 : -ENOMEM;
    } else if (!strcmp(t, "string")) {
        n = node_new(K_STRING);
    } else if (!strcmp(t, "number")) {
        n = node_new(K_NUMBER);
    } else if (!strcmp(t, "integer")) {
        n = node_new(K_INTEGER);
    } else if (!strcmp(t, "boolean")) {
        if ((n = node_new(K_LITS)) && !(rc = add_lit(n, "true")))
            rc = add_lit(n, "false");
    } else if (!strcmp(t, "null")) {
        if ((n = node_new(K_LITS)))
            rc = add_lit(n, "null");
    } else {
        snprintf(err, errlen, "unsupported type '%.32s'", t);
        return -EINVAL;
    }
    if (!n)
        return -ENOMEM;
    if (rc) {
        node_free(n);
        return rc;
    }
    switch (n->kind) {
    case K_STRING: case K_ANYOBJ: case K_ARRAY: n->min_len = 2; break;
    case K_NUMBER: case K_INTEGER: case K_ANY: n->min_len = 1; break;
    case K_LITS:
        n->min_len = n->lit_len[0];
        for (int i = 1; i < n->n_lits; i++)
            if (n->lit_len[i] < n->min_len)
                n->min_len = n->lit_len[i];
        break;
    default: break;
    }
    *ret = n;
    return 0;
}

int eng_json_schema_compile(const char *schema_json, eng_json_schema **ret,
                            char *err, size_t errlen)
{
    char e2[160] = "";
    eng_json_schema *s;
    cJSON *j = NULL;
    int rc;

    if (!ret)
        return -EINVAL;
    if (!(s = calloc(1, sizeof(*s))))
        return -ENOMEM;
    if (!schema_json || !*schema_json) {
        s->root = node_new(K_ANYOBJ);
        if (!s->root) {
            free(s);
            return -ENOMEM;
        }
        s->root->min_len = 2;
        *ret = s;
        return 0;
    }
    if (!(j = cJSON_Parse(schema_json))) {
        snprintf(e2, sizeof(e2), "the schema is not valid JSON");
        rc = -EINVAL;
    } else {
        rc = compile(j, 0, &s->root, e2, sizeof(e2));
    }
    cJSON_Delete(j);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "%s", e2);
        free(s);
        return rc;
    }
    *ret = s;
    return 0;
}

void eng_json_schema_free(eng_json_schema *s)
{
    if (!s)
        return;
    node_free(s->root);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Shorthand                                                                 */

static cJSON *short_type(const cJSON *v, int depth, char *err, size_t errlen)
{
    static const char *const names[][2] = {
        { "str", "string" }, { "string", "string" }, { "int", "integer" },
        { "integer", "integer" }, { "float", "number" },
        { "number", "number" }, { "bool", "boolean" },
        { "boolean", "boolean" },
    };
    cJSON *o;

    if (depth > MAX_DEPTH)
        return NULL;
    if (cJSON_IsString(v)) {
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (!strcmp(v->valuestring, names[i][0])) {
                o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "type", names[i][1]);
                return o;
            }
        snprintf(err, errlen, "unknown output type '%.32s' (str, int, "
                 "float, bool, a list or an object)", v->valuestring);
        return NULL;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) {
        cJSON *it = short_type(cJSON_GetArrayItem(v, 0), depth + 1, err,
                               errlen);

        if (!it)
            return NULL;
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "array");
        cJSON_AddItemToObject(o, "items", it);
        return o;
    }
    if (cJSON_IsObject(v) && v->child) {
        cJSON *props = cJSON_CreateObject(), *req = cJSON_CreateArray();
        const cJSON *p;

        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "object");
        cJSON_ArrayForEach(p, v) {
            cJSON *t = short_type(p, depth + 1, err, errlen);

            if (!t) {
                cJSON_Delete(o), cJSON_Delete(props), cJSON_Delete(req);
                return NULL;
            }
            cJSON_AddItemToObject(props, p->string, t);
            cJSON_AddItemToArray(req, cJSON_CreateString(p->string));
        }
        cJSON_AddItemToObject(o, "properties", props);
        cJSON_AddItemToObject(o, "required", req);
        return o;
    }
    snprintf(err, errlen, "an output type is a type name, a one-element "
             "list or a non-empty object");
    return NULL;
}

int eng_json_shorthand_to_schema(const char *shorthand, char **ret_schema,
                                 char *err, size_t errlen)
{
    char e2[160] = "invalid output_type";
    cJSON *j = shorthand ? cJSON_Parse(shorthand) : NULL, *s;
    char *text;

    s = j && cJSON_IsObject(j) ? short_type(j, 0, e2, sizeof(e2)) : NULL;
    cJSON_Delete(j);
    if (!s) {
        if (err && errlen)
            snprintf(err, errlen, "%s", e2);
        return -EINVAL;
    }
    text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (!text)
        return -ENOMEM;
    *ret_schema = text;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Automaton                                                                 */

typedef enum { F_VAL, F_OBJ, F_ANYOBJ, F_ARR, F_STR, F_NUM, F_LIT } ftype;

enum { /* object/array states */
    O_START, O_KEY, O_COLON, O_WAITKEY, O_WAITVAL, O_VALUE, O_COMMA,
};
enum { /* string states */
    S_NORMAL, S_ESC, S_HEX, S_UTF8,
};
enum { /* number states */
    N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP,
};

typedef struct frame {
    const node *n;
    uint64_t cand;        /* OBJ key / LIT candidates */
    uint8_t type, st;
    uint8_t k;            /* hex digits / utf8 bytes left */
    uint8_t lead;         /* utf8 lead byte */
    uint8_t spaced;       /* VAL: a space was taken */
    uint8_t digits;
    uint16_t pos;         /* in the key / literal */
    int16_t idx;          /* OBJ: next property; chosen key */
} frame;

typedef struct jstate {
    int depth;
    bool done;
    frame f[MAX_DEPTH + 2];
} jstate;

struct eng_constrain {
    const eng_json_schema *s;
    const eng_vocab_bytes *v;
    int ws;
    jstate st;
    jstate *walk;         /* (max token length + 1) states for the trie walk */
};

static const node any_node = { .kind = K_ANY, .min_len = 1 };
static char *any_lit_text[] = { "true", "false", "null" };
static int any_lit_len[] = { 4, 5, 4 };
static const node any_lits = { .kind = K_LITS, .n_lits = 3,
                               .lits = any_lit_text, .lit_len = any_lit_len,
                               .min_len = 4 };

static void push_val(jstate *s, const node *n)
{
    frame *f = &s->f[s->depth++];

    memset(f, 0, sizeof(*f));
    f->type = F_VAL;
    f->n = n;
}

/* The child on top completed: pop it and advance the parent. */
static void child_done(jstate *s)
{
    frame *p;

    if (--s->depth == 0) {
        s->done = true;
        return;
    }
    p = &s->f[s->depth - 1];
    if (p->st == O_WAITKEY)
        p->st = O_COLON;
    else
        p->st = O_VALUE; /* O_WAITVAL, and arrays */
}

/* OBJ: candidate properties from idx on (skipping only optional ones). */
static uint64_t key_cands(const node *n, int idx)
{
    uint64_t m = 0;

    for (int i = idx; i < n->n_props; i++) {
        m |= 1ull << i;
        if (n->required >> i & 1)
            break;
    }
    return m;
}

static bool rest_optional(const node *n, int idx)
{
    return idx >= 64 || (n->required >> idx) == 0;
}

static bool utf8_cont_ok(uint8_t lead, int first, unsigned char b)
{
    unsigned lo = 0x80, hi = 0xBF;

    if (first) {
        if (lead == 0xE0) lo = 0xA0;
        if (lead == 0xED) hi = 0x9F;
        if (lead == 0xF0) lo = 0x90;
        if (lead == 0xF4) hi = 0x8F;
    }
    return b >= lo && b <= hi;
}

static bool is_digit(unsigned char b) { return b >= '0' && b <= '9'; }

/* Turns the VAL frame on top into the frame its first byte b starts
 * (b is then consumed by the new frame's own logic). */
static bool start_value(jstate *s, frame *f, unsigned char b, int ws)
{
    const node *n = f->n;
    node_kind k = n->kind;

    if (b == ' ' && ws && !f->spaced) {
        f->spaced = 1;
        return true;
    }
    memset(f, 0, sizeof(*f));
    f->n = n;
    if (k == K_LITS) {
        f->type = F_LIT;
        f->cand = n->n_lits >= 64 ? ~0ull : (1ull << n->n_lits) - 1;
        return false; /* fed below */
    }
    if (k == K_ANY) {
        if (b == '{') k = K_ANYOBJ;
        else if (b == '[') k = K_ARRAY;
        else if (b == '"') k = K_STRING;
        else if (b == '-' || is_digit(b)) k = K_NUMBER;
        else if (b == 't' || b == 'f' || b == 'n') {
            f->n = &any_lits;
            f->type = F_LIT;
            f->cand = 7;
            return false;
        } else
            return false;
    }
    switch (k) {
    case K_OBJECT:
        f->type = F_OBJ;
        return false;
    case K_ANYOBJ:
        f->type = F_ANYOBJ;
        return false;
    case K_ARRAY:
        f->type = F_ARR;
        if (n->kind == K_ANY) {
            static const node any_arr = { .kind = K_ARRAY,
                .items = (node *)&any_node, .min_len = 2 };
            f->n = &any_arr;
        }
        return false;
    case K_STRING:
        f->type = F_STR;
        return false;
    case K_NUMBER:
    case K_INTEGER:
        f->type = F_NUM;
        f->k = k == K_INTEGER;
        return false;
    default:
        return false;
    }
    (void)s;
}

/* Feeds one byte: true if accepted. */
static bool feed_byte(jstate *s, unsigned char b, int ws)
{
    for (;;) {
        frame *f;

        if (s->done || s->depth == 0)
            return false;
        f = &s->f[s->depth - 1];
        switch (f->type) {
        case F_VAL:
            if (start_value(s, f, b, ws))
                return true;
            if (f->type == F_VAL)
                return false;
            if (f->type == F_OBJ || f->type == F_ANYOBJ) {
                if (b != '{')
                    return false;
                f->st = O_START;
                return true;
            }
            if (f->type == F_ARR) {
                if (b != '[')
                    return false;
                f->st = O_START;
                return true;
            }
            if (f->type == F_STR) {
                if (b != '"')
                    return false;
                f->st = S_NORMAL;
                return true;
            }
            continue; /* NUM, LIT: their own logic takes b */
        case F_LIT: {
            const node *n = f->n;
            uint64_t c = 0;
            bool complete = false, longer = false;

            for (int i = 0; i < n->n_lits; i++)
                if ((f->cand >> i & 1) && f->pos < n->lit_len[i] &&
                    (unsigned char)n->lits[i][f->pos] == b)
                    c |= 1ull << i;
            if (!c) {
                /* a literal that was complete may end here */
                for (int i = 0; i < n->n_lits; i++)
                    if ((f->cand >> i & 1) && n->lit_len[i] == f->pos) {
                        child_done(s);
                        goto again;
                    }
                return false;
            }
            f->cand = c;
            f->pos++;
            for (int i = 0; i < n->n_lits; i++)
                if (c >> i & 1) {
                    if (n->lit_len[i] == f->pos)
                        complete = true;
                    else
                        longer = true;
                }
            if (complete && !longer)
                child_done(s);
            return true;
        }
        case F_STR:
            switch (f->st) {
            case S_NORMAL:
                if (b == '"') {
                    child_done(s);
                    return true;
                }
                if (b == '\\') {
                    f->st = S_ESC;
                    return true;
                }
                if (b < 0x20)
                    return false;
                if (b < 0x80)
                    return true;
                if (b < 0xC2 || b > 0xF4)
                    return false;
                f->lead = b;
                f->k = b < 0xE0 ? 1 : b < 0xF0 ? 2 : 3;
                f->pos = 0;
                f->st = S_UTF8;
                return true;
            case S_ESC:
                if (b == 'u') {
                    f->st = S_HEX;
                    f->k = 4;
                    return true;
                }
                if (!strchr("\"\\/bfnrt", b) || !b)
                    return false;
                f->st = S_NORMAL;
                return true;
            case S_HEX:
                if (!((b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') ||
                      (b >= 'A' && b <= 'F')))
                    return false;
                if (--f->k == 0)
                    f->st = S_NORMAL;
                return true;
            default: /* S_UTF8 */
                if (!utf8_cont_ok(f->lead, f->pos == 0, b))
                    return false;
                f->pos++;
                if (--f->k == 0)
                    f->st = S_NORMAL;
                return true;
            }
        case F_NUM: {
            bool integer = f->k;
            int st = f->st;

            if (is_digit(b) && f->digits >= MAX_NUM_DIGITS &&
                (st == N_INT || st == N_FRAC || st == N_EXP))
                goto num_end;
            switch (st) {
            case N_START:
                if (b == '-') { f->st = N_MINUS; return true; }
                /* fall through */
            case N_MINUS:
                if (b == '0') { f->st = N_ZERO; f->digits = 1; return true; }
                if (is_digit(b)) { f->st = N_INT; f->digits = 1; return true; }
                return false;
            case N_ZERO:
            case N_INT:
                if (st == N_INT && is_digit(b)) { f->digits++; return true; }
                if (!integer && b == '.') { f->st = N_DOT; return true; }
                if (!integer && (b == 'e' || b == 'E')) {
                    f->st = N_E;
                    return true;
                }
                goto num_end;
            case N_DOT:
                if (is_digit(b)) { f->st = N_FRAC; f->digits++; return true; }
                return false;
            case N_FRAC:
                if (is_digit(b)) { f->digits++; return true; }
                if (b == 'e' || b == 'E') { f->st = N_E; return true; }
                goto num_end;
            case N_E:
                if (b == '+' || b == '-') { f->st = N_ESIGN; return true; }
                /* fall through */
            case N_ESIGN:
                if (is_digit(b)) { f->st = N_EXP; f->digits = 1; return true; }
                return false;
            default: /* N_EXP */
                if (is_digit(b) && f->digits < 3) { f->digits++; return true; }
                goto num_end;
            }
        num_end:
            child_done(s);
            if (s->done)
                return false; /* a top-level number ends only at EOS */
            goto again;
        }
        case F_ARR:
            if (f->st == O_START || f->st == O_COMMA) {
                if (b == ']' && f->st == O_START) {
                    child_done(s);
                    return true;
                }
                f->st = O_WAITVAL;
                if (s->depth > MAX_DEPTH)
                    return false;
                push_val(s, f->n->items);
                goto again;
            }
            if (f->st == O_VALUE) {
                if (b == ',') { f->st = O_COMMA; return true; }
                if (b == ']') { child_done(s); return true; }
            }
            return false;
        case F_OBJ:
        case F_ANYOBJ: {
            const node *n = f->n;
            bool any = f->type == F_ANYOBJ;

            switch (f->st) {
            case O_START:
            case O_COMMA:
                if (b == '}' && f->st == O_START &&
                    (any || rest_optional(n, f->idx))) {
                    child_done(s);
                    return true;
                }
                if (b != '"')
                    return false;
                if (any) {
                    if (s->depth > MAX_DEPTH)
                        return false;
                    f->st = O_WAITKEY;
                    memset(&s->f[s->depth], 0, sizeof(frame));
                    s->f[s->depth].type = F_STR;
                    s->f[s->depth++].st = S_NORMAL;
                    return true;
                }
                f->cand = key_cands(n, f->idx);
                if (!f->cand)
                    return false;
                f->st = O_KEY;
                f->pos = 1;
                return true;
            case O_KEY: {
                uint64_t c = 0;

                for (int i = 0; i < n->n_props; i++)
                    if ((f->cand >> i & 1) && f->pos < n->key_len[i] &&
                        (unsigned char)n->keys[i][f->pos] == b)
                        c |= 1ull << i;
                if (!c)
                    return false;
                f->cand = c;
                f->pos++;
                for (int i = 0; i < n->n_props; i++)
                    if ((c >> i & 1) && n->key_len[i] == f->pos) {
                        f->idx = (int16_t)(i + 1);
                        f->st = O_COLON;
                    }
                return true;
            }
            case O_COLON:
                if (b != ':')
                    return false;
                if (s->depth > MAX_DEPTH)
                    return false;
                f->st = O_WAITVAL;
                push_val(s, any ? &any_node : n->props[f->idx - 1]);
                return true;
            case O_VALUE:
                if (b == '}' && (any || rest_optional(n, f->idx))) {
                    child_done(s);
                    return true;
                }
                if (b == ',' && (any || key_cands(n, f->idx))) {
                    f->st = O_COMMA;
                    return true;
                }
                return false;
            default:
                return false;
            }
        }
        default:
            return false;
        }
    again:;
    }
}

/* ------------------------------------------------------------------------ */
/* Cost to close                                                             */

/* Bytes of the required properties from idx on, each with its comma
 * (first: whether the first one needs none). */
static int req_rest(const node *n, int idx, bool first)
{
    int c = 0;

    for (int i = idx; i < n->n_props; i++)
        if (n->required >> i & 1) {
            c += (first ? 0 : 1) + n->key_len[i] + 1 + n->props[i]->min_len;
            first = false;
        }
    return c;
}

static int min_close(const jstate *s)
{
    int c = 0;

    for (int d = s->depth - 1; d >= 0; d--) {
        const frame *f = &s->f[d];
        const node *n = f->n;

        switch (f->type) {
        case F_VAL: c += n->min_len; break;
        case F_LIT: {
            int best = 1 << 20;

            for (int i = 0; i < n->n_lits; i++)
                if ((f->cand >> i & 1) && n->lit_len[i] - f->pos < best)
                    best = n->lit_len[i] - f->pos;
            c += best;
            break;
        }
        case F_STR:
            c += 1 + (f->st == S_ESC ? 1 : f->st == S_HEX || f->st == S_UTF8
                                               ? f->k : 0);
            break;
        case F_NUM:
            c += f->st == N_ZERO || f->st == N_INT || f->st == N_FRAC ||
                 f->st == N_EXP ? 0 : 1;
            break;
        case F_ARR: c += 1 + (f->st == O_COMMA ? n->items->min_len : 0); break;
        case F_ANYOBJ:
            c += f->st == O_WAITKEY || f->st == O_COLON ? 3
                 : f->st == O_COMMA ? 5 : 1;
            break;
        case F_OBJ:
            switch (f->st) {
            case O_START: c += 1 + req_rest(n, f->idx, true); break;
            case O_COMMA: {
                int best = 1 << 20;

                for (int i = f->idx; i < n->n_props; i++) {
                    int k = n->key_len[i] + 1 + n->props[i]->min_len +
                            req_rest(n, i + 1, false);
                    best = k < best ? k : best;
                    if (n->required >> i & 1)
                        break;
                }
                c += 1 + best;
                break;
            }
            case O_KEY: {
                int best = 1 << 20;

                for (int i = 0; i < n->n_props; i++)
                    if (f->cand >> i & 1) {
                        int k = n->key_len[i] - f->pos + 1 +
                                n->props[i]->min_len +
                                req_rest(n, i + 1, false);
                        best = k < best ? k : best;
                    }
                c += 1 + best;
                break;
            }
            case O_COLON:
                c += 1 + 1 + n->props[f->idx - 1]->min_len +
                     req_rest(n, f->idx, false);
                break;
            default: /* O_WAITVAL, O_VALUE */
                c += 1 + req_rest(n, f->idx, false);
                break;
            }
            break;
        default: break;
        }
    }
    return c;
}

/* ------------------------------------------------------------------------ */
/* Vocabulary trie                                                           */

typedef struct tnode {
    int32_t child;        /* first child, -1 none */
    int32_t next;         /* next sibling, -1 none */
    int32_t token;        /* token ending here, -1 none (first one wins) */
    int32_t extra;        /* more tokens with the same bytes: index in dup */
    int32_t parent;
    unsigned char byte;
} tnode;

struct eng_vocab_bytes {
    tnode *t;
    int n, cap;
    int32_t *dup;         /* (n_dup * 2): token, next dup index or -1 */
    int32_t *tok_node;    /* (vocab) trie node of each token, -1 none */
    int n_dup;
    int vocab, max_len;
    int32_t eos;
};

static int trie_child(eng_vocab_bytes *v, int at, unsigned char b)
{
    int c;

    for (c = v->t[at].child; c >= 0; c = v->t[c].next)
        if (v->t[c].byte == b)
            return c;
    if (v->n == v->cap) {
        int cap = v->cap * 2;
        tnode *t = realloc(v->t, (size_t)cap * sizeof(*t));

        if (!t)
            return -1;
        v->t = t;
        v->cap = cap;
    }
    c = v->n++;
    v->t[c] = (tnode){ -1, v->t[at].child, -1, -1, at, b };
    v->t[at].child = c;
    return c;
}

int eng_vocab_bytes_new(const eng_tokenizer *t, eng_vocab_bytes **ret)
{
    eng_vocab_bytes *v = calloc(1, sizeof(*v));
    int V = eng_tokenizer_vocab_size(t);

    if (!v)
        return -ENOMEM;
    v->cap = 1024;
    v->t = malloc((size_t)v->cap * sizeof(*v->t));
    v->dup = malloc((size_t)V * 2 * sizeof(*v->dup));
    v->tok_node = malloc((size_t)V * sizeof(*v->tok_node));
    if (!v->t || !v->dup || !v->tok_node)
        goto oom;
    v->t[0] = (tnode){ -1, -1, -1, -1, -1, 0 };
    v->n = 1;
    v->vocab = V;
    v->eos = eng_tokenizer_eos(t);
    /* pieces as they read mid-text: after an ordinary token (after BOS or
     * nothing, SentencePiece drops a leading space) */
    int32_t prev = 0;
    while (prev < V - 1 && (prev == v->eos || prev == eng_tokenizer_bos(t)))
        prev++;
    for (int32_t id = 0; id < V; id++) {
        const char *p;
        int len = eng_tokenizer_piece(t, prev, id, &p), at = 0;

        v->tok_node[id] = -1;
        if (len <= 0 || id == v->eos || id == eng_tokenizer_bos(t))
            continue;
        for (int i = 0; i < len && at >= 0; i++)
            at = trie_child(v, at, (unsigned char)p[i]);
        if (at < 0)
            goto oom;
        v->tok_node[id] = at;
        if (v->t[at].token < 0) {
            v->t[at].token = id;
        } else {
            v->dup[v->n_dup * 2] = id;
            v->dup[v->n_dup * 2 + 1] = v->t[at].extra;
            v->t[at].extra = v->n_dup++;
        }
        v->max_len = len > v->max_len ? len : v->max_len;
    }
    *ret = v;
    return 0;
oom:
    eng_vocab_bytes_free(v);
    return -ENOMEM;
}

void eng_vocab_bytes_free(eng_vocab_bytes *v)
{
    if (!v)
        return;
    free(v->t);
    free(v->dup);
    free(v->tok_node);
    free(v);
}

/* ------------------------------------------------------------------------ */
/* Generation-side API                                                       */

int eng_constrain_new(const eng_json_schema *s, const eng_vocab_bytes *v,
                      int ws, eng_constrain **ret)
{
    eng_constrain *c;

    if (!s || !v || !ret)
        return -EINVAL;
    if (!(c = calloc(1, sizeof(*c))))
        return -ENOMEM;
    c->walk = malloc((size_t)(v->max_len + 2) * sizeof(*c->walk));
    if (!c->walk) {
        free(c);
        return -ENOMEM;
    }
    c->s = s;
    c->v = v;
    c->ws = ws;
    push_val(&c->st, s->root);
    *ret = c;
    return 0;
}

void eng_constrain_free(eng_constrain *c)
{
    if (!c)
        return;
    free(c->walk);
    free(c);
}

bool eng_constrain_done(const eng_constrain *c)
{
    return c->st.done;
}

bool eng_constrain_feed(eng_constrain *c, const char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!feed_byte(&c->st, (unsigned char)bytes[i], c->ws))
            return false;
    return true;
}

static void copy_state(jstate *dst, const jstate *src)
{
    dst->depth = src->depth;
    dst->done = src->done;
    memcpy(dst->f, src->f, (size_t)src->depth * sizeof(frame));
}

/* Marks allowed tokens (allow[id] = 1) by walking the trie. */
static int walk(eng_constrain *c, uint8_t *allow, int closing)
{
    const eng_vocab_bytes *v = c->v;
    int32_t stack[1024];
    int depth_of[1024], sp = 0, count = 0;

    copy_state(&c->walk[0], &c->st);
    for (int ch = v->t[0].child; ch >= 0 && sp < 1024; ch = v->t[ch].next)
        stack[sp] = ch, depth_of[sp++] = 1;
    while (sp > 0) {
        int at = stack[--sp], d = depth_of[sp];
        jstate *js = &c->walk[d];

        copy_state(js, &c->walk[d - 1]);
        if (!feed_byte(js, v->t[at].byte, c->ws))
            continue;
        if (v->t[at].token >= 0 &&
            (js->done || closing < 0 || min_close(js) <= closing)) {
            allow[v->t[at].token] = 1;
            count++;
            for (int e = v->t[at].extra; e >= 0; e = v->dup[e * 2 + 1]) {
                allow[v->dup[e * 2]] = 1;
                count++;
            }
        }
        for (int ch = v->t[at].child; ch >= 0 && sp < 1024;
             ch = v->t[ch].next)
            stack[sp] = ch, depth_of[sp++] = d + 1;
    }
    return count;
}

int eng_constrain_mask(eng_constrain *c, float *logits, int n_logits,
                       int remaining)
{
    uint8_t *allow = calloc((size_t)(n_logits > c->v->vocab ? n_logits
                                                             : c->v->vocab), 1);
    int count = 0, close;

    if (!allow)
        return -ENOMEM;
    if (c->st.done) {
        if (c->v->eos >= 0 && c->v->eos < n_logits) {
            allow[c->v->eos] = 1;
            count = 1;
        }
    } else {
        /* a token is allowed if the value can still be closed in the
         * tokens left after it (one byte each at worst) */
        close = min_close(&c->st);
        count = walk(c, allow, remaining > 0 && remaining <= close + 64
                                   ? remaining - 1 : -1);
    }
    for (int i = 0; i < n_logits; i++)
        if (!allow[i])
            logits[i] = -INFINITY;
    free(allow);
    return count;
}

int eng_constrain_accept(eng_constrain *c, int32_t id)
{
    const eng_vocab_bytes *v = c->v;
    unsigned char bytes[1024];
    jstate save;
    int n = 0;

    if (c->st.done)
        return id == v->eos ? 0 : -EINVAL;
    if (id < 0 || id >= v->vocab || v->tok_node[id] < 0)
        return -EINVAL;
    for (int at = v->tok_node[id]; at > 0 && n < 1024; at = v->t[at].parent)
        bytes[n++] = v->t[at].byte;
    copy_state(&save, &c->st);
    while (n > 0)
        if (!feed_byte(&c->st, bytes[--n], c->ws)) {
            copy_state(&c->st, &save);
            return -EINVAL;
        }
    return 0;
}
