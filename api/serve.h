/* SPDX-License-Identifier: MIT */
/*
 * serve.h - private to api/: the one path every text generation takes
 * (POST /generate, /v1/completions, /v1/chat/completions), and the event
 * stream that carries a streamed answer to the server's connection thread.
 *
 * Admission. A request first takes a place (api_serve_admit): one of
 * limits.max_concurrent running places, or one of limits.max_queued places
 * in a FIFO queue; with both full it is refused (-EAGAIN: the handler
 * answers 429 with Retry-After). api_serve_generate waits for a running
 * place (FIFO), then generates; api_serve_leave gives the place back and
 * wakes the next waiter. The deadline (limits.request_timeout_s) runs from
 * admission, queue wait included.
 *
 * Generation. api_serve_generate runs every sequence of a request (the
 * prompts times the choices) and reports through callbacks: text pieces,
 * per-token logprobs, each sequence's end. Every sequence is an eng_seq
 * (engine/decode.h) stepped through eng_batch_eval: with api_ctx.submit
 * the request's sequences go to the server's scheduler thread, which
 * decodes them in one batch with every other running request on the same
 * base (continuous batching); without it (tests) they are stepped here, on
 * the calling thread, through the same kernels, so a request's greedy
 * tokens are the same either way and whatever shares its batch. The
 * scheduler thread never blocks on a client: the sequences' text, tokens
 * and ends are queued as events and the callbacks below run on the
 * caller's thread as it drains them.
 *
 * Cancellation. callbacks.cancelled is polled about every 50 ms and after
 * every batch of events (and while queued); a stream whose client went away
 * says true, the scheduler drops the request's sequences before its next
 * step and its place is freed at once.
 *
 * Streams. A streamed answer is produced on a thread the server lends
 * (api_ctx.spawn) and written into an api_evstream; the response's
 * api_stream reads from it. The writer blocks while the reader lags by more
 * than a bounded buffer, so a slow client slows its own generation rather
 * than growing memory. Without api_ctx.spawn (tests without threads) the
 * whole answer is produced before the response is returned.
 */
#ifndef TUNA_API_SERVE_H
#define TUNA_API_SERVE_H

#include "api/api-impl.h"

#include <pthread.h>

/* ------------------------------------------------------------------------ */
/* Admission                                                                 */

typedef struct api_slot {
    bool admitted, running;
    bool released;                /* running place given back early (a
                                   * client gone), still counted for stop */
    int64_t deadline_ms;          /* CLOCK_MONOTONIC ms, 0 = none */
    struct api_slot *next, *prev; /* queue links while waiting */
} api_slot;

/* Takes a running or queued place. -EAGAIN when both are full (429),
 * -ESHUTDOWN while the daemon stops (503). ctx->serve NULL: unlimited and
 * no deadline. */
int api_serve_admit(api_ctx *ctx, api_slot *slot);
/* Gives the place back (running or queued); idempotent. */
void api_serve_leave(api_ctx *ctx, api_slot *slot);
/* Seconds a refused client should wait (the Retry-After header). */
int api_serve_retry_after(api_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Generation                                                                */

typedef struct api_gen_seq {
    const int32_t *ids;       /* prompt tokens (borrowed) */
    int n_ids;
    uint64_t seed;
} api_gen_seq;

typedef struct api_gen_request {
    eng_model *model;         /* borrowed, with their refs held by caller */
    const eng_adapter *adapter;
    const eng_tokenizer *tok;
    eng_sample_params sp;     /* shared by every sequence; seed per seq */
    const api_gen_seq *seqs;
    int n_seqs;
    bool logprobs;            /* report tokens (sp.top_logprobs alternatives) */
    /* Structured output (api_constraint): both or neither, borrowed. */
    const struct eng_json_schema *schema;
    const struct eng_vocab_bytes *vocab;
} api_gen_request;

typedef struct api_gen_callbacks {
    /* Text of sequence seq, UTF-8 complete; false ends that sequence. */
    bool (*text)(void *user, int seq, const char *text, size_t len);
    /* A generated token (only with logprobs), before its text. */
    void (*token)(void *user, int seq, const eng_token_info *info);
    /* Sequence seq ended. */
    void (*done)(void *user, int seq, eng_finish finish, int prompt_tokens,
                 int completion_tokens);
    /* Polled before every token: true cancels the whole request. */
    bool (*cancelled)(void *user);
    void *user;
} api_gen_callbacks;

/* Waits for a running place, then generates every sequence in order.
 * 0; -ECANCELED (callbacks.cancelled or shutdown); -ETIMEDOUT (deadline);
 * -EINVAL with err (bad prompt or parameters); -ENOMEM. */
int api_serve_generate(api_ctx *ctx, api_slot *slot,
                       const api_gen_request *rq, const api_gen_callbacks *cb,
                       char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Event streams (stream.c)                                                  */

typedef struct api_evstream api_evstream;

/* A new stream holding two references: the writer's (api_evstream_unref
 * when done writing) and the reader's (handed to the response by
 * api_evstream_attach, which must be called exactly once). */
api_evstream *api_evstream_new(void);
/* Sets r->stream to read from s, with the SSE content type. Writes may
 * wait for the reader only from now on, so a handler without a thread can
 * produce the whole stream first and attach it afterwards. */
void api_evstream_attach(api_evstream *s, api_response *r);
/* Appends bytes, waiting while the reader lags (not before it attached).
 * -EPIPE once the reader is gone. */
int api_evstream_write(api_evstream *s, const char *data, size_t len);
/* printf-style api_evstream_write. */
int api_evstream_printf(api_evstream *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The writer's end: the reader sees the end after the buffered bytes. */
void api_evstream_close(api_evstream *s);
/* True once the reader freed its end (the client disconnected). */
bool api_evstream_gone(api_evstream *s);
void api_evstream_unref(api_evstream *s);

/* Runs fn(arg) on a thread lent by the server, or here and now without
 * one (api_ctx.spawn NULL or failing). */
void api_serve_spawn(api_ctx *ctx, void (*fn)(void *), void *arg);

#endif
