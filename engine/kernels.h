/* SPDX-License-Identifier: MIT */
/*
 * kernels.h - the compute layer under the model code.
 *
 * Every matmul, norm and elementwise op the model needs goes through here,
 * so a GPU backend can later replace this one layer. Each BLAS path has a
 * naive reference (eng_k_*_naive) that tests compare against.
 *
 * Layout: activations are row-major [rows, cols] fp32. Weights are
 * eng_tensor [out, in] in their stored dtype; non-f32 weights are
 * dequantized/converted row-block by row-block inside the kernel.
 */
#ifndef TUNA_ENGINE_KERNELS_H
#define TUNA_ENGINE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ENG_DT_F32 = 0,
    ENG_DT_F16 = 1,
    ENG_DT_BF16 = 2,
    ENG_DT_Q8_0 = 3,
    ENG_DT_Q4_0 = 4,
    ENG_DT_Q4_K = 5,
    ENG_DT_Q6_K = 6,
} eng_dtype;

typedef struct eng_tensor {
    eng_dtype dtype;
    int rows, cols;      /* [out, in] for matrices; rows = 1 for vectors */
    void *data;          /* NULL = absent */
} eng_tensor;

static inline float *eng_f32(const eng_tensor *t) { return (float *)t->data; }

/* out[n, out] (+)= x[n, in] @ W[out, in]^T. accumulate: add into out. */
void eng_k_matmul(float *out, const float *x, const eng_tensor *W, int n,
                  int accumulate);
void eng_k_matmul_naive(float *out, const float *x, const eng_tensor *W,
                        int n, int accumulate);
/* out[out] (+)= W[out, in] @ x[in] for one row (batch-1 decoding): a
 * bandwidth-bound dot-product loop for f32/bf16, faster than sgemv on one
 * core; other dtypes go through eng_k_matmul. Single-threaded (gemv.c). */
void eng_k_gemv(float *out, const float *x, const eng_tensor *W,
                int accumulate);
/* out[r * ldo + o] = alpha * x_r . W_o (+ the old value with accumulate)
 * for rows r < n: the inference matmul (rowmm.c). Every element is one dot
 * product in a fixed summation order, so row r's result depends only on x_r
 * and W: never on n, on the other rows or on the thread count. Threaded over
 * output rows (eng_k_pool_threads()); any dtype (non-f32 rows are converted
 * to f32 first). */
void eng_k_rowmm(float *out, size_t ldo, const float *x, size_t ldx,
                 const eng_tensor *W, int n, float alpha, int accumulate);
/* Runs fn(arg, p, n) once for every part p < n_parts, on the calling
 * thread and rowmm's pool (which grows to n_parts - 1 helpers); returns
 * once all are done. Each thread first runs its own contiguous run of parts
 * (the caller the first), then takes parts left in the others' runs, so any
 * part may run on any thread: fn's result must not depend on which. If the
 * pool is busy (another thread's call) every part runs on the caller, in
 * order. Returns n_parts (capped at 64). */
int eng_k_parallel(void (*fn)(void *arg, int part, int n_parts), void *arg,
                   int n_parts);
/* The same with n_parts parts shared by at most `threads` threads (more
 * parts than threads: a thread that finishes early takes another's). */
void eng_k_parallel_on(void (*fn)(void *arg, int part, int n_parts),
                       void *arg, int n_parts, int threads);
/* Threads of eng_k_rowmm / eng_k_parallel users on the calling thread
 * (n <= 0: follow eng_k_get_threads()). */
void eng_k_set_pool_threads(int n);
int eng_k_pool_threads(void);
/* a . b over n floats in rowmm's fixed order (16 fused multiply-add lanes,
 * the last group zero-padded, a fixed fold). */
float eng_k_dot(const float *a, const float *b, int n);
/* dx[n, in] (+)= dy[n, out] @ W[out, in]  (backward through a linear). */
void eng_k_matmul_bwd_x(float *dx, const float *dy, const eng_tensor *W,
                        int n, int accumulate);
/* dW[out, in] += dy[n, out]^T @ x[n, in]  (weight gradient, f32). */
void eng_k_matmul_bwd_w(float *dW, const float *dy, const float *x, int n,
                        int out, int in);
/* Plain f32 GEMM helpers: C[m,n] = alpha*op(A)op(B) + beta*C. */
void eng_k_gemm(int transA, int transB, int m, int n, int k, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta,
                float *C, int ldc);

