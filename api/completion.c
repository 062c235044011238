/* SPDX-License-Identifier: MIT */
/*
 * completion.c - a generation request from parsed body to answer (see
 * completion.h): prompts to token ids, the prompt-length check, admission
 * (429 with Retry-After when full), then either a synchronous run answered
 * with the route's response object, or a stream: the job moves to a thread
 * the server lends, writes the route's events into an api_evstream and
 * frees itself; the connection thread reads the events.
 *
 * Callbacks from api_serve_generate collect, per choice, the text (not
 * streaming) and the tokens with their logprobs; while streaming, every
 * text piece becomes an event at once, carrying the tokens reported since
 * the previous event.
 */
#include "api/completion.h"

#include "api/constraint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* The job                                                                   */

api_completion *api_completion_new(api_call *c, api_gen_kind kind,
                                   const api_gen_format *fmt)
{
    api_completion *j = calloc(1, sizeof(*j));
    if (!j) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return NULL;
    }
    j->ctx = c->ctx;
    snprintf(j->key_id, sizeof(j->key_id), "%s", c->who.key_id);
    j->kind = kind;
    j->fmt = fmt;
    j->json = c->json; /* the job owns the body from here on */
    c->json = NULL;
    j->n_prompts = j->n_choices = 1;
    j->created = api_now();
    j->v1 = kind != API_GEN_NATIVE;
    eng_sample_params_default(&j->sp);
    j->sp.n_threads = c->ctx->gen_threads > 0 ? c->ctx->gen_threads : 1;
    return j;
}

/* Records the tokens generated against the caller's key, once. A stream's
 * producer does it before giving its place back: after that the daemon
 * may be shutting down and ctx must not be touched. */
static void account(api_completion *j)
{
    int64_t generated = 0;
    if (j->accounted)
        return;
    j->accounted = true;
    for (int i = 0; j->choices && i < j->n_prompts * j->n_choices; i++)
        generated += j->choices[i].completion_tokens;
    api_usage_add(j->ctx, j->key_id, generated);
}

void api_completion_free(api_completion *j)
{
    if (!j)
        return;
    account(j);
    for (int i = 0; j->prompt_ids && i < j->n_prompts; i++)
        free(j->prompt_ids[i]);
    free(j->prompt_ids);
    free(j->prompt_len);
    for (int i = 0; j->choices && i < j->n_prompts * j->n_choices; i++) {
        free(j->choices[i].text);
        free(j->choices[i].toks);
    }
    free(j->choices);
    free(j->seqs);
    api_constraint_free(j->constraint);
    eng_adapter_unref(j->a);
    eng_tokenizer_unref(j->t);
    eng_model_unref(j->m);
    cJSON_Delete(j->json);
    free(j);
}

int api_completion_model(api_call *c, api_completion *j, const char *name)
{
    return api_model_resolve(c, name, &j->m, &j->t, &j->a, j->model_name,
                             sizeof(j->model_name));
}

int api_completion_prompts(api_call *c, api_completion *j, int n_prompts)
{
    j->n_prompts = n_prompts;
    j->prompt_ids = calloc((size_t)n_prompts, sizeof(*j->prompt_ids));
    j->prompt_len = calloc((size_t)n_prompts, sizeof(*j->prompt_len));
    if (!j->prompt_ids || !j->prompt_len) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    return 0;
}

int api_completion_set_prompt(api_call *c, api_completion *j, int k,
                              const char *text, size_t len,
                              bool parse_special)
{
    int rc = eng_prompt_encode(j->t, text, len, parse_special,
                               &j->prompt_ids[k], &j->prompt_len[k]);
    if (rc == -EINVAL) {
        api_error(c->res, 400, "invalid_parameter",
                  "the prompt is not valid UTF-8", -1, "prompt");
        return -1;
    }
    if (rc < 0) {
        api_reply_errno(c, rc, "could not tokenize the prompt");
        return -1;
    }
    return 0;
}

