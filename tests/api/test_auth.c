/* SPDX-License-Identifier: MIT */
/*
 * test_auth.c - API keys and ownership through api_dispatch(), no sockets:
 * with keys off everything is open; once a key exists every route but
 * /health answers 401 without a key, with an unknown, malformed or revoked
 * one; a member gets 403 on the admin routes (/keys, /metrics); another
 * member's private dataset or job is a 404 on every route that names it
 * (never its data) and missing from the lists; shared ones are visible;
 * only the owner or an admin changes sharing; an admin sees everything;
 * /usage shows a member its own key only.
 */
#include "tests/api/api_test.h"

static const char *const zog =
    "{\"prompt\":\"Once upon a time\",\"completion\":\" there was Zog.\"}\n"
    "{\"prompt\":\"Once upon a time\",\"completion\":\" Zog flew.\"}\n"
    "{\"prompt\":\"Once upon a time\",\"completion\":\" Zog sang.\"}\n";

typedef struct who {
    const char *name;
    char secret[64];
    char auth[96];     /* "Bearer <secret>" */
    store_key key;
} who;

static who root_, alice, bob, carol;

static void make_key(t_env *e, who *w, const char *name, const char *role)
{
    w->name = name;
    CHECK_INT(api_key_new(name, role, w->secret, &w->key), 0);
    CHECK_INT(store_key_insert(e->db, &w->key), 0);
    snprintf(w->auth, sizeof(w->auth), "Bearer %s", w->secret);
}

static int as(t_env *e, const who *w, const char *method, const char *path,
              const char *ct, const char *body, t_resp *out)
{
    return t_call_as(e, w ? w->auth : NULL, method, path, ct, body, out);
}

static bool body_has(const t_resp *t, const char *s)
{
    return t->r.body && memmem(t->r.body, t->r.body_len, s, strlen(s));
}

/* true when the list answer's "data" holds an object with this id */
static bool listed(const t_resp *t, const char *id)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(t->json, "data")) {
        const char *v = t_str(it, "id");
        if (v && !strcmp(v, id))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */

static void keys_off(t_env *e)
{
    t_resp t;
    /* no key in the store: one trusted user, admin routes included */
    CHECK_INT(as(e, NULL, "GET", "/datasets", NULL, NULL, &t), 200);
    t_resp_done(&t);
    CHECK_INT(as(e, NULL, "GET", "/keys", NULL, NULL, &t), 200);
    t_resp_done(&t);
    api_request req = { .method = "GET", .path = "/metrics" };
    api_response r;
    api_dispatch(&e->ctx, &req, &r);
    CHECK_INT(r.status, 200);
    api_response_done(&r);
    CHECK_INT(as(e, NULL, "GET", "/usage", NULL, NULL, &t), 200);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t.json,
                                                                  "data")), 0);
    t_resp_done(&t);
    /* a bearer token is not needed, and an unknown one is no reason to
     * refuse while keys are off */
    CHECK_INT(t_call_as(e, "Bearer tuna_nope", "GET", "/jobs", NULL, NULL, &t),
              200);
    t_resp_done(&t);
}

