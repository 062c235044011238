/* SPDX-License-Identifier: MIT */
/*
 * batch.h - batched inference: one forward over several sequences of one
 * base model, each with its own KV cache and its own LoRA adapter (or none).
 *
 * This is the public face of continuous batching (issue #6): a scheduler
 * keeps one eng_session per request and, every step, hands the sessions
 * that have tokens to run to eng_batch_eval: new requests with their whole
 * prompt, running ones with their last sampled token. The base model's
 * linears then run once over all the rows (weights read once per step, not
 * once per request), each row's LoRA delta is applied to its own row
 * (rows grouped by adapter), and attention runs per sequence against its
 * own cache.
 *
 * Determinism. A sequence's logits never depend on what else is in the
 * batch: every row-level operation (matmul rows, norms, RoPE, attention,
 * the LoRA delta, the LM head) computes each row in a fixed order whatever
 * the row count and the thread count (eng_k_rowmm). So greedy outputs are
 * bit-identical whether a request runs alone (a batch of one) or batched,
 * with any thread count. (The session forward of engine/session.h uses
 * OpenBLAS and agrees within float rounding, not to the bit.)
 *
 * Thread safety: an eng_batch and the sessions given to one call belong to
 * the calling thread for the call. The model is shared and immutable.
 */
#ifndef TUNA_ENGINE_BATCH_H
#define TUNA_ENGINE_BATCH_H

#include "engine/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One sequence: KV cache, position, adapter and last logits (session.c). */
typedef struct eng_session eng_session;

/* New session over m with room for ctx tokens (<= max_seq_len). For use
 * with eng_batch_eval, max_batch may be 1 (it sizes the session's own
 * single-sequence scratch, see engine/session.h). Takes a reference on m.
 * 0, -EINVAL or -ENOMEM. */
int eng_session_new(eng_model *m, int ctx, int max_batch, eng_session **ret);
void eng_session_free(eng_session *s);
/* Forgets every cached token (the adapter stays). */
void eng_session_reset(eng_session *s);
/* Applies adapter a (NULL: base only) to the following tokens; a is
 * borrowed and must outlive its use. -EINVAL when it does not fit m. */
int eng_session_set_adapter(eng_session *s, const eng_adapter *a);
int eng_session_n_past(const eng_session *s);
int eng_session_ctx(const eng_session *s);
/* The logits (vocab_size floats) of the last token evaluated; borrowed. */
const float *eng_session_logits(const eng_session *s);
/* Bytes the session allocated (KV cache and scratch). */
size_t eng_session_bytes(const eng_session *s);

/* Inputs of at least this many rows run in their own forwards, in chunks of
 * ENG_BATCH_CHUNK rows; shorter ones share one block of rows. */
#define ENG_BATCH_GEMM_ROWS 16
#define ENG_BATCH_CHUNK 256

typedef struct eng_batch eng_batch;

/* Scratch for batched forwards over m: up to max_seqs sequences per
 * internal forward (more are split over several). Takes a ref on m. */
int eng_batch_new(eng_model *m, int max_seqs, eng_batch **ret);
void eng_batch_free(eng_batch *b);

typedef struct eng_batch_item {
    eng_session *s;          /* a session over the batch's model */
    const int32_t *ids;      /* tokens to append at its next positions */
    int n;                   /* >= 1 */
} eng_batch_item;

/* Runs every item's tokens through the model at its session's next
 * positions (appending to its KV cache, with its adapter) and leaves the
 * logits of each item's last token in eng_session_logits(). A session may
 * appear once per call. Checks everything first: -EINVAL (bad id, wrong
 * model, repeated session, n < 1), -ENOSPC (a cache cannot hold its
 * tokens); nothing ran then. */
int eng_batch_eval(eng_batch *b, const eng_batch_item *items, int n_items);

#ifdef __cplusplus
}
#endif
#endif
