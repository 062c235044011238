/* SPDX-License-Identifier: MIT */
/*
 * serve.c - admission (running places, a FIFO queue, 429 beyond it) and
 * api_serve_generate, the one function every generation goes through. See
 * serve.h for the design.
 *
 * The admission state is one mutex, one condition variable (CLOCK_MONOTONIC)
 * and an intrusive doubly linked FIFO of waiting slots (the slots live in
 * the callers' storage). A waiter runs when it is first in the queue and a
 * running place is free; it wakes on every api_serve_leave and at least
 * every WAIT_POLL_MS to poll its own cancellation (the client may be gone)
 * and its deadline.
 */
#include "api/serve.h"

#include "engine/decode.h"

#include <stdatomic.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_POLL_MS 50

struct api_serve {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    api_serve_limits lim;
    int running, queued;
    int lingering;             /* released places whose requests run on */
    api_slot *head, *tail;     /* waiting slots, oldest first */
    bool stopping;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Condition variables here wait by CLOCK_MONOTONIC: a step of the wall
 * clock neither stretches nor cuts a wait. */
static void cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* Waits on cv for at most WAIT_POLL_MS, so that the waiter also polls
 * what no one signals (a client gone, a deadline). */
static void cond_wait_poll(pthread_cond_t *cv, pthread_mutex_t *mu)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += WAIT_POLL_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &until);
}

void api_serve_limits_default(api_serve_limits *l)
{
    l->max_concurrent = 4;
    l->max_queued = 64;
    l->request_timeout_s = 300;
}

int api_serve_new(const api_serve_limits *l, api_serve **ret)
{
    api_serve *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    if (l)
        s->lim = *l;
    else
        api_serve_limits_default(&s->lim);
    if (s->lim.max_concurrent < 1)
        s->lim.max_concurrent = 1;
    if (s->lim.max_queued < 0)
        s->lim.max_queued = 0;
    pthread_mutex_init(&s->mu, NULL);
    cond_init(&s->cv);
    *ret = s;
    return 0;
}

