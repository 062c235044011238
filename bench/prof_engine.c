/* SPDX-License-Identifier: MIT */
/*
 * prof_engine.c - where the engine's time goes: a LoRA training step,
 * prefill and batch-1 decode timed per operation.
 *
 * Built with the linker's --wrap for the engine's kernel and training-op
 * entry points (see bench/meson.build; not built by default, so a renamed
 * internal never breaks the build: `ninja -C build bench/prof_engine`).
 * Every wrapper times its call on the calling thread; nested wrapped calls
 * are charged to their own row under their parent (e.g. "attn_fwd >
 * gemm"), so the "self" column adds up to the measured wall time and the
 * rest ("unwrapped") is code between the wrapped calls (residual adds,
 * AdamW, decode attention loops, batch building).
 *
 * Usage: prof_engine [--threads N] [--steps N] [--decode N]
 * Shape: the random SmolLM2-135M-shaped model of bench_engine.
 */
#include "engine/engine.h"
#include "engine/session.h"
#include "engine/train_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum {
    C_TOP, C_LIN_FWD, C_LIN_BWD, C_ATTN_FWD, C_ATTN_BWD, C_CE, C_RMS_BWD,
    C_SWIGLU_BWD, C_RMSNORM, C_ROPE, C_SWIGLU, C_SOFTMAX, C_GEMM, C_MATMUL,
    C_BWD_X, C_BWD_W, C_GEMV, C_GEMV_HEAD, C_ROW, C_COUNT
};
static const char *cat_name[C_COUNT] = {
    "", "lin_fwd", "lin_bwd", "attn_fwd", "attn_bwd", "ce (lm head+xent)",
    "rmsnorm_bwd", "swiglu_bwd", "rmsnorm", "rope", "swiglu", "softmax",
    "gemm", "matmul (x W^T)", "matmul_bwd_x (dy W)", "matmul_bwd_w",
    "gemv", "gemv lm_head", "embedding row",
};

/* Training runs its micro-batch on several worker threads (train.c): the
 * call stack is per thread and the totals are summed under a lock, so a
 * row's "self" time is thread time added over the workers (with n workers
 * the rows add up to about n x the wall time of the step). */
static double self_t[C_COUNT][C_COUNT]; /* [parent][cat] */
static double flops[C_COUNT][C_COUNT];
static long calls[C_COUNT][C_COUNT];
static pthread_mutex_t acc_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local double child_acc[32];
static _Thread_local int stack[32];
static _Thread_local int depth;

static double enter(int cat)
{
    depth++;
    stack[depth] = cat;
    child_acc[depth] = 0;
    return now_s();
}

static void leave(int cat, double t0, double fl)
{
    double d = now_s() - t0;
    int parent = depth > 1 ? stack[depth - 1] : C_TOP;
    pthread_mutex_lock(&acc_mu);
    self_t[parent][cat] += d - child_acc[depth];
    flops[parent][cat] += fl;
    calls[parent][cat]++;
    pthread_mutex_unlock(&acc_mu);
    depth--;
    child_acc[depth] += d;
}

static void reset(void)
{
    memset(self_t, 0, sizeof self_t);
    memset(flops, 0, sizeof flops);
    memset(calls, 0, sizeof calls);
}

/* ---- wrappers ----------------------------------------------------------- */

#define W0(ret, name, cat, fl, params, args)                                  \
    ret __real_##name params;                                                 \
    ret __wrap_##name params                                                  \
    {                                                                         \
        double t0 = enter(cat);                                               \
        __real_##name args;                                                   \
        leave(cat, t0, fl);                                                   \
    }

W0(void, tr_lin_fwd, C_LIN_FWD, 0,
   (const tr_lin *l, float *y, const float *x, int n, float *u, float *s),
   (l, y, x, n, u, s))
W0(void, tr_lin_bwd, C_LIN_BWD, 0,
   (const tr_lin *l, float *dx, const float *dy, const float *x,
    const float *u, int n, int acc, float *s, float *sr),
   (l, dx, dy, x, u, n, acc, s, sr))
