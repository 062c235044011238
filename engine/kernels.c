/* SPDX-License-Identifier: MIT */
/*
 * kernels.c - the compute layer: matmuls through OpenBLAS, with a naive
 * reference beside each, and the few row/elementwise ops the model needs.
 *
 * Weights are [out, in] row-major in any eng_dtype. f32 weights go straight
 * to cblas_sgemm (n > 1 rows) or cblas_sgemv (one row: OpenBLAS runs a
 * one-row sgemm about twenty times slower than sgemv). Other dtypes are
 * converted block by block into a fixed per-thread scratch buffer and the
 * block is multiplied as f32, so a bf16 checkpoint costs no resident f32
 * copy and no allocation per call. Threading is left entirely to OpenBLAS
 * (eng_k_set_threads); nothing here spawns threads, so there is never a
 * second pool spinning against BLAS's.
 */
#include "kernels.h"
#include "engine.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Scalar conversions                                                        */

float eng_k_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) |
                   ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000 | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t eng_k_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) /* inf / nan */
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    /* round to nearest even; a carry into the exponent is correct */
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)h;
}

float eng_k_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t eng_k_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) /* keep NaN a NaN */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1); /* round to nearest even */
    return (uint16_t)(x >> 16);
}

/* ------------------------------------------------------------------------ */
/* Row conversion (ggml block layouts for the quantized types)               */

enum { QK4_0 = 32, QK8_0 = 32, QK_K = 256 };

size_t eng_dtype_row_bytes(eng_dtype dt, int cols)
{
    size_t c = (size_t)cols;
    switch (dt) {
    case ENG_DT_F32: return 4 * c;
    case ENG_DT_F16:
    case ENG_DT_BF16: return 2 * c;
    case ENG_DT_Q8_0: return c / QK8_0 * 34;  /* f16 d + 32 x int8 */
    case ENG_DT_Q4_0: return c / QK4_0 * 18;  /* f16 d + 16 bytes */
    case ENG_DT_Q4_K: return c / QK_K * 144;  /* d, dmin, 12 scales, 128 qs */
    case ENG_DT_Q6_K: return c / QK_K * 210;  /* 128 ql, 64 qh, 16 sc, d */
    }
    return 0;
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void deq_q4_k(const uint8_t *b, float *y)
{
    float d = eng_k_f16_to_f32(rd16(b));
    float dmin = eng_k_f16_to_f32(rd16(b + 2));
    const uint8_t *sc = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
        uint8_t s, m;
        scale_min_k4(is, sc, &s, &m);
        float d1 = d * s, m1 = dmin * m;
        scale_min_k4(is + 1, sc, &s, &m);
        float d2 = d * s, m2 = dmin * m;
        for (int l = 0; l < 32; l++)
            *y++ = d1 * (float)(q[l] & 0xf) - m1;
        for (int l = 0; l < 32; l++)
            *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
}

static void deq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = eng_k_f16_to_f32(rd16(b + 208));
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

void eng_k_row_f32(const eng_tensor *W, int r, float *dst)
{
    int n = W->cols;
    const uint8_t *row = (const uint8_t *)W->data +
                         (size_t)r * eng_dtype_row_bytes(W->dtype, n);
    switch (W->dtype) {
    case ENG_DT_F32:
        memcpy(dst, row, (size_t)n * 4);
        break;
    case ENG_DT_F16:
        for (int i = 0; i < n; i++)
            dst[i] = eng_k_f16_to_f32(rd16(row + 2 * i));
        break;
    case ENG_DT_BF16:
        for (int i = 0; i < n; i++)
            dst[i] = eng_k_bf16_to_f32(rd16(row + 2 * i));
        break;
    case ENG_DT_Q8_0:
        for (int b = 0; b < n / QK8_0; b++, row += 34) {
            float d = eng_k_f16_to_f32(rd16(row));
            const int8_t *q = (const int8_t *)(row + 2);
            for (int j = 0; j < QK8_0; j++)
                *dst++ = d * q[j];
        }
        break;
    case ENG_DT_Q4_0:
        for (int b = 0; b < n / QK4_0; b++, row += 18, dst += QK4_0) {
            float d = eng_k_f16_to_f32(rd16(row));
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)((row[2 + j] & 0xf) - 8);
                dst[j + 16] = d * (float)((row[2 + j] >> 4) - 8);
            }
        }
        break;
    case ENG_DT_Q4_K:
        for (int b = 0; b < n / QK_K; b++)
            deq_q4_k(row + (size_t)b * 144, dst + (size_t)b * QK_K);
        break;
    case ENG_DT_Q6_K:
        for (int b = 0; b < n / QK_K; b++)
            deq_q6_k(row + (size_t)b * 210, dst + (size_t)b * QK_K);
        break;
    }
}

float eng_k_get(const eng_tensor *t, int i)
{
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ENG_DT_F32: return ((const float *)p)[i];
    case ENG_DT_F16: return eng_k_f16_to_f32(rd16(p + 2 * (size_t)i));
    case ENG_DT_BF16: return eng_k_bf16_to_f32(rd16(p + 2 * (size_t)i));
    default: break;
    }
    assert(!"eng_k_get: quantized vectors are not supported");
    return 0.0f;
}

