/* SPDX-License-Identifier: MIT */
/*
 * gemv.c - the one-row matmul of batch-1 decoding: out = W x.
 *
 * Decoding one token reads every weight once, so it is bound by memory
 * bandwidth, not arithmetic. On our machines OpenBLAS's sgemv reaches 7 to
 * 13 GB/s on one core for the model's shapes, while a plain dot product per
 * weight row with sixteen independent accumulators (which the compiler
 * keeps in vector registers even at baseline SSE2) streams at 26 to 31 GB/s,
 * the core's read bandwidth. So f32 and bf16 weights take this loop (bf16
 * widened in-register: the rows are read at half the bytes); other dtypes
 * go through eng_k_matmul's convert-and-sgemv path. The summation order
 * differs from BLAS's, within float rounding; eng_k_matmul_naive is the
 * reference the tests compare against.
 */
#include "kernels.h"

#include <string.h>

enum { LANES = 16 };

static float dot_f32(const float *w, const float *x, int n)
{
    float acc[LANES] = { 0 }, s = 0.0f;
    int i = 0;

    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += w[i + j] * x[i + j];
    for (; i < n; i++)
        s += w[i] * x[i];
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    return s;
}

static float bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

static float dot_bf16(const uint16_t *w, const float *x, int n)
{
    float acc[LANES] = { 0 }, s = 0.0f;
    int i = 0;

    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += bf16(w[i + j]) * x[i + j];
    for (; i < n; i++)
        s += bf16(w[i]) * x[i];
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    return s;
}

void eng_k_gemv(float *out, const float *x, const eng_tensor *W,
                int accumulate)
{
    int rows = W->rows, cols = W->cols;

    if (W->dtype == ENG_DT_F32) {
        const float *w = W->data;

        for (int r = 0; r < rows; r++) {
            float d = dot_f32(w + (size_t)r * cols, x, cols);
            out[r] = accumulate ? out[r] + d : d;
        }
    } else if (W->dtype == ENG_DT_BF16) {
        const uint16_t *w = W->data;

        for (int r = 0; r < rows; r++) {
            float d = dot_bf16(w + (size_t)r * cols, x, cols);
            out[r] = accumulate ? out[r] + d : d;
        }
    } else {
        eng_k_matmul(out, x, W, 1, accumulate);
    }
}
