/* SPDX-License-Identifier: MIT */
/*
 * session.c - the inference forward pass over a KV cache (see session.h).
 *
 * One call evaluates a chunk of B consecutive tokens at positions
 * p0 .. p0+B-1, layer by layer, reading like the math (llama2.c's forward):
 *
 *   xb = rmsnorm(x) ; q = xb Wq^T ; k, v = xb Wk^T, xb Wv^T  written straight
 *   into the cache rows p0.. ; rope(q, k) ; per head h (kv head h / group):
 *   softmax(q K^T / sqrt(hd), causal) V ; x += att Wo^T ;
 *   xb = rmsnorm(x) ; x += (silu(xb Wg^T) * xb Wu^T) Wd^T
 *
 * and finally logits = rmsnorm(x_last) Wlm^T for the last row only. With
 * B > 1 every linear is an sgemm over the rows and attention is two sgemms
 * per head (scores over all cached keys, the causal part masked before the
 * softmax); with B == 1 the linears are eng_k_gemv (a streaming dot-product
 * kernel, faster than OpenBLAS's sgemv on one core) and attention is a tight
 * loop, cheaper than BLAS call overhead for one query. LoRA deltas are added to
 * each target's output before RoPE, as PEFT does.
 */
#include "session.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int imax(int a, int b) { return a > b ? a : b; }

int eng_session_new(eng_model *m, int ctx, int max_batch, eng_session **ret)
{
    const eng_config *c = &m->cfg;
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    size_t B, kv, n;
    eng_session *s;
    float *p;

    if (ctx <= 0 || ctx > c->max_seq_len || max_batch <= 0)
        return -EINVAL;
    if (max_batch > ctx)
        max_batch = ctx;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    B = (size_t)max_batch;
    kv = (size_t)c->n_layers * ctx * kv_dim;
    n = 2 * kv + B * ((size_t)c->dim + imax(c->dim, q_dim) + q_dim +
                      2 * (size_t)c->hidden_dim + ctx) + c->vocab_size;
    s->block = malloc(n * sizeof(float));
    s->pos = malloc(B * sizeof(*s->pos));
    if (!s->block || !s->pos) {
        free(s->block);
        free(s->pos);
        free(s);
        return -ENOMEM;
    }
    p = s->block;
    s->k_cache = p, p += kv;
    s->v_cache = p, p += kv;
    s->x = p, p += B * c->dim;
    s->xb = p, p += B * imax(c->dim, q_dim);
    s->q = p, p += B * q_dim;
    s->hb = p, p += B * c->hidden_dim;
    s->hb2 = p, p += B * c->hidden_dim;
    s->scores = p, p += B * ctx;
    s->logits = p;
    s->model = eng_model_ref(m);
    s->ctx = ctx;
    s->max_batch = max_batch;
    *ret = s;
    return 0;
}

void eng_session_free(eng_session *s)
{
    if (!s)
        return;
    eng_model_unref(s->model);
    free(s->block);
    free(s->lora_block);
    free(s->pos);
    free(s);
}

void eng_session_reset(eng_session *s)
{
    s->n_past = 0;
}

