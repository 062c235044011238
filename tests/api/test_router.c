/* SPDX-License-Identifier: MIT */
/*
 * test_router.c - generic dispatch: known and unknown routes, 405 with
 * Allow, OPTIONS preflight, CORS on every answer, 413, 415, id checks
 * (path traversal), bad JSON bodies, /health and /models.
 */
#include "tests/api/api_test.h"

static void test_health(t_env *e)
{
    t_resp t;
    CHECK_INT(t_call(e, "GET", "/health", NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "status"), "ok");
    CHECK_STR(t_header(&t, "Access-Control-Allow-Origin"), "*");
    CHECK_STR(t.r.content_type, "application/json");
    t_resp_done(&t);
    /* Trailing slash and HEAD are the same route. */
    CHECK_INT(t_call(e, "GET", "/health/", NULL, NULL, &t), 200);
    t_resp_done(&t);
    CHECK_INT(t_call(e, "HEAD", "/health", NULL, NULL, &t), 200);
    t_resp_done(&t);
}

static void test_not_found_and_methods(t_env *e)
{
    t_resp t;
    t_call(e, "GET", "/nope", NULL, NULL, &t);
    CHECK_ERROR(&t, 404, "route_not_found", -1, NULL);
    CHECK_STR(t_header(&t, "Access-Control-Allow-Origin"), "*");
    t_resp_done(&t);

    CHECK_CALL_ERROR(e, "GET", "/nope/deeper", NULL, NULL,
                     404, "route_not_found", -1, NULL);

    t_call(e, "PUT", "/jobs", NULL, NULL, &t);
    CHECK_ERROR(&t, 405, "method_not_allowed", -1, NULL);
    CHECK_STR(t_header(&t, "Allow"), "POST, GET, OPTIONS");
    t_resp_done(&t);

    t_call(e, "DELETE", "/health", NULL, NULL, &t);
    CHECK_ERROR(&t, 405, "method_not_allowed", -1, NULL);
    CHECK_STR(t_header(&t, "Allow"), "GET, OPTIONS");
    t_resp_done(&t);

    CHECK_CALL_ERROR(e, "GET", "/generate", NULL, NULL,
                     405, "method_not_allowed", -1, NULL);

    CHECK_CALL_ERROR(e, "POST", "/jobs/job_0123/events", NULL, NULL,
                     405, NULL, -1, NULL);
}

static void test_preflight_and_cors(t_env *e)
{
    t_resp t;
    CHECK_INT(t_call(e, "OPTIONS", "/jobs", NULL, NULL, &t), 204);
    CHECK(t.r.body == NULL);
    CHECK_STR(t_header(&t, "Access-Control-Allow-Methods"),
              "POST, GET, OPTIONS");
    CHECK(strstr(t_header(&t, "Access-Control-Allow-Headers"),
                 "Content-Type") != NULL);
    CHECK_STR(t_header(&t, "Access-Control-Allow-Origin"), "*");
    t_resp_done(&t);

    CHECK_INT(t_call(e, "OPTIONS", "/datasets/ds_00ff", NULL, NULL, &t), 204);
    CHECK_STR(t_header(&t, "Access-Control-Allow-Methods"),
              "GET, DELETE, OPTIONS");
    t_resp_done(&t);

    /* A configured list answers only the listed origins. */
    e->ctx.cors_origins = "https://a.example, https://b.example";
    api_request req = { .method = "GET", .path = "/health",
                        .origin = "https://b.example" };
    CHECK_INT(t_call_req(e, &req, &t), 200);
    CHECK_STR(t_header(&t, "Access-Control-Allow-Origin"), "https://b.example");
    CHECK_STR(t_header(&t, "Vary"), "Origin");
    t_resp_done(&t);
    req.origin = "https://evil.example";
    CHECK_INT(t_call_req(e, &req, &t), 200);
    CHECK(t_header(&t, "Access-Control-Allow-Origin") == NULL);
    t_resp_done(&t);
    e->ctx.cors_origins = "*";
}

static void test_ids(t_env *e)
{
    static const char *const bad[] = {
        "/datasets/..", "/datasets/ds_", "/datasets/ds_XYZ",
        "/datasets/job_0123", "/datasets/ds_0123abc%2f..", "/jobs/ds_0123",
        "/jobs/job_../../etc", "/jobs/job_0123ABC", "/jobs/..%2F..%2Fetc",
        "/jobs/job_0123/cancel/x",
    };
    t_resp t;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t_call(e, strstr(bad[i], "cancel") ? "POST" : "GET", bad[i], NULL,
               NULL, &t);
        CHECK_INT(t.r.status, 404);
        CHECK(cJSON_GetObjectItemCaseSensitive(t.json, "error") != NULL);
        t_resp_done(&t);
    }
    /* Well-formed ids that do not exist. */
    CHECK_CALL_ERROR(e, "GET", "/datasets/ds_0123456789abcdef01234567",
                     NULL, NULL, 404, "not_found", -1, "id");
    CHECK_CALL_ERROR(e, "GET", "/jobs/job_0123456789abcdef01234567",
                     NULL, NULL, 404, "not_found", -1, "id");
    CHECK_CALL_ERROR(e, "POST", "/jobs/job_0123456789abcdef01234567/cancel",
                     NULL, NULL, 404, "not_found", -1, "id");
    CHECK_CALL_ERROR(e, "GET", "/jobs/job_0123456789abcdef01234567/events",
                     NULL, NULL, 404, "not_found", -1, "id");
    CHECK_CALL_ERROR(e, "DELETE", "/datasets/ds_0123456789abcdef01234567",
                     NULL, NULL, 404, "not_found", -1, "id");
}