W0(void, tr_attn_fwd, C_ATTN_FWD, 0,
   (float *out, const float *q, const float *k, const float *v,
    const tr_seg *segs, int n_segs, const tr_attn_dims *d, float *S),
   (out, q, k, v, segs, n_segs, d, S))
W0(void, tr_attn_bwd, C_ATTN_BWD, 0,
   (float *dq, float *dk, float *dv, const float *dout, const float *q,
    const float *k, const float *v, const tr_seg *segs, int n_segs,
    const tr_attn_dims *d, float *S, float *dP),
   (dq, dk, dv, dout, q, k, v, segs, n_segs, d, S, dP))
W0(void, tr_ce_run, C_CE, 0,
   (const tr_ce *c, const float *xf, float *dxf, const int32_t *tgt, int n,
    float ls, double *rl, int *rc),
   (c, xf, dxf, tgt, n, ls, rl, rc))
W0(void, tr_rmsnorm_bwd, C_RMS_BWD, 0,
   (float *dx, const float *dy, const float *x, const float *rstd,
    const eng_tensor *w, float *dw, int n, int dim, int acc),
   (dx, dy, x, rstd, w, dw, n, dim, acc))
W0(void, tr_swiglu_bwd, C_SWIGLU_BWD, 0,
   (float *dg, float *du, const float *dh, const float *g, const float *u,
    size_t n),
   (dg, du, dh, g, u, n))
W0(void, eng_k_rmsnorm, C_RMSNORM, 0,
   (float *out, const float *x, const eng_tensor *w, int n, int dim,
    float eps, float *rstd),
   (out, x, w, n, dim, eps, rstd))
W0(void, eng_k_rope, C_ROPE, 0,
   (float *x, int n, int nh, int hd, const int *pos, const float *inv,
    int style, int inverse),
   (x, n, nh, hd, pos, inv, style, inverse))
W0(void, eng_k_softmax, C_SOFTMAX, 0, (float *x, int n), (x, n))
W0(void, eng_k_swiglu, C_SWIGLU, 0,
   (float *h, const float *g, const float *u, size_t n), (h, g, u, n))
