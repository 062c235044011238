/* SPDX-License-Identifier: MIT */
/*
 * scheduler.c - continuous batching (see scheduler.h).
 *
 * One thread runs every generation of the daemon. Requests arrive through
 * srv_sched_submit (api_ctx.submit) as jobs of eng_seq sequences; the
 * thread takes the new ones between steps, so a request joins the running
 * batch at the next step, and each step is, per base model, one
 * eng_seq_step: every unfinished sequence of every job on that base
 * contributes its next tokens (a prompt chunk of at most max_rows, or its
 * last sampled token) to one eng_batch_eval, whose matmuls read the
 * weights once for all rows (each row with its own adapter), and then
 * samples its own next token. A job leaves the batch when all its
 * sequences ended, or at once, before the next step, when its cancelled()
 * says so (a client that went away, the request timeout, shutdown).
 *
 * Greedy tokens do not depend on the batch: eng_batch_eval is bit-exact per
 * row whatever the rows and threads (engine/batch.h), and a request run
 * alone goes through the very same path (a batch of its own sequences).
 *
 * The thread never blocks on a client: the sequences' callbacks only queue
 * events that the request's own thread relays (api/serve.c).
 *
 * Training yields: srv_sched_yield, called by the training runner before
 * every micro-step, waits while any request is in flight (bounded by
 * yield_max_ms), so interactive requests get the cores and the memory
 * bandwidth and training continues between them.
 *
 * Scratch: one eng_batch per base model in use, kept while the thread is
 * busy and freed after IDLE_FREE_S seconds without work.
 */
#include "server/scheduler.h"

#include "engine/decode.h"
#include "server/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BATCHES 8
#define BATCH_SEQS 64
#define IDLE_FREE_S 10

typedef struct batch_slot {
    eng_model *m;              /* borrowed from the batch's own ref */
    eng_batch *b;
} batch_slot;

struct srv_sched {
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    api_sched_job *in_head, *in_tail;  /* submitted, not yet taken */
    bool stopping, started;
    pthread_t thread;
    atomic_int in_flight;
    srv_sched_params p;
    srv_sched_stats st;
    /* the thread's own */
    api_sched_job *active;
    batch_slot batches[MAX_BATCHES];
    int n_batches;
    eng_seq **seqs;
    int cap_seqs;
};

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Hands a job back (the scheduler forgets it first). */
static void finish(srv_sched *s, api_sched_job *j, int rc)
{
    void (*fin)(void *, int) = j->finished;
    void *user = j->user;
    pthread_mutex_lock(&s->mu);
    atomic_fetch_sub(&s->in_flight, 1);
    s->st.jobs++;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    fin(user, rc);
}

static bool job_ended(const api_sched_job *j)
{
    for (int i = 0; i < j->n_seqs; i++)
        if (!eng_seq_ended(j->seqs[i]))
            return false;
    return true;
}

/* Removes from the active list (and finishes) the jobs pred selects. */
static void finish_where(srv_sched *s, bool (*pred)(api_sched_job *, void *),
                         void *arg, int rc)
{
    api_sched_job **pp = &s->active;
    while (*pp) {
        api_sched_job *j = *pp;
        if (pred(j, arg)) {
            *pp = j->next;
            finish(s, j, rc);
        } else {
            pp = &j->next;
        }
    }
}

static bool is_cancelled(api_sched_job *j, void *arg)
{
    (void)arg;
    return j->cancelled && j->cancelled(j->user);
}

static bool is_ended(api_sched_job *j, void *arg)
{
    (void)arg;
    return job_ended(j);
}

static bool on_model(api_sched_job *j, void *arg)
{
    return j->model == arg;
}

static bool any(api_sched_job *j, void *arg)
{
    (void)j;
    (void)arg;
    return true;
}

static void free_batches(srv_sched *s)
{
    for (int i = 0; i < s->n_batches; i++)
        eng_batch_free(s->batches[i].b);
    s->n_batches = 0;
}

static bool model_active(srv_sched *s, const eng_model *m)
{
    for (api_sched_job *j = s->active; j; j = j->next)
        if (j->model == m)
            return true;
    return false;
}

static eng_batch *batch_for(srv_sched *s, eng_model *m)
{
    for (int i = 0; i < s->n_batches; i++)
        if (s->batches[i].m == m)
            return s->batches[i].b;
    if (s->n_batches == MAX_BATCHES) {
        int k = 0;
        while (k < s->n_batches - 1 && model_active(s, s->batches[k].m))
            k++;
        eng_batch_free(s->batches[k].b);
        s->batches[k] = s->batches[--s->n_batches];
    }
    eng_batch *b = NULL;
    if (eng_batch_new(m, BATCH_SEQS, &b) < 0)
        return NULL;
    s->batches[s->n_batches++] = (batch_slot){ m, b };
    return b;
}

