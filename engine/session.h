/* SPDX-License-Identifier: MIT */
/*
 * session.h - engine-internal inference state: one sequence's KV cache plus
 * the activation buffers of the inference forward pass.
 *
 * A session runs tokens through a (shared, immutable) model at the next
 * free positions of its own KV cache: many tokens at once for a prompt
 * (prefill: every linear layer is one GEMM over all rows), or one token at a
 * time while decoding (every linear layer is a GEMV over the weights, which
 * makes decoding memory-bandwidth bound, as it should be). An optional LoRA
 * adapter is applied unmerged, y += scale * (x A^T) B^T, so one loaded base
 * serves any number of adapters.
 *
 * Everything a forward needs is allocated by eng_session_new, sized from the
 * config, the context capacity and the largest row count per call; nothing
 * is allocated per token. A later issue batches several sessions (each with
 * its own adapter) into one forward; the KV cache and position therefore
 * live apart from the scratch buffers in this struct.
 *
 * Ownership: the session holds a reference on the model; the adapter is
 * borrowed and must outlive the session or be replaced first. A session
 * belongs to one thread at a time. Only files inside engine/ include this.
 */
#ifndef TUNA_ENGINE_SESSION_H
#define TUNA_ENGINE_SESSION_H

#include "model.h"

typedef struct eng_session {
    eng_model *model;            /* reference held */
    const eng_adapter *adapter;  /* borrowed, or NULL */
    int ctx;                     /* KV capacity in tokens */
    int max_batch;               /* rows per internal forward chunk */
    int n_past;                  /* tokens already in the cache */
    bool naive;                  /* reference kernels and attention (tests) */

    float *k_cache, *v_cache;    /* (L, ctx, kv_dim) each */
    /* scratch for up to max_batch rows */
    float *x;                    /* (B, dim) residual stream */
    float *xb;                   /* (B, max(dim, q_dim)) normed input / attention out */
    float *q;                    /* (B, q_dim) */
    float *hb, *hb2;             /* (B, hidden) gate / up */
    float *scores;               /* (B, ctx) attention probabilities */
    float *logits;               /* (vocab) of the last token evaluated */
    float *lora_tmp;             /* (B, lora_cap) x A^T */
    int lora_cap;
    int *pos;                    /* (B) positions of the rows */
    float *block;                /* the one allocation behind the above */
    float *lora_block;
} eng_session;

/* New session over m with room for ctx tokens (<= max_seq_len) and forward
 * chunks of up to max_batch rows (longer inputs are split). Takes a
 * reference on m. Returns 0, -EINVAL or -ENOMEM. */
int eng_session_new(eng_model *m, int ctx, int max_batch, eng_session **ret);
void eng_session_free(eng_session *s);
/* Forgets every cached token (the adapter stays). */
void eng_session_reset(eng_session *s);
/* Applies adapter a (NULL: base only) to the following tokens. Checks every
 * present target's shape against the model: -EINVAL on mismatch, -ENOMEM if
 * its rank needs a larger scratch buffer. */
int eng_session_set_adapter(eng_session *s, const eng_adapter *a);
/* Runs n tokens at positions n_past.. (appending to the KV cache) and leaves
 * the logits of the last one in s->logits. -ENOSPC when the cache cannot
 * hold them, -EINVAL for an out-of-vocabulary id. */
int eng_session_eval(eng_session *s, const int32_t *ids, int n);

#endif
