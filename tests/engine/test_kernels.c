/* SPDX-License-Identifier: MIT */
/*
 * test_kernels.c - every BLAS path in engine/kernels.c against a naive
 * double-accumulating reference: f32/f16/bf16/q8_0/q4_0 weights, one row
 * (sgemv) and many rows (sgemm), accumulate or not, the two backward
 * products, and eng_k_gemm in all transpose combinations including the
 * one-row/one-column shapes it routes to sgemv.
 */
#include "engine/kernels.h"
#include "tests/engine/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static float max_rel(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        num = d > num ? d : num;
        den = fabs(b[i]) > den ? fabs(b[i]) : den;
    }
    return (float)(num / (den + 1e-30));
}

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand();
}

/* Builds W in dtype dt (f32 master copy in wf32, dequantized values). */
static void make_weight(eng_tensor *W, eng_dtype dt, int rows, int cols,
                        float *wf32)
{
    size_t rb = eng_dtype_row_bytes(dt, cols);
    uint8_t *d = calloc((size_t)rows, rb);
    W->dtype = dt;
    W->rows = rows;
    W->cols = cols;
    W->data = d;
    for (int r = 0; r < rows; r++) {
        uint8_t *row = d + (size_t)r * rb;
        for (int c = 0; c < cols; c++) {
            float v = frand();
            if (dt == ENG_DT_F32) {
                memcpy(row + 4 * c, &v, 4);
            } else if (dt == ENG_DT_F16 || dt == ENG_DT_BF16) {
                uint16_t h = dt == ENG_DT_F16 ? eng_k_f32_to_f16(v)
                                              : eng_k_f32_to_bf16(v);
                row[2 * c] = h & 0xff;
                row[2 * c + 1] = h >> 8;
            } else if (dt == ENG_DT_Q8_0) {
                uint8_t *b = row + (c / 32) * 34;
                if (c % 32 == 0) {
                    uint16_t h = eng_k_f32_to_f16(0.01f);
                    b[0] = h & 0xff;
                    b[1] = h >> 8;
                }
                ((int8_t *)b)[2 + c % 32] = (int8_t)(v * 100);
            } else if (dt == ENG_DT_Q4_0) {
                uint8_t *b = row + (c / 32) * 18;
                if (c % 32 == 0) {
                    uint16_t h = eng_k_f32_to_f16(0.125f);
                    b[0] = h & 0xff;
                    b[1] = h >> 8;
                }
                int q = (int)((v + 1) * 7.5f) & 15, j = c % 32;
                if (j < 16)
                    b[2 + j] = (uint8_t)((b[2 + j] & 0xf0) | q);
                else
                    b[2 + j - 16] = (uint8_t)((b[2 + j - 16] & 0x0f) | q << 4);
            }
        }
        eng_k_row_f32(W, r, wf32 + (size_t)r * cols);
    }
}

static void test_conversions(void)
{
    float vals[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1e-5f, 3.0e-7f,
                    0.333333f};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        float h = eng_k_f16_to_f32(eng_k_f32_to_f16(vals[i]));
        CHECK(fabsf(h - vals[i]) <= fabsf(vals[i]) * 1e-3f + 1e-7f);
        float b = eng_k_bf16_to_f32(eng_k_f32_to_bf16(vals[i]));
        CHECK(fabsf(b - vals[i]) <= fabsf(vals[i]) * 8e-3f);
    }
    CHECK(eng_k_f32_to_f16(1.0f) == 0x3c00);
    CHECK(eng_k_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(isinf(eng_k_f16_to_f32(eng_k_f32_to_f16(1e6f))));
    /* q4_0 block by hand: d = 0.5, nibbles 0..15 -> (q - 8) * d */
    uint8_t blk[18] = {0};
    uint16_t h = eng_k_f32_to_f16(0.5f);
    blk[0] = h & 0xff;
    blk[1] = h >> 8;
    for (int j = 0; j < 16; j++)
        blk[2 + j] = (uint8_t)(j | (15 - j) << 4);
    eng_tensor t = {ENG_DT_Q4_0, 1, 32, blk};
    float out[32];
    eng_k_row_f32(&t, 0, out);
    CHECK(out[0] == -4.0f && out[15] == 3.5f && out[16] == 3.5f &&
          out[31] == -4.0f);
}