/* ------------------------------------------------------------------------ */
/* Matmuls                                                                   */

/* Per-thread conversion scratch: fixed size, so converting matmuls never
 * allocate. 128 Ki floats hold at least 4 rows of any in-dim up to 32768. */
enum { SCRATCH_FLOATS = 1 << 17 };
static _Thread_local float k_scratch[SCRATCH_FLOATS];

static int block_rows(const eng_tensor *W)
{
    int r = SCRATCH_FLOATS / W->cols;
    assert(r >= 1 && "row too long for the conversion scratch");
    return r < W->rows ? r : W->rows;
}

static const float *convert_block(const eng_tensor *W, int r0, int nb)
{
    for (int r = 0; r < nb; r++)
        eng_k_row_f32(W, r0 + r, k_scratch + (size_t)r * W->cols);
    return k_scratch;
}

void eng_k_matmul(float *out, const float *x, const eng_tensor *W, int n,
                  int accumulate)
{
    int n_out = W->rows, n_in = W->cols;
    float beta = accumulate ? 1.0f : 0.0f;
    if (n <= 0)
        return;
    if (W->dtype == ENG_DT_F32) {
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f,
                        W->data, n_in, x, 1, beta, out, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n_out, n_in,
                        1.0f, x, n_in, W->data, n_in, beta, out, n_out);
        return;
    }
    int bs = block_rows(W);
    for (int r0 = 0; r0 < n_out; r0 += bs) {
        int nb = n_out - r0 < bs ? n_out - r0 : bs;
        const float *blk = convert_block(W, r0, nb);
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, nb, n_in, 1.0f, blk,
                        n_in, x, 1, beta, out + r0, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nb, n_in,
                        1.0f, x, n_in, blk, n_in, beta, out + r0, n_out);
    }
}

void eng_k_matmul_naive(float *out, const float *x, const eng_tensor *W,
                        int n, int accumulate)
{
    int n_out = W->rows, n_in = W->cols;
    float *row = k_scratch;
    assert(n_in <= SCRATCH_FLOATS);
    for (int o = 0; o < n_out; o++) {
        eng_k_row_f32(W, o, row);
        for (int r = 0; r < n; r++) {
            double s = accumulate ? out[(size_t)r * n_out + o] : 0.0;
            for (int i = 0; i < n_in; i++)
                s += (double)x[(size_t)r * n_in + i] * row[i];
            out[(size_t)r * n_out + o] = (float)s;
        }
    }
}

void eng_k_matmul_bwd_x(float *dx, const float *dy, const eng_tensor *W,
                        int n, int accumulate)
{
    int n_out = W->rows, n_in = W->cols;
    if (n <= 0)
        return;
    if (W->dtype == ENG_DT_F32) {
        float beta = accumulate ? 1.0f : 0.0f;
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, n_out, n_in, 1.0f,
                        W->data, n_in, dy, 1, beta, dx, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n_in,
                        n_out, 1.0f, dy, n_out, W->data, n_in, beta, dx,
                        n_in);
        return;
    }
    int bs = block_rows(W);
    for (int r0 = 0; r0 < n_out; r0 += bs) {
        int nb = n_out - r0 < bs ? n_out - r0 : bs;
        float beta = (accumulate || r0 > 0) ? 1.0f : 0.0f;
        const float *blk = convert_block(W, r0, nb);
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, nb, n_in, 1.0f, blk, n_in,
                        dy + r0, 1, beta, dx, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n_in, nb,
                        1.0f, dy + r0, n_out, blk, n_in, beta, dx, n_in);
    }
}

void eng_k_matmul_bwd_w(float *dW, const float *dy, const float *x, int n,
                        int out, int in)
{
    if (n <= 0)
        return;
    if (n == 1) /* rank-1 update */
        cblas_sger(CblasRowMajor, out, in, 1.0f, dy, 1, x, 1, dW, in);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f,
                    dy, out, x, in, 1.0f, dW, in);
}

void eng_k_gemm(int transA, int transB, int m, int n, int k, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta,
                float *C, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (m == 1) {
        /* C[0,:] = alpha * op(B)^T a, where a = op(A)[0,:] */
        int inca = transA ? lda : 1;
        if (transB)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, B, ldb, A,
                        inca, beta, C, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasTrans, k, n, alpha, B, ldb, A,
                        inca, beta, C, 1);
        return;
    }
    if (n == 1) {
        /* C[:,0] = alpha * op(A) b, where b = op(B)[:,0] */
        int incb = transB ? 1 : ldb;
        if (transA)
            cblas_sgemv(CblasRowMajor, CblasTrans, k, m, alpha, A, lda, B,
                        incb, beta, C, ldc);
        else
            cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, alpha, A, lda, B,
                        incb, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B,
                ldb, beta, C, ldc);
}

/* ------------------------------------------------------------------------ */
/* Row and elementwise ops                                                   */

