/* SPDX-License-Identifier: MIT */
/*
 * decode.h - one generating sequence as a step-by-step state machine, for
 * continuous batching (issue #6).
 *
 * eng_generate_ids runs a whole generation on its own session. A server
 * that batches requests instead keeps one eng_seq per sequence and, every
 * step, asks each for the tokens it needs evaluated (eng_seq_next: a chunk
 * of its prompt, then its last sampled token), runs all of them in one
 * eng_batch_eval, and lets each sample from its own logits
 * (eng_seq_after). Sampling, stop strings, UTF-8-safe streaming, logprobs
 * and the JSON-schema constraint are those of generate.c, so a sequence
 * gives the same tokens however it is stepped and whatever shares its
 * batch (eng_batch_eval's rows are bit-exact per row).
 *
 * Callbacks fire on the thread calling eng_seq_after: text pieces, the
 * token hook (with logprobs) before its text, and done exactly once when
 * the sequence ends by itself (EOS, a stop string, max_tokens, the
 * context, the constraint's value complete, or text returning false).
 *
 * Ownership: an eng_seq owns its session and its constraint state; the
 * tokenizer, adapter, schema, vocabulary trie and stop strings are
 * borrowed and must outlive it.
 */
#ifndef TUNA_ENGINE_DECODE_H
#define TUNA_ENGINE_DECODE_H

#include "engine/batch.h"
#include "engine/constrain.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eng_seq eng_seq;

typedef struct eng_seq_params {
    const eng_tokenizer *tok;
    const eng_adapter *adapter;          /* NULL: the base alone */
    const int32_t *ids;                  /* the prompt (copied) */
    int n_ids;
    eng_sample_params sp;                /* seed included; stop borrowed */
    /* Structured output (both or neither): output constrained to the
     * schema's JSON, ending as soon as the value is complete. */
    const eng_json_schema *schema;
    const eng_vocab_bytes *vocab;
    bool logprobs;                       /* call token for every token */
    bool (*text)(void *user, const char *text, size_t len);
    void (*token)(void *user, const eng_token_info *info);
    void (*done)(void *user, eng_finish finish, int prompt_tokens,
                 int completion_tokens);
    void *user;
} eng_seq_params;

/* A sequence over m (its session sized for the prompt plus max_tokens,
 * capped at the model's context). 0; -EINVAL with err (bad prompt,
 * parameters or adapter); -ENOMEM. */
int eng_seq_new(eng_model *m, const eng_seq_params *p, eng_seq **ret,
                char *err, size_t errlen);
void eng_seq_free(eng_seq *s);

/* The work of its next step into *item: up to max_rows prompt tokens
 * (max_rows <= 0: the whole prompt) or the last sampled token. false once
 * the sequence has ended. */
bool eng_seq_next(eng_seq *s, int max_rows, eng_batch_item *item);
/* After the item of eng_seq_next was evaluated: once the prompt is in,
 * samples the next token, reports and streams it. 1 while it goes on, 0
 * when it ended (done was called), < 0 on error. */
int eng_seq_after(eng_seq *s);
bool eng_seq_ended(const eng_seq *s);
eng_session *eng_seq_session(eng_seq *s);
/* Whether the whole prompt has been evaluated. */
bool eng_seq_prefilled(const eng_seq *s);

/* One step over n sequences: eng_seq_next for each that has not ended,
 * one eng_batch_eval over all of them, then eng_seq_after for each.
 * Returns how many are still going, or < 0 (an eval error: nothing
 * advanced). */
int eng_seq_step(eng_batch *b, eng_seq **seqs, int n, int max_rows);

/* Threads the batched forward uses when called from this thread (0:
 * the process-wide engine count, which training sets). */
void eng_seq_set_threads(int n);

#ifdef __cplusplus
}
#endif
#endif