void api_serve_stop(api_serve *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    while (s->running > 0 || s->queued > 0 || s->lingering > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void api_serve_free(api_serve *s)
{
    if (!s)
        return;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Admission                                                                 */

int api_serve_admit(api_ctx *ctx, api_slot *slot)
{
    api_serve *s = ctx->serve;
    int rc = 0;
    memset(slot, 0, sizeof(*slot));
    if (!s) {
        slot->admitted = slot->running = true;
        return 0;
    }
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        rc = -ESHUTDOWN;
    } else if (s->running < s->lim.max_concurrent && !s->head) {
        s->running++;
        slot->running = true;
    } else if (s->queued < s->lim.max_queued) {
        s->queued++;
        slot->prev = s->tail;
        if (s->tail)
            s->tail->next = slot;
        else
            s->head = slot;
        s->tail = slot;
    } else {
        rc = -EAGAIN;
    }
    if (rc == 0) {
        slot->admitted = true;
        if (s->lim.request_timeout_s > 0)
            slot->deadline_ms = now_ms() +
                                (int64_t)s->lim.request_timeout_s * 1000;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void unlink_slot(api_serve *s, api_slot *slot)
{
    if (slot->prev)
        slot->prev->next = slot->next;
    else
        s->head = slot->next;
    if (slot->next)
        slot->next->prev = slot->prev;
    else
        s->tail = slot->prev;
    slot->next = slot->prev = NULL;
    s->queued--;
}

void api_serve_leave(api_ctx *ctx, api_slot *slot)
{
    api_serve *s = ctx->serve;
    if (!slot->admitted)
        return;
    slot->admitted = false;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    if (slot->released)
        s->lingering--;
    else if (slot->running)
        s->running--;
    else
        unlink_slot(s, slot);
    slot->running = slot->released = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int api_serve_retry_after(api_ctx *ctx)
{
    (void)ctx;
    return 1;
}

static bool past(const api_slot *slot)
{
    return slot->deadline_ms > 0 && now_ms() >= slot->deadline_ms;
}

/* Waits until slot may run: 0, -ECANCELED or -ETIMEDOUT. */
static int wait_turn(api_serve *s, api_slot *slot, const api_gen_callbacks *cb)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (!slot->running) {
        if (s->stopping) {
            rc = -ECANCELED;
            break;
        }
        if (s->head == slot && s->running < s->lim.max_concurrent) {
            unlink_slot(s, slot);
            s->running++;
            slot->running = true;
            break;
        }
        if (past(slot)) {
            rc = -ETIMEDOUT;
            break;
        }
        pthread_mutex_unlock(&s->mu);
        bool gone = cb->cancelled && cb->cancelled(cb->user);
        pthread_mutex_lock(&s->mu);
        if (gone) {
            rc = -ECANCELED;
            break;
        }
        cond_wait_poll(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Generation                                                                */

/* One event from a sequence to the request's thread. */
typedef enum { EV_TEXT, EV_TOKEN, EV_DONE } ev_kind;

typedef struct gen_event {
    struct gen_event *next;
    ev_kind kind;
    int seq;
    eng_finish finish;
    int prompt_tokens, completion_tokens;
    eng_token_info info;
    eng_token_prob top[ENG_MAX_TOP_LOGPROBS];
    size_t len;
    char text[];
} gen_event;

typedef struct gen_run gen_run;

typedef struct seq_user {
    gen_run *r;
    int seq;
} seq_user;

struct gen_run {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gen_event *head, *tail;
    bool finished, oom;
    int rc;
    atomic_bool cancel;
    api_sched_job job;
    seq_user *su;
};

static void push(gen_run *r, gen_event *e)
{
    pthread_mutex_lock(&r->mu);
    if (!e) {
        r->oom = true;
    } else {
        e->next = NULL;
        if (r->tail)
            r->tail->next = e;
        else
            r->head = e;
        r->tail = e;
    }
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static bool ev_text(void *user, const char *text, size_t len)
{
    seq_user *u = user;
    gen_event *e = malloc(sizeof(*e) + len);
    if (e) {
        memset(e, 0, sizeof(*e));
        e->kind = EV_TEXT;
        e->seq = u->seq;
        e->len = len;
        memcpy(e->text, text, len);
    }
    push(u->r, e);
    return e != NULL;
}

static void ev_token(void *user, const eng_token_info *info)
{
    seq_user *u = user;
    gen_event *e = calloc(1, sizeof(*e));
    if (e) {
        e->kind = EV_TOKEN;
        e->seq = u->seq;
        e->info = *info;
        memcpy(e->top, info->top, (size_t)info->n_top * sizeof(*e->top));
        e->info.top = NULL;
    }
    push(u->r, e);
}

static void ev_done(void *user, eng_finish finish, int prompt_tokens,
                    int completion_tokens)
{
    seq_user *u = user;
    gen_event *e = calloc(1, sizeof(*e));
    if (e) {
        e->kind = EV_DONE;
        e->seq = u->seq;
        e->finish = finish;
        e->prompt_tokens = prompt_tokens;
        e->completion_tokens = completion_tokens;
    }
    push(u->r, e);
}

static bool job_cancelled(void *user)
{
    gen_run *r = user;
    return atomic_load(&r->cancel);
}

static void job_finished(void *user, int rc)
{
    gen_run *r = user;
    pthread_mutex_lock(&r->mu);
    r->finished = true;
    r->rc = rc;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Why the request should stop now: -ETIMEDOUT, -ECANCELED or 0. */
static int should_stop(api_serve *s, api_slot *slot,
                       const api_gen_callbacks *cb)
{
    if (past(slot))
        return -ETIMEDOUT;
    if (s) {
        pthread_mutex_lock(&s->mu);
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping)
            return -ECANCELED;
    }
    return cb->cancelled && cb->cancelled(cb->user) ? -ECANCELED : 0;
}

/* Hands the queued events to the callbacks; false when a text callback
 * refused (the request is then cancelled). */
static bool drain(gen_run *r, const api_gen_callbacks *cb, bool wait_ms)
{
    gen_event *e;
    bool ok = true;
    pthread_mutex_lock(&r->mu);
    if (wait_ms && !r->head && !r->finished)
        cond_wait_poll(&r->cv, &r->mu);
    e = r->head;
    r->head = r->tail = NULL;
    if (r->oom)
        ok = false;
    pthread_mutex_unlock(&r->mu);
    while (e) {
        gen_event *next = e->next;
        switch (e->kind) {
        case EV_TEXT:
            if (ok && cb->text && !cb->text(cb->user, e->seq, e->text, e->len))
                ok = false;
            /* a client that left: stop relaying (and cancel) at once */
            if (ok && cb->cancelled && cb->cancelled(cb->user))
                ok = false;
            break;
        case EV_TOKEN:
            e->info.top = e->top;
            if (ok && cb->token)
                cb->token(cb->user, e->seq, &e->info);
            break;
        case EV_DONE:
            if (ok && cb->done)
                cb->done(cb->user, e->seq, e->finish, e->prompt_tokens,
                         e->completion_tokens);
            break;
        }
        free(e);
        e = next;
    }
    return ok;
}

/* Steps the request's own sequences here (no scheduler). */
static int run_here(gen_run *r, api_ctx *ctx, api_slot *slot,
                    const api_gen_request *rq, const api_gen_callbacks *cb)
{
    eng_batch *b = NULL;
    int rc = eng_batch_new(rq->model, rq->n_seqs, &b), going = 1;
    if (rc < 0)
        return rc;
    if (rq->sp.n_threads > 0)
        eng_seq_set_threads(rq->sp.n_threads);
    while (going > 0) {
        if ((rc = should_stop(ctx->serve, slot, cb)) < 0)
            break;
        going = eng_seq_step(b, r->job.seqs, r->job.n_seqs, ENG_BATCH_CHUNK);
        if (!drain(r, cb, false)) {
            rc = -ECANCELED;
            break;
        }
        rc = going < 0 ? going : 0;
    }
    eng_batch_free(b);
    return rc;
}

/* A client that left: its running place goes to the next request at once,
 * while this one waits for the scheduler to drop its sequences (stop still
 * waits for it: lingering). */
static void release_place(api_serve *s, api_slot *slot)
{
    if (!s || !slot->running || slot->released)
        return;
    pthread_mutex_lock(&s->mu);
    s->running--;
    s->lingering++;
    slot->released = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Submits the sequences to the scheduler and relays their events until
 * they are all done. */
static int run_scheduled(gen_run *r, api_ctx *ctx, api_slot *slot,
                         const api_gen_callbacks *cb)
{
    int rc = ctx->submit(ctx->submit_user, &r->job), why = 0;
    if (rc < 0)
        return rc == -ESHUTDOWN ? -ECANCELED : rc;
    for (;;) {
        bool ok = drain(r, cb, true);
        pthread_mutex_lock(&r->mu);
        bool fin = r->finished && !r->head;
        rc = r->rc;
        pthread_mutex_unlock(&r->mu);
        if (fin)
            break;
        if (!why && (why = !ok ? -ECANCELED : should_stop(ctx->serve, slot,
                                                           cb)) < 0) {
            atomic_store(&r->cancel, true); /* dropped before its next step */
            if (why == -ECANCELED)
                release_place(ctx->serve, slot);
        }
    }
    drain(r, cb, false);
    return why < 0 ? why : rc;
}

int api_serve_generate(api_ctx *ctx, api_slot *slot,
                       const api_gen_request *rq, const api_gen_callbacks *cb,
                       char *err, size_t errlen)
{
    gen_run r = { .job = { .model = rq->model, .n_seqs = rq->n_seqs,
                           .cancelled = job_cancelled,
                           .finished = job_finished } };
    int rc = 0;
    if (!slot->admitted)
        return -EINVAL;
    if (ctx->serve && (rc = wait_turn(ctx->serve, slot, cb)) < 0)
        goto out;
    pthread_mutex_init(&r.mu, NULL);
    cond_init(&r.cv);
    atomic_init(&r.cancel, false);
    r.job.user = &r;
    r.job.seqs = calloc((size_t)rq->n_seqs, sizeof(*r.job.seqs));
    r.su = calloc((size_t)rq->n_seqs, sizeof(*r.su));
    if (!r.job.seqs || !r.su)
        rc = -ENOMEM;
    for (int i = 0; i < rq->n_seqs && rc == 0; i++) {
        eng_seq_params p = {
            .tok = rq->tok, .adapter = rq->adapter, .ids = rq->seqs[i].ids,
            .n_ids = rq->seqs[i].n_ids, .sp = rq->sp,
            .schema = rq->schema, .vocab = rq->vocab,
            .logprobs = rq->logprobs && cb->token,
            .text = ev_text, .token = ev_token, .done = ev_done,
            .user = &r.su[i],
        };
        r.su[i] = (seq_user){ &r, i };
        p.sp.seed = rq->seqs[i].seed;
        rc = eng_seq_new(rq->model, &p, &r.job.seqs[i], err, errlen);
    }
    if (rc == 0)
        rc = ctx->submit ? run_scheduled(&r, ctx, slot, cb)
                         : run_here(&r, ctx, slot, rq, cb);
    for (int i = 0; r.job.seqs && i < rq->n_seqs; i++)
        eng_seq_free(r.job.seqs[i]);
    free(r.job.seqs);
    free(r.su);
    drain(&r, &(api_gen_callbacks){ 0 }, false); /* frees what is left */
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    if (rc == -ECANCELED && err && errlen)
        snprintf(err, errlen, "generation cancelled");
out:
    if (rc == -ETIMEDOUT && err && errlen)
        snprintf(err, errlen, "the request took longer than the server's "
                 "request timeout");
    return rc;
}

void api_serve_spawn(api_ctx *ctx, void (*fn)(void *), void *arg)
{
    if (!ctx->spawn || ctx->spawn(ctx->spawn_user, fn, arg) != 0)
        fn(arg);
}
