/* SPDX-License-Identifier: MIT */
/*
 * constraint.c - structured output (see constraint.h): response_format to
 * a compiled JSON schema, plus the tokenizer's vocabulary trie.
 *
 * Vocabulary tries are cached per tokenizer (a reference is kept, so the
 * pointer cannot be reused by another tokenizer); a daemon serves a
 * handful of tokenizers, so the cache is a small array that only grows.
 */
#include "api/constraint.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct api_constraint {
    eng_json_schema *schema;
    const eng_vocab_bytes *vocab;   /* cached, never freed */
};

#define VOCAB_CACHE 16

static struct {
    pthread_mutex_t mu;
    eng_tokenizer *tok[VOCAB_CACHE];
    eng_vocab_bytes *vb[VOCAB_CACHE];
    int n;
} cache = { PTHREAD_MUTEX_INITIALIZER, { 0 }, { 0 }, 0 };

static int vocab_for(const eng_tokenizer *t, const eng_vocab_bytes **ret)
{
    int rc = 0;
    pthread_mutex_lock(&cache.mu);
    for (int i = 0; i < cache.n; i++)
        if (cache.tok[i] == t) {
            *ret = cache.vb[i];
            pthread_mutex_unlock(&cache.mu);
            return 0;
        }
    eng_vocab_bytes *v = NULL;
    /* built under the lock: two requests for a new tokenizer build it once */
    if ((rc = eng_vocab_bytes_new(t, &v)) == 0) {
        if (cache.n < VOCAB_CACHE) {
            cache.tok[cache.n] = eng_tokenizer_ref((eng_tokenizer *)t);
            cache.vb[cache.n++] = v;
        } else {
            /* full (unusual): refuse rather than evict one in use */
            rc = -ENOMEM;
            eng_vocab_bytes_free(v);
        }
    }
    if (rc == 0)
        *ret = v;
    pthread_mutex_unlock(&cache.mu);
    return rc;
}

int api_constraint_from_schema(const char *schema, const eng_tokenizer *t,
                               api_constraint **ret, char *err,
                               size_t errlen)
{
    api_constraint *c = calloc(1, sizeof(*c));
    int rc;
    if (!c)
        return -ENOMEM;
    if ((rc = eng_json_schema_compile(schema, &c->schema, err, errlen)) < 0 ||
        (rc = vocab_for(t, &c->vocab)) < 0) {
        if (rc == -ENOMEM && err && errlen)
            snprintf(err, errlen, "out of memory");
        api_constraint_free(c);
        return rc;
    }
    *ret = c;
    return 0;
}

int api_constraint_new(const cJSON *response_format, const eng_tokenizer *t,
                       api_constraint **ret, char *err, size_t errlen)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(response_format,
                                                         "type");
    char *text = NULL;
    int rc;
    if (!cJSON_IsString(type))
        return -EINVAL;
    if (!strcmp(type->valuestring, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(response_format,
                                                           "json_schema");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (s && cJSON_IsObject(s) && !(text = cJSON_PrintUnformatted(s)))
            return -ENOMEM;
        /* "schema": true or absent: any JSON object */
        if (s && cJSON_IsFalse(s)) {
            snprintf(err, errlen, "a schema of false admits no output");
            return -EINVAL;
        }
    } else if (strcmp(type->valuestring, "json_object") != 0) {
        return -EINVAL;
    }
    rc = api_constraint_from_schema(text, t, ret, err, errlen);
    free(text);
    return rc;
}

void api_constraint_free(api_constraint *c)
{
    if (!c)
        return;
    eng_json_schema_free(c->schema);
    free(c);
}

const eng_json_schema *api_constraint_schema(const api_constraint *c)
{
    return c->schema;
}

const eng_vocab_bytes *api_constraint_vocab(const api_constraint *c)
{
    return c->vocab;
}
