/* SPDX-License-Identifier: MIT */
/*
 * fuzz_api.h - what the api fuzz targets share, on top of fuzz.h:
 *
 *  - a service environment for api_dispatch(): a data dir, a store, the
 *    model registry with the embedded stories260K, generation admission
 *    (api_serve) and the runtime state (api_runtime; no API keys, so every
 *    route is open as on a fresh install), with limits tightened so
 *    one input stays cheap (few generated tokens, few prompts, small
 *    bodies). It is rebuilt from scratch every FZ_ENV_RESET inputs so the
 *    database and the data dir stay small however long a run lasts;
 *  - fz_check_response(), the invariants of every api answer (with
 *    TUNA_FUZZ_VERBOSE set it also prints each status and body start, to see
 *    what a corpus reaches).
 */
#ifndef TUNA_TESTS_FUZZ_API_H
#define TUNA_TESTS_FUZZ_API_H

#include "tests/fuzz/fuzz.h"

#include "api/api.h"

#include <cjson/cJSON.h>

#define FZ_ENV_RESET 500

/* ------------------------------------------------------------------------ */
/* Service environment for api_dispatch()                                    */

typedef struct fz_env {
    char dir[300];
    store *db;
    api_registry *reg;
    api_serve *serve;
    api_runtime *rt;
    api_ctx ctx;
    unsigned uses;
} fz_env;

static fz_env fz_the_env;

static inline void fz_env_close(fz_env *e)
{
    if (!e->db)
        return;
    api_serve_stop(e->serve);
    api_serve_free(e->serve);
    api_runtime_free(e->rt);
    api_registry_free(e->reg);
    store_close(e->db);
    fz_rm_rf(e->dir);
    memset(e, 0, sizeof(*e));
}

static inline void fz_env_atexit(void)
{
    fz_env_close(&fz_the_env);
}

static inline void fz_notify(void *user)
{
    (void)user;
}

/* The shared environment, (re)built when needed. */
static inline api_ctx *fz_env_get(void)
{
    fz_env *e = &fz_the_env;
    static bool registered;
    if (e->db && ++e->uses >= FZ_ENV_RESET)
        fz_env_close(e);
    if (e->db)
        return &e->ctx;
    char path[600], err[256] = "";
    snprintf(e->dir, sizeof(e->dir), "%s/env-XXXXXX", fz_dir());
    if (!mkdtemp(e->dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    snprintf(path, sizeof(path), "%s/tuna.db", e->dir);
    if (store_open(path, &e->db, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: store_open: %s\n", err);
        abort();
    }
    snprintf(path, sizeof(path), "%s/models/stories260K", fz_source_root());
    if (api_registry_new(path, NULL, &e->reg, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: api_registry_new: %s (set TUNA_SOURCE_ROOT)\n",
                err);
        abort();
    }
    api_serve_limits sl;
    api_serve_limits_default(&sl);
    sl.request_timeout_s = 30;
    if (api_serve_new(&sl, &e->serve) < 0 || api_runtime_new(&e->rt) < 0) {
        fprintf(stderr, "fuzz: api_serve_new/api_runtime_new failed\n");
        abort();
    }
    e->ctx.serve = e->serve;
    e->ctx.runtime = e->rt;
    e->ctx.db = e->db;
    e->ctx.models = e->reg;
    e->ctx.data_dir = e->dir;
    api_limits_default(&e->ctx.limits);
    /* Keep one input cheap: the engine work of /generate and the token
     * counting of uploads are bounded by these. */
    e->ctx.limits.max_body_bytes = 1 << 20;
    e->ctx.limits.max_rows = 2000;
    e->ctx.limits.max_gen_tokens = 8;
    e->ctx.limits.max_prompts = 3;
    e->ctx.cors_origins = "https://a.example, https://b.example";
    e->ctx.notify_jobs = fz_notify;
    e->ctx.notify_user = e;
    e->ctx.gen_threads = 1;
    if (!registered) {
        atexit(fz_env_atexit);
        registered = true;
    }
    return &e->ctx;
}

/* ------------------------------------------------------------------------ */
/* Response invariants                                                       */

/* Every answer has a sane status; every JSON body parses; every JSON error
 * is {"error":{"message":string, "code":string | "type":string, ...}} (the
 * native shape has a code, the OpenAI-compatible routes a type). Bodies of
 * other types (Prometheus text, CSV, tar, event streams) are only bounded.
 * Streams are pulled a few times and freed by api_response_done(). */
static inline void fz_check_response(api_response *r)
{
    if (getenv("TUNA_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz: %d %s %.*s\n", r->status,
                r->content_type ? r->content_type : "-",
                (int)(r->body_len > 160 ? 160 : r->body_len),
                r->body ? r->body : "");
    FZ_ASSERT(r->status >= 100 && r->status <= 599);
    FZ_ASSERT(r->n_headers >= 0 && r->n_headers <= API_MAX_HEADERS);
    for (int i = 0; i < r->n_headers; i++) {
        FZ_ASSERT(r->header_names[i] && r->header_values[i]);
        /* A header value must never carry a line break (response
         * splitting). */
        FZ_ASSERT(!strpbrk(r->header_values[i], "\r\n"));
    }
    bool json = !r->content_type ||
                !strncmp(r->content_type, "application/json", 16);
    if (r->status >= 400)
        FZ_ASSERT(json && r->body);
    if (r->body && json) {
        cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
        FZ_ASSERT(j != NULL);
        if (r->status >= 400) {
            const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
            FZ_ASSERT(cJSON_IsObject(err));
            FZ_ASSERT(cJSON_IsString(
                cJSON_GetObjectItemCaseSensitive(err, "message")));
            FZ_ASSERT(
                cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "code")) ||
                cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "type")));
        }
        cJSON_Delete(j);
    }
    if (r->stream.read) {
        char buf[4096];
        for (int i = 0; i < 4; i++) {
            ssize_t n = r->stream.read(r->stream.ctx, buf, sizeof(buf));
            FZ_ASSERT(n >= -1 && n <= (ssize_t)sizeof(buf));
            if (n < 0)
                break;
        }
    }
}

#endif