/* Converts row r of W into f32 dst[cols]. */
void eng_k_row_f32(const eng_tensor *W, int r, float *dst);
/* Size in bytes of a tensor in its dtype. */
size_t eng_dtype_row_bytes(eng_dtype dt, int cols);

/* Thread control of the BLAS library (no oversubscription). */
void eng_k_set_threads(int n);
int eng_k_get_threads(void);

/* ---- Elementwise / row ops (single-threaded; BLAS does the heavy lifting).
 * Norm weights are eng_tensor so a bf16/f16 checkpoint needs no copy. */

/* Reads element i of a one-row f32/f16/bf16 tensor (norms, biases). */
float eng_k_get(const eng_tensor *t, int i);
/* out[n, dim] = x * rstd * w, rstd[r] = 1/sqrt(mean(x_r^2) + eps).
 * ret_rstd (may be NULL) gets rstd per row for the backward. out may == x. */
void eng_k_rmsnorm(float *out, const float *x, const eng_tensor *w, int n,
                   int dim, float eps, float *ret_rstd);
/* Rotary embedding in place on x[n, n_heads*head_dim]; token r sits at
 * position pos[r]. style: 0 = interleaved pairs (2i, 2i+1), 1 = half split
 * (i, i + head_dim/2) (values of eng_rope_style). inverse rotates by -theta,
 * which is the backward of the forward rotation. */
void eng_k_rope(float *x, int n, int n_heads, int head_dim, const int *pos,
                const float *inv_freq, int style, int inverse);
/* The same rotation from a table: cs[p * head_dim + 2i], [.. + 2i + 1] hold
 * cos and sin of p * inv_freq[i] (eng_k_rope_table fills it for positions
 * 0..n_pos-1), so repeated calls (every layer, forward and backward) skip
 * the trigonometry. Results are identical to eng_k_rope. */
void eng_k_rope_table(float *cs, int n_pos, int head_dim,
                      const float *inv_freq);
void eng_k_rope_cs(float *x, int n, int n_heads, int head_dim, const int *pos,
                   const float *cs, int style, int inverse);
/* Max and sum of x[n] (n >= 1) in 16 interleaved lanes combined in a
 * fixed order: vectorized, and the same bits on every call. */
float eng_k_max(const float *x, int n);
float eng_k_sum(const float *x, int n);
/* The first i with x[i] maximal (NaNs never win; 0 when x[0] is NaN), as
 * the scalar loop "if (x[i] > x[best]) best = i" gives, but vectorized:
 * greedy decoding takes it over the whole vocabulary for every token. */
int eng_k_argmax(const float *x, int n);
/* In-place softmax of x[n]. */
void eng_k_softmax(float *x, int n);
/* h[i] = silu(gate[i]) * up[i] for i < n. h may alias gate or up. */
void eng_k_swiglu(float *h, const float *gate, const float *up, size_t n);
/* y[i] += b[i % cols] for a [n, cols] matrix (bias add). */
void eng_k_add_bias(float *y, const eng_tensor *b, int n, int cols);

/* Hot elementwise loops are compiled for AVX-512, AVX2 and the baseline,
 * picked at load time (GCC/clang function multiversioning): the x86-64
 * baseline's SSE2 runs them about ten times slower. The choice is fixed
 * per machine, so results stay deterministic on it. clang 14 emits only the
 * resolver for target_clones, so callers in other files fail to link: clang
 * builds (the fuzzers) get the baseline loops. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__) && \
    !defined(__clang__)
#define ENG_K_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ENG_K_CLONES
#endif

/* exp(x) within ~2e-7 relative for x in [-87, 88] (clamped outside),
 * without a libm call, so loops over it vectorize (engine/ builds with
 * -fno-trapping-math, which lets GCC turn the clamp into a blend). */
static inline float eng_k_expf(float x)
{
    union { float f; int32_t i; } s;
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (no rintf call) */
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.42860677e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666667e-1f +
              r * (4.16666667e-2f + r * (8.33333333e-3f +
              r * (1.38888889e-3f + r * 1.98412698e-4f))))));
    s.i = ((int32_t)n + 127) << 23;
    return p * s.f;
}

/* Engine-wide f16/bf16 scalar conversion. */
float eng_k_f16_to_f32(uint16_t h);
float eng_k_bf16_to_f32(uint16_t h);
uint16_t eng_k_f32_to_f16(float f);
uint16_t eng_k_f32_to_bf16(float f);

#endif