int api_completion_set_prompt_ids(api_call *c, api_completion *j, int k,
                                  const cJSON *arr)
{
    int n = cJSON_GetArraySize(arr), i = 0;
    int vocab = eng_model_config(j->m)->vocab_size;
    const cJSON *e;
    if (n < 1) {
        api_error(c->res, 400, "invalid_parameter",
                  "a token prompt must not be empty", -1, "prompt");
        return -1;
    }
    if (!(j->prompt_ids[k] = malloc((size_t)n * sizeof(int32_t)))) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    cJSON_ArrayForEach(e, arr) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (v < 0 || v >= vocab || v != (double)(int32_t)v) {
            char msg[128];
            snprintf(msg, sizeof(msg), "token ids must be integers from 0 "
                     "to %d", vocab - 1);
            api_error(c->res, 400, "invalid_parameter", msg, -1, "prompt");
            return -1;
        }
        j->prompt_ids[k][i++] = (int32_t)v;
    }
    j->prompt_len[k] = n;
    return 0;
}

int api_completion_parse_stop(api_call *c, api_completion *j, int max)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j->json, "stop");
    int n = 0;
    bool ok = true;
    if (!s || cJSON_IsNull(s))
        return 0;
    if (cJSON_IsString(s)) {
        j->stop[n++] = s->valuestring;
    } else if (cJSON_IsArray(s) && cJSON_GetArraySize(s) <= max) {
        const cJSON *e;
        cJSON_ArrayForEach(e, s) {
            ok = ok && cJSON_IsString(e);
            if (ok)
                j->stop[n++] = e->valuestring;
        }
    } else {
        ok = false;
    }
    for (int i = 0; ok && i < n; i++)
        ok = j->stop[i][0] && strlen(j->stop[i]) <= API_GEN_MAX_STOP_BYTES;
    if (!ok) {
        char msg[160];
        snprintf(msg, sizeof(msg), "stop must be a string or an array of at "
                 "most %d non-empty strings of at most %d bytes", max,
                 API_GEN_MAX_STOP_BYTES);
        api_error(c->res, 400, "invalid_parameter", msg, -1, "stop");
        return -1;
    }
    j->sp.stop = j->stop;
    j->sp.n_stop = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Helpers for the formats                                                   */

cJSON *api_usage_json(int prompt_tokens, int completion_tokens)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens",
                            prompt_tokens + completion_tokens);
    return u;
}

/* Prompt tokens count once per prompt (its choices share it), as OpenAI
 * reports them. */
cJSON *api_completion_usage(const api_completion *j)
{
    int pt = 0, ct = 0, n = j->n_prompts * j->n_choices;
    for (int k = 0; k < j->n_prompts; k++)
        pt += j->prompt_len[k];
    for (int i = 0; i < n; i++)
        ct += j->choices[i].completion_tokens;
    return api_usage_json(pt, ct);
}

const char *api_token_text(const eng_tokenizer *t, int32_t prev, int32_t id,
                           char *buf, size_t buflen, const char **ret_bytes,
                           int *ret_n)
{
    const char *p = "";
    int k = id < eng_tokenizer_vocab_size(t) ? eng_tokenizer_piece(t, prev, id,
                                                                    &p)
                                             : 0;
    if (k < 0)
        k = 0;
    *ret_bytes = p;
    *ret_n = k;
    if (api_utf8_valid(p, (size_t)k) && memchr(p, 0, (size_t)k) == NULL) {
        snprintf(buf, buflen, "%.*s", k, p);
        return buf;
    }
    size_t o = (size_t)snprintf(buf, buflen, "bytes:");
    for (int i = 0; i < k && o + 5 < buflen; i++)
        o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x",
                              (unsigned char)p[i]);
    return buf;
}

void api_completion_event_raw(api_completion *j, const char *data)
{
    api_evstream_printf(j->ev, "data: %s\n\n", data);
}

