/* SPDX-License-Identifier: MIT */
/*
 * workers.h - the training worker pool.
 */
#ifndef TUNA_SRV_WORKERS_H
#define TUNA_SRV_WORKERS_H

#include "api/api.h"

#include <stddef.h>

typedef struct srv_pool srv_pool;

typedef struct srv_pool_params {
    const char *db_path;       /* each worker opens its own store handle */
    const char *data_dir;
    api_registry *models;      /* borrowed until srv_pool_stop() */
    int workers;
    int train_threads;         /* engine threads of each worker */
    void (*yield)(void *user); /* srv_runner_env.yield, may be NULL */
    void *yield_user;
} srv_pool_params;

/* Opens the workers' store handles and starts the threads. */
int srv_pool_start(const srv_pool_params *p, srv_pool **ret, char *err,
                   size_t errlen);
/* Wakes idle workers to look for queued jobs (api_ctx.notify_jobs). */
void srv_pool_notify(void *pool);
/* Sets the shutdown flag (running steps abort, their jobs stay running
 * for the next start to queue again) and joins the threads. The pool stays
 * valid for srv_pool_notify() until srv_pool_free(). */
void srv_pool_stop(srv_pool *p);
/* Stops the pool if needed, closes the handles and frees it. NULL is fine. */
void srv_pool_free(srv_pool *p);

#endif
