/* SPDX-License-Identifier: MIT */
/*
 * oai_format.c - OpenAI's answer objects for /v1/chat/completions
 * ("chat.completion", streamed as "chat.completion.chunk") and
 * /v1/completions ("text_completion", streamed as the same object with a
 * text piece per chunk), with their logprobs shapes:
 *
 *   chat:        "logprobs": {"content": [{"token", "logprob", "bytes",
 *                "top_logprobs": [{"token", "logprob", "bytes"}]}],
 *                "refusal": null}
 *   completions: "logprobs": {"tokens", "token_logprobs", "top_logprobs":
 *                [{token: logprob}], "text_offset"}
 *
 * Streams: a chat choice opens with a delta {"role":"assistant",
 * "content":""}, then one chunk per text piece carrying the tokens reported
 * since the previous chunk, and ends with an empty delta and the
 * finish_reason. With stream_options.include_usage every chunk has
 * "usage": null and a last chunk has "choices": [] and the usage. Then
 * "data: [DONE]".
 */
#include "api/oai_serve.h"

#include <stdlib.h>
#include <string.h>

#ifndef TUNA_VERSION
#define TUNA_VERSION "0.0.0"
#endif

const char *api_system_fingerprint(void)
{
    return "fp_tuna_" TUNA_VERSION;
}

static const char *finish_name(eng_finish f)
{
    return f == ENG_FINISH_STOP ? "stop" : "length";
}

/* ------------------------------------------------------------------------ */
/* Logprobs                                                                  */

static cJSON *bytes_json(const char *p, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)p[i]));
    return a;
}

/* {"token", "logprob", "bytes"} of id after prev. */
static cJSON *chat_token(const api_completion *j, int32_t prev, int32_t id,
                         float lp)
{
    char buf[4 * 64 + 8];
    const char *bytes;
    int n;
    const char *text = api_token_text(j->t, prev, id, buf, sizeof(buf),
                                      &bytes, &n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", text);
    cJSON_AddNumberToObject(o, "logprob", lp);
    cJSON_AddItemToObject(o, "bytes", bytes_json(bytes, n));
    return o;
}

/* A format's "logprobs" of a choice's tokens from from on. */
typedef cJSON *logprobs_fn(const api_completion *j, const api_choice *ch,
                           int from);

static cJSON *chat_logprobs(const api_completion *j, const api_choice *ch,
                            int from)
{
    if (!j->logprobs)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(o, "content");
    for (int i = from; i < ch->n_toks; i++) {
        const api_tok *t = &ch->toks[i];
        cJSON *e = chat_token(j, t->prev, t->id, t->logprob);
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < t->n_top; k++)
            cJSON_AddItemToArray(top, chat_token(j, t->prev, t->top[k].id,
                                                 t->top[k].logprob));
        cJSON_AddItemToArray(content, e);
    }
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

static cJSON *completion_logprobs(const api_completion *j,
                                  const api_choice *ch, int from)
{
    if (!j->logprobs)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
    cJSON *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
    char buf[4 * 64 + 8];
    const char *bytes;
    int n;
    for (int i = from; i < ch->n_toks; i++) {
        const api_tok *t = &ch->toks[i];
        cJSON_AddItemToArray(tokens, cJSON_CreateString(api_token_text(
            j->t, t->prev, t->id, buf, sizeof(buf), &bytes, &n)));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(t->logprob));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)t->offset));
        if (j->top_logprobs == 0) {
            cJSON_AddItemToArray(tops, cJSON_CreateNull());
            continue;
        }
        cJSON *d = cJSON_CreateObject();
        for (int k = 0; k < t->n_top; k++) {
            const char *s = api_token_text(j->t, t->prev, t->top[k].id, buf,
                                           sizeof(buf), &bytes, &n);
            if (!cJSON_GetObjectItemCaseSensitive(d, s))
                cJSON_AddNumberToObject(d, s, t->top[k].logprob);
        }
        cJSON_AddItemToArray(tops, d);
    }
    return o;
}

/* ------------------------------------------------------------------------ */
/* Shared envelope                                                           */

static cJSON *envelope(const api_completion *j, const char *object)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", j->model_name);
    cJSON_AddStringToObject(o, "system_fingerprint", api_system_fingerprint());
    return o;
}

/* A chunk with one choice (the caller fills it); "usage": null when the
 * stream ends with a usage chunk. */
static cJSON *chunk_envelope(const api_completion *j, const char *object,
                             cJSON **ret_choice)
{
    cJSON *o = envelope(j, object);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    *ret_choice = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, *ret_choice);
    if (j->include_usage)
        cJSON_AddNullToObject(o, "usage");
    return o;
}

/* "logprobs" and "finish_reason", the fields that end every choice of both
 * formats; finish_reason is null until the choice's last chunk. */
static void end_choice(cJSON *c, const api_choice *ch, cJSON *logprobs,
                       bool last)
{
    cJSON_AddItemToObject(c, "logprobs", logprobs);
    if (last)
        cJSON_AddStringToObject(c, "finish_reason", finish_name(ch->finish));
    else
        cJSON_AddNullToObject(c, "finish_reason");
}

