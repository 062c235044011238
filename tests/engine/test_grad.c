/* SPDX-License-Identifier: MIT */
/*
 * test_grad.c - finite-difference checks of every backward pass in the
 * training engine: RMSNorm, RoPE (both pairings), causal grouped-query
 * attention over segments, SwiGLU, the chunked LM head with masked
 * cross-entropy, the LoRA linear (with bias and dropout), and the whole
 * model's LoRA and full-finetune gradients on a tiny random model.
 *
 * Each layer is checked on L = sum(R * layer(inputs)) for a fixed random R,
 * whose gradient with respect to the output is R. Derivatives are central
 * differences with eps = 1e-2 in float32; the error measure is
 * ||analytic - numeric|| / ||analytic + numeric|| over the checked entries,
 * which is ~1e-4 here and O(1) for any wrong term (flipping one sign or
 * dropping one term of a backward makes this test fail).
 */
#include "engine/train_impl.h"
#include "tests/engine/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t seed = 12345;

static float frand(void)
{
    return 2.0f * eng_rand_unit(&seed) - 1.0f;
}

static float *rnd(size_t n, float s)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        x[i] = s * frand();
    return x;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

#define EPS 1e-2f
#define TOL 1e-2

/* Compares analytic grad g against central differences of f over param
 * entries (all of them, or `sample` random ones). */
typedef double (*loss_fn)(void *ctx);

static void fd_check(const char *what, loss_fn f, void *ctx, float *param,
                     const float *g, size_t n, size_t sample)
{
    double num = 0, den = 0, worst = 0;
    size_t m = sample && sample < n ? sample : n;
    for (size_t k = 0; k < m; k++) {
        size_t i = m == n ? k : (size_t)(eng_splitmix64(&seed) % n);
        float old = param[i];
        param[i] = old + EPS;
        double lp = f(ctx);
        param[i] = old - EPS;
        double lm = f(ctx);
        param[i] = old;
        double nd = (lp - lm) / (2.0 * EPS), d = g[i] - nd;
        num += d * d;
        den += (g[i] + nd) * (g[i] + nd);
        worst = fabs(d) > worst ? fabs(d) : worst;
    }
    double rel = sqrt(num / (den + 1e-30));
    int ok = rel < TOL && den > 1e-12;
    printf("%-34s rel %.2e  max|d| %.2e  (%zu entries) %s\n", what, rel, worst,
           m, ok ? "ok" : "FAIL");
    if (!ok)
        failures++;
}

/* ------------------------------------------------------------------------ */
/* RMSNorm                                                                   */

struct norm_ctx {
    int n, dim;
    float *x, *w, *R, *y;
};

static double norm_loss(void *p)
{
    struct norm_ctx *c = p;
    eng_tensor w = {ENG_DT_F32, 1, c->dim, c->w};
    eng_k_rmsnorm(c->y, c->x, &w, c->n, c->dim, 1e-5f, NULL);
    return dot(c->y, c->R, (size_t)c->n * c->dim);
}

static void test_rmsnorm(void)
{
    struct norm_ctx c = {.n = 3, .dim = 16};
    size_t N = (size_t)c.n * c.dim;
    c.x = rnd(N, 1);
    c.w = rnd((size_t)c.dim, 1);
    c.R = rnd(N, 1);
    c.y = rnd(N, 1);
    float rstd[3], *dx = calloc(N, 4), *dw = calloc((size_t)c.dim, 4);
    eng_tensor w = {ENG_DT_F32, 1, c.dim, c.w};
    eng_k_rmsnorm(c.y, c.x, &w, c.n, c.dim, 1e-5f, rstd);
    tr_rmsnorm_bwd(dx, c.R, c.x, rstd, &w, dw, c.n, c.dim, 0);
    fd_check("rmsnorm dx", norm_loss, &c, c.x, dx, N, 0);
    fd_check("rmsnorm dw", norm_loss, &c, c.w, dw, (size_t)c.dim, 0);
    free(c.x), free(c.w), free(c.R), free(c.y), free(dx), free(dw);
}

/* ------------------------------------------------------------------------ */
/* RoPE                                                                      */

struct rope_ctx {
    int n, heads, hd, style;
    int *pos;
    float *x, *inv, *R, *y;
};

static double rope_loss(void *p)
{
    struct rope_ctx *c = p;
    size_t N = (size_t)c->n * c->heads * c->hd;
    memcpy(c->y, c->x, N * 4);
    eng_k_rope(c->y, c->n, c->heads, c->hd, c->pos, c->inv, c->style, 0);
    return dot(c->y, c->R, N);
}

