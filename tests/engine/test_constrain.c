/* SPDX-License-Identifier: MIT */
/*
 * test_constrain.c - JSON-schema constrained decoding (engine/constrain.c).
 *
 *  - the automaton on byte strings: valid documents accepted (and complete),
 *    invalid ones rejected at the right byte;
 *  - the Lamini-style shorthand;
 *  - 100 seeds of temperature-1 sampling on stories260K (512 tokens: JSON is
 *    spelled mostly through byte-fallback tokens) under a nested schema and
 *    in json_object mode, with a tight max_tokens: every output parses
 *    (cJSON) and validates against the schema (a small validator below).
 */
#include "engine/batch.h"
#include "engine/constrain.h"
#include "tests/engine/test_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SCHEMA[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"answer\":{\"type\":\"string\"},"
    "\"score\":{\"type\":\"integer\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\","
    "\"enum\":[\"a\",\"bc\"]}},"
    "\"ok\":{\"type\":\"boolean\"},"
    "\"x\":{\"type\":\"number\"},"
    "\"n\":{\"type\":\"null\"},"
    "\"inner\":{\"type\":\"object\",\"properties\":{\"k\":{\"enum\":"
    "[\"red\",\"green\",3]}},\"required\":[\"k\"]}},"
    "\"required\":[\"answer\",\"score\",\"ok\",\"inner\"]}";

/* ---- a small validator --------------------------------------------------- */

static bool validate(const cJSON *v, const cJSON *s)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(s, "enum"), *x;
    const char *ty = cJSON_IsString(t) ? t->valuestring : NULL;

    if (e) {
        cJSON_ArrayForEach(x, e)
            if (cJSON_Compare(v, x, true))
                return true;
        return false;
    }
    if (!ty)
        return true;
    if (!strcmp(ty, "string"))
        return cJSON_IsString(v);
    if (!strcmp(ty, "integer"))
        return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(ty, "number"))
        return cJSON_IsNumber(v);
    if (!strcmp(ty, "boolean"))
        return cJSON_IsBool(v);
    if (!strcmp(ty, "null"))
        return cJSON_IsNull(v);
    if (!strcmp(ty, "array")) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(s, "items");

        if (!cJSON_IsArray(v))
            return false;
        cJSON_ArrayForEach(x, v)
            if (it && !validate(x, it))
                return false;
        return true;
    }
    if (!strcmp(ty, "object")) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");

        if (!cJSON_IsObject(v))
            return false;
        cJSON_ArrayForEach(x, req)
            if (!cJSON_GetObjectItemCaseSensitive(v, x->valuestring))
                return false;
        cJSON_ArrayForEach(x, v) {
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(props,
                                                               x->string);
            if (props && (!ps || !validate(x, ps)))
                return false;
        }
        return true;
    }
    return false;
}

/* ---- automaton unit tests ------------------------------------------------- */

static eng_vocab_bytes *vb;

static int feed(const char *schema, const char *doc, int ws, bool *done)
{
    eng_json_schema *s = NULL;
    eng_constrain *c = NULL;
    int at = -1;

    if (eng_json_schema_compile(schema, &s, NULL, 0) ||
        eng_constrain_new(s, vb, ws, &c))
        return -2;
    for (size_t i = 0; doc[i]; i++)
        if (!eng_constrain_feed(c, doc + i, 1)) {
            at = (int)i;
            break;
        }
    *done = eng_constrain_done(c);
    eng_constrain_free(c);
    eng_json_schema_free(s);
    return at;
}