static const struct {
    const char *method, *path;
} routes[] = {
    { "GET", "/datasets" },
    { "POST", "/datasets" },
    { "GET", "/datasets/ds_000000000000000000000000" },
    { "DELETE", "/datasets/ds_000000000000000000000000" },
    { "POST", "/datasets/ds_000000000000000000000000/share" },
    { "POST", "/jobs" },
    { "GET", "/jobs" },
    { "GET", "/jobs/job_000000000000000000000000" },
    { "POST", "/jobs/job_000000000000000000000000/cancel" },
    { "GET", "/jobs/job_000000000000000000000000/events" },
    { "POST", "/jobs/job_000000000000000000000000/pause" },
    { "POST", "/jobs/job_000000000000000000000000/share" },
    { "GET", "/jobs/job_000000000000000000000000/checkpoints" },
    { "GET", "/jobs/job_000000000000000000000000/adapter" },
    { "POST", "/generate" },
    { "GET", "/models" },
    { "POST", "/tokenize" },
    { "GET", "/v1/models" },
    { "POST", "/v1/chat/completions" },
    { "GET", "/v1/files" },
    { "GET", "/v1/files/file-000000000000000000000000/content" },
    { "GET", "/v1/fine_tuning/jobs" },
    { "GET", "/usage" },
    { "GET", "/keys" },
    { "GET", "/metrics" },
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static void every_route_401(t_env *e)
{
    char revoked[96];
    snprintf(revoked, sizeof(revoked), "%s", carol.auth);
    const char *bad[] = {
        NULL,                              /* no header */
        "Bearer tuna_nope",                /* unknown key */
        "Basic YWxpY2U6cHc=",              /* not a bearer token */
        "Bearer",                          /* empty token */
        "Bearer a b",                      /* junk after the token */
        revoked,                           /* revoked key */
    };
    for (size_t i = 0; i < N_ROUTES; i++)
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
            t_resp t;
            const char *m = routes[i].method;
            t_call_as(e, bad[k], m, routes[i].path,
                      strcmp(m, "POST") ? NULL : "application/json",
                      strcmp(m, "POST") ? NULL : "{}", &t);
            if (t.r.status != 401)
                fprintf(stderr, "%s %s with %s: %d\n", m, routes[i].path,
                        bad[k] ? bad[k] : "(none)", t.r.status);
            CHECK_ERROR(&t, 401, "unauthorized", -1, NULL);
            CHECK(t_header(&t, "WWW-Authenticate") != NULL);
            if (k == 5)
                CHECK(body_has(&t, "revoked"));
            t_resp_done(&t);
        }
    /* /health stays open, with or without a key */
    t_resp t;
    CHECK_INT(as(e, NULL, "GET", "/health", NULL, NULL, &t), 200);
    t_resp_done(&t);
    CHECK_INT(t_call_as(e, "Bearer tuna_nope", "GET", "/health", NULL, NULL,
                        &t), 200);
    t_resp_done(&t);
}

static void admin_routes_403(t_env *e)
{
    static const char *const admin_only[] = { "/keys", "/metrics" };
    for (size_t i = 0; i < 2; i++) {
        t_resp t;
        as(e, &alice, "GET", admin_only[i], NULL, NULL, &t);
        CHECK_ERROR(&t, 403, "forbidden", -1, NULL);
        CHECK(!body_has(&t, root_.key.id));
        t_resp_done(&t);
        /* raw: /metrics answers Prometheus text, not JSON */
        api_request req = { .method = "GET", .path = admin_only[i],
                            .authorization = root_.auth };
        api_response r;
        api_dispatch(&e->ctx, &req, &r);
        CHECK_INT(r.status, 200);
        api_response_done(&r);
    }
    /* the admin's list names every key, never a secret */
    t_resp t;
    CHECK_INT(as(e, &root_, "GET", "/keys", NULL, NULL, &t), 200);
    CHECK(listed(&t, alice.key.id) && listed(&t, bob.key.id) &&
          listed(&t, carol.key.id));
    CHECK(!body_has(&t, alice.secret) && !body_has(&t, alice.key.hash));
    t_resp_done(&t);
}

typedef struct ids {
    char ds_private[64], ds_shared[64], job_private[64], job_shared[64];
    char sha_private[65], job_model[256];
} ids;

static void create_resources(t_env *e, ids *x)
{
    t_resp t;
    CHECK_INT(as(e, &alice, "POST", "/datasets?name=private",
                 "application/jsonl", zog, &t), 201);
    snprintf(x->ds_private, sizeof(x->ds_private), "%s", t_str(t.json, "id"));
    snprintf(x->sha_private, sizeof(x->sha_private), "%s",
             t_str(t.json, "sha256"));
    t_resp_done(&t);
    CHECK_INT(as(e, &alice, "POST", "/datasets?name=team&shared=true",
                 "application/jsonl", zog, &t), 201);
    snprintf(x->ds_shared, sizeof(x->ds_shared), "%s", t_str(t.json, "id"));
    t_resp_done(&t);

    char body[256];
    snprintf(body, sizeof(body), "{\"dataset_id\":\"%s\",\"suffix\":\"mine\"}",
             x->ds_private);
    CHECK_INT(as(e, &alice, "POST", "/jobs", "application/json", body, &t),
              201);
    snprintf(x->job_private, sizeof(x->job_private), "%s",
             t_str(t.json, "id"));
    snprintf(x->job_model, sizeof(x->job_model), "%s", t_str(t.json, "model"));
    t_resp_done(&t);
    snprintf(body, sizeof(body), "{\"dataset_id\":\"%s\",\"shared\":true}",
             x->ds_shared);
    CHECK_INT(as(e, &alice, "POST", "/jobs", "application/json", body, &t),
              201);
    snprintf(x->job_shared, sizeof(x->job_shared), "%s", t_str(t.json, "id"));
    t_resp_done(&t);

    /* the private job's model is ready (no adapter on disk: enough to tell
     * "not found" from "found but cannot be loaded") */
    store_job j;
    CHECK_INT(store_job_claim_next(e->db, "test", &j), 0);
    CHECK_STR(j.id, x->job_private);
    store_job_done(&j);
    CHECK_INT(store_job_finish(e->db, x->job_private, "succeeded", NULL), 0);
}