static void test_rope(int style)
{
    int pos[4] = {0, 1, 5, 11};
    float inv[4] = {1.0f, 0.3f, 0.05f, 0.01f};
    struct rope_ctx c = {4, 2, 8, style, pos, NULL, inv, NULL, NULL};
    size_t N = 4 * 2 * 8;
    c.x = rnd(N, 1);
    c.R = rnd(N, 1);
    c.y = rnd(N, 1);
    float *dx = malloc(N * 4);
    memcpy(dx, c.R, N * 4);
    eng_k_rope(dx, c.n, c.heads, c.hd, pos, inv, style, 1);
    fd_check(style ? "rope (half) dx" : "rope (interleaved) dx", rope_loss, &c,
             c.x, dx, N, 0);
    free(c.x), free(c.R), free(c.y), free(dx);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */

struct attn_ctx {
    int n;
    tr_seg segs[2];
    tr_attn_dims d;
    float *q, *k, *v, *R, *y, *S;
};

static double attn_loss(void *p)
{
    struct attn_ctx *c = p;
    tr_attn_fwd(c->y, c->q, c->k, c->v, c->segs, 2, &c->d, c->S);
    return dot(c->y, c->R, (size_t)c->n * c->d.n_heads * c->d.head_dim);
}

/* len0, len1: the two segments; long ones span several of the kernel's
 * causal row blocks. sample: FD entries checked (0 = all). */
static void test_attention(int len0, int len1, size_t sample)
{
    /* 4 query heads over 2 kv heads; two segments (a packed batch) */
    int n = len0 + len1, T = len0 > len1 ? len0 : len1;
    struct attn_ctx c = {.n = n, .segs = {{0, len0}, {len0, len1}},
                         .d = {4, 2, 8}};
    size_t NQ = (size_t)n * 32, NK = (size_t)n * 16, TT = (size_t)T * T;
    char name[96];
    c.q = rnd(NQ, 1), c.k = rnd(NK, 1), c.v = rnd(NK, 1);
    c.R = rnd(NQ, 1), c.y = rnd(NQ, 1), c.S = rnd(TT, 1);
    float *dq = rnd(NQ, 1), *dk = rnd(NK, 1), *dv = rnd(NK, 1);
    float *dP = rnd(TT, 1);
    tr_attn_bwd(dq, dk, dv, c.R, c.q, c.k, c.v, c.segs, 2, &c.d, c.S, dP);
    snprintf(name, sizeof name, "attention (GQA, causal, %d+%d) dq", len0,
             len1);
    fd_check(name, attn_loss, &c, c.q, dq, NQ, sample);
    snprintf(name, sizeof name, "attention (GQA, causal, %d+%d) dk", len0,
             len1);
    fd_check(name, attn_loss, &c, c.k, dk, NK, sample);
    snprintf(name, sizeof name, "attention (GQA, causal, %d+%d) dv", len0,
             len1);
    fd_check(name, attn_loss, &c, c.v, dv, NK, sample);
    /* causality: no output depends on a later token's key or value */
    for (int t = 1; t < len0; t += (len0 > 8 ? 37 : 1)) {
        float *y0 = malloc(NQ * sizeof(float));
        attn_loss(&c);
        memcpy(y0, c.y, NQ * sizeof(float));
        c.k[(size_t)t * 16] += 1.0f;
        c.v[(size_t)t * 16 + 3] += 1.0f;
        attn_loss(&c);
        if (memcmp(y0, c.y, (size_t)t * 32 * sizeof(float))) {
            printf("attention is not causal (token %d)\n", t);
            failures++;
        }
        free(y0);
    }
    /* reference: direct softmax(q k^T / sqrt(hd)) v per row */
    attn_loss(&c);
    double err = 0.0, ref = 0.0;
    for (int s = 0; s < 2; s++)
        for (int h = 0; h < 4; h++)
            for (int i = 0; i < c.segs[s].len; i++) {
                int r = c.segs[s].start + i;
                double sc[256], mx = -1e30, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    int rj = c.segs[s].start + j;
                    double d = 0.0;
                    for (int e = 0; e < 8; e++)
                        d += (double)c.q[r * 32 + h * 8 + e] *
                             c.k[rj * 16 + (h / 2) * 8 + e];
                    sc[j] = d / sqrt(8.0);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j <= i; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < 8; e++) {
                    double o = 0.0;
                    for (int j = 0; j <= i; j++)
                        o += sc[j] / sum *
                             c.v[(c.segs[s].start + j) * 16 + (h / 2) * 8 + e];
                    err += fabs(o - c.y[r * 32 + h * 8 + e]);
                    ref += fabs(o);
                }
            }
    if (!(err <= 1e-5 * ref)) {
        printf("attention forward differs from the reference: %g\n",
               err / ref);
        failures++;
    }
    free(c.q), free(c.k), free(c.v), free(c.R), free(c.y), free(c.S);
    free(dq), free(dk), free(dv), free(dP);
}

