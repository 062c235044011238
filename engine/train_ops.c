/* SPDX-License-Identifier: MIT */
/*
 * train_ops.c - forward and backward of each training layer: the LoRA
 * linear, RMSNorm, SwiGLU, causal grouped-query attention over segments,
 * and the chunked LM head with masked cross-entropy.
 *
 * Every product goes through kernels.c (BLAS); what is left here is
 * elementwise work. Nothing allocates: callers pass scratch buffers sized
 * once by the trainer. Attention does not keep its probabilities: the
 * backward recomputes them per (segment, head), one T x T matrix at a time,
 * which trades one small GEMM for T*T*heads*layers floats of memory.
 */
#include "train_impl.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* LoRA linear                                                               */

/* dst = dropout(x) with the mask of (seed, row*in + col); kept values are
 * scaled by 1/(1-p) so the expectation is unchanged. */
ENG_K_CLONES
static void dropout_apply(float *dst, const float *x, int n, int in, float p,
                          uint64_t seed)
{
    uint64_t thresh = (uint64_t)((double)p * 16777216.0);
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < (size_t)n * in; i++)
        dst[i] = (eng_mix64(seed + i) >> 40) >= thresh ? x[i] * keep : 0.0f;
}

void tr_lin_fwd(const tr_lin *l, float *y, const float *x, int n, float *u,
                float *scratch)
{
    int in = l->W->cols, out = l->W->rows, r = l->r;
    eng_k_matmul(y, x, l->W, n, 0);
    if (l->b)
        eng_k_add_bias(y, l->b, n, out);
    if (!l->A)
        return;
    const float *xd = x;
    if (l->dropout > 0) {
        dropout_apply(scratch, x, n, in, l->dropout, l->drop_seed);
        xd = scratch;
    }
    eng_k_gemm(0, 1, n, r, in, 1.0f, xd, in, l->A, in, 0.0f, u, r); /* (n,r) */
    eng_k_gemm(0, 1, n, out, r, l->scale, u, r, l->B, r, 1.0f, y, out);
}

void tr_lin_bwd(const tr_lin *l, float *dx, const float *dy, const float *x,
                const float *u, int n, int accumulate, float *scratch,
                float *scratch_r)
{
    int in = l->W->cols, out = l->W->rows, r = l->r;
    if (dx)
        eng_k_matmul_bwd_x(dx, dy, l->W, n, accumulate);
    if (l->dW)
        eng_k_matmul_bwd_w(l->dW, dy, x, n, out, in);
    if (l->db)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++)
                l->db[j] += dy[(size_t)i * out + j];
    if (!l->A)
        return;
    float *du = scratch_r; /* (n, r) = scale * dy B */
    if (l->dB)
        eng_k_gemm(1, 0, out, r, n, l->scale, dy, out, u, r, 1.0f, l->dB, r);
    eng_k_gemm(0, 0, n, r, out, l->scale, dy, out, l->B, r, 0.0f, du, r);
    if (l->dropout <= 0) {
        if (l->dA)
            eng_k_gemm(1, 0, r, in, n, 1.0f, du, r, x, in, 1.0f, l->dA, in);
        if (dx)
            eng_k_gemm(0, 0, n, in, r, 1.0f, du, r, l->A, in, 1.0f, dx, in);
        return;
    }
    /* dA += du^T drop(x), with the mask regenerated */
    if (l->dA) {
        dropout_apply(scratch, x, n, in, l->dropout, l->drop_seed);
        eng_k_gemm(1, 0, r, in, n, 1.0f, du, r, scratch, in, 1.0f, l->dA, in);
    }
    if (!dx)
        return;
    /* dx += drop'(du A): the same mask and scale applied to the gradient */
    eng_k_gemm(0, 0, n, in, r, 1.0f, du, r, l->A, in, 0.0f, scratch, in);
    uint64_t thresh = (uint64_t)((double)l->dropout * 16777216.0);
    float keep = 1.0f / (1.0f - l->dropout);
    for (size_t i = 0; i < (size_t)n * in; i++)
        if ((eng_mix64(l->drop_seed + i) >> 40) >= thresh)
            dx[i] += scratch[i] * keep;
}

/* ------------------------------------------------------------------------ */
/* RMSNorm and SwiGLU                                                        */