/* Every route naming alice's private dataset or job answers bob 404. */
/* Each route (method, path format taking id) answers bob 404, with
 * neither secret in the body. */
static void routes_404(t_env *e, const char *routes[][2], size_t n,
                       const char *id, const char *secret1,
                       const char *secret2)
{
    char p[256];
    t_resp t;
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof(p), routes[i][1], id);
        as(e, &bob, routes[i][0], p, NULL, NULL, &t);
        if (t.r.status != 404)
            fprintf(stderr, "%s %s: %d\n", routes[i][0], p, t.r.status);
        CHECK_INT(t.r.status, 404);
        CHECK(!body_has(&t, secret1) && !body_has(&t, secret2), "%s %s",
              routes[i][0], p);
        t_resp_done(&t);
    }
}

static void private_is_404(t_env *e, const ids *x)
{
    char p[256];
    t_resp t;
    const char *ds_routes[][2] = {
        { "GET", "/datasets/%s" },
        { "DELETE", "/datasets/%s" },
        { "GET", "/v1/files/%s" },
        { "GET", "/v1/files/%s/content" },
        { "DELETE", "/v1/files/%s" },
    };
    routes_404(e, ds_routes, sizeof(ds_routes) / sizeof(ds_routes[0]),
               x->ds_private, x->sha_private, "Zog");
    snprintf(p, sizeof(p), "/datasets/%s/share", x->ds_private);
    as(e, &bob, "POST", p, "application/json", "{\"shared\":true}", &t);
    CHECK_INT(t.r.status, 404);
    t_resp_done(&t);

    const char *job_routes[][2] = {
        { "GET", "/jobs/%s" },
        { "POST", "/jobs/%s/cancel" },
        { "GET", "/jobs/%s/events" },
        { "POST", "/jobs/%s/pause" },
        { "POST", "/jobs/%s/resume" },
        { "POST", "/jobs/%s/stop" },
        { "GET", "/jobs/%s/checkpoints" },
        { "GET", "/jobs/%s/metrics.csv" },
        { "GET", "/jobs/%s/report" },
        { "GET", "/jobs/%s/adapter" },
        { "GET", "/v1/fine_tuning/jobs/%s" },
        { "POST", "/v1/fine_tuning/jobs/%s/cancel" },
        { "GET", "/v1/fine_tuning/jobs/%s/events" },
    };
    routes_404(e, job_routes, sizeof(job_routes) / sizeof(job_routes[0]),
               x->job_private, x->ds_private, "mine");
    snprintf(p, sizeof(p), "/jobs/%s/share", x->job_private);
    as(e, &bob, "POST", p, "application/json", "{\"shared\":true}", &t);
    CHECK_INT(t.r.status, 404);
    t_resp_done(&t);
    snprintf(p, sizeof(p), "/jobs/%s/priority", x->job_private);
    as(e, &bob, "POST", p, "application/json", "{\"priority\":5}", &t);
    CHECK_INT(t.r.status, 404);
    t_resp_done(&t);

    /* using it by reference: a job on her dataset, her model */
    char body[512];
    snprintf(body, sizeof(body), "{\"dataset_id\":\"%s\"}", x->ds_private);
    as(e, &bob, "POST", "/jobs", "application/json", body, &t);
    CHECK_ERROR(&t, 404, "dataset_not_found", -1, "dataset_id");
    t_resp_done(&t);
    snprintf(body, sizeof(body), "{\"dataset_id\":\"%s\","
             "\"validation_dataset_id\":\"%s\"}", x->ds_shared, x->ds_private);
    as(e, &bob, "POST", "/jobs", "application/json", body, &t);
    CHECK_INT(t.r.status, 404);
    t_resp_done(&t);
    const char *models[] = { x->job_model, x->job_private };
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof(body), "{\"model\":\"%s\",\"prompt\":\"Once\","
                 "\"max_tokens\":2}", models[i]);
        as(e, &bob, "POST", "/generate", "application/json", body, &t);
        CHECK_ERROR(&t, 404, "model_not_found", -1, "model");
        t_resp_done(&t);
        /* the owner finds it (it cannot be loaded: no adapter was saved) */
        as(e, &alice, "POST", "/generate", "application/json", body, &t);
        CHECK(t.r.status != 404);
        t_resp_done(&t);
    }

    /* the lists leave them out, and keep the shared ones */
    CHECK_INT(as(e, &bob, "GET", "/datasets", NULL, NULL, &t), 200);
    CHECK(!listed(&t, x->ds_private) && listed(&t, x->ds_shared));
    t_resp_done(&t);
    CHECK_INT(as(e, &bob, "GET", "/jobs", NULL, NULL, &t), 200);
    CHECK(!listed(&t, x->job_private) && listed(&t, x->job_shared));
    t_resp_done(&t);
    CHECK_INT(as(e, &bob, "GET", "/v1/files", NULL, NULL, &t), 200);
    CHECK(!body_has(&t, x->ds_private + 3));
    t_resp_done(&t);
    CHECK_INT(as(e, &bob, "GET", "/v1/fine_tuning/jobs", NULL, NULL, &t), 200);
    CHECK(!body_has(&t, x->job_private + 4));
    t_resp_done(&t);
    CHECK_INT(as(e, &bob, "GET", "/models", NULL, NULL, &t), 200);
    CHECK(!body_has(&t, x->job_private));
    t_resp_done(&t);
}