static void test_automaton(void)
{
    static const struct { const char *schema, *doc; int ws, bad_at; bool done; }
    cases[] = {
        { SCHEMA, "{\"answer\":\"hi \\\"x\\\" \\u00e9 \xc3\xa9\",\"score\":-12,"
          "\"tags\":[\"a\",\"bc\"],\"ok\":true,\"x\":1.5e-3,\"n\":null,"
          "\"inner\":{\"k\":3}}", 0, -1, true },
        { SCHEMA, "{\"answer\":\"\",\"score\":0,\"ok\":false,"
          "\"inner\":{\"k\":\"red\"}}", 0, -1, true },
        { SCHEMA, "{\"score\":1", 0, 2, false },          /* answer first */
        { SCHEMA, "{\"answer\":\"a\",\"score\":1.5", 0, 23, false },
        { SCHEMA, "{\"answer\":\"a\",\"score\":01", 0, 23, false },
        { SCHEMA, "{\"answer\":\"a\",\"score\":1}", 0, 23, false },
        { SCHEMA, "{\"answer\":\"a\x01\"", 0, 12, false },
        { SCHEMA, "{\"answer\":\"\xc3\x28\"", 0, 12, false }, /* bad UTF-8 */
        { SCHEMA, "{ \"answer\"", 0, 1, false },         /* no whitespace */
        { SCHEMA, "{\"answer\": \"a\"", 1, -1, false },  /* minimal */
        { SCHEMA, "{\"answer\":\"a\",\"score\":1,\"ok\":true,\"inner\":"
          "{\"k\":\"blue\"}}", 0, 48, false },
        { NULL, "{\"a\":[1,{\"b\":null},\"x\",true,-0.5],\"c\":{}}", 0, -1,
          true },
        { NULL, "[1]", 0, 0, false },                    /* an object */
        { "{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}", "[1,2,3]",
          0, -1, true },
        { "{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}", "[1,]", 0,
          3, false },
        { "{\"enum\":[\"x\",\"xy\"]}", "\"xy\"", 0, -1, true },
        { "{\"type\":\"boolean\"}", "tru", 0, -1, false },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool done = false;
        int at = feed(cases[i].schema, cases[i].doc, cases[i].ws, &done);

        if (at != cases[i].bad_at || done != cases[i].done)
            fprintf(stderr, "case %zu: rejected at %d (want %d), done %d\n",
                    i, at, cases[i].bad_at, done);
        CHECK(at == cases[i].bad_at && done == cases[i].done);
    }
    /* schema errors */
    {
        eng_json_schema *s = NULL;
        char err[160];

        CHECK(eng_json_schema_compile("{\"$ref\":\"#/x\"}", &s, err,
                                      sizeof(err)) == -EINVAL);
        CHECK(strstr(err, "$ref") != NULL);
        CHECK(eng_json_schema_compile("{\"type\":\"date\"}", &s, err,
                                      sizeof(err)) == -EINVAL);
        CHECK(eng_json_schema_compile("{", &s, err, sizeof(err)) == -EINVAL);
    }
}

static void test_shorthand(void)
{
    char *schema = NULL, err[160];
    cJSON *j, *want;

    CHECK(eng_json_shorthand_to_schema(
              "{\"answer\":\"str\",\"score\":\"int\",\"tags\":[\"str\"],"
              "\"meta\":{\"ok\":\"bool\",\"p\":\"float\"}}", &schema, err,
              sizeof(err)) == 0);
    j = cJSON_Parse(schema);
    want = cJSON_Parse(
        "{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"},"
        "\"score\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\","
        "\"items\":{\"type\":\"string\"}},\"meta\":{\"type\":\"object\","
        "\"properties\":{\"ok\":{\"type\":\"boolean\"},\"p\":{\"type\":"
        "\"number\"}},\"required\":[\"ok\",\"p\"]}},\"required\":[\"answer\","
        "\"score\",\"tags\",\"meta\"]}");
    CHECK(j && cJSON_Compare(j, want, true));
    cJSON_Delete(j);
    cJSON_Delete(want);
    free(schema);
    CHECK(eng_json_shorthand_to_schema("{\"a\":\"date\"}", &schema, err,
                                       sizeof(err)) == -EINVAL);
    CHECK(strstr(err, "date") != NULL);
    CHECK(eng_json_shorthand_to_schema("[1]", &schema, err, sizeof(err)) ==
          -EINVAL);
}

/* ---- sampling ------------------------------------------------------------- */

static uint64_t rs;

static double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (rs >> 11) * (1.0 / 9007199254740992.0);
}

static int32_t sample_t1(const float *l, int V)
{
    double mx = -INFINITY, sum = 0, r, acc = 0;

    for (int i = 0; i < V; i++)
        mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < V; i++)
        sum += isinf(l[i]) ? 0 : exp(l[i] - mx);
    r = urand() * sum;
    for (int i = 0; i < V; i++) {
        if (isinf(l[i]))
            continue;
        acc += exp(l[i] - mx);
        if (r < acc)
            return i;
    }
    for (int i = V - 1; i >= 0; i--)
        if (!isinf(l[i]))
            return i;
    return 0;
}