/* ------------------------------------------------------------------------ */
/* SwiGLU                                                                    */

struct swiglu_ctx {
    size_t n;
    float *g, *u, *R, *h;
};

static double swiglu_loss(void *p)
{
    struct swiglu_ctx *c = p;
    eng_k_swiglu(c->h, c->g, c->u, c->n);
    return dot(c->h, c->R, c->n);
}

static void test_swiglu(void)
{
    struct swiglu_ctx c = {.n = 40};
    c.g = rnd(40, 3), c.u = rnd(40, 1), c.R = rnd(40, 1), c.h = rnd(40, 1);
    float *dg = rnd(40, 1), *du = rnd(40, 1);
    tr_swiglu_bwd(dg, du, c.R, c.g, c.u, 40);
    fd_check("swiglu dgate", swiglu_loss, &c, c.g, dg, 40, 0);
    fd_check("swiglu dup", swiglu_loss, &c, c.u, du, 40, 0);
    free(c.g), free(c.u), free(c.R), free(c.h), free(dg), free(du);
}

/* ------------------------------------------------------------------------ */
/* LM head + masked cross-entropy                                            */

struct ce_ctx {
    int n;
    tr_ce ce;
    eng_tensor E;
    float *xf;
    int32_t *tgt;
};

static double ce_loss(void *p)
{
    struct ce_ctx *c = p;
    double l;
    int hits;
    tr_ce ce = c->ce;
    ce.dE = NULL;
    tr_ce_run(&ce, c->xf, NULL, c->tgt, c->n, 1.0f, &l, &hits);
    return l / 3.0; /* the loss_scale used below */
}

static void test_ce(void)
{
    enum { N = 7, D = 12, V = 20, C = 2 };
    int32_t tgt[N] = {3, -1, 7, 19, -1, 0, 5};
    struct ce_ctx c = {.n = N};
    c.E = (eng_tensor){ENG_DT_F32, V, D, rnd(V * D, 1)};
    c.xf = rnd(N * D, 1);
    c.tgt = tgt;
    /* chunks of 2 rows: the 5 target rows take three chunks */
    c.ce = (tr_ce){&c.E, C, rnd(C * V, 1), rnd(C * D, 1), rnd(C * D, 1),
                   malloc(sizeof(int) * C), NULL};
    float *dx = rnd(N * D, 1), *dE = calloc(V * D, 4);
    double l;
    int hits;
    c.ce.dE = dE;
    tr_ce_run(&c.ce, c.xf, dx, tgt, N, 1.0f / 3.0f, &l, &hits);
    fd_check("lm head + masked CE dx", ce_loss, &c, c.xf, dx, N * D, 0);
    fd_check("lm head + masked CE dE", ce_loss, &c, c.E.data, dE, V * D, 0);
    for (int i = 0; i < D; i++) /* rows without a target get no gradient */
        if (dx[1 * D + i] != 0.0f || dx[4 * D + i] != 0.0f) {
            printf("masked row has a gradient\n");
            failures++;
            break;
        }
    free(c.E.data), free(c.xf), free(c.ce.logits), free(c.ce.xc);
    free(c.ce.dxc), free(c.ce.rows), free(dx), free(dE);
}

/* ------------------------------------------------------------------------ */
/* LoRA linear                                                               */

struct lin_ctx {
    int n;
    tr_lin lin;
    float *x, *R, *y, *u, *scratch;
};

static double lin_loss(void *p)
{
    struct lin_ctx *c = p;
    tr_lin_fwd(&c->lin, c->y, c->x, c->n, c->u, c->scratch);
    return dot(c->y, c->R, (size_t)c->n * c->lin.W->rows);
}

