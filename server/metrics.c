/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - HTTP request counters and latency histograms for /metrics.
 *
 * Series are keyed by the route pattern ("/jobs/{id}"), never the raw
 * path, so their number stays bounded by the route table: a fixed array of
 * MAX_SERIES (route, method, status) counters and MAX_ROUTES histograms,
 * searched linearly under one mutex (a few dozen entries; the lock is held
 * for well under a microsecond). Past the caps, requests are still counted
 * in an "other" series. Memory comes from /proc/self/statm.
 */
#include "server/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SERIES 256
#define MAX_ROUTES 64

static const double buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    30, 60,
};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct series {
    const char *route;
    char method[8];
    int status;
    uint64_t count;
} series;

typedef struct histogram {
    const char *route;
    uint64_t le[N_BUCKETS];
    uint64_t count;
    double sum;
} histogram;

struct srv_metrics {
    pthread_mutex_t mu;
    series s[MAX_SERIES];
    int n_s;
    histogram h[MAX_ROUTES];
    int n_h;
};

int srv_metrics_new(srv_metrics **ret)
{
    srv_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return -1;
    pthread_mutex_init(&m->mu, NULL);
    *ret = m;
    return 0;
}

void srv_metrics_free(srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static bool same_route(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

void srv_metrics_request(srv_metrics *m, const char *route,
                         const char *method, int status, double seconds)
{
    if (!m)
        return;
    if (!route)
        route = "unmatched";
    char meth[8];
    snprintf(meth, sizeof meth, "%s", method);
    /* Unknown methods would make unbounded series. */
    static const char *const known[] = {"GET", "POST", "PUT", "DELETE",
                                        "PATCH", "HEAD", "OPTIONS"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof *known && !ok; i++)
        ok = !strcmp(meth, known[i]);
    if (!ok)
        snprintf(meth, sizeof meth, "other");
    pthread_mutex_lock(&m->mu);
    series *s = NULL;
    for (int i = 0; i < m->n_s && !s; i++)
        if (m->s[i].status == status && !strcmp(m->s[i].method, meth) &&
            same_route(m->s[i].route, route))
            s = &m->s[i];
    if (!s && m->n_s < MAX_SERIES) {
        s = &m->s[m->n_s++];
        s->route = route;
        snprintf(s->method, sizeof s->method, "%s", meth);
        s->status = status;
    }
    if (s)
        s->count++;
    histogram *h = NULL;
    for (int i = 0; i < m->n_h && !h; i++)
        if (same_route(m->h[i].route, route))
            h = &m->h[i];
    if (!h && m->n_h < MAX_ROUTES) {
        h = &m->h[m->n_h++];
        h->route = route;
    }
    if (h) {
        for (size_t b = 0; b < N_BUCKETS; b++)
            if (seconds <= buckets[b])
                h->le[b]++;
        h->count++;
        h->sum += seconds;
    }
    pthread_mutex_unlock(&m->mu);
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

void srv_metrics_write(void *user, FILE *f)
{
    srv_metrics *m = user;
    fputs("# HELP tuna_http_requests_total HTTP requests answered, by route "
          "pattern, method and status.\n"
          "# TYPE tuna_http_requests_total counter\n", f);
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_s; i++)
        fprintf(f, "tuna_http_requests_total{route=\"%s\",method=\"%s\","
                "status=\"%d\"} %llu\n", m->s[i].route, m->s[i].method,
                m->s[i].status, (unsigned long long)m->s[i].count);
    fputs("# HELP tuna_http_request_duration_seconds Time from the request "
          "line to the answer queued, by route pattern.\n"
          "# TYPE tuna_http_request_duration_seconds histogram\n", f);
    for (int i = 0; i < m->n_h; i++) {
        const histogram *h = &m->h[i];
        for (size_t b = 0; b < N_BUCKETS; b++)
            fprintf(f, "tuna_http_request_duration_seconds_bucket{route="
                    "\"%s\",le=\"%g\"} %llu\n", h->route, buckets[b],
                    (unsigned long long)h->le[b]);
        fprintf(f, "tuna_http_request_duration_seconds_bucket{route=\"%s\","
                "le=\"+Inf\"} %llu\n", h->route,
                (unsigned long long)h->count);
        fprintf(f, "tuna_http_request_duration_seconds_sum{route=\"%s\"} "
                "%.6f\n", h->route, h->sum);
        fprintf(f, "tuna_http_request_duration_seconds_count{route=\"%s\"} "
                "%llu\n", h->route, (unsigned long long)h->count);
    }
    pthread_mutex_unlock(&m->mu);
    fputs("# HELP process_resident_memory_bytes Resident memory (RSS).\n"
          "# TYPE process_resident_memory_bytes gauge\n", f);
    fprintf(f, "process_resident_memory_bytes %ld\n", rss_bytes());
}
