/* SPDX-License-Identifier: MIT */
/*
 * completion.h - private to api/: one generation request from its parsed
 * body to its answer, shared by POST /generate, /v1/completions and
 * /v1/chat/completions. The routes differ only in how they read the body
 * and how they write the answer (an api_gen_format); tokenizing, admission,
 * running through api_serve_generate, collecting text and logprobs per
 * choice, and streaming as server-sent events are here.
 *
 * A request has n_prompts prompts and n_choices choices per prompt; choice
 * i is prompt i / n_choices, and gets seed + i (so n choices with a seed
 * differ from each other and repeat exactly).
 *
 * Ownership: the job owns the parsed body (taken from the call, so a stream
 * produced after the handler returned can still read its strings), the
 * model/tokenizer/adapter references, the token ids and the choices. It is
 * freed by api_completion_free, by the handler or by the stream producer.
 */
#ifndef TUNA_API_COMPLETION_H
#define TUNA_API_COMPLETION_H

#include "api/serve.h"

#define API_GEN_MAX_STOP 8
#define API_GEN_MAX_STOP_BYTES 64

/* One generated token, as the engine reported it. */
typedef struct api_tok {
    int32_t id, prev;
    float logprob;
    int n_top;
    eng_token_prob top[ENG_MAX_TOP_LOGPROBS];
    size_t offset;            /* byte offset of its text in the choice */
} api_tok;

typedef struct api_choice {
    char *text;               /* everything generated (NUL-terminated) */
    size_t len, cap;
    api_tok *toks;            /* with logprobs */
    int n_toks, cap_toks;
    int toks_sent;            /* streamed so far */
    size_t tok_offset;        /* running byte offset of token texts */
    bool started, done;
    eng_finish finish;
    int prompt_tokens, completion_tokens;
} api_choice;

typedef struct api_completion api_completion;

typedef enum {
    API_GEN_NATIVE = 0,       /* POST /generate */
    API_GEN_COMPLETION,       /* POST /v1/completions */
    API_GEN_CHAT,             /* POST /v1/chat/completions */
} api_gen_kind;

/* How a route writes its answer. */
typedef struct api_gen_format {
    /* Streaming: an event for text of choice i (and its unsent tokens);
     * the last event of choice i; the end of the stream. Each writes with
     * api_completion_event. */
    void (*chunk)(api_completion *j, int i, const char *text, size_t len);
    void (*finish)(api_completion *j, int i);
    void (*end)(api_completion *j);
    /* Not streaming: the answer object. */
    cJSON *(*response)(api_completion *j);
} api_gen_format;

struct api_completion {
    api_ctx *ctx;
    char key_id[48];          /* the caller's API key: usage (auth.c) */
    api_gen_kind kind;
    const api_gen_format *fmt;
    cJSON *json;              /* the request body, owned */
    bool v1;                  /* OpenAI routes (error shapes) */
    /* the model */
    eng_model *m;
    eng_tokenizer *t;
    eng_adapter *a;
    char model_name[256];
    /* the request */
    char id[64];              /* chatcmpl-..., cmpl-... */
    int64_t created;
    eng_sample_params sp;
    uint64_t seed;
    bool same_seed;           /* every choice gets seed (else seed + i) */
    const char *stop[API_GEN_MAX_STOP + 1];
    int n_prompts, n_choices;
    int32_t **prompt_ids;     /* n_prompts arrays */
    int *prompt_len;
    bool stream, include_usage, logprobs, prompt_is_list;
    int top_logprobs;
    /* the run */
    api_slot slot;
    api_gen_seq *seqs;        /* n_prompts * n_choices */
    api_choice *choices;
    api_evstream *ev;
    bool accounted;           /* usage recorded (account()) */
    int queued_polls;         /* cancellation polls while queued */
    struct api_constraint *constraint; /* structured output, or NULL */
    bool parse_output;        /* /generate output_type: add "output" */
    int rc;
    char err[256];
};

/* New job for call c: takes c->json. NULL after a 503 reply. */
api_completion *api_completion_new(api_call *c, api_gen_kind kind,
                                   const api_gen_format *fmt);
void api_completion_free(api_completion *j);

/* Resolves the model named name into the job (error reply sent: -1). */
int api_completion_model(api_call *c, api_completion *j, const char *name);
/* Encodes prompt text as prompt k (parse_special for chat templates). */
int api_completion_set_prompt(api_call *c, api_completion *j, int k,
                              const char *text, size_t len,
                              bool parse_special);
/* Uses token ids as prompt k (checked against the vocabulary). */
int api_completion_set_prompt_ids(api_call *c, api_completion *j, int k,
                                  const cJSON *arr);
/* Allocates n_prompts prompts (before the set_prompt calls). */
int api_completion_prompts(api_call *c, api_completion *j, int n_prompts);

/* Checks prompt lengths, admits, runs or starts the stream, and answers.
 * Consumes j in every case. */
void api_completion_run(api_call *c, api_completion *j);

/* Writes one "data: <json>\n\n" event (takes obj) or raw text. */
void api_completion_event(api_completion *j, cJSON *obj);
void api_completion_event_raw(api_completion *j, const char *data);

/* Usage totals over every choice. */
cJSON *api_usage_json(int prompt_tokens, int completion_tokens);
cJSON *api_completion_usage(const api_completion *j);

/* A token's text for JSON: its bytes when they are valid UTF-8, otherwise
 * "bytes:\xNN..." (OpenAI's spelling); buf of 4 * 64 + 8 bytes. The raw
 * bytes and their count go to *ret_bytes / *ret_n. */
const char *api_token_text(const eng_tokenizer *t, int32_t prev, int32_t id,
                           char *buf, size_t buflen, const char **ret_bytes,
                           int *ret_n);

/* Parses "stop" (string or array of at most max strings) into j->stop. */
int api_completion_parse_stop(api_call *c, api_completion *j, int max);

#endif
