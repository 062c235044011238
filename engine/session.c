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
#include <pthread.h>
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

/* The rows one thread works on: rows [r0, r0 + n) of the chunk, at
 * positions p0 + r0 .. (p0: the chunk's first position). Every pointer is
 * already offset to row r0 of its buffer. */
typedef struct rows {
    int r0, n, p0;
    float *x, *xb, *q, *hb, *hb2, *scores, *lora_tmp;
    const int *pos;
} rows;

static rows rows_of(const eng_session *s, int p0, int r0, int n)
{
    const eng_config *c = &s->model->cfg;
    int q_dim = c->n_heads * c->head_dim;
    size_t r = (size_t)r0;

    return (rows){
        .r0 = r0, .n = n, .p0 = p0,
        .x = s->x + r * c->dim,
        .xb = s->xb + r * imax(c->dim, q_dim),
        .q = s->q + r * q_dim,
        .hb = s->hb + r * c->hidden_dim,
        .hb2 = s->hb2 + r * c->hidden_dim,
        .scores = s->scores + r * s->ctx,
        .lora_tmp = s->lora_tmp ? s->lora_tmp + r * s->lora_cap : NULL,
        .pos = s->pos + r0,
    };
}

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
 * of the base weight's in*out. tmp: (n, rank) scratch. */
static void lora_add(const eng_session *s, int l, int t, const float *x,
                     float *y, int n, float *tmp)
{
    const eng_adapter *a = s->adapter;
    const eng_lora *lo;

    if (!a || !(lo = eng_adapter_at(a, l, t))->A)
        return;
    eng_k_gemm(0, 1, n, a->rank, lo->in, 1.0f, x, lo->in, lo->A, lo->in, 0.0f,
               tmp, a->rank);
    eng_k_gemm(0, 1, n, lo->out, a->rank, a->scale, tmp, a->rank, lo->B,
               a->rank, 1.0f, y, lo->out);
}

