/* SPDX-License-Identifier: MIT */
/*
 * bench_common.h - what bench_engine and bench_serve share: the clock, the
 * SmolLM2-135M shape, model loading, the weight bytes a decode step reads,
 * and the memory-bandwidth probe the roofline figures divide by.
 */
#ifndef TUNA_BENCH_COMMON_H
#define TUNA_BENCH_COMMON_H

#include "engine/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#endif

static inline double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A random-weight model shaped like SmolLM2-135M (issues #2 and #6). */
#define BENCH_SMOLLM2_135M_CFG                                               \
    { .dim = 576, .hidden_dim = 1536, .n_layers = 30, .n_heads = 9,          \
      .n_kv_heads = 3, .head_dim = 64, .vocab_size = 49152,                  \
      .max_seq_len = 2048, .norm_eps = 1e-5f, .rope_theta = 100000.0f,       \
      .rope_style = ENG_ROPE_HALF, .tied_embeddings = true, .arch = "llama" }

/* The embedded stories260K (from_file) or a random model of cfg. */
static inline int bench_make_model(bool from_file, const eng_config *cfg,
                                   const char *root, const char *prog,
                                   eng_model **ret)
{
    char path[4096], err[256] = "";
    if (!from_file)
        return eng_model_new_random(cfg, 1234, 0.02f, ret);
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", root);
    int rc = eng_model_load_llama2c(path, ret, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s: %s: %s\n", prog, path, err);
    return rc;
}

/* The PyTorch peer runs under Debian's Python, which sees python3-torch
 * (the python3 first on PATH may not). */
#define BENCH_PY "/usr/bin/python3"

static inline bool bench_torch_available(void)
{
    if (access(BENCH_PY, X_OK))
        return false;
    return system(BENCH_PY " -c 'import torch' >/dev/null 2>&1") == 0;
}

/* splitmix64: the benches' random token ids. */
static inline uint64_t bench_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* n training examples of seq random token ids, every target in the loss;
 * the caller frees each with eng_example_done, then the array. NULL when
 * out of memory. */
static inline eng_example *bench_random_examples(int n, int seq, int vocab,
                                                 uint64_t seed)
{
    eng_example *ex = calloc((size_t)n, sizeof(*ex));
    uint64_t s = seed;
    for (int i = 0; ex && i < n; i++) {
        ex[i].n = seq;
        ex[i].ids = malloc((size_t)seq * sizeof(int32_t));
        ex[i].mask = malloc((size_t)seq);
        if (!ex[i].ids || !ex[i].mask)
            return NULL; /* a bench: the process exits */
        for (int j = 0; j < seq; j++) {
            ex[i].ids[j] = (int32_t)(bench_rng_next(&s) % (uint64_t)vocab);
            ex[i].mask[j] = 1;
        }
    }
    return ex;
}

/* f32 bytes of every weight a batch-1 decode step reads: the layers' linears
 * and norms, the final norm and the LM head (one embedding row aside). */
static inline double bench_decode_weight_bytes(const eng_config *c)
{
    double q = (double)c->n_heads * c->head_dim;
    double kv = (double)c->n_kv_heads * c->head_dim;
    double layer = c->dim * (q + 2 * kv) + q * c->dim +
                   3.0 * c->dim * c->hidden_dim + 2.0 * c->dim;
    return 4.0 * (c->n_layers * layer + c->dim +
                  (double)c->vocab_size * c->dim);
}

/* ------------------------------------------------------------------------ */
/* Memory bandwidth                                                          */

typedef float bench_v16 __attribute__((vector_size(64)));

enum { BENCH_BW_READ = 0, BENCH_BW_TRIAD = 1 };

typedef struct bench_bw_arg {
    pthread_barrier_t *bar;
    float *a, *b, *c;
    size_t n;        /* floats in this thread's slice, a multiple of 64 */
    int kind;
    float sink;
    double t0, t1;   /* the thread's own start and end */
} bench_bw_arg;

static inline void *bench_bw_thread(void *p)
{
    bench_bw_arg *a = p;
    pthread_barrier_wait(a->bar);
    a->t0 = bench_now_s();
    if (a->kind == BENCH_BW_READ) {
        const bench_v16 *x = (const bench_v16 *)a->a;
        bench_v16 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
        for (size_t i = 0; i < a->n / 16; i += 4) {
            s0 += x[i];
            s1 += x[i + 1];
            s2 += x[i + 2];
            s3 += x[i + 3];
        }
        bench_v16 s = s0 + s1 + s2 + s3;
        float t = 0;
        for (int i = 0; i < 16; i++)
            t += s[i];
        a->sink = t;
    } else {
        bench_v16 *x = (bench_v16 *)a->a;
        const bench_v16 *y = (const bench_v16 *)a->b;
        const bench_v16 *z = (const bench_v16 *)a->c;
        for (size_t i = 0; i < a->n / 16; i++)
            x[i] = y[i] + 3.0f * z[i];
        a->sink = a->a[0];
    }
    a->t1 = bench_now_s();
    pthread_barrier_wait(a->bar);
    return NULL;
}

/* The machine's f32 multiply-add peak: every thread runs 12 independent
 * chains of vector fused multiply-adds for about 0.2 s; GFLOP/s (2 per
 * lane per FMA) of all threads together, best of 3. It bounds every
 * compute-bound figure (prefill, the 16-sequence decode step), so the
 * bench prints their ceilings beside them. */
#ifdef BENCH_X86
#define BENCH_FMA_BODY(V, SET1, FMA, STORE, LANES)                           \
    V a[12], x = SET1(0.999f), y = SET1(1e-4f);                              \
    float out[LANES], s = 0;                                                 \
    for (int k = 0; k < 12; k++)                                             \
        a[k] = SET1(1e-3f * (float)k);                                       \
    for (long i = 0; i < iters; i++)                                         \
        for (int k = 0; k < 12; k++)                                         \
            a[k] = FMA(a[k], x, y);                                          \
    for (int k = 0; k < 12; k++) {                                           \
        STORE(out, a[k]);                                                    \
        for (int l = 0; l < LANES; l++)                                      \
            s += out[l];                                                     \
    }                                                                        \
    return s;

__attribute__((target("avx512f"), noinline))
static float bench_fma_512(long iters)
{
    BENCH_FMA_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps,
                   16)
}
__attribute__((target("avx2,fma"), noinline))
static float bench_fma_256(long iters)
{
    BENCH_FMA_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps,
                   8)
}

