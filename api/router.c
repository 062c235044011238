/* SPDX-License-Identifier: MIT */
/*
 * router.c - the route table and api_dispatch().
 *
 * Every route is one row: method, pattern, handler, flags, query
 * parameters. Dispatch is generic and runs, in order:
 *   1. match the path against every pattern ({id} matches one segment);
 *      no pattern matches: 404; OPTIONS: CORS preflight 204 with the
 *      methods of the matching rows; no row for the method: 405 + Allow;
 *   2. 413 when the server saw a body over the limit;
 *   3. the {id} is checked against the route's id pattern (ds_<hex>,
 *      job_<hex>) before anything touches the disk or the database, so path
 *      traversal and junk ids are a plain 404;
 *   4. the query parameters are checked against the route's list (400
 *      naming an unknown one), unless API_QUERY_ANY;
 *   5. API_BODY_JSON routes get the body checked (Content-Type, UTF-8,
 *      JSON object) and parsed into c->json;
 *   6. the handler runs, and CORS headers are added to whatever it answered.
 */
#include "api/oai_serve.h" /* includes api-impl.h */
#include "api/api-impl.h"
#include "api/models-impl.h"
#include "api/ui.h"

#include <stdlib.h>
#include <string.h>

/* The fifth column lists the query parameters a route takes (NULL: none);
 * the router answers any other with a 400 naming it, so a typo never passes
 * silently. The OpenAI routes (/v1) are lenient, like OpenAI itself, since
 * the SDKs send parameters Tuna does not use (order, metadata[...]); so is
 * the dashboard. POST /jobs checks its own: its JSONL form takes every
 * hyperparameter. */