static void test_matmul(eng_dtype dt, int n, int O, int I, int acc)
{
    float *wf = malloc(sizeof(float) * O * I);
    eng_tensor W;
    make_weight(&W, dt, O, I, wf);
    float *x = malloc(sizeof(float) * n * I), *y1 = malloc(sizeof(float) * n * O),
          *y2 = malloc(sizeof(float) * n * O);
    fill(x, (size_t)n * I);
    fill(y1, (size_t)n * O);
    memcpy(y2, y1, sizeof(float) * n * O);
    eng_k_matmul(y1, x, &W, n, acc);
    eng_k_matmul_naive(y2, x, &W, n, acc);
    float e = max_rel(y1, y2, (size_t)n * O);
    if (e > 1e-5f)
        fprintf(stderr, "matmul dt=%d n=%d %dx%d acc=%d rel=%g\n", dt, n, O,
                I, acc, e);
    CHECK(e <= 1e-5f);

    /* bwd_x: dx = dy @ W, against an f32 matrix of the dequantized W */
    eng_tensor Wf = {ENG_DT_F32, O, I, wf};
    float *dy = malloc(sizeof(float) * n * O), *dx1 = malloc(sizeof(float) * n * I),
          *dx2 = malloc(sizeof(float) * n * I);
    fill(dy, (size_t)n * O);
    fill(dx1, (size_t)n * I);
    memcpy(dx2, dx1, sizeof(float) * n * I);
    eng_k_matmul_bwd_x(dx1, dy, &W, n, acc);
    for (int r = 0; r < n; r++)
        for (int i = 0; i < I; i++) {
            double s = acc ? dx2[(size_t)r * I + i] : 0.0;
            for (int o = 0; o < O; o++)
                s += (double)dy[(size_t)r * O + o] * wf[(size_t)o * I + i];
            dx2[(size_t)r * I + i] = (float)s;
        }
    e = max_rel(dx1, dx2, (size_t)n * I);
    CHECK(e <= 1e-5f);

    /* bwd_w: dW += dy^T x */
    float *dw1 = malloc(sizeof(float) * O * I), *dw2 = malloc(sizeof(float) * O * I);
    fill(dw1, (size_t)O * I);
    memcpy(dw2, dw1, sizeof(float) * O * I);
    eng_k_matmul_bwd_w(dw1, dy, x, n, O, I);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double s = dw2[(size_t)o * I + i];
            for (int r = 0; r < n; r++)
                s += (double)dy[(size_t)r * O + o] * x[(size_t)r * I + i];
            dw2[(size_t)o * I + i] = (float)s;
        }
    CHECK(max_rel(dw1, dw2, (size_t)O * I) <= 1e-5f);
    (void)Wf;
    free(W.data);
    free(wf);
    free(x);
    free(y1);
    free(y2);
    free(dy);
    free(dx1);
    free(dx2);
    free(dw1);
    free(dw2);
}

static void test_gemm(int ta, int tb, int m, int n, int k)
{
    int lda = ta ? m + 3 : k + 2, ldb = tb ? k + 1 : n + 4, ldc = n + 5;
    float *A = malloc(sizeof(float) * (ta ? k : m) * lda);
    float *B = malloc(sizeof(float) * (tb ? n : k) * ldb);
    float *C1 = malloc(sizeof(float) * m * ldc), *C2 = malloc(sizeof(float) * m * ldc);
    fill(A, (size_t)(ta ? k : m) * lda);
    fill(B, (size_t)(tb ? n : k) * ldb);
    fill(C1, (size_t)m * ldc);
    memcpy(C2, C1, sizeof(float) * m * ldc);
    eng_k_gemm(ta, tb, m, n, k, 0.7f, A, lda, B, ldb, 0.3f, C1, ldc);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)(ta ? A[p * lda + i] : A[i * lda + p]) *
                     (tb ? B[j * ldb + p] : B[p * ldb + j]);
            C2[i * ldc + j] = (float)(0.7 * s + 0.3 * C2[i * ldc + j]);
        }
    for (int i = 0; i < m; i++)
        CHECK(max_rel(C1 + i * ldc, C2 + i * ldc, (size_t)n) <= 1e-5f);
    free(A);
    free(B);
    free(C1);
    free(C2);
}