typedef struct bench_fma_arg {
    long iters;
    int lanes;
    pthread_barrier_t *bar;
    double t0, t1;
    volatile float sink;
} bench_fma_arg;

static inline void *bench_fma_thread(void *p)
{
    bench_fma_arg *a = p;
    pthread_barrier_wait(a->bar);
    a->t0 = bench_now_s();
    a->sink = a->lanes == 16 ? bench_fma_512(a->iters)
                             : bench_fma_256(a->iters);
    a->t1 = bench_now_s();
    return NULL;
}

#endif /* BENCH_X86 */

static inline double bench_fma_peak(int threads)
{
#ifndef BENCH_X86
    (void)threads;
    return 0; /* no probe for this CPU: no ceilings printed */
#else
    pthread_t th[64];
    bench_fma_arg arg[64];
    pthread_barrier_t bar;
    int lanes;
    double best = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        lanes = 16;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        lanes = 8;
    else
        return 0;
    if (threads > 64)
        threads = 64;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = 1e300, t1 = 0;
        long iters = 30000000; /* ~0.1-0.2 s at 1 FMA per cycle */
        pthread_barrier_init(&bar, NULL, (unsigned)threads);
        for (int t = 0; t < threads; t++) {
            arg[t] = (bench_fma_arg){ .iters = iters, .lanes = lanes,
                                      .bar = &bar };
            pthread_create(&th[t], NULL, bench_fma_thread, &arg[t]);
        }
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            t0 = arg[t].t0 < t0 ? arg[t].t0 : t0;
            t1 = arg[t].t1 > t1 ? arg[t].t1 : t1;
        }
        pthread_barrier_destroy(&bar);
        double gf = 2.0 * lanes * 12 * (double)iters * threads / (t1 - t0) /
                    1e9;
        best = gf > best ? gf : best;
    }
    return best;
#endif
}

/* The probe's buffer, in the kind of memory the engine keeps weights in
 * (eng_alloc_huge: 2 MiB aligned, transparent huge pages): read through
 * 4 KiB pages it measured ~48 GB/s where decode through huge pages streamed
 * its weights at ~52, so the roofline must use the same pages. Freed with
 * free(). */
static inline float *bench_bw_alloc(size_t floats)
{
    size_t huge = (size_t)2 << 20;
    size_t bytes = (floats * sizeof(float) + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, bytes))
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

/* Best of reps, in GB/s (1e9 bytes): kind READ sums a[n], TRIAD computes
 * a = b + 3c. Timed by the threads themselves, first start to last end: the
 * main thread is one more thread than cores, and when it was descheduled
 * after the first barrier its own clock started late (that read 80-90 GB/s
 * here against 35-50 in the other rounds). */
static inline double bench_bw_run(int kind, float *a, float *b, float *c,
                                  size_t n, int threads, int reps)
{
    double best = 0;
    if (threads > 64)
        threads = 64;
    for (int r = 0; r < reps; r++) {
        pthread_barrier_t bar;
        pthread_t th[64];
        bench_bw_arg args[64];
        pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
        size_t per = n / threads / 64 * 64;
        for (int i = 0; i < threads; i++) {
            args[i] = (bench_bw_arg){ &bar, a + i * per,
                                      b ? b + i * per : NULL,
                                      c ? c + i * per : NULL, per, kind, 0,
                                      0, 0 };
            pthread_create(&th[i], NULL, bench_bw_thread, &args[i]);
        }
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&bar);
        double t0 = args[0].t0, t1 = args[0].t1;
        for (int i = 1; i < threads; i++) {
            t0 = args[i].t0 < t0 ? args[i].t0 : t0;
            t1 = args[i].t1 > t1 ? args[i].t1 : t1;
        }
        double bytes = (double)per * threads * sizeof(float) *
                       (kind == BENCH_BW_READ ? 1 : 3);
        if (bytes / (t1 - t0) / 1e9 > best)
            best = bytes / (t1 - t0) / 1e9;
    }
    return best;
}

#endif