/* Generates under schema (NULL: json_object) with seed; returns the text
 * (malloc'd) or NULL when it could not finish within max_tokens. */
static char *gen_json(eng_model *m, eng_tokenizer *t, const char *schema,
                      uint64_t seed, int max_tokens, int *ret_tokens)
{
    int V = eng_model_config(m)->vocab_size, n_ids = 0;
    int32_t ids[64], prev;
    eng_json_schema *s = NULL;
    eng_constrain *c = NULL;
    eng_session *ss = NULL;
    eng_batch *b = NULL;
    float *lg = malloc((size_t)V * sizeof(float));
    char *out = calloc(1, 8192);
    size_t len = 0;
    bool ok = false;
    int k;

    rs = seed * 0x9E3779B97F4A7C15ull + 1;
    eng_tokenizer_encode(t, "Output JSON:", 12, true, false, ids, 64, &n_ids);
    CHECK(eng_json_schema_compile(schema, &s, NULL, 0) == 0);
    CHECK(eng_constrain_new(s, vb, ENG_JSON_WS_NONE, &c) == 0);
    CHECK(eng_session_new(m, n_ids + max_tokens + 1, 1, &ss) == 0);
    CHECK(eng_batch_new(m, 1, &b) == 0);
    eng_batch_item it = { ss, ids, n_ids };
    CHECK(eng_batch_eval(b, &it, 1) == 0);
    prev = ids[n_ids - 1];
    for (k = 0; k < max_tokens; k++) {
        const char *p;
        int32_t id;
        int pl;

        memcpy(lg, eng_session_logits(ss), (size_t)V * sizeof(float));
        if (eng_constrain_mask(c, lg, V, max_tokens - k) <= 0)
            break;
        id = sample_t1(lg, V);
        CHECK(eng_constrain_accept(c, id) == 0);
        if (eng_constrain_done(c) && id == eng_tokenizer_eos(t))
            break;
        pl = eng_tokenizer_piece(t, prev, id, &p);
        if (len + pl < 8191)
            memcpy(out + len, p, (size_t)pl), len += pl;
        if (eng_constrain_done(c)) {
            ok = true;
            k++;
            break;
        }
        it = (eng_batch_item){ ss, &id, 1 };
        CHECK(eng_batch_eval(b, &it, 1) == 0);
        prev = id;
    }
    *ret_tokens = k;
    eng_batch_free(b);
    eng_session_free(ss);
    eng_constrain_free(c);
    eng_json_schema_free(s);
    free(lg);
    if (!ok) {
        fprintf(stderr, "seed %llu: unfinished after %d tokens: %s\n",
                (unsigned long long)seed, k, out);
        free(out);
        return NULL;
    }
    return out;
}

static void test_seeds(eng_model *m, eng_tokenizer *t, const char *schema,
                       const char *name, int max_tokens)
{
    cJSON *sj = schema ? cJSON_Parse(schema) : NULL;
    int good = 0, total_tok = 0;

    for (uint64_t seed = 1; seed <= 100; seed++) {
        int n = 0;
        char *text = gen_json(m, t, schema, seed, max_tokens, &n);
        cJSON *v = text ? cJSON_Parse(text) : NULL;
        bool valid = v && (sj ? validate(v, sj) : cJSON_IsObject(v));

        if (!valid && text)
            fprintf(stderr, "%s seed %llu: invalid: %s\n", name,
                    (unsigned long long)seed, text);
        if (seed == 1 && text)
            printf("%s seed 1 (%d tokens): %s\n", name, n, text);
        good += valid;
        total_tok += n;
        cJSON_Delete(v);
        free(text);
    }
    printf("%s: %d/100 outputs parse and validate (%.1f tokens on average, "
           "max_tokens %d)\n", name, good, total_tok / 100.0, max_tokens);
    CHECK(good == 100);
    cJSON_Delete(sj);
}

int main(void)
{
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;

    eng_set_threads(1);
    if (load_stories260K(&m, &t))
        return 1;
    CHECK(eng_vocab_bytes_new(t, &vb) == 0);
    test_automaton();
    test_shorthand();
    test_seeds(m, t, SCHEMA, "schema", 160);
    test_seeds(m, t, NULL, "json_object", 60);
    eng_vocab_bytes_free(vb);
    eng_tokenizer_unref(t);
    eng_model_unref(m);
    return test_done("constrain");
}