int eng_session_set_adapter(eng_session *s, const eng_adapter *a)
{
    const eng_config *c = &s->model->cfg;

    if (!a) {
        s->adapter = NULL;
        return 0;
    }
    if (a->n_layers != c->n_layers || a->rank <= 0)
        return -EINVAL;
    for (int l = 0; l < c->n_layers; l++) {
        for (int t = 0; t < ENG_T_COUNT; t++) {
            const eng_lora *lo = eng_adapter_at(a, l, t);
            int in, out;

            if (!lo->A)
                continue;
            eng_target_shape(c, t, &in, &out);
            if (lo->in != in || lo->out != out || !lo->B)
                return -EINVAL;
        }
    }
    if (a->rank > s->lora_cap) {
        float *b = malloc((size_t)s->max_batch * a->rank * sizeof(float));

        if (!b)
            return -ENOMEM;
        free(s->lora_block);
        s->lora_block = b;
        s->lora_tmp = b;
        s->lora_cap = a->rank;
    }
    s->adapter = a;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Building blocks                                                           */

/* y (n, W.rows) (+)= x (n, W.cols) W^T */
static void linear(const eng_session *s, float *y, const float *x,
                   const eng_tensor *W, int n, int acc)
{
    if (s->naive)
        eng_k_matmul_naive(y, x, W, n, acc);
    else if (n == 1)
        eng_k_gemv(y, x, W, acc); /* decoding: bandwidth-bound */
    else
        eng_k_matmul(y, x, W, n, acc);
}

/* y (n, out) += scale * (x (n, in) A^T) B^T for target t of layer l, when the
 * adapter has it. The two thin GEMMs cost r*(in+out) per row, a few percent
 * of the base weight's in*out. */
static void lora_add(const eng_session *s, int l, int t, const float *x,
                     float *y, int n)
{
    const eng_adapter *a = s->adapter;
    const eng_lora *lo;

    if (!a || !(lo = eng_adapter_at(a, l, t))->A)
        return;
    eng_k_gemm(0, 1, n, a->rank, lo->in, 1.0f, x, lo->in, lo->A, lo->in, 0.0f,
               s->lora_tmp, a->rank);
    eng_k_gemm(0, 1, n, lo->out, a->rank, a->scale, s->lora_tmp, a->rank,
               lo->B, a->rank, 1.0f, y, lo->out);
}

/* A target's base weight plus its bias and LoRA delta. */
static void project(const eng_session *s, int l, int t, float *y,
                    const float *x, int n, int acc)
{
    eng_layer *L = &s->model->layers[l];
    const eng_tensor *bias = t == ENG_T_Q ? &L->bq : t == ENG_T_K ? &L->bk :
                             t == ENG_T_V ? &L->bv : NULL;

    linear(s, y, x, eng_layer_target(L, t), n, acc);
    if (bias && bias->data)
        eng_k_add_bias(y, bias, n, bias->cols);
    lora_add(s, l, t, x, y, n);
}

/* One query row against keys 0..T-1 of one kv head: the decode path, and
 * the reference for the GEMM path. q (hd), K/V rows strided by kv_dim.
 * Scores are eng_k_dot's 16-lane dot products (a serial sum over hd was a
 * sixth of a decode step); the V sum vectorizes along hd. */
ENG_K_CLONES
static void attend_row(const float *q, const float *K, const float *V,
                       int T, int hd, int kv_dim, float scale, float *p,
                       float *out)
{
    for (int t = 0; t < T; t++)
        p[t] = eng_k_dot(q, K + (size_t)t * kv_dim, hd) * scale;
    eng_k_softmax(p, T);
    memset(out, 0, (size_t)hd * sizeof(*out));
    for (int t = 0; t < T; t++) {
        const float *v = V + (size_t)t * kv_dim;
        float a = p[t];

        for (int i = 0; i < hd; i++)
            out[i] += a * v[i];
    }
}

/* Causal attention of n query rows (positions p0..p0+n-1) over the cached
 * keys 0..p0+n-1. q (n, q_dim); out (n, q_dim). */
static void attention(eng_session *s, int l, int p0, int n, float *out)
{
    const eng_config *c = &s->model->cfg;
    int hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int group = c->n_heads / c->n_kv_heads, T = p0 + n;
    const float *Kl = s->k_cache + (size_t)l * s->ctx * kv_dim;
    const float *Vl = s->v_cache + (size_t)l * s->ctx * kv_dim;
    float scale = 1.0f / sqrtf((float)hd);

    for (int h = 0; h < c->n_heads; h++) {
        const float *K = Kl + (h / group) * hd, *V = Vl + (h / group) * hd;
        const float *Q = s->q + h * hd;
        float *O = out + h * hd;

        if (n == 1 || s->naive) {
            for (int r = 0; r < n; r++)
                attend_row(Q + (size_t)r * q_dim, K, V, p0 + r + 1, hd, kv_dim,
                           scale, s->scores, O + (size_t)r * q_dim);
            continue;
        }
        /* S (n, T) = Q K^T * scale; mask; softmax rows; O (n, hd) = S V */
        eng_k_gemm(0, 1, n, T, hd, scale, Q, q_dim, K, kv_dim, 0.0f, s->scores,
                   T);
        for (int r = 0; r < n; r++) {
            float *S = s->scores + (size_t)r * T;
            int valid = p0 + r + 1;

            eng_k_softmax(S, valid);
            memset(S + valid, 0, (size_t)(T - valid) * sizeof(*S));
        }
        eng_k_gemm(0, 0, n, hd, T, 1.0f, s->scores, T, V, kv_dim, 0.0f, O,
                   q_dim);
    }
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                   */

static void layer_forward(eng_session *s, int l, int p0, int n)
{
    const eng_config *c = &s->model->cfg;
    eng_layer *L = &s->model->layers[l];
    int hd = c->head_dim, kv_dim = c->n_kv_heads * hd;
    float *kc = s->k_cache + ((size_t)l * s->ctx + p0) * kv_dim;
    float *vc = s->v_cache + ((size_t)l * s->ctx + p0) * kv_dim;
    size_t hn = (size_t)n * c->hidden_dim;

    /* attention block */
    eng_k_rmsnorm(s->xb, s->x, &L->attn_norm, n, c->dim, c->norm_eps, NULL);
    project(s, l, ENG_T_Q, s->q, s->xb, n, 0);
    project(s, l, ENG_T_K, kc, s->xb, n, 0);
    project(s, l, ENG_T_V, vc, s->xb, n, 0);
    eng_k_rope(s->q, n, c->n_heads, hd, s->pos, s->model->rope_inv_freq,
               c->rope_style, 0);
    eng_k_rope(kc, n, c->n_kv_heads, hd, s->pos, s->model->rope_inv_freq,
               c->rope_style, 0);
    attention(s, l, p0, n, s->xb);
    project(s, l, ENG_T_O, s->x, s->xb, n, 1);

    /* MLP block */
    eng_k_rmsnorm(s->xb, s->x, &L->ffn_norm, n, c->dim, c->norm_eps, NULL);
    project(s, l, ENG_T_GATE, s->hb, s->xb, n, 0);
    project(s, l, ENG_T_UP, s->hb2, s->xb, n, 0);
    eng_k_swiglu(s->hb, s->hb, s->hb2, hn);
    project(s, l, ENG_T_DOWN, s->x, s->hb, n, 1);
}

static void chunk_forward(eng_session *s, const int32_t *ids, int n,
                          bool want_logits)
{
    const eng_config *c = &s->model->cfg;
    int p0 = s->n_past;

    for (int r = 0; r < n; r++) {
        eng_k_row_f32(&s->model->tok_emb, ids[r], s->x + (size_t)r * c->dim);
        s->pos[r] = p0 + r;
    }
    for (int l = 0; l < c->n_layers; l++)
        layer_forward(s, l, p0, n);
    s->n_past += n;
    if (!want_logits)
        return;
    /* Only the last row's logits are needed: norm and head on one row. */
    eng_k_rmsnorm(s->xb, s->x + (size_t)(n - 1) * c->dim, &s->model->final_norm,
                  1, c->dim, c->norm_eps, NULL);
    linear(s, s->logits, s->xb, &s->model->lm_head, 1, 0);
}

int eng_session_eval(eng_session *s, const int32_t *ids, int n)
{
    int vocab = s->model->cfg.vocab_size;

    if (n <= 0 || !ids)
        return -EINVAL;
    if (n > s->ctx - s->n_past)
        return -ENOSPC;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return -EINVAL;
    for (int done = 0; done < n;) {
        int k = n - done < s->max_batch ? n - done : s->max_batch;

        chunk_forward(s, ids + done, k, done + k == n);
        done += k;
    }
    return 0;
}