static const api_route routes[] = {
    { "GET", "/health", api_h_health, API_PUBLIC, NULL },
    { "POST", "/datasets", api_h_datasets_create,
      API_BODY_ANY | API_QUOTA_STORAGE, "name shared" },
    { "GET", "/datasets", api_h_datasets_list, 0, "limit" },
    { "GET", "/datasets/{id}", api_h_datasets_get, API_ID_DS, NULL },
    { "DELETE", "/datasets/{id}", api_h_datasets_delete, API_ID_DS, NULL },
    { "POST", "/jobs", api_h_jobs_create,
      API_BODY_ANY | API_QUOTA_JOB | API_QUOTA_STORAGE | API_QUERY_ANY, NULL },
    { "GET", "/jobs", api_h_jobs_list, 0, "status limit" },
    { "GET", "/jobs/{id}", api_h_jobs_get, API_ID_JOB, NULL },
    { "POST", "/jobs/{id}/cancel", api_h_jobs_cancel, API_ID_JOB, NULL },
    { "GET", "/jobs/{id}/events", api_h_jobs_events, API_ID_JOB,
      "after limit stream" },
    { "POST", "/jobs/{id}/pause", api_h_jobs_pause, API_ID_JOB, NULL },
    { "POST", "/jobs/{id}/resume", api_h_jobs_resume, API_ID_JOB, NULL },
    { "POST", "/jobs/{id}/stop", api_h_jobs_stop, API_ID_JOB, NULL },
    { "POST", "/jobs/{id}/priority", api_h_jobs_priority,
      API_ID_JOB | API_BODY_JSON, NULL },
    { "GET", "/jobs/{id}/checkpoints", api_h_jobs_checkpoints, API_ID_JOB,
      NULL },
    { "GET", "/jobs/{id}/metrics.csv", api_h_jobs_metrics_csv, API_ID_JOB,
      NULL },
    { "GET", "/jobs/{id}/report", api_h_jobs_report, API_ID_JOB, NULL },
    { "POST", "/generate", api_h_generate, API_BODY_JSON, NULL },
    /* OpenAI-compatible serving (oai_serve.c) */
    { "GET", "/v1/models", api_h_v1_models, API_QUERY_ANY, NULL },
    { "GET", "/v1/models/{id}", api_h_v1_model_get, API_QUERY_ANY, NULL },
    { "POST", "/v1/completions", api_h_v1_completions,
      API_BODY_JSON | API_QUERY_ANY, NULL },
    { "POST", "/v1/chat/completions", api_h_v1_chat,
      API_BODY_JSON | API_QUERY_ANY, NULL },
    { "POST", "/v1/load_lora_adapter", api_h_v1_load_lora,
      API_BODY_JSON | API_ADMIN | API_QUERY_ANY, NULL },
    { "POST", "/v1/unload_lora_adapter", api_h_v1_unload_lora,
      API_BODY_JSON | API_ADMIN | API_QUERY_ANY, NULL },
    { "GET", "/models", api_h_models_list, 0, NULL },
    /* models, tokenizers, adapters in and out (models.c, tokenize.c,
     * adapter_export.c, adapters.c) */
    { "POST", "/models/rescan", api_h_models_rescan, 0, NULL },
    { "POST", "/tokenize", api_h_tokenize, API_BODY_JSON, NULL },
    { "POST", "/detokenize", api_h_detokenize, API_BODY_JSON, NULL },
    { "POST", "/apply-template", api_h_apply_template, API_BODY_JSON, NULL },
    { "GET", "/jobs/{id}/adapter", api_h_jobs_adapter, API_ID_JOB,
      "format dtype" },
    { "POST", "/adapters", api_h_adapters_import, API_BODY_ANY,
      "name base_model" },
    { "DELETE", "/adapters/{id}", api_h_adapters_delete, 0, NULL },
    /* OpenAI's files and fine-tuning API (openai*.c) */
    { "POST", "/v1/files", api_h_oai_files_create,
      API_BODY_ANY | API_QUOTA_STORAGE | API_QUERY_ANY, NULL },
    { "GET", "/v1/files", api_h_oai_files_list, API_QUERY_ANY, NULL },
    { "GET", "/v1/files/{id}", api_h_oai_files_get,
      API_ID_DS | API_QUERY_ANY, NULL },
    { "DELETE", "/v1/files/{id}", api_h_oai_files_delete,
      API_ID_DS | API_QUERY_ANY, NULL },
    { "GET", "/v1/files/{id}/content", api_h_oai_files_content,
      API_ID_DS | API_QUERY_ANY, NULL },
    { "POST", "/v1/fine_tuning/jobs", api_h_oai_jobs_create,
      API_BODY_JSON | API_QUOTA_JOB | API_QUERY_ANY, NULL },
    { "GET", "/v1/fine_tuning/jobs", api_h_oai_jobs_list, API_QUERY_ANY,
      NULL },
    { "GET", "/v1/fine_tuning/jobs/{id}", api_h_oai_jobs_get,
      API_ID_JOB | API_QUERY_ANY, NULL },
    { "POST", "/v1/fine_tuning/jobs/{id}/cancel", api_h_oai_jobs_cancel,
      API_ID_JOB | API_QUERY_ANY, NULL },
    { "POST", "/v1/fine_tuning/jobs/{id}/pause", api_h_oai_jobs_pause,
      API_ID_JOB | API_QUERY_ANY, NULL },
    { "POST", "/v1/fine_tuning/jobs/{id}/resume", api_h_oai_jobs_resume,
      API_ID_JOB | API_QUERY_ANY, NULL },
    { "GET", "/v1/fine_tuning/jobs/{id}/events", api_h_oai_jobs_events,
      API_ID_JOB | API_QUERY_ANY, NULL },
    { "GET", "/v1/fine_tuning/jobs/{id}/checkpoints",
      api_h_oai_jobs_checkpoints, API_ID_JOB | API_QUERY_ANY, NULL },
    { "POST", "/datasets/{id}/share", api_h_datasets_share,
      API_ID_DS | API_BODY_JSON, NULL },
    { "POST", "/jobs/{id}/share", api_h_jobs_share, API_ID_JOB | API_BODY_JSON,
      NULL },
    { "GET", "/usage", api_h_usage, 0, NULL },
    { "GET", "/keys", api_h_keys_list, API_ADMIN, NULL },
    { "GET", "/metrics", api_h_metrics, API_ADMIN, NULL },
    /* the dashboard (ui.c): files built into the binary */
    { "GET", "/", api_h_ui, API_PUBLIC | API_QUERY_ANY, NULL },
    { "GET", "/ui", api_h_ui, API_PUBLIC | API_QUERY_ANY, NULL },
    { "GET", "/ui/{id}", api_h_ui, API_PUBLIC | API_QUERY_ANY, NULL },
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* Matches path against pattern; the {id} segment goes into id. */
static bool route_match(const char *pattern, const char *path, char *id,
                        size_t idlen)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (strncmp(p, "{id}", 4) == 0) {
            size_t n = strcspn(s, "/");
            if (n == 0)
                return false;
            snprintf(id, idlen, "%.*s", (int)(n < idlen ? n : idlen - 1), s);
            p += 4;
            s += n;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

/* ------------------------------------------------------------------------ */
/* CORS                                                                      */

static bool origin_allowed(const char *list, const char *origin)
{
    size_t ol = strlen(origin);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && p[m - 1] == ' ')
            m--;
        if (m == ol && strncmp(p, origin, ol) == 0)
            return true;
        p += n;
    }
    return false;
}