static void shared_visible(t_env *e, const ids *x)
{
    char p[256];
    t_resp t;
    snprintf(p, sizeof(p), "/datasets/%s", x->ds_shared);
    CHECK_INT(as(e, &bob, "GET", p, NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "id"), x->ds_shared);
    t_resp_done(&t);
    snprintf(p, sizeof(p), "/jobs/%s", x->job_shared);
    CHECK_INT(as(e, &bob, "GET", p, NULL, NULL, &t), 200);
    t_resp_done(&t);
    /* bob may train on the shared dataset; the job is his */
    char body[256];
    snprintf(body, sizeof(body), "{\"dataset_id\":\"%s\"}", x->ds_shared);
    CHECK_INT(as(e, &bob, "POST", "/jobs", "application/json", body, &t), 201);
    char bobs[64];
    snprintf(bobs, sizeof(bobs), "%s", t_str(t.json, "id"));
    t_resp_done(&t);
    snprintf(p, sizeof(p), "/jobs/%s", bobs);
    CHECK_INT(as(e, &alice, "GET", p, NULL, NULL, &t), 404);
    t_resp_done(&t);
    /* seeing is not owning: only the owner or an admin changes sharing */
    snprintf(p, sizeof(p), "/datasets/%s/share", x->ds_shared);
    as(e, &bob, "POST", p, "application/json", "{\"shared\":false}", &t);
    CHECK_ERROR(&t, 403, "forbidden", -1, NULL);
    t_resp_done(&t);
    /* alice shares her private job later: now bob sees it */
    snprintf(p, sizeof(p), "/jobs/%s/share", x->job_private);
    CHECK_INT(as(e, &alice, "POST", p, "application/json", "{\"shared\":true}",
                 &t), 200);
    t_resp_done(&t);
    snprintf(p, sizeof(p), "/jobs/%s", x->job_private);
    CHECK_INT(as(e, &bob, "GET", p, NULL, NULL, &t), 200);
    t_resp_done(&t);
    /* and private again */
    snprintf(p, sizeof(p), "/jobs/%s/share", x->job_private);
    CHECK_INT(as(e, &root_, "POST", p, "application/json",
                 "{\"shared\":false}", &t), 200);
    t_resp_done(&t);
    snprintf(p, sizeof(p), "/jobs/%s", x->job_private);
    CHECK_INT(as(e, &bob, "GET", p, NULL, NULL, &t), 404);
    t_resp_done(&t);
}

