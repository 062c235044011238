/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * The api side reports what it knows: jobs by status (one GROUP BY), queue
 * depth, training tokens/s (the sum over running jobs of their last
 * measured rate), generated tokens (a counter and a one-minute rate),
 * streams open, rate-limited requests, resident models and adapters. The
 * server appends its own families through ctx->metrics: HTTP requests by
 * route and status, latency histograms, memory.
 */
#include "api/api-impl.h"

#include <stdlib.h>
#include <string.h>

static void family(FILE *f, const char *name, const char *type,
                   const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void jobs_metrics(api_call *c, FILE *f)
{
    static const char *const statuses[] = {
        "queued", "running", "paused", "succeeded", "failed", "cancelled",
    };
    store_job_counts jc;
    if (store_job_status_counts(c->ctx->db, &jc) < 0)
        jc.n = 0;
    family(f, "tuna_jobs", "gauge", "Jobs by status.");
    int64_t queued = 0;
    for (size_t s = 0; s < sizeof(statuses) / sizeof(*statuses); s++) {
        int64_t n = 0;
        for (int i = 0; i < jc.n; i++)
            if (!strcmp(jc.status[i], statuses[s]))
                n = jc.count[i];
        if (s == 0)
            queued = n;
        fprintf(f, "tuna_jobs{status=\"%s\"} %lld\n", statuses[s],
                (long long)n);
    }
    family(f, "tuna_queue_depth", "gauge", "Jobs waiting for a worker.");
    fprintf(f, "tuna_queue_depth %lld\n", (long long)queued);

    store_job *run = NULL;
    int n = 0;
    double tps = 0;
    if (store_job_list_for(c->ctx->db, NULL, "running", 1000, &run, &n) == 0) {
        for (int i = 0; i < n; i++)
            tps += run[i].tokens_per_second > 0 ? run[i].tokens_per_second
                                                : 0;
        store_job_list_free(run, n);
    }
    family(f, "tuna_training_tokens_per_second", "gauge",
           "Training throughput summed over running jobs.");
    fprintf(f, "tuna_training_tokens_per_second %.3f\n", tps);
}

static void runtime_metrics(api_call *c, FILE *f)
{
    api_runtime_stats st;
    api_runtime_get_stats(c->ctx->runtime, &st);
    family(f, "tuna_generation_tokens_total", "counter",
           "Tokens generated since start.");
    fprintf(f, "tuna_generation_tokens_total %lld\n",
            (long long)st.generated_tokens);
    family(f, "tuna_generation_tokens_per_second", "gauge",
           "Tokens generated per second over the last minute.");
    fprintf(f, "tuna_generation_tokens_per_second %.3f\n", st.generation_tps);
    family(f, "tuna_streams_open", "gauge", "Streamed responses open.");
    fprintf(f, "tuna_streams_open %d\n", st.streams_open);
    family(f, "tuna_rate_limited_total", "counter",
           "Requests refused by the per-key rate limit.");
    fprintf(f, "tuna_rate_limited_total %lld\n", (long long)st.rate_limited);

    int bases = 0, adapters = 0;
    if (c->ctx->models)
        api_registry_counts(c->ctx->models, &bases, &adapters);
    family(f, "tuna_resident_models", "gauge", "Base models in memory.");
    fprintf(f, "tuna_resident_models %d\n", bases);
    family(f, "tuna_resident_adapters", "gauge",
           "Finetuned adapters in memory.");
    fprintf(f, "tuna_resident_adapters %d\n", adapters);
}

void api_h_metrics(api_call *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return;
    }
    jobs_metrics(c, f);
    runtime_metrics(c, f);
    if (c->ctx->metrics)
        c->ctx->metrics(c->ctx->metrics_user, f);
    if (fclose(f) != 0) {
        free(buf);
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return;
    }
    c->res->status = 200;
    c->res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    c->res->body = buf;
    c->res->body_len = len;
}
