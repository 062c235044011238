/* SPDX-License-Identifier: MIT */
/*
 * webhooks.c - delivers job webhooks from the store's outbox.
 *
 * DESIGN. When a job with a webhook_url reaches succeeded, failed or
 * cancelled, a trigger in the store adds a row to webhook_deliveries in the
 * same transaction (migration 0003), so no code path can end a job without
 * queueing its delivery, and a crash loses none. One thread, with its own
 * store handle, takes due rows oldest first: it fixes the body at the first
 * attempt (the job object, wrapped as {"object":"event","type":"job.<status>",
 * "id","created_at","data"}), signs it, and POSTs it with libcurl (10 s
 * timeout, no redirects). A 2xx marks the row delivered; anything else
 * schedules the next attempt after 1, 2, 4, ... seconds, up to
 * WEBHOOK_MAX_ATTEMPTS, then gives up (state failed). Rows survive restarts,
 * so a pending delivery resumes where it was; the only window for a second
 * POST is a crash between the receiver's 2xx and the row's update, which
 * the Tuna-Delivery header lets a receiver recognise.
 *
 * Signature: Tuna-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
 * "<t>.<body>"> keyed with the job's webhook_secret, else the server's
 * --webhook-secret; without either the header is left out. The thread
 * sleeps on a condition variable until the next due time (at most
 * POLL_S), and srv_webhooks_notify() wakes it when a job ends. Training
 * and HTTP never wait for it.
 */
#include "server/webhooks.h"

#include "server/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_S 1
#define WEBHOOK_TIMEOUT_S 10
#define WEBHOOK_MAX_ATTEMPTS 8

struct srv_webhooks {
    srv_webhooks_params p;
    store *db;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    uint64_t generation;
    atomic_bool stopping;
};

void srv_webhooks_notify(void *w)
{
    srv_webhooks *h = w;
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->generation++;
    pthread_cond_broadcast(&h->wake);
    pthread_mutex_unlock(&h->lock);
}

/* ------------------------------------------------------------------------ */
/* Signing                                                                   */

int srv_webhook_sign(const char *secret, int64_t t, const char *body,
                     char *ret_header, size_t len)
{
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "%lld.", (long long)t);
    size_t bl = strlen(body);
    char *msg = malloc((size_t)n + bl);
    uint8_t mac[32];
    if (!msg)
        return -ENOMEM;
    memcpy(msg, prefix, (size_t)n);
    memcpy(msg + n, body, bl);
    int e = gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, strlen(secret), msg,
                             (size_t)n + bl, mac);
    free(msg);
    if (e < 0)
        return -EIO;
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    snprintf(ret_header, len, "t=%lld,v1=%s", (long long)t, hex);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One delivery                                                              */

static int xfer_abort(void *user, curl_off_t a, curl_off_t b, curl_off_t c,
                      curl_off_t d)
{
    (void)a; (void)b; (void)c; (void)d;
    return atomic_load(&((srv_webhooks *)user)->stopping) ? 1 : 0;
}

static size_t discard(char *p, size_t size, size_t n, void *user)
{
    (void)p; (void)user;
    return size * n;
}

/* POSTs body; *ret_status gets the HTTP status (0 when none). */
static int post(srv_webhooks *h, const store_webhook *w, const char *sig,
                int *ret_status, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hd = NULL;
    char line[400], cerr[CURL_ERROR_SIZE] = "";
    long status = 0;
    if (!c)
        return -ENOMEM;
    hd = curl_slist_append(hd, "Content-Type: application/json");
    snprintf(line, sizeof line, "Tuna-Event: job.%s", w->event);
    hd = curl_slist_append(hd, line);
    snprintf(line, sizeof line, "Tuna-Delivery: %lld", (long long)w->seq);
    hd = curl_slist_append(hd, line);
    if (sig) {
        snprintf(line, sizeof line, "Tuna-Signature: %s", sig);
        hd = curl_slist_append(hd, line);
    }
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, w->body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tunad-webhooks");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)WEBHOOK_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_abort);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(err, errlen, "%s", *cerr ? cerr : curl_easy_strerror(rc));
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    *ret_status = (int)status;
    return rc == CURLE_OK ? 0 : -EIO;
}

/* The body of a delivery: the event wrapper around the job object. */
static char *make_body(srv_webhooks *h, const store_webhook *w)
{
    char *job = NULL;
    if (api_job_render(h->p.api, h->db, w->job_id, &job) < 0)
        return NULL;
    size_t n = strlen(job) + 256;
    char *body = malloc(n);
    if (body)
        snprintf(body, n, "{\"object\":\"event\",\"id\":\"whd_%lld\","
                 "\"type\":\"job.%s\",\"created_at\":%lld,\"data\":%s}",
                 (long long)w->seq, w->event, (long long)w->created_at, job);
    free(job);
    return body;
}

