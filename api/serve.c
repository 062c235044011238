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
    api_slot *head, *tail;     /* waiting slots, oldest first */
    bool stopping;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    pthread_condattr_t ca;
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
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
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
    while (s->running > 0 || s->queued > 0)
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
    if (slot->running)
        s->running--;
    else
        unlink_slot(s, slot);
    slot->running = false;
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
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += WAIT_POLL_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &until);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Generation                                                                */

typedef struct run_state {
    api_serve *serve;
    api_slot *slot;
    const api_gen_callbacks *cb;
    int seq;
    bool timed_out;
} run_state;

static bool on_abort(void *user)
{
    run_state *r = user;
    if (past(r->slot)) {
        r->timed_out = true;
        return true;
    }
    if (r->serve) {
        pthread_mutex_lock(&r->serve->mu);
        bool stopping = r->serve->stopping;
        pthread_mutex_unlock(&r->serve->mu);
        if (stopping)
            return true;
    }
    return r->cb->cancelled && r->cb->cancelled(r->cb->user);
}

static bool on_text(void *user, const char *text, size_t len)
{
    run_state *r = user;
    return r->cb->text ? r->cb->text(r->cb->user, r->seq, text, len) : true;
}

static void on_token(void *user, const eng_token_info *info)
{
    run_state *r = user;
    r->cb->token(r->cb->user, r->seq, info);
}

int api_serve_generate(api_ctx *ctx, api_slot *slot,
                       const api_gen_request *rq, const api_gen_callbacks *cb,
                       char *err, size_t errlen)
{
    run_state r = { .serve = ctx->serve, .slot = slot, .cb = cb };
    eng_hooks h = { .abort = on_abort, .user = &r };
    int rc = 0;
    if (!slot->admitted)
        return -EINVAL;
    if (ctx->serve && (rc = wait_turn(ctx->serve, slot, cb)) < 0)
        goto out;
    if (rq->logprobs && cb->token)
        h.token = on_token;
    for (int i = 0; i < rq->n_seqs && rc == 0; i++) {
        eng_sample_params sp = rq->sp;
        eng_generation gen = { 0 };
        r.seq = i;
        sp.seed = rq->seqs[i].seed;
        rc = eng_generate_ids(rq->model, rq->adapter, rq->tok,
                              rq->seqs[i].ids, rq->seqs[i].n_ids, &sp,
                              on_text, &r, &h, &gen, err, errlen);
        if (rc == 0 && cb->done)
            cb->done(cb->user, i, gen.finish, gen.prompt_tokens,
                     gen.completion_tokens);
        eng_generation_done(&gen);
    }
out:
    if (rc == -ECANCELED && r.timed_out)
        rc = -ETIMEDOUT;
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