ENG_K_CLONES
void tr_rmsnorm_bwd(float *dx, const float *dy, const float *x,
                    const float *rstd, const eng_tensor *w, float *dw, int n,
                    int dim, int accumulate)
{
    /* model.c guarantees f32 norm weights */
    const float *wf = eng_f32(w);
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * dim, *g = dy + (size_t)r * dim;
        float *d = dx + (size_t)r * dim, rs = rstd[r];
        /* dx = rs * (w*dy) - rs^3/dim * x * sum(w*dy*x) */
        float dot = 0.0f;
        for (int i = 0; i < dim; i++)
            dot += wf[i] * g[i] * xr[i];
        float c = rs * rs * rs * dot / (float)dim;
        for (int i = 0; i < dim; i++) {
            float v = rs * wf[i] * g[i] - c * xr[i];
            d[i] = accumulate ? d[i] + v : v;
        }
        if (dw)
            for (int i = 0; i < dim; i++)
                dw[i] += g[i] * xr[i] * rs;
    }
}

ENG_K_CLONES
void tr_swiglu_bwd(float *dg, float *du, const float *dh, const float *g,
                   const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + eng_k_expf(-g[i]));
        float silu = g[i] * s;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */

/* Causal attention in row blocks of ATT_BLK queries: block b (rows
 * [i0, i1)) only meets keys [0, i1), so the products cover the lower block
 * triangle of the L x L score matrix (at L = 256 and 64-row blocks, 62% of
 * the square) and the zeros above the diagonal are never multiplied. S
 * holds the probabilities with row stride L; of row i only [0, i1(i)) is
 * ever written or read, and entries above the diagonal there are 0. */
enum { ATT_BLK = 64 };

static int blk_end(int i0, int L)
{
    return i0 + ATT_BLK < L ? i0 + ATT_BLK : L;
}

/* S[i0.., 0..i1) = causal softmax(scale * q_h k_h^T) for every row block. */
ENG_K_CLONES
static void attn_probs(float *S, const float *qh, int qw, const float *kh,
                       int kw, int L, int hd)
{
    float scale = 1.0f / sqrtf((float)hd);
    for (int i0 = 0; i0 < L; i0 += ATT_BLK) {
        int i1 = blk_end(i0, L);
        eng_k_gemm(0, 1, i1 - i0, i1, hd, scale, qh + (size_t)i0 * qw, qw, kh,
                   kw, 0.0f, S + (size_t)i0 * L, L);
        for (int i = i0; i < i1; i++) {
            float *row = S + (size_t)i * L;
            eng_k_softmax(row, i + 1);
            for (int j = i + 1; j < i1; j++)
                row[j] = 0.0f;
        }
    }
}

void tr_attn_fwd(float *out, const float *q, const float *k, const float *v,
                 const tr_seg *segs, int n_segs, const tr_attn_dims *d,
                 float *S)
{
    int hd = d->head_dim, qw = d->n_heads * hd, kw = d->n_kv_heads * hd;
    int group = d->n_heads / d->n_kv_heads;
    for (int s = 0; s < n_segs; s++) {
        size_t s0 = (size_t)segs[s].start;
        int L = segs[s].len;
        for (int h = 0; h < d->n_heads; h++) {
            size_t qo = s0 * qw + (size_t)h * hd;
            size_t ko = s0 * kw + (size_t)(h / group) * hd;
            attn_probs(S, q + qo, qw, k + ko, kw, L, hd);
            for (int i0 = 0; i0 < L; i0 += ATT_BLK) {   /* (rows, hd) */
                int i1 = blk_end(i0, L);
                eng_k_gemm(0, 0, i1 - i0, hd, i1, 1.0f, S + (size_t)i0 * L, L,
                           v + ko, kw, 0.0f, out + qo + (size_t)i0 * qw, qw);
            }
        }
    }
}

/* dS = P * (dP - rowsum(P * dP)) * scale over each row's causal part, in
 * place in dP (zeros above the diagonal inside the diagonal block). */
ENG_K_CLONES
static void attn_dsoftmax(float *dP, const float *S, int L, float scale)
{
    for (int i0 = 0; i0 < L; i0 += ATT_BLK) {
        int i1 = blk_end(i0, L);
        for (int i = i0; i < i1; i++) {
            const float *p = S + (size_t)i * L;
            float *g = dP + (size_t)i * L;
            float dot = 0.0f;
            for (int j = 0; j <= i; j++)
                dot += p[j] * g[j];
            for (int j = 0; j <= i; j++)
                g[j] = p[j] * (g[j] - dot) * scale;
            for (int j = i + 1; j < i1; j++)
                g[j] = 0.0f;
        }
    }
}