/* Ends chunk o of choice i (choice is its choice object) and sends it: its
 * logprobs are those of the tokens not sent yet (null when none). */
static void send_chunk(api_completion *j, int i, cJSON *o, cJSON *choice,
                       logprobs_fn *lp, bool last)
{
    api_choice *ch = &j->choices[i];
    end_choice(choice, ch,
               ch->n_toks > ch->toks_sent ? lp(j, ch, ch->toks_sent)
                                          : cJSON_CreateNull(),
               last);
    api_completion_event(j, o);
}

/* The answer that is not streamed: every choice as choice() starts it,
 * ended with all its logprobs, then the usage. */
static cJSON *response(api_completion *j, const char *object,
                       cJSON *(*choice)(const api_choice *ch, int i),
                       logprobs_fn *lp)
{
    cJSON *o = envelope(j, object);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < j->n_prompts * j->n_choices; i++) {
        const api_choice *ch = &j->choices[i];
        cJSON *c = choice(ch, i);
        end_choice(c, ch, lp(j, ch, 0), true);
        cJSON_AddItemToArray(arr, c);
    }
    cJSON_AddItemToObject(o, "usage", api_completion_usage(j));
    return o;
}

static void stream_end(api_completion *j, const char *object)
{
    if (j->include_usage) {
        cJSON *o = envelope(j, object);
        cJSON_AddArrayToObject(o, "choices");
        cJSON_AddItemToObject(o, "usage", api_completion_usage(j));
        api_completion_event(j, o);
    }
    api_completion_event_raw(j, "[DONE]");
}

/* ------------------------------------------------------------------------ */
/* Chat                                                                      */

static void chat_emit(api_completion *j, int i, cJSON *delta, bool last)
{
    cJSON *choice;
    cJSON *o = chunk_envelope(j, "chat.completion.chunk", &choice);
    cJSON_AddNumberToObject(choice, "index", i);
    cJSON_AddItemToObject(choice, "delta", delta);
    send_chunk(j, i, o, choice, chat_logprobs, last);
}

static void chat_open(api_completion *j, int i)
{
    api_choice *ch = &j->choices[i];
    if (ch->started)
        return;
    ch->started = true;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "role", "assistant");
    cJSON_AddStringToObject(d, "content", "");
    int sent = ch->toks_sent;
    ch->toks_sent = ch->n_toks; /* tokens go with their text */
    chat_emit(j, i, d, false);
    ch->toks_sent = sent;
}

static void chat_chunk(api_completion *j, int i, const char *text, size_t len)
{
    chat_open(j, i);
    cJSON *d = cJSON_CreateObject();
    char *s = strndup(text, len);
    cJSON_AddStringToObject(d, "content", s ? s : "");
    free(s);
    chat_emit(j, i, d, false);
}

static void chat_finish(api_completion *j, int i)
{
    chat_open(j, i);
    chat_emit(j, i, cJSON_CreateObject(), true);
}

static void chat_end(api_completion *j)
{
    stream_end(j, "chat.completion.chunk");
}

static cJSON *chat_choice(const api_choice *ch, int i)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", i);
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", ch->text ? ch->text : "");
    cJSON_AddNullToObject(m, "refusal");
    return c;
}

static cJSON *chat_response(api_completion *j)
{
    return response(j, "chat.completion", chat_choice, chat_logprobs);
}

const api_gen_format api_fmt_chat = {
    .chunk = chat_chunk, .finish = chat_finish, .end = chat_end,
    .response = chat_response,
};

/* ------------------------------------------------------------------------ */
/* Completions                                                               */

static void completion_emit(api_completion *j, int i, const char *text,
                            size_t len, bool last)
{
    cJSON *choice;
    cJSON *o = chunk_envelope(j, "text_completion", &choice);
    char *s = strndup(text, len);
    cJSON_AddStringToObject(choice, "text", s ? s : "");
    free(s);
    cJSON_AddNumberToObject(choice, "index", i);
    send_chunk(j, i, o, choice, completion_logprobs, last);
}

static void completion_chunk(api_completion *j, int i, const char *text,
                             size_t len)
{
    completion_emit(j, i, text, len, false);
}

static void completion_finish(api_completion *j, int i)
{
    completion_emit(j, i, "", 0, true);
}

static void completion_end(api_completion *j)
{
    stream_end(j, "text_completion");
}

static cJSON *completion_choice(const api_choice *ch, int i)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "text", ch->text ? ch->text : "");
    cJSON_AddNumberToObject(c, "index", i);
    return c;
}

static cJSON *completion_response(api_completion *j)
{
    return response(j, "text_completion", completion_choice,
                    completion_logprobs);
}

const api_gen_format api_fmt_completion = {
    .chunk = completion_chunk, .finish = completion_finish,
    .end = completion_end, .response = completion_response,
};