static void test_bodies(t_env *e)
{
    t_resp t;
    api_request req = { .method = "POST", .path = "/generate",
                        .content_type = "application/json",
                        .body = "{}", .body_len = 2, .body_too_large = true };
    t_call_req(e, &req, &t);
    CHECK_ERROR(&t, 413, "body_too_large", -1, NULL);
    t_resp_done(&t);

    CHECK_CALL_ERROR(e, "POST", "/generate", "text/plain",
                     "{\"prompt\":\"x\"}",
                     415, "unsupported_media_type", -1, NULL);

    static const char *const bad_json[] = {
        "", "{", "[1,2]", "\"str\"", "{\"prompt\":\"a\"} x", "nul",
        "{\"prompt\":\"\xC3\x28\"}", "{\"prompt\":\"\xED\xA0\x80\"}",
        "{\"prompt\":\"\xC0\xAF\"}",
    };
    for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++)
        CHECK_CALL_ERROR(e, "POST", "/generate", "application/json",
                         bad_json[i], 400, "invalid_json", -1, NULL);
    /* A missing body on a JSON route. */
    CHECK_CALL_ERROR(e, "POST", "/generate", NULL, NULL,
                     400, "invalid_json", -1, NULL);
}

static void test_models(t_env *e)
{
    t_resp t;
    CHECK_INT(t_call(e, "GET", "/models", NULL, NULL, &t), 200);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(t.json, "data");
    CHECK(cJSON_IsArray(data) && cJSON_GetArraySize(data) >= 1);
    const cJSON *m0 = cJSON_GetArrayItem(data, 0);
    CHECK_STR(t_str(m0, "id"), "stories260K");
    CHECK_STR(t_str(m0, "type"), "base");
    CHECK_INT(t_num(m0, "context_length"), 512);
    t_resp_done(&t);
}

/* The dashboard (ui.c): files built into the binary, at / and /ui/{name},
 * with content types, an ETag answered by 304, and no key needed. */
static void ui_get(t_env *e, const char *path, const char *inm,
                   api_response *r)
{
    api_request req = { .method = "GET", .path = path,
                        .if_none_match = inm };
    memset(r, 0, sizeof(*r));
    api_dispatch(&e->ctx, &req, r);
}

static void test_dashboard(t_env *e)
{
    api_response r;
    ui_get(e, "/", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.content_type, "text/html; charset=utf-8");
    CHECK(r.body && strstr(r.body, "<!doctype html>") != NULL);
    CHECK(r.body && strstr(r.body, "/ui/app.js") != NULL);
    CHECK_STR(t_resp_header(&r, "Cache-Control"), "no-cache");
    CHECK(t_resp_header(&r, "Content-Security-Policy") != NULL);
    char etag[64];
    snprintf(etag, sizeof etag, "%s",
             t_resp_header(&r, "ETag") ? t_resp_header(&r, "ETag") : "");
    CHECK(etag[0] == '"' && strlen(etag) == 18);
    api_response_done(&r);

    ui_get(e, "/ui/", NULL, &r);     /* trailing slash: the same page */
    CHECK_INT(r.status, 200);
    CHECK_STR(t_resp_header(&r, "ETag"), etag);
    api_response_done(&r);

    ui_get(e, "/", etag, &r);        /* revalidation */
    CHECK_INT(r.status, 304);
    CHECK(r.body == NULL);
    CHECK_STR(t_resp_header(&r, "ETag"), etag);
    api_response_done(&r);
    char list[128];
    snprintf(list, sizeof list, "\"0000\", W/%s", etag);
    ui_get(e, "/", list, &r);
    CHECK_INT(r.status, 304);
    api_response_done(&r);
    ui_get(e, "/", "\"0000000000000000\"", &r);
    CHECK_INT(r.status, 200);
    api_response_done(&r);

    static const char *const files[][2] = {
        { "/ui/app.js", "text/javascript; charset=utf-8" },
        { "/ui/app.css", "text/css; charset=utf-8" },
        { "/ui/icon.svg", "image/svg+xml" },
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ui_get(e, files[i][0], NULL, &r);
        CHECK_INT(r.status, 200);
        CHECK_STR(r.content_type, files[i][1]);
        CHECK(r.body_len > 0);
        api_response_done(&r);
    }

    CHECK_CALL_ERROR(e, "GET", "/ui/nope.js", NULL, NULL,
                     404, "not_found", -1, NULL);
    CHECK_CALL_ERROR(e, "GET", "/ui/..%2fapi.h", NULL, NULL,
                     404, NULL, -1, NULL);
    CHECK_CALL_ERROR(e, "POST", "/", NULL, NULL,
                     405, "method_not_allowed", -1, NULL);
}

int main(void)
{
    t_env e;
    t_env_init(&e);
    test_health(&e);
    test_not_found_and_methods(&e);
    test_preflight_and_cors(&e);
    test_ids(&e);
    test_bodies(&e);
    test_models(&e);
    test_dashboard(&e);
    t_env_done(&e);
    return test_done("test_router");
}