void tr_attn_bwd(float *dq, float *dk, float *dv, const float *dout,
                 const float *q, const float *k, const float *v,
                 const tr_seg *segs, int n_segs, const tr_attn_dims *d,
                 float *S, float *dP)
{
    int hd = d->head_dim, qw = d->n_heads * hd, kw = d->n_kv_heads * hd;
    int group = d->n_heads / d->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    for (int s = 0; s < n_segs; s++) {
        size_t s0 = (size_t)segs[s].start;
        int L = segs[s].len;
        memset(dk + s0 * kw, 0, sizeof(float) * (size_t)L * kw);
        memset(dv + s0 * kw, 0, sizeof(float) * (size_t)L * kw);
        for (int h = 0; h < d->n_heads; h++) {
            size_t qo = s0 * qw + (size_t)h * hd;
            size_t ko = s0 * kw + (size_t)(h / group) * hd;
            attn_probs(S, q + qo, qw, k + ko, kw, L, hd);
            /* dP = dO V^T over the lower block triangle */
            for (int i0 = 0; i0 < L; i0 += ATT_BLK) {
                int i1 = blk_end(i0, L);
                eng_k_gemm(0, 1, i1 - i0, i1, hd, 1.0f,
                           dout + qo + (size_t)i0 * qw, qw, v + ko, kw, 0.0f,
                           dP + (size_t)i0 * L, L);
            }
            attn_dsoftmax(dP, S, L, scale);
            for (int j0 = 0; j0 < L; j0 += ATT_BLK) {
                int j1 = blk_end(j0, L), m = L - j0;
                const float *Pj = S + (size_t)j0 * L + j0;
                const float *dSj = dP + (size_t)j0 * L + j0;
                /* dV[j] = P[j0:, j]^T dO[j0:]; dK[j] = dS[j0:, j]^T Q[j0:] */
                eng_k_gemm(1, 0, j1 - j0, hd, m, 1.0f, Pj, L,
                           dout + qo + (size_t)j0 * qw, qw, 1.0f,
                           dv + ko + (size_t)j0 * kw, kw);
                eng_k_gemm(1, 0, j1 - j0, hd, m, 1.0f, dSj, L,
                           q + qo + (size_t)j0 * qw, qw, 1.0f,
                           dk + ko + (size_t)j0 * kw, kw);
                /* dQ[j] = dS[j, 0:j1] K[0:j1] */
                eng_k_gemm(0, 0, j1 - j0, hd, j1, 1.0f, dP + (size_t)j0 * L,
                           L, k + ko, kw, 0.0f, dq + qo + (size_t)j0 * qw, qw);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* LM head and masked cross-entropy                                          */

/* Softmax cross-entropy of one logits row in place: returns the loss,
 * leaves p (scaled by gs, minus gs at the target) when gs != 0. */
ENG_K_CLONES
static float ce_row(float *lg, int V, int t, float gs, int *ret_hit)
{
    float mx = eng_k_max(lg, V), lt = lg[t];
    int am = 0;
    while (am < V - 1 && lg[am] != mx) /* first argmax (bounded: NaN) */
        am++;
    *ret_hit = am == t;
    for (int j = 0; j < V; j++)
        lg[j] = eng_k_expf(lg[j] - mx);
    double s = eng_k_sum(lg, V);
    if (gs != 0.0f) {
        float k = gs / (float)s;
        for (int j = 0; j < V; j++)
            lg[j] *= k;
        lg[t] -= gs;
    }
    return (float)(log(s) + mx - lt);
}

void tr_ce_run(const tr_ce *c, const float *xf, float *dxf,
               const int32_t *tgt, int n, float loss_scale, double *ret_loss,
               int *ret_correct)
{
    int V = c->E->rows, D = c->E->cols, correct = 0;
    double loss = 0.0;
    if (dxf)
        memset(dxf, 0, sizeof(float) * (size_t)n * D);
    for (int r = 0; r < n;) {
        int m = 0;
        for (; r < n && m < c->chunk; r++)
            if (tgt[r] >= 0) {
                c->rows[m] = r;
                memcpy(c->xc + (size_t)m * D, xf + (size_t)r * D,
                       sizeof(float) * D);
                m++;
            }
        if (!m)
            break;
        eng_k_matmul(c->logits, c->xc, c->E, m, 0);           /* (m, V) */
        for (int i = 0; i < m; i++) {
            int hit;
            loss += ce_row(c->logits + (size_t)i * V, V, tgt[c->rows[i]],
                           dxf ? loss_scale : 0.0f, &hit);
            correct += hit;
        }
        if (!dxf)
            continue;
        eng_k_matmul_bwd_x(c->dxc, c->logits, c->E, m, 0);    /* (m, D) */
        for (int i = 0; i < m; i++)
            memcpy(dxf + (size_t)c->rows[i] * D, c->dxc + (size_t)i * D,
                   sizeof(float) * D);
        if (c->dE)
            eng_k_matmul_bwd_w(c->dE, c->logits, c->xc, m, V, D);
    }
    *ret_loss = loss;
    *ret_correct = correct;
}
