/* SPDX-License-Identifier: MIT */
/*
 * model.h - engine-internal layout of models and adapters.
 *
 * A weight matrix W is stored row-major as [out, in] (PyTorch nn.Linear
 * layout), so y = x W^T. Frozen base weights may live in a memory-mapped
 * file in any eng_dtype; everything trainable is fp32 and owned.
 * Only files inside engine/ include this header.
 */
#ifndef TUNA_ENGINE_MODEL_H
#define TUNA_ENGINE_MODEL_H

#include "engine.h"
#include "kernels.h"
#include <stdatomic.h>

typedef struct eng_layer {
    eng_tensor attn_norm;           /* [dim] */
    eng_tensor wq, wk, wv, wo;      /* [n_heads*hd, dim], [n_kv*hd, dim] x2, [dim, n_heads*hd] */
    eng_tensor bq, bk, bv;          /* biases (qkv_bias only), else data == NULL */
    eng_tensor ffn_norm;            /* [dim] */
    eng_tensor w_gate, w_up;        /* [hidden, dim] */
    eng_tensor w_down;              /* [dim, hidden] */
} eng_layer;

struct eng_model {
    atomic_int refs;
    eng_config cfg;
    eng_tensor tok_emb;             /* [vocab, dim] */
    eng_tensor final_norm;          /* [dim] */
    eng_tensor lm_head;             /* [vocab, dim]; == tok_emb when tied */
    eng_layer *layers;              /* [n_layers] */
    float *rope_inv_freq;           /* [head_dim/2], scaling applied */
    void *map;                      /* mmap'd file, or NULL */
    size_t map_len;
    void *pinned;                   /* the mapping's copy (eng_model_pin) */
    void *owned;                    /* one malloc block of owned weights, or NULL */
    int64_t n_params;
};

/* Index of a LoRA target in the per-layer arrays below. */
enum { ENG_T_Q, ENG_T_K, ENG_T_V, ENG_T_O, ENG_T_GATE, ENG_T_UP, ENG_T_DOWN,
       ENG_T_COUNT };

typedef struct eng_lora {
    float *A;   /* [rank, in] */
    float *B;   /* [out, rank] */
    int in, out;
} eng_lora;

struct eng_adapter {
    atomic_int refs;
    int rank;
    float alpha;
    float scale;             /* alpha / rank (alpha / sqrt(rank) with rsLoRA) */
    float dropout;           /* training-time LoRA dropout, kept for the config */
    unsigned targets;        /* ENG_TARGET_* */
    int n_layers;
    eng_lora *lora;          /* [n_layers * ENG_T_COUNT]; A == NULL if absent */
    float *data;             /* one block holding every A and B */
    size_t n_floats;
};

static inline eng_lora *eng_adapter_at(const eng_adapter *a, int layer, int t)
{
    return &a->lora[layer * ENG_T_COUNT + t];
}

/* The base weight of target t in layer l. */
eng_tensor *eng_layer_target(eng_layer *l, int t);
/* in/out sizes of target t for config c. */
void eng_target_shape(const eng_config *c, int t, int *ret_in, int *ret_out);

/* Computes model->rope_inv_freq from cfg (theta and scaling). */
int eng_model_init_rope(eng_model *m);

/* ---- helpers for model loaders (llama2.c, Hugging Face, GGUF) ---------- */

/* Checks a config for consistency: positive sizes, n_kv_heads divides
 * n_heads, even head_dim. Returns 0 or -EINVAL. */
int eng_config_check(const eng_config *c);
/* Allocates a model shell for cfg: refs = 1, cfg copied, n_layers zeroed
 * eng_layer slots, no weights. The loader points the tensors at its mapping
 * (m->map, m->map_len) or its owned block (m->owned), then calls
 * eng_model_finish. eng_model_unref frees a half-built shell. */
int eng_model_alloc(const eng_config *cfg, eng_model **ret);
/* A large block read in streams (weights), freed with free(): 2 MiB
 * aligned and marked for transparent huge pages when it is at least 4 MiB.
 * Streaming through 4 KiB pages costs a TLB walk every 4 KiB (measured
 * here: batch-1 decode 63 -> 93 tok/s with the weights in huge pages, the
 * 16-sequence step +10%). Not used for KV caches: sized for prompt +
 * max_tokens, a huge page per layer would make a short answer's cache
 * resident in full (they gained 6% at 16 sequences after 512-token
 * prompts). NULL when out of memory. */
void *eng_alloc_huge(size_t bytes);
/* Asks for huge pages on a read-only file mapping of weights (taken only
 * where the kernel collapses file pages; harmless elsewhere). */
void eng_advise_weights(void *map, size_t len);
/* Counts parameters and builds the RoPE table; call once every tensor is in
 * place. Returns 0, -EINVAL (a required tensor missing or misshapen) or
 * -ENOMEM. */
int eng_model_finish(eng_model *m);

#endif