static void add_cors(const api_ctx *ctx, const api_request *req,
                     api_response *r)
{
    const char *list = ctx->cors_origins && *ctx->cors_origins
                           ? ctx->cors_origins
                           : "*";
    if (strcmp(list, "*") == 0) {
        api_response_header(r, "Access-Control-Allow-Origin", "*");
    } else {
        api_response_header(r, "Vary", "Origin");
        if (req->origin && origin_allowed(list, req->origin))
            api_response_header(r, "Access-Control-Allow-Origin", req->origin);
    }
    api_response_header(r, "Access-Control-Expose-Headers",
                        "Location, Retry-After, X-Request-Id");
}

static void preflight(api_response *r, const char *allow)
{
    r->status = 204;
    r->content_type = "application/json";
    api_response_header(r, "Access-Control-Allow-Methods", allow);
    api_response_header(r, "Access-Control-Allow-Headers",
                        "Content-Type, Authorization, Idempotency-Key, "
                        "Last-Event-ID, X-Request-Id");
    api_response_header(r, "Access-Control-Max-Age", "86400");
    api_response_header(r, "Allow", allow);
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */

static bool check_json_body(api_call *c)
{
    const api_request *req = c->req;
    if (req->content_type && *req->content_type &&
        !api_content_type_is(req->content_type, "application/json")) {
        api_error(c->res, 415, "unsupported_media_type",
                  "this route takes a JSON body: send Content-Type: "
                  "application/json", -1, NULL);
        return false;
    }
    char *owned = NULL;
    const char *body;
    size_t len;
    if (api_body_load(c, &owned, &body, &len) < 0)
        return false;
    char err[160];
    c->json = api_json_parse(body, len, err, sizeof(err));
    free(owned);
    if (!c->json) {
        api_error(c->res, 400, "invalid_json", err, -1, NULL);
        return false;
    }
    if (!cJSON_IsObject(c->json)) {
        api_error(c->res, 400, "invalid_json",
                  "the request body must be a JSON object", -1, NULL);
        return false;
    }
    return true;
}

static bool check_id(api_call *c, unsigned flags)
{
    const char *prefix = (flags & API_ID_DS) ? "ds_" : "job_";
    char native[sizeof(c->id)];
    /* OpenAI's form of the same id ("file-<hex>", "ftjob-<hex>") */
    if ((flags & (API_ID_DS | API_ID_JOB)) &&
        api_oai_id_to_native(c->id, native, sizeof(native)) &&
        strncmp(native, prefix, strlen(prefix)) == 0)
        memcpy(c->id, native, sizeof(native));
    if (!(flags & (API_ID_DS | API_ID_JOB)) || api_id_valid(c->id, prefix))
        return true;
    char msg[160];
    snprintf(msg, sizeof(msg), "no %s with id '%.64s'",
             (flags & API_ID_DS) ? "dataset" : "job", c->id);
    api_error(c->res, 404, "not_found", msg, -1, "id");
    return false;
}

/* Finds the row for method; fills allow with every method of the path.
 * *ret_any says whether the path matched at all. */
static const api_route *find_route(const char *method, const char *path,
                                   char *id, size_t idlen, char *allow,
                                   size_t alen, bool *ret_any)
{
    const api_route *found = NULL;
    allow[0] = '\0';
    *ret_any = false;
    for (size_t i = 0; i < N_ROUTES; i++) {
        char tmp[64] = "";
        if (!route_match(routes[i].pattern, path, tmp, sizeof(tmp)))
            continue;
        *ret_any = true;
        size_t al = strlen(allow);
        snprintf(allow + al, alen - al, "%s%s", al ? ", " : "",
                 routes[i].method);
        if (!found && strcmp(routes[i].method, method) == 0) {
            found = &routes[i];
            snprintf(id, idlen, "%s", tmp);
        }
    }
    size_t al = strlen(allow);
    if (*ret_any)
        snprintf(allow + al, alen - al, ", OPTIONS");
    return found;
}

static void route(api_call *c)
{
    const api_request *req = c->req;
    char path[512];
    snprintf(path, sizeof(path), "%s", req->path && *req->path ? req->path : "/");
    size_t pl = strlen(path);
    if (pl > 1 && path[pl - 1] == '/')
        path[pl - 1] = '\0';
    const char *method = req->method ? req->method : "GET";
    if (strcmp(method, "HEAD") == 0)
        method = "GET";

    char allow[128];
    bool any;
    const api_route *rt = find_route(method, path, c->id, sizeof(c->id), allow,
                                     sizeof(allow), &any);
    if (!any) {
        api_error(c->res, 404, "route_not_found", "no such route", -1, NULL);
        return;
    }
    if (strcmp(method, "OPTIONS") == 0) {
        preflight(c->res, allow);
        return;
    }
    if (!rt) {
        char msg[200];
        snprintf(msg, sizeof(msg), "method %.16s is not allowed here; use %s",
                 method, allow);
        api_error(c->res, 405, "method_not_allowed", msg, -1, NULL);
        api_response_header(c->res, "Allow", allow);
        return;
    }
    c->res->route = rt->pattern;
    if (!api_auth_route(c, rt->flags))
        return;
    if (req->body_too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the request body is larger than %zu bytes",
                 c->ctx->limits.max_body_bytes);
        api_error(c->res, 413, "body_too_large", msg, -1, NULL);
        return;
    }
    if (!check_id(c, rt->flags) || !api_auth_resource(c, rt->flags))
        return;
    if (!(rt->flags & API_QUERY_ANY) && api_query_check(c, rt->query) < 0)
        return;
    if ((rt->flags & API_BODY_JSON) && !check_json_body(c))
        return;
    rt->handler(c);
    api_stream_guard(c);
}

void api_dispatch(api_ctx *ctx, const api_request *req, api_response *ret)
{
    memset(ret, 0, sizeof(*ret));
    api_call c = { .ctx = ctx, .req = req, .res = ret };
    route(&c);
    cJSON_Delete(c.json);
    if (req->path && strncmp(req->path, "/v1/", 4) == 0)
        api_oai_error_convert(req, ret);
    if (ret->status == 0)
        api_error(ret, 500, "internal_error", "handler sent no response", -1,
                  NULL);
    add_cors(ctx, req, ret);
}