void api_completion_event(api_completion *j, cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (s)
        api_completion_event_raw(j, s);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                 */

static int text_append(api_choice *ch, const char *text, size_t len)
{
    if (ch->len + len + 1 > ch->cap) {
        size_t cap = ch->cap ? ch->cap * 2 : 256;
        while (cap < ch->len + len + 1)
            cap *= 2;
        char *b = realloc(ch->text, cap);
        if (!b)
            return -ENOMEM;
        ch->text = b;
        ch->cap = cap;
    }
    memcpy(ch->text + ch->len, text, len);
    ch->len += len;
    ch->text[ch->len] = '\0';
    return 0;
}

static bool cb_text(void *user, int seq, const char *text, size_t len)
{
    api_completion *j = user;
    api_choice *ch = &j->choices[seq];
    if (j->stream) {
        j->fmt->chunk(j, seq, text, len);
        ch->started = true;
        ch->toks_sent = ch->n_toks;
        /* structured output on /generate: the last event parses it */
        return !j->parse_output || text_append(ch, text, len) == 0;
    }
    return text_append(ch, text, len) == 0;
}

static void cb_token(void *user, int seq, const eng_token_info *info)
{
    api_completion *j = user;
    api_choice *ch = &j->choices[seq];
    const char *p;
    if (ch->n_toks == ch->cap_toks) {
        int cap = ch->cap_toks ? ch->cap_toks * 2 : 64;
        api_tok *t = realloc(ch->toks, (size_t)cap * sizeof(*t));
        if (!t)
            return; /* logprobs are best effort under memory pressure */
        ch->toks = t;
        ch->cap_toks = cap;
    }
    api_tok *t = &ch->toks[ch->n_toks++];
    t->id = info->id;
    t->prev = info->prev;
    t->logprob = info->logprob;
    t->n_top = info->n_top;
    memcpy(t->top, info->top, (size_t)info->n_top * sizeof(*info->top));
    t->offset = ch->tok_offset;
    int k = info->id < eng_tokenizer_vocab_size(j->t)
                ? eng_tokenizer_piece(j->t, info->prev, info->id, &p)
                : 0;
    ch->tok_offset += k > 0 ? (size_t)k : 0;
}

static void cb_done(void *user, int seq, eng_finish finish, int prompt_tokens,
                    int completion_tokens)
{
    api_completion *j = user;
    api_choice *ch = &j->choices[seq];
    ch->done = true;
    ch->finish = finish;
    ch->prompt_tokens = prompt_tokens;
    ch->completion_tokens = completion_tokens;
    if (j->stream) {
        j->fmt->finish(j, seq);
        ch->toks_sent = ch->n_toks;
    }
}

static bool cb_cancelled(void *user)
{
    api_completion *j = user;
    if (!j->ev)
        return false;
    /* While a stream waits for a place nothing flows, and a client that
     * left is noticed only when a write fails: an SSE comment about once a
     * second (this is polled every 50 ms while queued) finds it out. */
    if (!j->slot.running && ++j->queued_polls % 20 == 0)
        api_evstream_write(j->ev, ": queued\n\n", 10);
    return api_evstream_gone(j->ev);
}

/* ------------------------------------------------------------------------ */
/* Running                                                                   */

static int run(api_completion *j)
{
    api_gen_callbacks cb = {
        .text = cb_text, .token = cb_token, .done = cb_done,
        .cancelled = cb_cancelled, .user = j,
    };
    api_gen_request rq = {
        .model = j->m, .adapter = j->a, .tok = j->t, .sp = j->sp,
        .seqs = j->seqs, .n_seqs = j->n_prompts * j->n_choices,
        .logprobs = j->logprobs,
    };
    rq.sp.top_logprobs = j->top_logprobs;
    if (j->constraint) {
        rq.schema = api_constraint_schema(j->constraint);
        rq.vocab = api_constraint_vocab(j->constraint);
    }
    return api_serve_generate(j->ctx, &j->slot, &rq, &cb, j->err,
                              sizeof(j->err));
}

/* Status and code for a failed run. */
static void run_error(int rc, int *status, const char **code)
{
    switch (rc) {
    case -ETIMEDOUT: *status = 503; *code = "timeout"; break;
    case -ECANCELED: *status = 503; *code = "unavailable"; break;
    case -EINVAL: *status = 422; *code = "generation_failed"; break;
    case -ENOMEM: *status = 503; *code = "out_of_memory"; break;
    default: *status = 500; *code = "internal_error"; break;
    }
}

static void produce(void *arg)
{
    api_completion *j = arg;
    int rc = run(j);
    account(j);
    api_serve_leave(j->ctx, &j->slot);
    if (rc == 0) {
        j->fmt->end(j);
    } else if (!api_evstream_gone(j->ev)) {
        int status;
        const char *code;
        run_error(rc, &status, &code);
        cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o,
                                                                      "error");
        cJSON_AddStringToObject(e, "message", j->err[0] ? j->err
                                                        : "generation failed");
        cJSON_AddStringToObject(e, "type", status == 503 ? "server_error"
                                                         : "invalid_request_error");
        cJSON_AddNullToObject(e, "param");
        cJSON_AddStringToObject(e, "code", code);
        api_completion_event(j, o);
        api_completion_event_raw(j, "[DONE]");
    }
    api_evstream_close(j->ev);
    api_evstream_unref(j->ev);
    j->ev = NULL;
    api_completion_free(j);
}

