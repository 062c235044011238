/* SPDX-License-Identifier: MIT */
/*
 * auth.c - API keys, ownership, quotas and usage.
 *
 * Keys: a secret is "tuna_" + 40 random base62 characters; the store keeps
 * only its sha256 (and the first characters, for display). Auth is on as
 * soon as one key is active: the router calls api_auth_route() for every
 * matched route, which hashes the bearer token and looks the key up (401
 * for none, unknown or revoked), then checks the route's role (403), the
 * key's rate limit (a token bucket of rate_limit_rpm per minute: 429 with
 * Retry-After), the quotas of routes that create jobs or datasets (429),
 * and that the {id} of the route is visible to the caller (404, the same
 * answer as a missing id, so ids cannot be probed).
 *
 * Visibility: members see their own rows and shared ones; admins, and
 * everyone while keys are off, see all (store_*_for with api_owner()).
 *
 * The runtime (api_runtime) is the only mutable state shared by requests:
 * the buckets (a small array searched linearly: a team has few keys), the
 * number of open streams and a per-second ring of generated tokens for the
 * tokens/s gauge. One mutex guards it; it is held for microseconds.
 */
#include "api/api-impl.h"
#include "api/sha256.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#define TPS_WINDOW 60

typedef struct bucket {
    char key_id[48];
    double tokens;
    double last;            /* monotonic seconds of the last refill */
} bucket;

struct api_runtime {
    pthread_mutex_t mu;
    bucket *buckets;
    int n_buckets, cap_buckets;
    atomic_int streams;
    int64_t generated;
    int64_t rate_limited;
    int64_t tps_sec[TPS_WINDOW];   /* second of each slot */
    int64_t tps_tok[TPS_WINDOW];
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int api_runtime_new(api_runtime **ret)
{
    api_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    pthread_mutex_init(&rt->mu, NULL);
    atomic_init(&rt->streams, 0);
    *ret = rt;
    return 0;
}

void api_runtime_free(api_runtime *rt)
{
    if (!rt)
        return;
    pthread_mutex_destroy(&rt->mu);
    free(rt->buckets);
    free(rt);
}

void api_runtime_get_stats(api_runtime *rt, api_runtime_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!rt)
        return;
    int64_t now = (int64_t)mono_now(), sum = 0;
    pthread_mutex_lock(&rt->mu);
    ret->generated_tokens = rt->generated;
    ret->rate_limited = rt->rate_limited;
    for (int i = 0; i < TPS_WINDOW; i++)
        if (now - rt->tps_sec[i] < TPS_WINDOW && rt->tps_sec[i] <= now)
            sum += rt->tps_tok[i];
    pthread_mutex_unlock(&rt->mu);
    ret->generation_tps = (double)sum / TPS_WINDOW;
    ret->streams_open = atomic_load(&rt->streams);
}

static void runtime_add_generated(api_runtime *rt, int64_t n)
{
    if (!rt || n <= 0)
        return;
    int64_t sec = (int64_t)mono_now();
    int slot = (int)(sec % TPS_WINDOW);
    pthread_mutex_lock(&rt->mu);
    rt->generated += n;
    if (rt->tps_sec[slot] != sec) {
        rt->tps_sec[slot] = sec;
        rt->tps_tok[slot] = 0;
    }
    rt->tps_tok[slot] += n;
    pthread_mutex_unlock(&rt->mu);
}

/* Takes one request from key_id's bucket (capacity rpm, refilled at rpm
 * per minute). 0, or the seconds to wait (>= 1) when it is empty. */
