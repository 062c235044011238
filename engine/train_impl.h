/* SPDX-License-Identifier: MIT */
/*
 * train_impl.h - engine-internal pieces of training: the per-layer forward
 * and backward ops (train_ops.c), the trainer object (train.c) and its
 * checkpoints (train_ckpt.c). Tests include this to check each layer's
 * backward against finite differences.
 *
 * Layout: a micro-batch is a flat list of n tokens made of segments (one
 * example each); every linear layer runs on all n rows at once and attention
 * runs per segment, so variable-length examples cost no padding compute and
 * packed examples never attend across each other. Activations are
 * row-major (n, width) fp32.
 */
#ifndef TUNA_ENGINE_TRAIN_IMPL_H
#define TUNA_ENGINE_TRAIN_IMPL_H

#include "model.h"
#include "safetensors.h"

#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Deterministic randomness (no hidden state: callers own the seeds)         */

static inline uint64_t eng_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Stateless mix of one 64-bit word (splitmix64's finalizer). */
static inline uint64_t eng_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline float eng_rand_unit(uint64_t *s)
{
    return (float)(eng_splitmix64(s) >> 40) * (1.0f / 16777216.0f);
}

/* ------------------------------------------------------------------------ */
/* Adapter tensors (lora.c)                                                  */

/* PEFT name of layer's target t, A (is_b = 0) or B. */
void eng_lora_tensor_name(char *buf, size_t n, int layer, int t, int is_b);
/* Number of A and B tensors in a. */
int eng_adapter_n_tensors(const eng_adapter *a);
/* Describes every A and B in data-block order into out[n_tensors], names
 * into names[n_tensors * 96]. Returns the count. */
int eng_adapter_tensors(const eng_adapter *a, eng_st_out *out, char *names);

/* ------------------------------------------------------------------------ */
/* Layer ops (train_ops.c)                                                   */

/* One linear layer y = x W^T + b + scale * (drop(x) A^T) B^T with optional
 * LoRA (A [r, in], B [out, r]) and optional gradients. Dropout (LoRA branch
 * only, as PEFT) draws its mask from a hash of (drop_seed, row, col), so the
 * backward regenerates it instead of storing it. */
typedef struct tr_lin {
    const eng_tensor *W;    /* [out, in] */
    const eng_tensor *b;    /* [out] or NULL */
    const float *A, *B;     /* LoRA, or NULL */
    int r;
    float scale;
    float dropout;
    uint64_t drop_seed;
    float *dA, *dB;         /* += LoRA grads, or NULL */
    float *dW, *db;         /* += base grads (full finetune), or NULL */
} tr_lin;

/* y[n, out] = layer(x[n, in]); u[n, r] gets drop(x) A^T (for the backward);
 * scratch holds n*in floats when dropout > 0. */
void tr_lin_fwd(const tr_lin *l, float *y, const float *x, int n, float *u,
                float *scratch);
/* dx[n, in] (+)= dy W + drop'(scale dy B A) (dx NULL: grads only); grads
 * += as configured.
 * scratch: n*in floats; scratch_r: n*r floats. */
void tr_lin_bwd(const tr_lin *l, float *dx, const float *dy, const float *x,
                const float *u, int n, int accumulate, float *scratch,
                float *scratch_r);

/* dx[n, dim] (+)= RMSNorm backward given the forward input x and its rstd;
 * dw (may be NULL) += weight gradient. */
void tr_rmsnorm_bwd(float *dx, const float *dy, const float *x,
                    const float *rstd, const eng_tensor *w, float *dw, int n,
                    int dim, int accumulate);
/* dg, du from dh through h = silu(g) * u. */
void tr_swiglu_bwd(float *dg, float *du, const float *dh, const float *g,
                   const float *u, size_t n);

typedef struct tr_seg {
    int start, len;
} tr_seg;

typedef struct tr_attn_dims {
    int n_heads, n_kv_heads, head_dim;
} tr_attn_dims;

/* Causal grouped-query attention within each segment.
 * q, out: [n, n_heads*hd]; k, v: [n, n_kv*hd]. S: scratch of T*T floats
 * (T = longest segment). */
void tr_attn_fwd(float *out, const float *q, const float *k, const float *v,
                 const tr_seg *segs, int n_segs, const tr_attn_dims *d,
                 float *S);
/* dq overwritten; dk, dv overwritten. S, dP: T*T floats each. */
void tr_attn_bwd(float *dq, float *dk, float *dv, const float *dout,
                 const float *q, const float *k, const float *v,
                 const tr_seg *segs, int n_segs, const tr_attn_dims *d,
                 float *S, float *dP);

/* LM head plus masked cross-entropy, in chunks of `chunk` rows so the
 * (n, vocab) logits never exist at once. Only rows with a target are
 * computed at all. */
typedef struct tr_ce {
    const eng_tensor *E;    /* [vocab, dim] */
    int chunk;              /* rows per chunk */
    float *logits;          /* [chunk, vocab] scratch */
    float *xc, *dxc;        /* [chunk, dim] scratch */
    int *rows;              /* [chunk] scratch */
    float *dE;              /* += head grad (full finetune), or NULL */
} tr_ce;

/* xf[n, dim]: final hidden rows. tgt[i] < 0: no loss at row i. When dxf is
 * not NULL, dxf[n, dim] is overwritten with d(loss_scale * sum loss)/dxf.
 * *ret_loss gets the summed loss, *ret_correct the argmax hits. */
void tr_ce_run(const tr_ce *c, const float *xf, float *dxf,
               const int32_t *tgt, int n, float loss_scale, double *ret_loss,
               int *ret_correct);

/* ------------------------------------------------------------------------ */
/* Trainer internals (train.c)                                               */

/* One micro-batch: a flat token list. */
typedef struct tr_batch {
    int n;                  /* tokens */
    const int32_t *ids;     /* [n] */
    const int *pos;         /* [n] position within its segment */
    const int32_t *tgt;     /* [n] next token to predict, or -1 */
    const tr_seg *segs;
    int n_segs;
    int max_len;            /* longest segment */
    float loss_scale;       /* gradient weight of each token's loss */
    uint64_t drop_seed;     /* dropout stream of this micro-batch */
} tr_batch;

/* A micro-batch of the plan: examples order[first .. first+count) of its
 * epoch's order; n_masked loss tokens. */
typedef struct tr_micro {
    int epoch, first, count, n_masked;
} tr_micro;

typedef struct tr_step {
    int first_micro, n_micro, epoch, n_masked;
} tr_step;

/* Saved activations of one layer (n = micro-batch token capacity). */
typedef struct tr_act {
    float *rs1, *rs2;       /* (n) rstd of the two norms */
    float *q, *att;         /* (n, n_heads*hd); q after RoPE */
    float *k, *v;           /* (n, n_kv*hd); k after RoPE */
    float *xm;              /* (n, dim) residual after attention */
    float *g, *u;           /* (n, hidden) gate and up projections */
    float *lu[ENG_T_COUNT]; /* (n, r) LoRA drop(x) A^T, or NULL */
} tr_act;

/* One worker's share of a micro-batch (train.c): rows [r0, r0 + b.n) of
 * every activation and row-indexed scratch buffer, whole segments only, so
 * workers never read each other's rows. Each has its own attention and
 * LM-head scratch and (worker >= 1) its own LoRA gradient block. */
typedef struct tr_ws {
    eng_trainer *t;
    int r0;
    tr_batch b;             /* the slice; b.segs rebased to r0 */
    tr_seg *segs;           /* [cap] storage for b.segs */
    float *S, *dP;          /* (T, T) attention scratch */
    tr_ce ce;
    float *grad;            /* gradients go here (t->grad for worker 0) */
    int want_grad;
    double loss;
    int correct;
} tr_ws;

enum { TR_MAX_WS = 8 };

struct eng_trainer {
    eng_model *base;        /* ref: the frozen model */
    eng_model *m;           /* ref: what we compute with (base, or own copy) */
    eng_train_params p;
    eng_config c;
    eng_adapter *ad;        /* LoRA adapter, NULL when full finetuning */
    float *param, *grad, *m1, *m2; /* trainable block, grads, Adam moments */
    size_t n_param, n_decay;       /* weight decay on [0, n_decay) only */
    /* examples (copied) */
    int n_ex;
    eng_example *ex;
    void *ex_block;
    /* plan */
    int *order;             /* [epochs * n_ex] */
    tr_micro *micro;
    int n_micro;
    tr_step *steps;
    int n_steps;
    uint64_t plan_hash;     /* fingerprint of data + plan for resume */
    /* progress */
    int step;
    int64_t tokens_seen;
    /* buffers, carved from one block */
    void *block;
    size_t block_bytes;
    int cap;                /* tokens per micro-batch */
    float **x;              /* [n_layers + 1] (cap, dim) residual stream */
    tr_act *act;            /* [n_layers] */
    float *rsf;
    float *xn, *h, *dres, *dxn, *dq, *dk, *dv, *datt, *dh, *dg, *du;
    float *drop, *dr;
    size_t drop_w;          /* floats per row of drop */
    float *rope_cs;         /* (max_seq_len, head_dim) cos/sin table */
    int32_t *b_ids, *b_tgt;
    int *b_pos;
    tr_seg *b_segs;
    /* workers: a micro-batch of several segments is cut into n_ws row
     * slices run on their own threads with single-threaded BLAS (LoRA
     * only); otherwise ws[0] runs it whole with n_threads BLAS threads */
    int n_ws;
    tr_ws ws[TR_MAX_WS];
};

/* Forward over a micro-batch; with want_grad also the backward, adding
 * into the trainer's gradients. */
int tr_forward_backward(eng_trainer *t, const tr_batch *b, int want_grad,
                        double *ret_loss, int *ret_correct);
/* Builds micro-batch b from examples ex[0..n) into the trainer's buffers. */
int tr_batch_build(eng_trainer *t, const eng_example *ex, int n,
                   tr_batch *ret);
/* The flat trainable parameters and their gradients (tests perturb them). */
float *tr_params(eng_trainer *t, size_t *ret_n);
float *tr_grads(eng_trainer *t);
void tr_zero_grads(eng_trainer *t);

#endif