static int check_lengths(api_call *c, api_completion *j)
{
    int ctxlen = eng_model_config(j->m)->max_seq_len;
    for (int k = 0; k < j->n_prompts; k++) {
        if (j->prompt_len[k] < ctxlen)
            continue;
        char msg[200];
        snprintf(msg, sizeof(msg), "the prompt has %d tokens; the model's "
                 "context is %d", j->prompt_len[k], ctxlen);
        const char *field = j->kind == API_GEN_CHAT ? "messages" : "prompt";
        if (j->v1)
            api_error(c->res, 400, "context_length_exceeded", msg, -1, field);
        else
            api_error(c->res, 422, "prompt_too_long", msg, -1, field);
        return -1;
    }
    return 0;
}

static int make_seqs(api_call *c, api_completion *j)
{
    int n = j->n_prompts * j->n_choices;
    j->seqs = calloc((size_t)n, sizeof(*j->seqs));
    j->choices = calloc((size_t)n, sizeof(*j->choices));
    if (!j->seqs || !j->choices) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int k = i / j->n_choices;
        j->seqs[i].ids = j->prompt_ids[k];
        j->seqs[i].n_ids = j->prompt_len[k];
        j->seqs[i].seed = j->seed + (j->same_seed ? 0 : (uint64_t)i);
        j->choices[i].prompt_tokens = j->prompt_len[k];
    }
    return 0;
}

static void reply_busy(api_call *c, int rc)
{
    char ra[16];
    if (rc == -EAGAIN) {
        api_error(c->res, 429, "rate_limited", "too many generation requests "
                  "at once: the server is at its concurrency and queue "
                  "limits; retry after the time in Retry-After", -1, NULL);
        snprintf(ra, sizeof(ra), "%d", api_serve_retry_after(c->ctx));
        api_response_header(c->res, "Retry-After", ra);
    } else {
        api_error(c->res, 503, "unavailable", "the server is shutting down",
                  -1, NULL);
    }
}

void api_completion_run(api_call *c, api_completion *j)
{
    int rc;
    if (check_lengths(c, j) < 0 || make_seqs(c, j) < 0)
        goto out;
    if ((rc = api_serve_admit(c->ctx, &j->slot)) < 0) {
        reply_busy(c, rc);
        goto out;
    }
    if (j->stream) {
        api_evstream *ev = j->ev = api_evstream_new();
        if (!ev) {
            api_serve_leave(c->ctx, &j->slot);
            api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
            goto out;
        }
        api_serve_spawn(c->ctx, produce, j); /* j is the producer's now */
        api_evstream_attach(ev, c->res);
        return;
    }
    rc = run(j);
    api_serve_leave(c->ctx, &j->slot);
    if (rc == 0) {
        api_reply_json(c, 200, j->fmt->response(j));
    } else {
        int status;
        const char *code;
        run_error(rc, &status, &code);
        api_error(c->res, status, code, j->err[0] ? j->err
                                                  : "generation failed",
                  -1, status == 422 ? "prompt" : NULL);
    }
out:
    api_completion_free(j);
}