static int runtime_take(api_runtime *rt, const char *key_id, int rpm)
{
    double now = mono_now(), rate = rpm / 60.0;
    int wait = 0;
    pthread_mutex_lock(&rt->mu);
    bucket *b = NULL;
    for (int i = 0; i < rt->n_buckets && !b; i++)
        if (!strcmp(rt->buckets[i].key_id, key_id))
            b = &rt->buckets[i];
    if (!b && rt->n_buckets == rt->cap_buckets) {
        int cap = rt->cap_buckets ? rt->cap_buckets * 2 : 16;
        bucket *nb = realloc(rt->buckets, (size_t)cap * sizeof(*nb));
        if (nb) {
            rt->buckets = nb;
            rt->cap_buckets = cap;
        }
    }
    if (!b && rt->n_buckets < rt->cap_buckets) {
        b = &rt->buckets[rt->n_buckets++];
        snprintf(b->key_id, sizeof(b->key_id), "%s", key_id);
        b->tokens = rpm;
        b->last = now;
    }
    if (b) {
        b->tokens = fmin((double)rpm, b->tokens + (now - b->last) * rate);
        b->last = now;
        if (b->tokens >= 1.0) {
            b->tokens -= 1.0;
        } else {
            wait = (int)ceil((1.0 - b->tokens) / rate);
            if (wait < 1)
                wait = 1;
            rt->rate_limited++;
        }
    }
    pthread_mutex_unlock(&rt->mu);
    return wait;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                      */

void api_key_hash(const char *secret, char *hex)
{
    api_sha256 h;
    api_sha256_init(&h);
    api_sha256_update(&h, secret, strlen(secret));
    api_sha256_final_hex(&h, hex);
}

static int random_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    return 0;
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.' || ch == '@'))
            return false;
    }
    return true;
}

