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

#endif