W0(void, eng_k_gemm, C_GEMM, 2.0 * m * n * k,
   (int ta, int tb, int m, int n, int k, float alpha, const float *A,
    int lda, const float *B, int ldb, float beta, float *C, int ldc),
   (ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
W0(void, eng_k_matmul, C_MATMUL, 2.0 * n * W->rows * W->cols,
   (float *out, const float *x, const eng_tensor *W, int n, int acc),
   (out, x, W, n, acc))
W0(void, eng_k_matmul_bwd_x, C_BWD_X, 2.0 * n * W->rows * W->cols,
   (float *dx, const float *dy, const eng_tensor *W, int n, int acc),
   (dx, dy, W, n, acc))
W0(void, eng_k_matmul_bwd_w, C_BWD_W, 2.0 * n * out * in,
   (float *dW, const float *dy, const float *x, int n, int out, int in),
   (dW, dy, x, n, out, in))
W0(void, eng_k_gemv, W->rows > 32768 ? C_GEMV_HEAD : C_GEMV,
   4.0 * W->rows * W->cols, /* "flops" column = weight bytes for gemv */
   (float *out, const float *x, const eng_tensor *W, int acc),
   (out, x, W, acc))
W0(void, eng_k_row_f32, C_ROW, 0,
   (const eng_tensor *W, int r, float *dst), (W, r, dst))

static void report(const char *title, double wall)
{
    double sum = 0, base;
    for (int p = 0; p < C_COUNT; p++)
        for (int c = 0; c < C_COUNT; c++)
            sum += self_t[p][c];
    /* worker threads: the rows add thread time, more than the wall time;
     * percentages are then of the summed thread time */
    base = sum > wall ? sum : wall;
    printf("\n%s: wall %.3f s%s\n", title, wall,
           sum > wall ? " (rows: thread time summed over the workers; % of "
                        "that sum)" : "");
    printf("  %-40s %9s %6s %8s %10s\n", "operation (self time)", "s", "%",
           "calls", "GFLOP/s");
    for (int p = 0; p < C_COUNT; p++)
        for (int c = 0; c < C_COUNT; c++) {
            if (!calls[p][c])
                continue;
            char name[96];
            if (p == C_TOP)
                snprintf(name, sizeof name, "%s", cat_name[c]);
            else
                snprintf(name, sizeof name, "%s > %s", cat_name[p],
                         cat_name[c]);
            char rate[32] = "";
            if (flops[p][c] > 0 && self_t[p][c] > 0)
                snprintf(rate, sizeof rate, "%.1f%s",
                         flops[p][c] / self_t[p][c] / 1e9,
                         c == C_GEMV || c == C_GEMV_HEAD ? " GB/s" : "");
            printf("  %-40s %9.3f %5.1f%% %8ld %10s\n", name, self_t[p][c],
                   100 * self_t[p][c] / base, calls[p][c], rate);
        }
    if (wall > sum)
        printf("  %-40s %9.3f %5.1f%%\n", "unwrapped (between calls)",
               wall - sum, 100 * (wall - sum) / wall);
}

int main(int argc, char **argv)
{
    int threads = 2, steps = 2, n_dec = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode"))
            n_dec = atoi(argv[i + 1]);
    }
    eng_config cfg = { .dim = 576, .hidden_dim = 1536, .n_layers = 30,
                       .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
                       .vocab_size = 49152, .max_seq_len = 2048,
                       .norm_eps = 1e-5f, .rope_theta = 100000.0f,
                       .rope_style = ENG_ROPE_HALF, .tied_embeddings = true,
                       .arch = "llama" };
    eng_model *m = NULL;
    if (eng_model_new_random(&cfg, 1234, 0.02f, &m))
        return 1;
    int n_ex = 4 * (steps + 1), T = 256;
    eng_example *ex = calloc((size_t)n_ex, sizeof(*ex));
    uint64_t s = 42;
    for (int i = 0; i < n_ex; i++) {
        ex[i].n = T;
        ex[i].ids = malloc(T * sizeof(int32_t));
        ex[i].mask = malloc(T);
        for (int j = 0; j < T; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            ex[i].ids[j] = (int32_t)((s >> 33) % (uint64_t)cfg.vocab_size);
            ex[i].mask[j] = 1;
        }
    }
    eng_train_params p;
    eng_train_params_default(&p);
    p.epochs = 1;
    p.n_threads = threads;
    p.learning_rate = 1e-4f;
    eng_trainer *t = NULL;
    char err[256];
    if (eng_trainer_new(m, &p, ex, n_ex, &t, err, sizeof err)) {
        fprintf(stderr, "trainer: %s\n", err);
        return 1;
    }
    eng_trainer_step(t, NULL, NULL); /* warm-up */
    reset();
    double t0 = now_s();
    for (int i = 0; i < steps; i++)
        eng_trainer_step(t, NULL, NULL);
    double wall = now_s() - t0;
    printf("LoRA training, 135M shape, %d threads, %d steps of 4 x 256: "
           "%.1f tok/s", threads, steps, 1024.0 * steps / wall);
    report("\ntraining", wall);
    eng_trainer_free(t);

    eng_session *ss = NULL;
    eng_set_threads(threads);
    if (eng_session_new(m, T + n_dec + 1, T, &ss))
        return 1;
    eng_session_eval(ss, ex[0].ids, T);
    eng_session_reset(ss);
    reset();
    t0 = now_s();
    eng_session_eval(ss, ex[0].ids, T);
    wall = now_s() - t0;
    printf("\nprefill 256: %.1f tok/s", T / wall);
    report("", wall);
    reset();
    t0 = now_s();
    for (int i = 0; i < n_dec; i++) {
        int32_t tok = ex[1].ids[i];
        eng_session_eval(ss, &tok, 1);
    }
    wall = now_s() - t0;
    printf("\ndecode (batch 1, after the prompt): %.1f tok/s", n_dec / wall);
    report("", wall);
    eng_session_free(ss);
    eng_model_unref(m);
    return 0;
}