static void admin_sees_all(t_env *e, const ids *x)
{
    char p[256];
    t_resp t;
    snprintf(p, sizeof(p), "/datasets/%s", x->ds_private);
    CHECK_INT(as(e, &root_, "GET", p, NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "sha256"), x->sha_private);
    t_resp_done(&t);
    snprintf(p, sizeof(p), "/v1/files/%s/content", x->ds_private);
    CHECK_INT(as(e, &root_, "GET", p, NULL, NULL, &t), 200);
    /* streamed from the file: read it to the end */
    char got[1024];
    size_t n = 0;
    ssize_t k = 0;
    CHECK(t.r.stream.read != NULL);
    while (t.r.stream.read && n < sizeof(got) &&
           (k = t.r.stream.read(t.r.stream.ctx, got + n,
                                sizeof(got) - n)) >= 0)
        n += (size_t)k;
    CHECK(n == strlen(zog) && !memcmp(got, zog, n));
    t_resp_done(&t);
    snprintf(p, sizeof(p), "/jobs/%s", x->job_private);
    CHECK_INT(as(e, &root_, "GET", p, NULL, NULL, &t), 200);
    t_resp_done(&t);
    snprintf(p, sizeof(p), "/jobs/%s/events", x->job_private);
    CHECK_INT(as(e, &root_, "GET", p, NULL, NULL, &t), 200);
    t_resp_done(&t);
    CHECK_INT(as(e, &root_, "GET", "/datasets", NULL, NULL, &t), 200);
    CHECK(listed(&t, x->ds_private) && listed(&t, x->ds_shared));
    t_resp_done(&t);
    CHECK_INT(as(e, &root_, "GET", "/jobs", NULL, NULL, &t), 200);
    CHECK(listed(&t, x->job_private) && listed(&t, x->job_shared));
    t_resp_done(&t);
    /* the owner, too, sees her own */
    CHECK_INT(as(e, &alice, "GET", "/datasets", NULL, NULL, &t), 200);
    CHECK(listed(&t, x->ds_private) && listed(&t, x->ds_shared));
    t_resp_done(&t);
}

static void usage_per_key(t_env *e)
{
    t_resp t;
    CHECK_INT(as(e, &bob, "GET", "/usage", NULL, NULL, &t), 200);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(t.json, "data");
    CHECK_INT(cJSON_GetArraySize(data), 1);
    CHECK_STR(t_str(cJSON_GetArrayItem(data, 0), "key_id"), bob.key.id);
    t_resp_done(&t);
    CHECK_INT(as(e, &root_, "GET", "/usage", NULL, NULL, &t), 200);
    data = cJSON_GetObjectItemCaseSensitive(t.json, "data");
    CHECK_INT(cJSON_GetArraySize(data), 4);
    t_resp_done(&t);
}

static void revoked_later(t_env *e)
{
    t_resp t;
    CHECK_INT(as(e, &bob, "GET", "/jobs", NULL, NULL, &t), 200);
    t_resp_done(&t);
    CHECK_INT(store_key_revoke(e->db, bob.key.id), 0);
    as(e, &bob, "GET", "/jobs", NULL, NULL, &t);
    CHECK_ERROR(&t, 401, "unauthorized", -1, NULL);
    CHECK(body_has(&t, "revoked"));
    t_resp_done(&t);
    /* revoking every key turns auth off only when none is active: alice
     * and root remain, so a missing key is still a 401 */
    as(e, NULL, "GET", "/jobs", NULL, NULL, &t);
    CHECK_INT(t.r.status, 401);
    t_resp_done(&t);
}

int main(void)
{
    t_env e;
    t_env_init(&e);
    e.ctx.limits.rate_limit_rpm = 0;
    e.ctx.limits.max_jobs_in_flight = 0;
    keys_off(&e);
    make_key(&e, &root_, "root", "admin");
    make_key(&e, &alice, "alice", "member");
    make_key(&e, &bob, "bob", "member");
    make_key(&e, &carol, "carol", "member");
    CHECK_INT(store_key_revoke(e.db, carol.key.id), 0);

    ids x;
    memset(&x, 0, sizeof(x));
    every_route_401(&e);
    admin_routes_403(&e);
    create_resources(&e, &x);
    private_is_404(&e, &x);
    shared_visible(&e, &x);
    admin_sees_all(&e, &x);
    usage_per_key(&e);
    revoked_later(&e);
    t_env_done(&e);
    return test_done("test_auth");
}
