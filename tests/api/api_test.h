/* SPDX-License-Identifier: MIT */
/*
 * api_test.h - helpers for the api unit tests: a temporary data dir with a
 * store and the embedded model, a one-call request runner that parses the
 * JSON answer, and CHECK macros (tests/check.h and the comparisons here)
 * that count failures instead of aborting.
 * No sockets: requests go straight to api_dispatch().
 */
#ifndef TUNA_TEST_API_H
#define TUNA_TEST_API_H

#include "api/api.h"
#include "tests/check.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_STR(a, b)                                                       \
    do {                                                                      \
        const char *a_ = (a), *b_ = (b);                                      \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s == \"%s\" (got \"%s\")\n", \
                    __FILE__, __LINE__, #a, b_ ? b_ : "(null)",               \
                    a_ ? a_ : "(null)");                                      \
            failures++;                                                     \
        }                                                                     \
    } while (0)

#define CHECK_INT(a, b)                                                      \
    do {                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_) {                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %lld (got %lld)\n",  \
                    __FILE__, __LINE__, #a, b_, a_);                         \
            failures++;                                                    \
        }                                                                    \
    } while (0)

typedef struct t_env {
    char dir[256];
    store *db;
    api_registry *reg;
    api_ctx ctx;
    int notified;
} t_env;

static inline void t_notify(void *user)
{
    ((t_env *)user)->notified++;
}

static inline void t_env_init(t_env *e)
{
    char err[256] = "", path[512];
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/tuna-api-test-XXXXXX");
    if (!mkdtemp(e->dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(path, sizeof(path), "%s/tuna.db", e->dir);
    if (store_open(path, &e->db, err, sizeof(err)) < 0) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(2);
    }
    const char *root = getenv("TUNA_SOURCE_ROOT");
    snprintf(path, sizeof(path), "%s/models/stories260K", root ? root : ".");
    if (api_registry_new(path, NULL, &e->reg, err, sizeof(err)) < 0) {
        fprintf(stderr, "api_registry_new: %s\n", err);
        exit(2);
    }
    e->ctx.db = e->db;
    e->ctx.models = e->reg;
    e->ctx.data_dir = e->dir;
    api_limits_default(&e->ctx.limits);
    e->ctx.cors_origins = "*";
    e->ctx.notify_jobs = t_notify;
    e->ctx.notify_user = e;
    e->ctx.gen_threads = 1;
}

static inline void t_env_done(t_env *e)
{
    char cmd[512];
    api_registry_free(e->reg);
    store_close(e->db);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", e->dir);
}

/* One answered request: status, parsed body (NULL when not JSON). */
typedef struct t_resp {
    api_response r;
    cJSON *json;
} t_resp;

static inline void t_resp_done(t_resp *t)
{
    cJSON_Delete(t->json);
    api_response_done(&t->r);
    memset(t, 0, sizeof(*t));
}

static inline int t_call_req(t_env *e, const api_request *req, t_resp *out)
{
    memset(out, 0, sizeof(*out));
    api_dispatch(&e->ctx, req, &out->r);
    if (out->r.body)
        out->json = cJSON_ParseWithLength(out->r.body, out->r.body_len);
    if (out->r.body && !out->json && out->r.status != 204) {
        fprintf(stderr, "non-JSON body: %.*s\n", (int)out->r.body_len,
                out->r.body);
        failures++;
    }
    return out->r.status;
}

/* Authorization header (NULL: none), method, path (with optional ?query),
 * content type, body (NUL-terminated). */
static inline int t_call_as(t_env *e, const char *authz, const char *method,
                            const char *path_query, const char *ct,
                            const char *body, t_resp *out)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s", path_query);
    char *q = strchr(path, '?');
    if (q)
        *q++ = '\0';
    api_request req = {
        .method = method, .path = path, .query = q, .content_type = ct,
        .body = body, .body_len = body ? strlen(body) : 0,
        .authorization = authz,
    };
    return t_call_req(e, &req, out);
}

/* The same without an Authorization header. */
static inline int t_call(t_env *e, const char *method, const char *path_query,
                  const char *ct, const char *body, t_resp *out)
{
    return t_call_as(e, NULL, method, path_query, ct, body, out);
}

static inline const char *t_str(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static inline double t_num(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : -12345.0;
}

static inline const char *t_resp_header(const api_response *r,
                                        const char *name)
{
    for (int i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->header_names[i], name) == 0)
            return r->header_values[i];
    return NULL;
}

static inline const char *t_header(const t_resp *t, const char *name)
{
    return t_resp_header(&t->r, name);
}

/* Checks an error answer: status, code, and (when given) line and field. */
#define CHECK_ERROR(t, status_, code_, line_, field_)                         \
    do {                                                                      \
        const cJSON *err_ = cJSON_GetObjectItemCaseSensitive((t)->json,       \
                                                             "error");        \
        CHECK_INT((t)->r.status, status_);                                    \
        CHECK(cJSON_IsObject(err_));                                          \
        if ((code_) != NULL)                                                  \
            CHECK_STR(t_str(err_, "code"), (const char *)(code_));            \
        CHECK(t_str(err_, "message") != NULL);                                \
        if ((line_) >= 0)                                                     \
            CHECK_INT(t_num(err_, "line"), line_);                            \
        if ((field_) != NULL)                                                 \
            CHECK_STR(t_str(err_, "field"), (const char *)(field_));          \
    } while (0)

/* One request (t_call's arguments) whose answer is that error. */
#define CHECK_CALL_ERROR(e, method, path, ct, body, status_, code_, line_,    \
                         field_)                                              \
    do {                                                                      \
        t_resp t_;                                                            \
        t_call(e, method, path, ct, body, &t_);                               \
        CHECK_ERROR(&t_, status_, code_, line_, field_);                      \
        t_resp_done(&t_);                                                     \
    } while (0)

#endif