static void test_lora_linear(float dropout)
{
    enum { N = 5, IN = 12, OUT = 10, R = 3 };
    eng_tensor W = {ENG_DT_F32, OUT, IN, rnd(OUT * IN, 0.5f)};
    eng_tensor b = {ENG_DT_F32, 1, OUT, rnd(OUT, 0.5f)};
    struct lin_ctx c = {.n = N};
    float *dA = calloc(R * IN, 4), *dB = calloc(OUT * R, 4);
    float *dW = calloc(OUT * IN, 4), *db = calloc(OUT, 4);
    c.lin = (tr_lin){&W, &b, rnd(R * IN, 0.5f), rnd(OUT * R, 0.5f), R, 2.0f,
                     dropout, 777, dA, dB, dW, db};
    c.x = rnd(N * IN, 1), c.R = rnd(N * OUT, 1), c.y = rnd(N * OUT, 1);
    c.u = rnd(N * R, 1), c.scratch = rnd(N * IN, 1);
    float *dx = rnd(N * IN, 1), *sr = rnd(N * R, 1);
    tr_lin_fwd(&c.lin, c.y, c.x, N, c.u, c.scratch);
    tr_lin_bwd(&c.lin, dx, c.R, c.x, c.u, N, 0, c.scratch, sr);
    char name[64];
    snprintf(name, sizeof name, "lora linear (p=%.1f) dx", dropout);
    fd_check(name, lin_loss, &c, c.x, dx, N * IN, 0);
    snprintf(name, sizeof name, "lora linear (p=%.1f) dA", dropout);
    fd_check(name, lin_loss, &c, (float *)c.lin.A, dA, R * IN, 0);
    snprintf(name, sizeof name, "lora linear (p=%.1f) dB", dropout);
    fd_check(name, lin_loss, &c, (float *)c.lin.B, dB, OUT * R, 0);
    snprintf(name, sizeof name, "lora linear (p=%.1f) dW, db", dropout);
    fd_check(name, lin_loss, &c, W.data, dW, OUT * IN, 0);
    fd_check(name, lin_loss, &c, b.data, db, OUT, 0);
    free(W.data), free(b.data), free((void *)c.lin.A), free((void *)c.lin.B);
    free(dA), free(dB), free(dW), free(db), free(c.x), free(c.R), free(c.y);
    free(c.u), free(c.scratch), free(dx), free(sr);
}

/* ------------------------------------------------------------------------ */
/* Whole model                                                               */

struct model_ctx {
    eng_trainer *t;
    tr_batch b;
    eng_example *ex;
    int n_ex;
};

static double model_loss(void *p)
{
    struct model_ctx *c = p;
    double l;
    int hits;
    tr_batch_build(c->t, c->ex, c->n_ex, &c->b);
    tr_forward_backward(c->t, &c->b, 0, &l, &hits);
    return l / 10.0;
}

/* threads > 1: LoRA micro-batches are cut into per-thread row slices
 * (train.c's workers); the gradients must not change. */
static void test_model(eng_rope_style style, int full, int threads)
{
    eng_config cfg = {
        .dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4,
        .n_kv_heads = 2, .head_dim = 4, .vocab_size = 32, .max_seq_len = 16,
        .norm_eps = 1e-5f, .rope_theta = 10000.0f, .rope_style = style,
        .tied_embeddings = full, .qkv_bias = true,
    };
    eng_model *m;
    eng_trainer *t;
    eng_train_params p;
    char err[128];
    if (eng_model_new_random(&cfg, 7 + style, 0.3f, &m)) {
        printf("random model failed\n");
        failures++;
        return;
    }
    /* two examples of different lengths, prompt tokens masked out */
    int32_t ids0[9] = {1, 5, 9, 3, 30, 2, 7, 8, 11};
    int32_t ids1[6] = {1, 4, 4, 17, 21, 2};
    uint8_t m0[9] = {0, 0, 0, 1, 1, 1, 1, 1, 1};
    uint8_t m1[6] = {0, 0, 1, 1, 1, 1};
    eng_example ex[2] = {{ids0, m0, 9, false}, {ids1, m1, 6, false}};
    eng_train_params_default(&p);
    p.full_finetune = full;
    p.lora_rank = 2;
    p.lora_alpha = 4;
    p.targets = ENG_TARGET_ALL;
    p.max_seq_len = 16;
    p.batch_size = 2;
    p.n_threads = threads;
    if (eng_trainer_new(m, &p, ex, 2, &t, err, sizeof err)) {
        printf("trainer: %s\n", err);
        failures++;
        eng_model_unref(m);
        return;
    }
    size_t n;
    float *par = tr_params(t, &n);
    if (!full) /* B = 0 at init would make every A gradient zero */
        for (size_t i = 0; i < n; i++)
            par[i] = 0.3f * frand();
    struct model_ctx c = {t, {0}, ex, 2};
    double l;
    int hits;
    tr_batch_build(t, ex, 2, &c.b);
    c.b.loss_scale = 0.1f; /* matches model_loss's / 10 */
    tr_zero_grads(t);
    tr_forward_backward(t, &c.b, 1, &l, &hits);
    float *g = malloc(n * sizeof(float));
    memcpy(g, tr_grads(t), n * sizeof(float));
    char name[64];
    snprintf(name, sizeof name, "model %s (%s rope%s)",
             full ? "full finetune" : "LoRA", style ? "half" : "interleaved",
             threads > 1 ? ", 2 workers" : "");
    fd_check(name, model_loss, &c, par, g, n, full ? 400 : 0);
    free(g);
    eng_trainer_free(t);
    eng_model_unref(m);
}