static void test_ops(void)
{
    /* eng_k_expf against libm over the range softmax and SwiGLU use */
    double worst = 0;
    for (float x = -80.0f; x < 80.0f; x += 0.01237f) {
        double e = fabs((double)eng_k_expf(x) - exp((double)x)) / exp((double)x);
        worst = e > worst ? e : worst;
    }
    CHECK(worst < 5e-7);
    CHECK(eng_k_expf(-1000.0f) < 1e-37f && eng_k_expf(0.0f) == 1.0f);
    /* lane-split max and sum against the plain loops, every tail length */
    float v[70];
    for (int n = 1; n <= 70; n++) {
        double ref = 0;
        float mx = -1e30f;
        for (int i = 0; i < n; i++) {
            v[i] = frand() * 10;
            ref += v[i];
            mx = v[i] > mx ? v[i] : mx;
        }
        CHECK(eng_k_max(v, n) == mx);
        CHECK(fabs(eng_k_sum(v, n) - ref) < 1e-4 * (1 + fabs(ref)));
    }
    /* softmax sums to one and is shift invariant */
    float x[7] = {1, 2, 3, 4, -1, 0, 100};
    eng_k_softmax(x, 7);
    float s = 0;
    for (int i = 0; i < 7; i++)
        s += x[i];
    CHECK(fabsf(s - 1) < 1e-6f && x[6] > 0.99f);
    /* rope: forward then inverse is the identity, norms are preserved */
    float inv[4] = {1.0f, 0.1f, 0.01f, 0.001f}, q[2 * 16], q0[2 * 16];
    int pos[2] = {3, 17};
    for (int style = 0; style < 2; style++) {
        fill(q, 32);
        memcpy(q0, q, sizeof q);
        eng_k_rope(q, 2, 2, 8, pos, inv, style, 0);
        double n0 = 0, n1 = 0;
        for (int i = 0; i < 32; i++) {
            n0 += q0[i] * q0[i];
            n1 += q[i] * q[i];
        }
        CHECK(fabs(n0 - n1) < 1e-4);
        eng_k_rope(q, 2, 2, 8, pos, inv, style, 1);
        CHECK(max_rel(q, q0, 32) < 1e-5f);
    }
}

int main(void)
{
    eng_k_set_threads(2);
    CHECK(eng_k_get_threads() >= 1);
    test_conversions();
    eng_dtype dts[] = {ENG_DT_F32, ENG_DT_F16, ENG_DT_BF16, ENG_DT_Q8_0,
                       ENG_DT_Q4_0};
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++)
        for (int acc = 0; acc < 2; acc++) {
            test_matmul(dts[d], 1, 37, 64, acc);
            test_matmul(dts[d], 5, 33, 96, acc);
            test_matmul(dts[d], 64, 130, 128, acc);
        }
    /* a bf16 weight bigger than one conversion block */
    test_matmul(ENG_DT_BF16, 3, 70, 4096, 0);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_gemm(ta, tb, 7, 9, 11);
            test_gemm(ta, tb, 1, 9, 11);
            test_gemm(ta, tb, 7, 1, 11);
            test_gemm(ta, tb, 1, 1, 5);
        }
    test_ops();
    eng_k_set_threads(1);
    test_matmul(ENG_DT_F32, 64, 130, 128, 1);
    return test_done("kernels");
}