/* A target's base weight plus its bias and LoRA delta. */
static void project(const eng_session *s, int l, int t, float *y,
                    const float *x, const rows *R, int acc)
{
    eng_layer *L = &s->model->layers[l];
    const eng_tensor *bias = t == ENG_T_Q ? &L->bq : t == ENG_T_K ? &L->bk :
                             t == ENG_T_V ? &L->bv : NULL;

    linear(s, y, x, eng_layer_target(L, t), R->n, acc);
    if (bias && bias->data)
        eng_k_add_bias(y, bias, R->n, bias->cols);
    lora_add(s, l, t, x, y, R->n, R->lora_tmp);
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

/* Query rows per attention block: the causal triangle is covered by blocks
 * of this many rows, each against the keys up to its own last row, so about
 * ATT_BLOCK / 2 masked keys per row are computed instead of half the square. */
enum { ATT_BLOCK = 64 };

/* Causal attention of the rows' queries R->q (positions pos0..pos0+n-1,
 * pos0 = R->p0 + R->r0) over the cached keys 0..pos0+n-1 of layer l, into
 * out (n, q_dim). Reads only cache rows up to the rows' own. */
static void attention(eng_session *s, int l, const rows *R, float *out)
{
    const eng_config *c = &s->model->cfg;
    int hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int group = c->n_heads / c->n_kv_heads, n = R->n;
    int pos0 = R->p0 + R->r0;
    const float *Kl = s->k_cache + (size_t)l * s->ctx * kv_dim;
    const float *Vl = s->v_cache + (size_t)l * s->ctx * kv_dim;
    float scale = 1.0f / sqrtf((float)hd);

    for (int h = 0; h < c->n_heads; h++) {
        const float *K = Kl + (h / group) * hd, *V = Vl + (h / group) * hd;
        const float *Q = R->q + h * hd;
        float *O = out + h * hd;

        if (n == 1 || s->naive) {
            for (int r = 0; r < n; r++)
                attend_row(Q + (size_t)r * q_dim, K, V, pos0 + r + 1, hd,
                           kv_dim, scale, R->scores, O + (size_t)r * q_dim);
            continue;
        }
        /* Causal blocks of ATT_BLOCK rows, each against the keys up to its
         * last row only: S (nb, Tb) = Q K^T * scale; mask; softmax rows;
         * O (nb, hd) = S V. */
        for (int b0 = 0; b0 < n; b0 += ATT_BLOCK) {
            int nb = n - b0 < ATT_BLOCK ? n - b0 : ATT_BLOCK;
            int Tb = pos0 + b0 + nb;
            const float *Qb = Q + (size_t)b0 * q_dim;

            eng_k_gemm(0, 1, nb, Tb, hd, scale, Qb, q_dim, K, kv_dim, 0.0f,
                       R->scores, Tb);
            for (int r = 0; r < nb; r++) {
                float *S = R->scores + (size_t)r * Tb;
                int valid = pos0 + b0 + r + 1;

                eng_k_softmax(S, valid);
                memset(S + valid, 0, (size_t)(Tb - valid) * sizeof(*S));
            }
            eng_k_gemm(0, 0, nb, hd, Tb, 1.0f, R->scores, Tb, V, kv_dim, 0.0f,
                       O + (size_t)b0 * q_dim, q_dim);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                   */

/* Layer l's q, k and v of the rows (k and v straight into the cache). */
static void layer_qkv(eng_session *s, int l, const rows *R)
{
    const eng_config *c = &s->model->cfg;
    eng_layer *L = &s->model->layers[l];
    int hd = c->head_dim, kv_dim = c->n_kv_heads * hd;
    size_t at = (size_t)l * s->ctx + R->p0 + R->r0;
    float *kc = s->k_cache + at * kv_dim, *vc = s->v_cache + at * kv_dim;

    eng_k_rmsnorm(R->xb, R->x, &L->attn_norm, R->n, c->dim, c->norm_eps, NULL);
    project(s, l, ENG_T_Q, R->q, R->xb, R, 0);
    project(s, l, ENG_T_K, kc, R->xb, R, 0);
    project(s, l, ENG_T_V, vc, R->xb, R, 0);
    eng_k_rope(R->q, R->n, c->n_heads, hd, R->pos, s->model->rope_inv_freq,
               c->rope_style, 0);
    eng_k_rope(kc, R->n, c->n_kv_heads, hd, R->pos, s->model->rope_inv_freq,
               c->rope_style, 0);
}

/* The rest of layer l for the rows, once the cache holds every key up to
 * the rows' own: attention, output projection, MLP. */
static void layer_rest(eng_session *s, int l, const rows *R)
{
    const eng_config *c = &s->model->cfg;
    eng_layer *L = &s->model->layers[l];
    size_t hn = (size_t)R->n * c->hidden_dim;

    attention(s, l, R, R->xb);
    project(s, l, ENG_T_O, R->x, R->xb, R, 1);
    eng_k_rmsnorm(R->xb, R->x, &L->ffn_norm, R->n, c->dim, c->norm_eps, NULL);
    project(s, l, ENG_T_GATE, R->hb, R->xb, R, 0);
    project(s, l, ENG_T_UP, R->hb2, R->xb, R, 0);
    eng_k_swiglu(R->hb, R->hb, R->hb2, hn);
    project(s, l, ENG_T_DOWN, R->x, R->hb, R, 1);
}

/* Prefill on two threads. Two single-threaded BLAS calls on halves of the
 * rows run much faster here than OpenBLAS's own two threads on the whole
 * (the same finding as train.c's worker slices: OpenBLAS's 2-thread sgemm
 * on these shapes is much less efficient, and every call waits for the
 * slower of its threads). The chunk's rows are cut in two: part 0 (the
 * first rows) never needs anything from part 1, since causal attention
 * only looks back; part 1 needs part 0's keys and values of each layer
 * before its attention there. So part 0 runs its layers straight through,
 * publishing "layer l's k/v are in the cache" after each layer's q/k/v,
 * and part 1 waits for that before its attention of layer l (in practice
 * only at the start: part 0 has the shorter attention and runs ahead).
 * No barrier, no spinning: a mutex and condition variable, one publish per
 * layer. The helper is a plain pthread with the default stack (the static
 * TLS of kernels.c and rowmm.c, 2.5 MiB, must fit in it). Each row's
 * result is the same arithmetic as on one thread, only cut differently
 * across BLAS calls. */
typedef struct split {
    eng_session *s;
    rows part[2];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int kv_done;        /* layers whose part-0 k/v are in the cache */
} split;

static void part0_run(split *sp)
{
    eng_session *s = sp->s;
    const rows *R = &sp->part[0];

    for (int l = 0; l < s->model->cfg.n_layers; l++) {
        layer_qkv(s, l, R);
        pthread_mutex_lock(&sp->mu);
        sp->kv_done = l + 1;
        pthread_cond_signal(&sp->cv);
        pthread_mutex_unlock(&sp->mu);
        layer_rest(s, l, R);
    }
}

static void *part1_run(void *arg)
{
    split *sp = arg;
    eng_session *s = sp->s;
    const rows *R = &sp->part[1];

    for (int l = 0; l < s->model->cfg.n_layers; l++) {
        layer_qkv(s, l, R);
        pthread_mutex_lock(&sp->mu);
        while (sp->kv_done <= l)
            pthread_cond_wait(&sp->cv, &sp->mu);
        pthread_mutex_unlock(&sp->mu);
        layer_rest(s, l, R);
    }
    return NULL;
}

/* Rows below which a chunk runs on one thread (OpenBLAS's threads): the
 * split's thread start and per-layer hand-over are not worth it, and a
 * few rows are bandwidth-bound, better cut by output columns. */
enum { SPLIT_MIN_ROWS = 16 };

/* Keys attention() computes scores for (masked ones included), over the
 * rows at positions pos0..pos0+n-1: each block's rows times its keys. */
static double attn_keys(int pos0, int n)
{
    double k = 0;

    for (int b0 = 0; b0 < n; b0 += ATT_BLOCK) {
        int nb = n - b0 < ATT_BLOCK ? n - b0 : ATT_BLOCK;

        k += (double)nb * (pos0 + b0 + nb);
    }
    return k;
}

/* The cut that best balances the parts: per layer, the linears' FLOPs per
 * row plus the attention's per (row, key) computed. */
static int split_point(const eng_config *c, int p0, int n)
{
    double q = (double)c->n_heads * c->head_dim;
    double kv = (double)c->n_kv_heads * c->head_dim;
    double lin = 2.0 * (c->dim * (q + 2 * kv) + q * c->dim +
                        3.0 * c->dim * c->hidden_dim);
    double att = 4.0 * q; /* per (row, key) */
    int best = n / 2;
    double best_cost = 1e300;

    for (int a = 1; a < n; a++) {
        double c0 = a * lin + att * attn_keys(p0, a);
        double c1 = (n - a) * lin + att * attn_keys(p0 + a, n - a);
        double m = c0 > c1 ? c0 : c1;

        if (m < best_cost)
            best_cost = m, best = a;
    }
    return best;
}

/* Runs the chunk split over two threads; false if the helper thread could
 * not be started (nothing has been computed then). */
static bool chunk_split(eng_session *s, int p0, int n)
{
    int cut = split_point(&s->model->cfg, p0, n), threads = eng_k_get_threads();
    split sp = { .s = s, .kv_done = 0 };
    pthread_t th;
    bool ok;

    sp.part[0] = rows_of(s, p0, 0, cut);
    sp.part[1] = rows_of(s, p0, cut, n - cut);
    pthread_mutex_init(&sp.mu, NULL);
    pthread_cond_init(&sp.cv, NULL);
    /* two threads on single-threaded BLAS: as many busy threads as cores */
    eng_k_set_threads(1);
    ok = pthread_create(&th, NULL, part1_run, &sp) == 0;
    if (ok) {
        part0_run(&sp);
        pthread_join(th, NULL);
    }
    eng_k_set_threads(threads);
    pthread_cond_destroy(&sp.cv);
    pthread_mutex_destroy(&sp.mu);
    return ok;
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
    if (s->naive || n < SPLIT_MIN_ROWS || eng_k_get_threads() < 2 ||
        !chunk_split(s, p0, n)) {
        rows R = rows_of(s, p0, 0, n);

        for (int l = 0; l < c->n_layers; l++) {
            layer_qkv(s, l, &R);
            layer_rest(s, l, &R);
        }
    }
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