/* One step for every job on model m. */
static void step_model(srv_sched *s, eng_model *m)
{
    int n = 0, rc;
    for (api_sched_job *j = s->active; j; j = j->next) {
        if (j->model != m)
            continue;
        if (n + j->n_seqs > s->cap_seqs) {
            int cap = (n + j->n_seqs) * 2;
            eng_seq **q = realloc(s->seqs, (size_t)cap * sizeof(*q));
            if (!q) {
                finish_where(s, on_model, m, -ENOMEM);
                return;
            }
            s->seqs = q;
            s->cap_seqs = cap;
        }
        for (int i = 0; i < j->n_seqs; i++)
            if (!eng_seq_ended(j->seqs[i]))
                s->seqs[n++] = j->seqs[i];
    }
    if (n == 0)
        return;
    eng_batch *b = batch_for(s, m);
    rc = b ? eng_seq_step(b, s->seqs, n, s->p.max_rows) : -ENOMEM;
    if (rc < 0) {
        srv_error("scheduler: a batched step failed: %s", strerror(-rc));
        finish_where(s, on_model, m, rc);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->st.steps++;
    s->st.tokens += n;
    if (n > s->st.max_batch)
        s->st.max_batch = n;
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *arg)
{
    srv_sched *s = arg;
    eng_seq_set_threads(s->p.threads);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !s->in_head && !s->active) {
            struct timespec until;
            deadline_in(&until, IDLE_FREE_S * 1000L);
            if (pthread_cond_timedwait(&s->work, &s->mu, &until) ==
                    ETIMEDOUT &&
                !s->in_head && s->n_batches) {
                pthread_mutex_unlock(&s->mu);
                free_batches(s); /* idle: give the scratch back */
                pthread_mutex_lock(&s->mu);
            }
        }
        /* new jobs join between steps, in arrival order */
        api_sched_job **tail = &s->active;
        while (*tail)
            tail = &(*tail)->next;
        *tail = s->in_head;
        s->in_head = s->in_tail = NULL;
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping)
            break;
        finish_where(s, is_cancelled, NULL, -ECANCELED);
        /* one step per base model with work, oldest job's model first */
        eng_model *models[MAX_BATCHES];
        int n_models = 0;
        for (api_sched_job *j = s->active; j && n_models < MAX_BATCHES;
             j = j->next) {
            bool seen = false;
            for (int k = 0; k < n_models && !seen; k++)
                seen = models[k] == j->model;
            if (!seen)
                models[n_models++] = j->model;
        }
        for (int k = 0; k < n_models; k++)
            step_model(s, models[k]); /* a failed step drops only its own */
        finish_where(s, is_ended, NULL, 0);
    }
    finish_where(s, any, NULL, -ECANCELED);
    free_batches(s);
    return NULL;
}

int srv_sched_start(const srv_sched_params *p, srv_sched **ret)
{
    srv_sched *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;
    int e;
    if (!s)
        return -ENOMEM;
    if (p)
        s->p = *p;
    if (s->p.threads < 1)
        s->p.threads = 1;
    if (s->p.max_rows <= 0)
        s->p.max_rows = ENG_BATCH_CHUNK;
    if (s->p.yield_max_ms <= 0)
        s->p.yield_max_ms = 1000;
    atomic_init(&s->in_flight, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->work, &ca);
    pthread_cond_init(&s->idle, &ca);
    pthread_condattr_destroy(&ca);
    if ((e = pthread_create(&s->thread, NULL, sched_main, s)) != 0) {
        srv_sched_free(s);
        return -e;
    }
    s->started = true;
    *ret = s;
    return 0;
}

int srv_sched_submit(void *user, api_sched_job *job)
{
    srv_sched *s = user;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (s->stopping || !s->started) {
        rc = -ESHUTDOWN;
    } else {
        job->next = NULL;
        if (s->in_tail)
            s->in_tail->next = job;
        else
            s->in_head = job;
        s->in_tail = job;
        atomic_fetch_add(&s->in_flight, 1);
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void srv_sched_stop(srv_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->work);
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    if (s->started) {
        pthread_join(s->thread, NULL);
        s->started = false;
    }
    /* jobs submitted after the thread's last look */
    pthread_mutex_lock(&s->mu);
    api_sched_job *j = s->in_head;
    s->in_head = s->in_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        api_sched_job *next = j->next;
        finish(s, j, -ECANCELED);
        j = next;
    }
}

void srv_sched_free(srv_sched *s)
{
    if (!s)
        return;
    srv_sched_stop(s);
    free(s->seqs);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int srv_sched_in_flight(srv_sched *s)
{
    return s ? atomic_load(&s->in_flight) : 0;
}

void srv_sched_yield(void *user)
{
    srv_sched *s = user;
    if (!s || atomic_load(&s->in_flight) == 0)
        return;
    struct timespec until;
    deadline_in(&until, s->p.yield_max_ms);
    pthread_mutex_lock(&s->mu);
    s->st.train_yields++;
    while (atomic_load(&s->in_flight) > 0 && !s->stopping)
        if (pthread_cond_timedwait(&s->idle, &s->mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&s->mu);
}

void srv_sched_get_stats(srv_sched *s, srv_sched_stats *ret)
{
    pthread_mutex_lock(&s->mu);
    *ret = s->st;
    ret->in_flight = atomic_load(&s->in_flight);
    pthread_mutex_unlock(&s->mu);
}