/* The per-thread row slices compute what one thread computes, dropout
 * masks included: LoRA gradients of a 3-example micro-batch with dropout,
 * 1 thread against 2 and 3 workers, equal within float rounding. */
static void test_split_same(void)
{
    eng_config cfg = {
        .dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4,
        .n_kv_heads = 2, .head_dim = 4, .vocab_size = 32, .max_seq_len = 16,
        .norm_eps = 1e-5f, .rope_theta = 10000.0f, .rope_style = 1,
    };
    eng_model *m;
    if (eng_model_new_random(&cfg, 11, 0.3f, &m)) {
        printf("random model failed\n");
        failures++;
        return;
    }
    int32_t ids0[9] = {1, 5, 9, 3, 30, 2, 7, 8, 11};
    int32_t ids1[6] = {1, 4, 4, 17, 21, 2};
    int32_t ids2[8] = {1, 6, 12, 19, 3, 3, 28, 2};
    uint8_t m0[9] = {0, 0, 0, 1, 1, 1, 1, 1, 1};
    uint8_t m1[6] = {0, 0, 1, 1, 1, 1};
    uint8_t m2[8] = {0, 1, 1, 1, 1, 1, 1, 1};
    eng_example ex[3] = {{ids0, m0, 9, false}, {ids1, m1, 6, false},
                         {ids2, m2, 8, false}};
    float *g1 = NULL;
    size_t n = 0;
    for (int threads = 1; threads <= 3; threads++) {
        eng_train_params p;
        eng_trainer *t;
        char err[128];
        eng_train_params_default(&p);
        p.lora_rank = 2;
        p.lora_alpha = 4;
        p.lora_dropout = 0.25f;
        p.targets = ENG_TARGET_ALL;
        p.max_seq_len = 16;
        p.batch_size = 3;
        p.n_threads = threads;
        if (eng_trainer_new(m, &p, ex, 3, &t, err, sizeof err)) {
            printf("trainer: %s\n", err);
            failures++;
            break;
        }
        float *par = tr_params(t, &n);
        uint64_t s = 5;
        for (size_t i = 0; i < n; i++)
            par[i] = 0.3f * (2.0f * eng_rand_unit(&s) - 1.0f);
        tr_batch b;
        double l;
        int hits;
        tr_batch_build(t, ex, 3, &b);
        b.drop_seed = 0x1234567;
        tr_zero_grads(t);
        tr_forward_backward(t, &b, 1, &l, &hits);
        if (!g1) {
            g1 = malloc(n * sizeof(float));
            memcpy(g1, tr_grads(t), n * sizeof(float));
        } else {
            const float *g = tr_grads(t);
            double num = 0, den = 0;
            for (size_t i = 0; i < n; i++) {
                num += ((double)g[i] - g1[i]) * ((double)g[i] - g1[i]);
                den += (double)g1[i] * g1[i];
            }
            double rel = sqrt(num / (den > 0 ? den : 1));
            printf("%-34s rel %.2e  %s\n",
                   threads == 2 ? "LoRA grads, 2 workers vs 1 thread"
                                : "LoRA grads, 3 workers vs 1 thread",
                   rel, rel < 1e-5 && den > 0 ? "ok" : "FAIL");
            if (!(rel < 1e-5 && den > 0))
                failures++;
        }
        eng_trainer_free(t);
    }
    free(g1);
    eng_model_unref(m);
}

int main(void)
{
    eng_k_set_threads(1);
    test_rmsnorm();
    test_rope(0);
    test_rope(1);
    test_attention(5, 7, 0);
    test_attention(150, 70, 600);
    test_swiglu();
    test_ce();
    test_lora_linear(0.0f);
    test_lora_linear(0.3f);
    test_model(ENG_ROPE_INTERLEAVED, 0, 1);
    test_model(ENG_ROPE_HALF, 0, 1);
    test_model(ENG_ROPE_HALF, 1, 1);
    test_model(ENG_ROPE_HALF, 0, 2);
    test_split_same();
    eng_k_set_threads(1);
    return test_done("grad");
}