ENG_K_CLONES
void eng_k_rmsnorm(float *out, const float *x, const eng_tensor *w, int n,
                   int dim, float eps, float *ret_rstd)
{
    const float *wf = w->dtype == ENG_DT_F32 ? w->data : NULL;
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
        /* float accumulation, as llama2.c's run.c: greedy outputs match */
        float ss = 0.0f;
        for (int i = 0; i < dim; i++)
            ss += xr[i] * xr[i];
        float rs = 1.0f / sqrtf(ss / (float)dim + eps);
        if (ret_rstd)
            ret_rstd[r] = rs;
        if (wf)
            for (int i = 0; i < dim; i++)
                o[i] = wf[i] * (rs * xr[i]);
        else
            for (int i = 0; i < dim; i++)
                o[i] = eng_k_get(w, i) * (rs * xr[i]);
    }
}

/* Rotates every head of one row by the (cos, sin) pairs in cs. */
static void rope_row(float *xr, int n_heads, int head_dim, const float *cs,
                     int style, int inverse)
{
    int half = head_dim / 2;
    float sgn = inverse ? -1.0f : 1.0f;
    for (int h = 0; h < n_heads; h++) {
        float *hx = xr + h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = style ? i : 2 * i, b = style ? i + half : 2 * i + 1;
            float x0 = hx[a], x1 = hx[b];
            float c = cs[2 * i], s = sgn * cs[2 * i + 1];
            hx[a] = x0 * c - x1 * s;
            hx[b] = x0 * s + x1 * c;
        }
    }
}

static void rope_cs_of(float *cs, int pos, int half, const float *inv_freq)
{
    for (int i = 0; i < half; i++) {
        float v = (float)pos * inv_freq[i];
        cs[2 * i] = cosf(v);
        cs[2 * i + 1] = sinf(v);
    }
}

void eng_k_rope(float *x, int n, int n_heads, int head_dim, const int *pos,
                const float *inv_freq, int style, int inverse)
{
    int half = head_dim / 2;
    float cs[2 * 512];
    assert(half <= 512);
    for (int r = 0; r < n; r++) {
        rope_cs_of(cs, pos[r], half, inv_freq);
        rope_row(x + (size_t)r * n_heads * head_dim, n_heads, head_dim, cs,
                 style, inverse);
    }
}

void eng_k_rope_table(float *cs, int n_pos, int head_dim,
                      const float *inv_freq)
{
    for (int p = 0; p < n_pos; p++)
        rope_cs_of(cs + (size_t)p * head_dim, p, head_dim / 2, inv_freq);
}

void eng_k_rope_cs(float *x, int n, int n_heads, int head_dim, const int *pos,
                   const float *cs, int style, int inverse)
{
    for (int r = 0; r < n; r++)
        rope_row(x + (size_t)r * n_heads * head_dim, n_heads, head_dim,
                 cs + (size_t)pos[r] * head_dim, style, inverse);
}

enum { LANES = 16 };

ENG_K_CLONES
float eng_k_max(const float *x, int n)
{
    float m[LANES];
    int i = 0;
    for (int j = 0; j < LANES; j++)
        m[j] = x[0];
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++)
        m[0] = x[i] > m[0] ? x[i] : m[0];
    float r = m[0];
    for (int j = 1; j < LANES; j++)
        r = m[j] > r ? m[j] : r;
    return r;
}

ENG_K_CLONES
int eng_k_argmax(const float *x, int n)
{
    float m = eng_k_max(x, n);
    int i = 0;

    /* the max's first occurrence: a vector compare, 16 at a time */
    for (; i + LANES <= n; i += LANES) {
        int hit = 0;

        for (int j = 0; j < LANES; j++)
            hit |= x[i + j] == m;
        if (hit)
            break;
    }
    for (; i < n; i++)
        if (x[i] == m)
            return i;
    return 0; /* m is NaN: x[0] was */
}

ENG_K_CLONES
float eng_k_sum(const float *x, int n)
{
    float s[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            s[j] += x[i + j];
    for (; i < n; i++)
        s[0] += x[i];
    float r = 0.0f;
    for (int j = 0; j < LANES; j++)
        r += s[j];
    return r;
}

ENG_K_CLONES
void eng_k_softmax(float *x, int n)
{
    float mx = eng_k_max(x, n);
    for (int i = 0; i < n; i++)
        x[i] = eng_k_expf(x[i] - mx);
    float inv = 1.0f / eng_k_sum(x, n);
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

ENG_K_CLONES
void eng_k_swiglu(float *h, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        h[i] = g / (1.0f + eng_k_expf(-g)) * up[i];
    }
}

void eng_k_add_bias(float *y, const eng_tensor *b, int n, int cols)
{
    for (int r = 0; r < n; r++)
        for (int c = 0; c < cols; c++)
            y[(size_t)r * cols + c] += eng_k_get(b, c);
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */

void eng_k_set_threads(int n)
{
    /* OpenBLAS's count is process-wide; callers keep workers x threads
     * within the cores (see server/). */
    if (n < 1)
        n = 1;
    if (openblas_get_num_threads() != n)
        openblas_set_num_threads(n);
}

int eng_k_get_threads(void)
{
    return openblas_get_num_threads();
}

void eng_set_threads(int n)
{
    eng_k_set_threads(n);
}
