/* SPDX-License-Identifier: MIT */
/*
 * runner.h - runs one claimed training job from start to a final status.
 */
#ifndef TUNA_SRV_RUNNER_H
#define TUNA_SRV_RUNNER_H

#include "api/api.h"
#include "store/store.h"

#include <stdatomic.h>

typedef struct srv_runner_env {
    store *db;                 /* this worker's own handle */
    api_registry *models;
    const char *data_dir;
    int n_threads;             /* engine threads for training */
    const atomic_bool *stopping; /* set on shutdown */
    /* Called before every micro-step: waits (bounded) while interactive
     * requests are in flight, so they go first (srv_sched_yield). */
    void (*yield)(void *user);
    void *yield_user;
} srv_runner_env;

/* Trains job j (already claimed: status running) and ends it as succeeded,
 * failed or cancelled, writing progress, events and metrics as it goes.
 * Returns 0 once the job has a final status, or -ECANCELED when a shutdown
 * interrupted it: the job is then left running, and the next start of the
 * daemon queues it again. */
int srv_runner_run(const srv_runner_env *env, const store_job *j);

#endif
