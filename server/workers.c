/* SPDX-License-Identifier: MIT */
/*
 * workers.c - a fixed pool of training workers.
 *
 * DESIGN. The queue is the jobs table: a worker takes the oldest queued job
 * of the highest priority with store_job_claim_next(), which is atomic
 * across handles and processes, so no job is ever taken twice. Each worker
 * owns its SQLite handle and its engine state, and runs one job at a time
 * (runner.c). An idle worker sleeps on a condition variable; it wakes when
 * the API queues or cancels a job (srv_pool_notify, through
 * api_ctx.notify_jobs), on shutdown, and every POLL_S seconds in any case,
 * which picks up jobs queued by another process on the same database. A
 * generation counter under the mutex makes sure a notify that arrives
 * between a failed claim and the wait is not lost.
 *
 * Shutdown sets an atomic flag that the runner's abort hook reads, so a
 * running step ends within one step; the job stays "running" in the store
 * and is queued again at the next start.
 */
#include "server/workers.h"

#include "server/log.h"
#include "server/runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POLL_S 2

typedef struct srv_worker {
    srv_pool *pool;
    store *db;
    pthread_t thread;
    bool started;
    char name[64];
} srv_worker;

struct srv_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    uint64_t generation;       /* bumped by every notify */
    atomic_bool stopping;
    srv_pool_params params;
    srv_worker *workers;
    int n;
};

void srv_pool_notify(void *pool)
{
    srv_pool *p = pool;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

static uint64_t generation(srv_pool *p)
{
    pthread_mutex_lock(&p->lock);
    uint64_t g = p->generation;
    pthread_mutex_unlock(&p->lock);
    return g;
}

/* Sleeps until a notify newer than seen, shutdown, or POLL_S seconds. */
static void wait_for_work(srv_pool *p, uint64_t seen)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += POLL_S;
    pthread_mutex_lock(&p->lock);
    while (p->generation == seen && !atomic_load(&p->stopping))
        if (pthread_cond_timedwait(&p->wake, &p->lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&p->lock);
}

static void *worker_main(void *arg)
{
    srv_worker *w = arg;
    srv_pool *p = w->pool;
    srv_runner_env env = {
        .db = w->db,
        .models = p->params.models,
        .data_dir = p->params.data_dir,
        .n_threads = p->params.train_threads,
        .stopping = &p->stopping,
        .yield = p->params.yield,
        .yield_user = p->params.yield_user,
    };
    eng_set_threads(p->params.train_threads);
    while (!atomic_load(&p->stopping)) {
        uint64_t seen = generation(p);
        store_job j;
        int e = store_job_claim_next(w->db, w->name, &j);
        if (e == 0) {
            srv_runner_run(&env, &j);
            store_job_done(&j);
            continue;
        }
        if (e != -ENOENT)
            srv_error("%s: cannot claim a job: %s", w->name, strerror(-e));
        wait_for_work(p, seen);
    }
    return NULL;
}

void srv_pool_stop(srv_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stopping, true);
    srv_pool_notify(p);
    for (int i = 0; i < p->n; i++) {
        if (p->workers[i].started)
            pthread_join(p->workers[i].thread, NULL);
        p->workers[i].started = false;
    }
}

void srv_pool_free(srv_pool *p)
{
    if (!p)
        return;
    srv_pool_stop(p);
    for (int i = 0; i < p->n; i++)
        store_close(p->workers[i].db);
    free(p->workers);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int srv_pool_start(const srv_pool_params *params, srv_pool **ret, char *err,
                   size_t errlen)
{
    srv_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->params = *params;
    atomic_init(&p->stopping, false);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    p->workers = calloc((size_t)params->workers, sizeof *p->workers);
    if (!p->workers) {
        srv_pool_free(p);
        return -ENOMEM;
    }
    p->n = params->workers;

    char host[32] = "";
    gethostname(host, sizeof host - 1);
    int e = 0;
    for (int i = 0; i < p->n && e == 0; i++) {
        srv_worker *w = &p->workers[i];
        w->pool = p;
        snprintf(w->name, sizeof w->name, "%s:%d:w%d", host, (int)getpid(),
                 i);
        e = store_open(params->db_path, &w->db, err, errlen);
        if (e < 0)
            break;
        e = -pthread_create(&w->thread, NULL, worker_main, w);
        if (e < 0)
            snprintf(err, errlen, "cannot start worker %d: %s", i,
                     strerror(-e));
        w->started = e == 0;
    }
    if (e < 0) {
        srv_pool_free(p);
        return e;
    }
    *ret = p;
    return 0;
}
