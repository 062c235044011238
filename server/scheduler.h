/* SPDX-License-Identifier: MIT */
/*
 * scheduler.h - continuous batching: the one thread that runs every
 * generation (api_ctx.submit), and the yield that gives interactive
 * requests priority over training steps.
 */
#ifndef TUNA_SRV_SCHEDULER_H
#define TUNA_SRV_SCHEDULER_H

#include "api/api.h"

#include <stdbool.h>

typedef struct srv_sched srv_sched;

typedef struct srv_sched_params {
    int threads;               /* engine threads of the batched forward */
    int max_rows;              /* prompt tokens per sequence per step
                                * (0: 256); longer prompts take steps */
    int yield_max_ms;          /* longest a training micro-step waits for
                                * requests in flight (0: 1000) */
} srv_sched_params;

int srv_sched_start(const srv_sched_params *p, srv_sched **ret);
/* api_ctx.submit (user: the scheduler). */
int srv_sched_submit(void *user, api_sched_job *job);
/* Drops every job (finished with -ECANCELED) and joins the thread; later
 * submits answer -ESHUTDOWN. */
void srv_sched_stop(srv_sched *s);
void srv_sched_free(srv_sched *s);   /* stops first; NULL is fine */

/* Requests submitted and not finished. */
int srv_sched_in_flight(srv_sched *s);
/* For the training runner, before each micro-step: waits while requests
 * are in flight, at most yield_max_ms, so a request's time to first token
 * does not queue behind training and training still progresses. user: the
 * scheduler (NULL: returns at once). */
void srv_sched_yield(void *user);

typedef struct srv_sched_stats {
    int64_t steps, tokens, jobs;   /* since start */
    int in_flight, max_batch;      /* now; largest batch seen */
    int64_t train_yields;          /* micro-steps that waited */
} srv_sched_stats;
void srv_sched_get_stats(srv_sched *s, srv_sched_stats *ret);

#endif