static void deliver(srv_webhooks *h, store_webhook *w)
{
    char err[256] = "", sig[128];
    const char *secret = h->p.secret;
    store_job j;
    if (!w->body) {
        w->body = make_body(h, w);
        if (!w->body || store_webhook_set_body(h->db, w->seq, w->body) < 0) {
            srv_error("webhook %lld of job %s: cannot build its body",
                      (long long)w->seq, w->job_id);
            store_webhook_attempted(h->db, w->seq, false, 0,
                                    "cannot build the body",
                                    (int64_t)time(NULL) + 1);
            return;
        }
    }
    bool have_job = store_job_get(h->db, w->job_id, &j) == 0;
    if (have_job && j.webhook_secret[0])
        secret = j.webhook_secret;
    sig[0] = 0;
    if (secret && *secret &&
        srv_webhook_sign(secret, (int64_t)time(NULL), w->body, sig,
                         sizeof sig) < 0)
        sig[0] = 0;
    if (have_job)
        store_job_done(&j);
    int status = 0;
    int e = post(h, w, *sig ? sig : NULL, &status, err, sizeof err);
    if (atomic_load(&h->stopping) && e < 0)
        return;   /* interrupted by shutdown: the attempt does not count */
    bool ok = e == 0 && status >= 200 && status < 300;
    if (e == 0 && !ok)
        snprintf(err, sizeof err, "HTTP %d", status);
    int attempt = w->attempts + 1;
    /* rounded up: the next attempt comes a whole delay later, at least */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t next = ok || attempt >= WEBHOOK_MAX_ATTEMPTS
                       ? 0 : (int64_t)ts.tv_sec + (1LL << (attempt - 1)) +
                                 (ts.tv_nsec > 0);
    store_webhook_attempted(h->db, w->seq, ok, status, ok ? NULL : err, next);
    if (ok)
        srv_info("webhook job.%s of job %s delivered to %s (attempt %d)",
                 w->event, w->job_id, w->url, attempt);
    else
        srv_warn("webhook job.%s of job %s to %s: attempt %d failed: %s%s",
                 w->event, w->job_id, w->url, attempt, err,
                 next ? "" : "; giving up");
}

/* ------------------------------------------------------------------------ */
/* The thread                                                                */

static void wait_until(srv_webhooks *h, uint64_t seen, int64_t due)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t now = until.tv_sec;
    int64_t wait = due > now ? due - now : 0;
    if (due <= 0 || wait > POLL_S)
        wait = POLL_S;
    until.tv_sec += wait;
    pthread_mutex_lock(&h->lock);
    while (h->generation == seen && !atomic_load(&h->stopping))
        if (pthread_cond_timedwait(&h->wake, &h->lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&h->lock);
}

static void *webhooks_main(void *arg)
{
    srv_webhooks *h = arg;
    while (!atomic_load(&h->stopping)) {
        pthread_mutex_lock(&h->lock);
        uint64_t seen = h->generation;
        pthread_mutex_unlock(&h->lock);
        store_webhook w;
        int e = store_webhook_next_due(h->db, (int64_t)time(NULL), &w);
        if (e == 0) {
            deliver(h, &w);
            store_webhook_done(&w);
            continue;
        }
        int64_t due = 0;
        store_webhook_next_time(h->db, &due);
        wait_until(h, seen, due);
    }
    return NULL;
}

int srv_webhooks_start(const srv_webhooks_params *p, srv_webhooks **ret,
                       char *err, size_t errlen)
{
    srv_webhooks *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->p = *p;
    atomic_init(&h->stopping, false);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->wake, NULL);
    int e = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
    if (e == 0)
        e = store_open(p->db_path, &h->db, err, errlen);
    if (e == 0) {
        e = -pthread_create(&h->thread, NULL, webhooks_main, h);
        if (e < 0)
            snprintf(err, errlen, "cannot start the webhook thread: %s",
                     strerror(-e));
        h->started = e == 0;
    }
    if (e < 0) {
        srv_webhooks_free(h);
        return e;
    }
    *ret = h;
    return 0;
}

void srv_webhooks_free(srv_webhooks *h)
{
    if (!h)
        return;
    atomic_store(&h->stopping, true);
    srv_webhooks_notify(h);
    if (h->started)
        pthread_join(h->thread, NULL);
    store_close(h->db);
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    free(h);
    curl_global_cleanup();
}