int api_key_new(const char *name, const char *role, char *secret,
                store_key *ret)
{
    static const char b62[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if (!name || !name_ok(name) || !role ||
        (strcmp(role, "admin") && strcmp(role, "member")))
        return -EINVAL;
    unsigned char rnd[40];
    int r = random_bytes(rnd, sizeof(rnd));
    if (r < 0)
        return r;
    /* 248 = 4 * 62: rejection keeps every character equally likely. */
    size_t n = 5;
    memcpy(secret, "tuna_", 5);
    while (n < 45) {
        for (size_t i = 0; i < sizeof(rnd) && n < 45; i++)
            if (rnd[i] < 248)
                secret[n++] = b62[rnd[i] % 62];
        if (n < 45 && (r = random_bytes(rnd, sizeof(rnd))) < 0)
            return r;
    }
    secret[n] = '\0';
    store_key k;
    memset(&k, 0, sizeof(k));
    r = api_id_new("key_", k.id, sizeof(k.id));
    if (r < 0)
        return r;
    snprintf(k.name, sizeof(k.name), "%s", name);
    snprintf(k.role, sizeof(k.role), "%s", role);
    api_key_hash(secret, k.hash);
    snprintf(k.prefix, sizeof(k.prefix), "%.12s", secret);
    k.created_at = api_now();
    *ret = k;
    return 0;
}

/* The token of "Authorization: Bearer <token>" into buf; false if absent
 * or malformed. */
static bool bearer(const char *h, char *buf, size_t len)
{
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strcspn(h, " \t");
    if (n == 0 || n >= len || h[n] != '\0')
        return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return true;
}

static void unauthorized(api_call *c, const char *msg)
{
    api_error(c->res, 401, "unauthorized", msg, -1, NULL);
    api_response_header(c->res, "WWW-Authenticate", "Bearer realm=\"tuna\"");
}

/* Resolves the caller; false after a 401 (or a store error). */
static bool resolve(api_call *c, bool needed)
{
    api_caller *w = &c->who;
    memset(w, 0, sizeof(*w));
    int n = 0, r = store_key_count_active(c->ctx->db, &n);
    if (r < 0) {
        api_reply_errno(c, r, "could not read the API keys");
        return false;
    }
    if (n == 0) {
        w->admin = true;        /* keys off: one trusted user */
        return true;
    }
    w->auth = true;
    char tok[160], hash[65];
    if (!bearer(c->req->authorization, tok, sizeof(tok))) {
        if (!needed)
            return true;
        unauthorized(c, c->req->authorization
                            ? "malformed Authorization header: use "
                              "'Authorization: Bearer <key>'"
                            : "this route needs an API key: send "
                              "'Authorization: Bearer <key>'");
        return false;
    }
    api_key_hash(tok, hash);
    store_key k;
    r = store_key_find_hash(c->ctx->db, hash, &k);
    if (r == 0 && k.revoked_at != 0) {
        if (needed) {
            unauthorized(c, "this API key has been revoked");
            return false;
        }
        return true;
    }
    if (r < 0) {
        if (r != -ENOENT)
            api_reply_errno(c, r, "could not read the API keys");
        else if (needed)
            unauthorized(c, "unknown API key");
        return !needed && r == -ENOENT;
    }
    w->admin = strcmp(k.role, "admin") == 0;
    snprintf(w->key_id, sizeof(w->key_id), "%s", k.id);
    snprintf(w->key_name, sizeof(w->key_name), "%s", k.name);
    snprintf(c->res->key_id, sizeof(c->res->key_id), "%s", k.id);
    return true;
}

/* ------------------------------------------------------------------------ */
/* Quotas and visibility                                                     */

static int64_t incoming_bytes(const api_request *req)
{
    if (req->body)
        return (int64_t)req->body_len;
    struct stat st;
    if (req->body_file && stat(req->body_file, &st) == 0)
        return (int64_t)st.st_size;
    return 0;
}

static bool quotas(api_call *c, unsigned flags)
{
    const api_limits *l = &c->ctx->limits;
    if (!c->who.key_id[0] || !(flags & (API_QUOTA_JOB | API_QUOTA_STORAGE)))
        return true;
    int jobs = 0;
    int64_t bytes = 0;
    int r = store_owner_totals(c->ctx->db, c->who.key_id, &jobs, &bytes);
    if (r < 0) {
        api_reply_errno(c, r, "could not read the key's usage");
        return false;
    }
    char msg[200];
    if ((flags & API_QUOTA_JOB) && l->max_jobs_in_flight > 0 &&
        jobs >= l->max_jobs_in_flight) {
        snprintf(msg, sizeof(msg), "this key has %d jobs queued or running, "
                 "its limit; wait for one to finish", jobs);
        api_error(c->res, 429, "too_many_jobs", msg, -1, NULL);
        api_response_header(c->res, "Retry-After", "60");
        return false;
    }
    int64_t in = incoming_bytes(c->req);
    if ((flags & API_QUOTA_STORAGE) && l->max_storage_bytes > 0 &&
        bytes + in > l->max_storage_bytes) {
        snprintf(msg, sizeof(msg), "this key's datasets use %lld of its "
                 "%lld bytes; this upload of %lld bytes does not fit: delete "
                 "datasets first", (long long)bytes,
                 (long long)l->max_storage_bytes, (long long)in);
        api_error(c->res, 429, "storage_quota_exceeded", msg, -1, NULL);
        return false;
    }
    return true;
}

static bool visible(api_call *c, unsigned flags)
{
    const char *owner = api_owner(c);
    if (!owner || !(flags & (API_ID_DS | API_ID_JOB)))
        return true;
    int r;
    if (flags & API_ID_DS) {
        store_dataset d;
        r = store_dataset_get_for(c->ctx->db, c->id, owner, &d);
    } else {
        store_job j;
        r = store_job_get_for(c->ctx->db, c->id, owner, &j);
        if (r == 0)
            store_job_done(&j);
    }
    if (r == 0)
        return true;
    char msg[160];
    snprintf(msg, sizeof(msg), "no %s with id '%.64s'",
             (flags & API_ID_DS) ? "dataset" : "job", c->id);
    if (r == -ENOENT)
        api_error(c->res, 404, "not_found", msg, -1, "id");
    else
        api_reply_errno(c, r, "could not read the store");
    return false;
}

bool api_auth_route(api_call *c, unsigned flags)
{
    bool needed = !(flags & API_PUBLIC);
    if (!resolve(c, needed))
        return false;
    if (!needed)
        return true;
    if ((flags & API_ADMIN) && !c->who.admin) {
        api_error(c->res, 403, "forbidden", "this route needs an admin key",
                  -1, NULL);
        return false;
    }
    int rpm = c->ctx->limits.rate_limit_rpm;
    if (c->who.key_id[0] && rpm > 0 && c->ctx->runtime) {
        int wait = runtime_take(c->ctx->runtime, c->who.key_id, rpm);
        if (wait > 0) {
            char msg[160], ra[16];
            snprintf(msg, sizeof(msg), "rate limit of %d requests per minute "
                     "for this key; retry in %d s", rpm, wait);
            api_error(c->res, 429, "rate_limited", msg, -1, NULL);
            snprintf(ra, sizeof(ra), "%d", wait);
            api_response_header(c->res, "Retry-After", ra);
            return false;
        }
    }
    return true;
}

bool api_auth_resource(api_call *c, unsigned flags)
{
    if (flags & API_PUBLIC)
        return true;
    return quotas(c, flags) && visible(c, flags);
}

const char *api_owner(const api_call *c)
{
    return c->who.admin ? NULL : c->who.key_id;
}

const char *api_owner_stamp(const api_call *c)
{
    return c->who.key_id;
}

int api_shared_param(api_call *c, const cJSON *obj, bool *ret)
{
    *ret = false;
    if (obj && cJSON_GetObjectItemCaseSensitive(obj, "shared"))
        return api_get_bool(c, obj, "shared", false, ret);
    return api_query_bool(c, "shared", false, ret);
}

void api_usage_add(api_ctx *ctx, const char *key_id, int64_t n)
{
    if (n <= 0 || !ctx)
        return;
    runtime_add_generated(ctx->runtime, n);
    if (key_id && key_id[0])
        store_key_usage_add(ctx->db, key_id, 0, n, 0);
}

void api_usage_generated(api_call *c, int64_t n)
{
    api_usage_add(c->ctx, c->who.key_id, n);
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                   */

typedef struct guarded {
    api_stream inner;
    api_runtime *rt;
} guarded;

static ssize_t guarded_read(void *ctx, char *buf, size_t max)
{
    guarded *g = ctx;
    return g->inner.read(g->inner.ctx, buf, max);
}

static void guarded_free(void *ctx)
{
    guarded *g = ctx;
    if (g->inner.free)
        g->inner.free(g->inner.ctx);
    atomic_fetch_sub(&g->rt->streams, 1);
    free(g);
}

void api_stream_guard(api_call *c)
{
    api_response *r = c->res;
    api_runtime *rt = c->ctx->runtime;
    if (!r->stream.read || !rt)
        return;
    int max = c->ctx->limits.max_streams;
    int now = atomic_fetch_add(&rt->streams, 1) + 1;
    guarded *g = NULL;
    if (max <= 0 || now <= max)
        g = malloc(sizeof(*g));
    if (g) {
        g->inner = r->stream;
        g->rt = rt;
        r->stream = (api_stream){ guarded_read, guarded_free, g };
        return;
    }
    atomic_fetch_sub(&rt->streams, 1);
    if (r->stream.free)
        r->stream.free(r->stream.ctx);
    memset(&r->stream, 0, sizeof(r->stream));
    for (int i = 0; i < r->n_headers; i++)
        free(r->header_values[i]);
    r->n_headers = 0;
    free(r->body);
    r->body = NULL;
    char msg[128];
    snprintf(msg, sizeof(msg), "%d streams are open, the server's limit; "
             "retry shortly", max);
    api_error(r, 503, "too_many_streams", msg, -1, NULL);
    api_response_header(r, "Retry-After", "5");
}

/* ------------------------------------------------------------------------ */
/* Handlers                                                                  */

static cJSON *usage_json(const store_key_usage *u, const store_key *k)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key_id", u->key_id);
    if (k) {
        cJSON_AddStringToObject(o, "name", k->name);
        cJSON_AddStringToObject(o, "role", k->role);
        cJSON_AddBoolToObject(o, "revoked", k->revoked_at != 0);
    }
    cJSON_AddNumberToObject(o, "tokens_trained", (double)u->tokens_trained);
    cJSON_AddNumberToObject(o, "tokens_generated",
                            (double)u->tokens_generated);
    cJSON_AddNumberToObject(o, "cpu_seconds", u->cpu_seconds);
    api_json_add_time(o, "updated_at", u->updated_at);
    return o;
}

void api_h_usage(api_call *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *arr = cJSON_AddArrayToObject(o, "data");
    store_key_usage *u = NULL;
    store_key *keys = NULL;
    int n = 0, nk = 0, r = 0;
    if (!c->who.auth) {
        /* keys off: nothing is counted per key */
    } else if (c->who.admin) {
        r = store_key_usage_list(c->ctx->db, &u, &n);
        if (r == 0)
            r = store_key_list(c->ctx->db, true, &keys, &nk);
    } else {
        u = malloc(sizeof(*u));
        keys = malloc(sizeof(*keys));
        r = u && keys ? store_key_usage_get(c->ctx->db, c->who.key_id, u)
                      : -ENOMEM;
        if (r == 0)
            r = store_key_get(c->ctx->db, c->who.key_id, keys);
        n = nk = r == 0;
    }
    for (int i = 0; r == 0 && i < n; i++) {
        const store_key *k = NULL;
        for (int j = 0; j < nk && !k; j++)
            if (!strcmp(keys[j].id, u[i].key_id))
                k = &keys[j];
        cJSON_AddItemToArray(arr, usage_json(&u[i], k));
    }
    free(u);
    free(keys);
    if (r < 0) {
        cJSON_Delete(o);
        api_reply_errno(c, r, "could not read the usage");
        return;
    }
    api_reply_json(c, 200, o);
}

void api_h_keys_list(api_call *c)
{
    store_key *keys = NULL;
    int n = 0;
    int r = store_key_list(c->ctx->db, true, &keys, &n);
    if (r < 0) {
        api_reply_errno(c, r, "could not list the keys");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *arr = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++) {
        cJSON *k = cJSON_CreateObject();
        cJSON_AddStringToObject(k, "id", keys[i].id);
        cJSON_AddStringToObject(k, "object", "api_key");
        cJSON_AddStringToObject(k, "name", keys[i].name);
        cJSON_AddStringToObject(k, "role", keys[i].role);
        cJSON_AddStringToObject(k, "prefix", keys[i].prefix);
        api_json_add_time(k, "created_at", keys[i].created_at);
        api_json_add_time(k, "revoked_at", keys[i].revoked_at);
        cJSON_AddItemToArray(arr, k);
    }
    free(keys);
    api_reply_json(c, 200, o);
}

/* POST /{datasets,jobs}/{id}/share {"shared": true|false}: the owner (or an
 * admin) shares a resource with the team or makes it private again. */
static void share(api_call *c, bool dataset)
{
    bool on = true;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->json, "shared");
    if (v && !cJSON_IsBool(v)) {
        api_error(c->res, 400, "invalid_parameter",
                  "shared must be true or false", -1, "shared");
        return;
    }
    if (v)
        on = cJSON_IsTrue(v);
    char owner[48] = "";
    int r;
    store_dataset d;
    store_job j;
    if (dataset) {
        r = store_dataset_get(c->ctx->db, c->id, &d);
        if (r == 0)
            snprintf(owner, sizeof(owner), "%s", d.owner);
    } else {
        r = store_job_get(c->ctx->db, c->id, &j);
        if (r == 0) {
            snprintf(owner, sizeof(owner), "%s", j.owner);
            store_job_done(&j);
        }
    }
    if (r == 0 && !c->who.admin && strcmp(owner, c->who.key_id) != 0) {
        api_error(c->res, 403, "forbidden", "only the owner or an admin may "
                  "change sharing", -1, "id");
        return;
    }
    if (r == 0)
        r = dataset ? store_dataset_set_shared(c->ctx->db, c->id, on)
                    : store_job_set_shared(c->ctx->db, c->id, on);
    if (r < 0) {
        api_reply_errno(c, r, "could not change sharing");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "object", dataset ? "dataset" : "job");
    cJSON_AddBoolToObject(o, "shared", on);
    api_reply_json(c, 200, o);
}

void api_h_datasets_share(api_call *c)
{
    share(c, true);
}

void api_h_jobs_share(api_call *c)
{
    share(c, false);
}
