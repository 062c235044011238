/* SPDX-License-Identifier: MIT */
/*
 * rowmm.c - the inference matmul whose every row is computed the same way
 * whatever else is in the batch, and its small thread pool.
 *
 * Continuous batching promises that a request's greedy tokens do not depend
 * on which other requests share its forward. OpenBLAS cannot promise that:
 * it picks sgemv for one row, a "small matrix" kernel or a K-blocked sgemm
 * for more, each summing in a different order, so the last bits of a row
 * (and so an argmax tie) can depend on the batch size. Here every output
 * element out[r][o] is one dot product x_r . W_o computed in one fixed
 * order:
 *
 *   - sixteen lanes, lane j accumulating x[i] * w[i] for i = j (mod 16) in
 *     ascending i with a fused multiply-add (fmaf); the last partial group
 *     of 16 (cols % 16 elements) is zero-padded, so its missing lanes add
 *     fmaf(0, 0, acc);
 *   - the lanes folded in a fixed tree: s1[i] = a[i] + a[i + 8] (i < 8),
 *     s2[i] = s1[i] + s1[i + 4] (i < 4), d = (s2[0] + s2[2]) +
 *     (s2[1] + s2[3]);
 *   - out = alpha * d, or out + alpha * d with accumulate.
 *
 * Every kernel below, whatever its register tile or the thread that runs
 * it, performs exactly these IEEE operations on exactly these operands, so
 * row r's bits depend only on x_r and W (and never on the CPU's vector
 * width: the portable fallback does the same fmaf and adds one lane at a
 * time).
 *
 * Kernels (AVX-512, chosen at run time; the portable C fallback otherwise):
 *
 *   - one row (batch-1 decode, bandwidth bound): each thread streams its
 *     own contiguous range of weight rows strictly in order, one row after
 *     the other (one sequential stream is what the hardware prefetcher
 *     follows best: interleaving 4 rows read at about half the bandwidth
 *     here), each row into its own accumulator; every 16 rows the 16
 *     accumulators are folded together by a transposing tree of shuffles
 *     and adds (the per-lane tree above, 16 dot products at once).
 *   - thin weights (at most 32 columns: LoRA's B): the vector runs across
 *     16 weight rows, so the fold is plain vector adds;
 *   - several rows (batched decode, prefill): 4 weight rows x 4 x rows
 *     register tiles (16 accumulators, 8 loads per 16 FMAs), folded the
 *     same way. A block of 4 weight rows is loaded once and used against
 *     every x row of the block, so a decode step over 16 sequences reads
 *     the weights once; while the first x tile of a block runs, the next
 *     block is prefetched in order (software prefetch, one sequential
 *     stream). x rows are taken in blocks that fit in L2, so prefill reads
 *     x from cache and each weight once per x block.
 *
 * Weights in f32 are read in place; any other dtype is converted a block
 * of rows at a time into a per-thread scratch (eng_k_row_f32), then
 * multiplied as f32.
 *
 * Threads. A process-wide pool of n-1 helpers (n = the caller's
 * eng_k_pool_threads()) created on first use. A call splits its output
 * rows into n contiguous ranges (multiples of 16): the caller runs range 0,
 * helpers the rest. Helpers spin briefly between calls (a decode step makes
 * hundreds of calls a few microseconds apart) and then sleep on a
 * condition variable. Only one caller uses the pool at a time; a second
 * concurrent caller (another engine thread) computes its whole call alone,
 * which gives the same bits.
 */
#include "kernels.h"
#include "rowmm.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define RM_AVX512 1
/* Everything that touches __m512 is compiled for AVX-512 and only called
 * after the run-time check (have_avx512); helpers are always inlined into
 * such functions, so no 512-bit value crosses a non-AVX-512 ABI boundary
 * (clang refuses that, GCC warns). */
#define AVX512_FN __attribute__((target("avx512f")))
#define AVX512_INLINE static inline \
    __attribute__((always_inline, target("avx512f")))
#else
#define RM_AVX512 0
#endif

enum {
    TW = 4,              /* weight rows per register tile */
    TX = 4,              /* x rows per register tile */
    G1 = 16,             /* weight rows per fold group of the one-row kernel */
    SPLIT = 16,          /* thread ranges start at multiples of this */
    XBLOCK_BYTES = 384 << 10, /* x rows per block: about this much (L2) */
    PF_BYTES = 32 << 10, /* weights prefetched (into L2) this far ahead */
    MAX_THREADS = 64,
    PART_MACS = 1 << 19, /* multiply-adds per part of a threaded call */
    MAX_PARTS_PER_THREAD = 8,
};

/* ------------------------------------------------------------------------ */
/* Per-thread scratch for non-f32 weights                                    */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local float *scratch;
static _Thread_local size_t scratch_cap;

static void scratch_key_init(void)
{
    pthread_key_create(&scratch_key, free);
}

/* A buffer of at least n floats, owned by the calling thread (freed when
 * it exits). NULL when out of memory. */
static float *scratch_get(size_t n)
{
    if (n <= scratch_cap)
        return scratch;
    pthread_once(&scratch_once, scratch_key_init);
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p)
        return NULL;
    free(scratch);
    scratch = p;
    scratch_cap = n;
    pthread_setspecific(scratch_key, p);
    return p;
}

/* ------------------------------------------------------------------------ */
/* Portable kernel: the reference order, one dot product at a time           */

static float dot_ref(const float *w, const float *x, int cols)
{
    float a[16] = { 0 };
    float s1[8], s2[4];

    for (int i = 0; i < cols; i += 16)
        for (int j = 0; j < 16; j++) {
            float wv = i + j < cols ? w[i + j] : 0.0f;
            float xv = i + j < cols ? x[i + j] : 0.0f;

            a[j] = fmaf(wv, xv, a[j]);
        }
    for (int i = 0; i < 8; i++)
        s1[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; i++)
        s2[i] = s1[i] + s1[i + 4];
    return (s2[0] + s2[2]) + (s2[1] + s2[3]);
}

/* ------------------------------------------------------------------------ */
/* AVX-512 kernels                                                           */

#if RM_AVX512

/* [p.lo256 + p.hi256 | q.lo256 + q.hi256]: step 1 of the fold for two
 * accumulators. */
AVX512_INLINE __m512 fold_a(__m512 p, __m512 q)
{
    return _mm512_add_ps(_mm512_shuffle_f32x4(p, q, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(p, q, _MM_SHUFFLE(3, 2, 3, 2)));
}

/* Step 2: 128-bit lanes (0 + 1), (2 + 3) of p, then of q. */
AVX512_INLINE __m512 fold_b(__m512 p, __m512 q)
{
    return _mm512_add_ps(_mm512_shuffle_f32x4(p, q, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(p, q, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The per-lane tree of 16 accumulators at once: lane 4 L + m of the result
 * is the folded a[4 m + L]. */
AVX512_INLINE __m512 fold16(const __m512 *a)
{
    __m512 b0 = fold_a(a[0], a[1]), b1 = fold_a(a[2], a[3]);
    __m512 b2 = fold_a(a[4], a[5]), b3 = fold_a(a[6], a[7]);
    __m512 b4 = fold_a(a[8], a[9]), b5 = fold_a(a[10], a[11]);
    __m512 b6 = fold_a(a[12], a[13]), b7 = fold_a(a[14], a[15]);
    /* c_k, 128-bit lane L: s2 of a[4 k + L] */
    __m512 c0 = fold_b(b0, b1), c1 = fold_b(b2, b3);
    __m512 c2 = fold_b(b4, b5), c3 = fold_b(b6, b7);
    /* per 128-bit lane: [s2_0 + s2_2, s2_1 + s2_3] of two accumulators */
    __m512 d0 = _mm512_add_ps(_mm512_shuffle_ps(c0, c1, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_ps(c0, c1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 d1 = _mm512_add_ps(_mm512_shuffle_ps(c2, c3, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_ps(c2, c3, _MM_SHUFFLE(3, 2, 3, 2)));

    return _mm512_add_ps(_mm512_shuffle_ps(d0, d1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(d0, d1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The same tree for one accumulator. */
AVX512_INLINE float fold1(__m512 a)
{
    __m256 lo = _mm512_castps512_ps256(a);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    __m256 s1 = _mm256_add_ps(lo, hi);
    __m128 s2 = _mm_add_ps(_mm256_castps256_ps128(s1),
                           _mm256_extractf128_ps(s1, 1));
    __m128 e = _mm_add_ps(s2, _mm_movehl_ps(s2, s2)); /* [s0+s2, s1+s3] */

    return _mm_cvtss_f32(_mm_add_ss(e, _mm_shuffle_ps(e, e, 1)));
}

/* One dot product (the reference order). */
AVX512_INLINE __m512 dot_acc(const float *w, const float *x, int c16,
                             __mmask16 tm)
{
    __m512 a = _mm512_setzero_ps();

    for (int i = 0; i < c16; i += 16)
        a = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a);
    if (tm)
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, w + c16),
                            _mm512_maskz_loadu_ps(tm, x + c16), a);
    return a;
}

/* out[o] (+)= alpha * x . w_o for nrows consecutive weight rows (stride
 * ldw), one row at a time, folded 16 rows at a time. */
AVX512_FN static void rows1_avx512(const float *w, size_t ldw, int nrows,
                                   const float *x, int cols, float *out,
                                   float alpha, int accumulate)
{
    const __m512i perm = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2,
                                          13, 9, 5, 1, 12, 8, 4, 0);
    int c16 = cols & ~15;
    __mmask16 tm = (__mmask16)((1u << (cols & 15)) - 1);
    __m512 va = _mm512_set1_ps(alpha);

    for (int g = 0; g < nrows; g += G1) {
        int ng = nrows - g < G1 ? nrows - g : G1;
        __mmask16 om = (__mmask16)(ng == 16 ? 0xffff : (1u << ng) - 1);
        __m512 acc[G1];
        __m512 d;

        for (int k = 0; k < ng; k++)
            acc[k] = dot_acc(w + (size_t)(g + k) * ldw, x, c16, tm);
        for (int k = ng; k < G1; k++)
            acc[k] = _mm512_setzero_ps();
        /* lane 4 L + m holds row 4 m + L: put row k in lane k */
        d = _mm512_mul_ps(va, _mm512_permutexvar_ps(perm, fold16(acc)));
        if (accumulate)
            d = _mm512_add_ps(_mm512_maskz_loadu_ps(om, out + g), d);
        _mm512_mask_storeu_ps(out + g, om, d);
    }
}

/* One TW x TX tile: weight rows w[0..3] (stride ldw) against x rows
 * x[0..3] (stride ldx); only nw x nx of it are real (the rest repeat row
 * 0 and are not stored). With pf, pf_lps (1, 2 or 4) cache lines from pf
 * on are prefetched into L2 per 16 columns (part of a later weight block,
 * in order); with pf_lps 1 (4 or more x tiles per block), also one line
 * from pf1 on into L1 (the next block: without it the first tile of every
 * block waited on L2, and the 16-row decode step ran 7% slower; with fewer
 * tiles the extra lines cost more than they saved, 3-5% at 4 and 8 rows). */
AVX512_INLINE void tile44(const float *w, size_t ldw, int nw, const float *x,
                          size_t ldx, int nx, int cols, float *out,
                          size_t ldo, __m512 va, int accumulate,
                          const char *pf, int pf_lps, const char *pf1)
{
    const float *w0 = w, *w1 = nw > 1 ? w + ldw : w;
    const float *w2 = nw > 2 ? w + 2 * ldw : w, *w3 = nw > 3 ? w + 3 * ldw : w;
    const float *x0 = x, *x1 = nx > 1 ? x + ldx : x;
    const float *x2 = nx > 2 ? x + 2 * ldx : x, *x3 = nx > 3 ? x + 3 * ldx : x;
    int c16 = cols & ~15, i;
    __mmask16 tm = (__mmask16)((1u << (cols & 15)) - 1);
    __m512 a[16];
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    __m512 xv0, xv1, xv2, xv3, wv;

#define RM_STEP(LOAD)                                                     \
    do {                                                                  \
        xv0 = LOAD(x0 + i), xv1 = LOAD(x1 + i);                           \
        xv2 = LOAD(x2 + i), xv3 = LOAD(x3 + i);                           \
        wv = LOAD(w0 + i);                                                \
        c00 = _mm512_fmadd_ps(wv, xv0, c00);                              \
        c01 = _mm512_fmadd_ps(wv, xv1, c01);                              \
        c02 = _mm512_fmadd_ps(wv, xv2, c02);                              \
        c03 = _mm512_fmadd_ps(wv, xv3, c03);                              \
        wv = LOAD(w1 + i);                                                \
        c10 = _mm512_fmadd_ps(wv, xv0, c10);                              \
        c11 = _mm512_fmadd_ps(wv, xv1, c11);                              \
        c12 = _mm512_fmadd_ps(wv, xv2, c12);                              \
        c13 = _mm512_fmadd_ps(wv, xv3, c13);                              \
        wv = LOAD(w2 + i);                                                \
        c20 = _mm512_fmadd_ps(wv, xv0, c20);                              \
        c21 = _mm512_fmadd_ps(wv, xv1, c21);                              \
        c22 = _mm512_fmadd_ps(wv, xv2, c22);                              \
        c23 = _mm512_fmadd_ps(wv, xv3, c23);                              \
        wv = LOAD(w3 + i);                                                \
        c30 = _mm512_fmadd_ps(wv, xv0, c30);                              \
        c31 = _mm512_fmadd_ps(wv, xv1, c31);                              \
        c32 = _mm512_fmadd_ps(wv, xv2, c32);                              \
        c33 = _mm512_fmadd_ps(wv, xv3, c33);                              \
    } while (0)
#define RM_LOADU(p) _mm512_loadu_ps(p)
#define RM_LOADM(p) _mm512_maskz_loadu_ps(tm, p)

    if (pf && pf_lps == 1) {
        /* lines of a later block, pf_lps per 16 columns */
        for (i = 0; i < c16; i += 16) {
            _mm_prefetch(pf + (size_t)i * 4, _MM_HINT_T1);
            _mm_prefetch(pf1 + (size_t)i * 4, _MM_HINT_T0);
            RM_STEP(RM_LOADU);
        }
    } else if (pf && pf_lps == 2) {
        for (i = 0; i < c16; i += 16) {
            const char *p = pf + (size_t)i * 8;

            _mm_prefetch(p, _MM_HINT_T1);
            _mm_prefetch(p + 64, _MM_HINT_T1);
            RM_STEP(RM_LOADU);
        }
    } else if (pf) {
        for (i = 0; i < c16; i += 16) {
            const char *p = pf + (size_t)i * 16;

            _mm_prefetch(p, _MM_HINT_T1);
            _mm_prefetch(p + 64, _MM_HINT_T1);
            _mm_prefetch(p + 128, _MM_HINT_T1);
            _mm_prefetch(p + 192, _MM_HINT_T1);
            RM_STEP(RM_LOADU);
        }
    } else {
        for (i = 0; i < c16; i += 16)
            RM_STEP(RM_LOADU);
    }
    if (tm)
        RM_STEP(RM_LOADM);
#undef RM_STEP
#undef RM_LOADU
#undef RM_LOADM
    /* a[4 a + r] = c[a][r], so lane 4 r + a of the fold is out[r][a] */
    a[0] = c00, a[1] = c01, a[2] = c02, a[3] = c03;
    a[4] = c10, a[5] = c11, a[6] = c12, a[7] = c13;
    a[8] = c20, a[9] = c21, a[10] = c22, a[11] = c23;
    a[12] = c30, a[13] = c31, a[14] = c32, a[15] = c33;
    __m512 d = _mm512_mul_ps(va, fold16(a));

    if (nw == TW && nx == TX) {
        __m128 r0 = _mm512_castps512_ps128(d);
        __m128 r1 = _mm512_extractf32x4_ps(d, 1);
        __m128 r2 = _mm512_extractf32x4_ps(d, 2);
        __m128 r3 = _mm512_extractf32x4_ps(d, 3);
        float *o0 = out, *o1 = out + ldo, *o2 = out + 2 * ldo,
              *o3 = out + 3 * ldo;

        if (accumulate) {
            r0 = _mm_add_ps(_mm_loadu_ps(o0), r0);
            r1 = _mm_add_ps(_mm_loadu_ps(o1), r1);
            r2 = _mm_add_ps(_mm_loadu_ps(o2), r2);
            r3 = _mm_add_ps(_mm_loadu_ps(o3), r3);
        }
        _mm_storeu_ps(o0, r0);
        _mm_storeu_ps(o1, r1);
        _mm_storeu_ps(o2, r2);
        _mm_storeu_ps(o3, r3);
    } else {
        float t[16];

        _mm512_storeu_ps(t, d);
        for (int r = 0; r < nx; r++)
            for (int k = 0; k < nw; k++) {
                float *o = out + (size_t)r * ldo + k;

                *o = accumulate ? *o + t[4 * r + k] : t[4 * r + k];
            }
    }
}

/* Weight rows [0, nrows) of w (stride ldw) against x rows [0, n): x in
 * blocks that fit in L2, each weight block of TW rows against every x tile
 * of the block. pf_avail: weight rows from w on that are readable and worth
 * prefetching (past nrows: the rows the next part of the call needs). */
AVX512_FN static void rowsn_avx512(const float *w, size_t ldw, int nrows,
                                   const float *x, size_t ldx, int n,
                                   int cols, float *out, size_t ldo,
                                   float alpha, int accumulate,
                                   int pf_avail)
{
    __m512 va = _mm512_set1_ps(alpha);
    int xb = (int)(XBLOCK_BYTES / ((size_t)cols * sizeof(float))) / TX * TX;

    /* prefetch distance: whole blocks, about PF_BYTES ahead */
    int pf_rows = (int)(PF_BYTES / ((size_t)TW * cols * sizeof(float))) * TW;

    if (xb < TX)
        xb = TX;
    if (pf_rows < TW)
        pf_rows = TW;
    for (int r0 = 0; r0 < n; r0 += xb) {
        int r1 = r0 + xb < n ? r0 + xb : n;
        /* a block is 4 lines per 16 columns: its prefetch is spread over
         * the first (up to) 4 x tiles of the block pf_rows before it, lps
         * lines per 16 columns each (one burst in the first tile left
         * the 16-row decode step ~10% slower) */
        int tiles = (r1 - r0 + TX - 1) / TX;
        int lps = tiles >= 4 ? 1 : tiles >= 2 ? 2 : 4;

        for (int o = 0; o < nrows; o += TW) {
            int nw = nrows - o < TW ? nrows - o : TW;
            const float *wo = w + (size_t)o * ldw;
            /* while the first x tile runs, the block pf_rows ahead is
             * prefetched (rows that follow in memory: pf_avail) */
            const char *pf = o + pf_rows + TW <= pf_avail
                             ? (const char *)(wo + (size_t)pf_rows * ldw)
                             : NULL;

            for (int r = r0, t = 0; r < r1; r += TX, t++) {
                int nx = r1 - r < TX ? r1 - r : TX;
                size_t at = (size_t)t * lps * (cols / 16) * 64;
                const char *tpf = pf && t * lps < 4 ? pf + at : NULL;

                /* the next block is inside the far prefetch's range, so
                 * readable whenever pf is set */
                tile44(wo, ldw, nw, x + (size_t)r * ldx, ldx, nx, cols,
                       out + (size_t)r * ldo + o, ldo, va, accumulate, tpf,
                       lps, tpf && lps == 1
                            ? (const char *)(wo + (size_t)TW * ldw) + at
                            : NULL);
            }
        }
    }
}

/* Thin weights (cols <= 32: LoRA's B, [out, rank]): a dot product is one
 * or two steps, so the 4 x 4 tiles would spend most of their time folding.
 * Here the vector runs across 16 weight rows instead: lane k of acc[j] is
 * lane j of row g + k's accumulator, so each fold step is one add of two
 * vectors, with the operands and order of the reference. */
AVX512_FN static void thin_avx512(const float *w, int nrows, const float *x,
                                  size_t ldx, int n, int cols, float *out,
                                  size_t ldo, float alpha, int accumulate)
{
    float wt[32][16] __attribute__((aligned(64)));
    int G = (cols + 15) / 16;
    __m512 va = _mm512_set1_ps(alpha);

    for (int g = 0; g < nrows; g += 16) {
        int ng = nrows - g < 16 ? nrows - g : 16;
        __mmask16 om = (__mmask16)(ng == 16 ? 0xffff : (1u << ng) - 1);

        /* the block transposed, zero past cols (the reference's padding)
         * and past the last row (never stored) */
        for (int j = 0; j < G * 16; j++)
            for (int k = 0; k < 16; k++)
                wt[j][k] = j < cols && k < ng ? w[(size_t)(g + k) * cols + j]
                                               : 0.0f;
        for (int r = 0; r < n; r++) {
            const float *xr = x + (size_t)r * ldx;
            float *o = out + (size_t)r * ldo + g;
            __m512 acc[16], s1[8], s2[4], d;

            for (int j = 0; j < 16; j++)
                acc[j] = _mm512_setzero_ps();
            for (int gg = 0; gg < G; gg++)
                for (int j = 0; j < 16; j++) {
                    int c = gg * 16 + j;

                    acc[j] = _mm512_fmadd_ps(_mm512_load_ps(wt[c]),
                                             _mm512_set1_ps(c < cols ? xr[c]
                                                                     : 0.0f),
                                             acc[j]);
                }
            for (int i = 0; i < 8; i++)
                s1[i] = _mm512_add_ps(acc[i], acc[i + 8]);
            for (int i = 0; i < 4; i++)
                s2[i] = _mm512_add_ps(s1[i], s1[i + 4]);
            d = _mm512_add_ps(_mm512_add_ps(s2[0], s2[2]),
                              _mm512_add_ps(s2[1], s2[3]));
            d = _mm512_mul_ps(va, d);
            if (accumulate)
                d = _mm512_add_ps(_mm512_maskz_loadu_ps(om, o), d);
            _mm512_mask_storeu_ps(o, om, d);
        }
    }
}

AVX512_FN static float dot_avx512(const float *a, const float *b, int n)
{
    return fold1(dot_acc(a, b, n & ~15, (__mmask16)((1u << (n & 15)) - 1)));
}

/* out[t] = (q . k_t) * scale for T rows k_t (stride ldk), 16 at a time. */
AVX512_FN static void dots_avx512(float *out, const float *q, const float *k,
                                  size_t ldk, int T, int n, float scale)
{
    const __m512i perm = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2,
                                          13, 9, 5, 1, 12, 8, 4, 0);
    int c16 = n & ~15;
    __mmask16 tm = (__mmask16)((1u << (n & 15)) - 1);
    __m512 vs = _mm512_set1_ps(scale);

    for (int g = 0; g < T; g += G1) {
        int ng = T - g < G1 ? T - g : G1;
        __mmask16 om = (__mmask16)(ng == 16 ? 0xffff : (1u << ng) - 1);
        __m512 acc[G1];

        /* 4 keys at a time: 4 independent FMA chains (one chain per key
         * is latency bound for head-sized rows) */
        for (int t = 0; t < G1; t += 4) {
            const float *k0 = k + (size_t)(g + t) * ldk;
            const float *k1 = t + 1 < ng ? k0 + ldk : k0;
            const float *k2 = t + 2 < ng ? k0 + 2 * ldk : k0;
            const float *k3 = t + 3 < ng ? k0 + 3 * ldk : k0;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;

            if (t >= ng) {
                acc[t] = acc[t + 1] = acc[t + 2] = acc[t + 3] = a0;
                continue;
            }
            for (int i = 0; i < c16; i += 16) {
                __m512 qv = _mm512_loadu_ps(q + i);

                a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + i), a0);
                a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k1 + i), a1);
                a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k2 + i), a2);
                a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k3 + i), a3);
            }
            if (tm) {
                __m512 qv = _mm512_maskz_loadu_ps(tm, q + c16);

                a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tm, k0 + c16), a0);
                a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tm, k1 + c16), a1);
                a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tm, k2 + c16), a2);
                a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tm, k3 + c16), a3);
            }
            acc[t] = a0;
            acc[t + 1] = a1;
            acc[t + 2] = a2;
            acc[t + 3] = a3;
        }
        _mm512_mask_storeu_ps(out + g, om,
                              _mm512_mul_ps(_mm512_permutexvar_ps(perm,
                                                                  fold16(acc)),
                                            vs));
    }
}

/* eng_k_wsum, 64 columns (4 registers) at a time, then 16, then a masked
 * tail: every lane the same fmaf chain. */
AVX512_FN static void wsum_avx512(float *out, const float *p, const float *v,
                                  size_t ldv, int T, int n)
{
    int i = 0;

    for (; i + 64 <= n; i += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;

        for (int t = 0; t < T; t++) {
            const float *vt = v + (size_t)t * ldv + i;
            __m512 pt = _mm512_set1_ps(p[t]);

            a0 = _mm512_fmadd_ps(pt, _mm512_loadu_ps(vt), a0);
            a1 = _mm512_fmadd_ps(pt, _mm512_loadu_ps(vt + 16), a1);
            a2 = _mm512_fmadd_ps(pt, _mm512_loadu_ps(vt + 32), a2);
            a3 = _mm512_fmadd_ps(pt, _mm512_loadu_ps(vt + 48), a3);
        }
        _mm512_storeu_ps(out + i, a0);
        _mm512_storeu_ps(out + i + 16, a1);
        _mm512_storeu_ps(out + i + 32, a2);
        _mm512_storeu_ps(out + i + 48, a3);
    }
    for (; i < n; i += 16) {
        __mmask16 m = (__mmask16)(n - i >= 16 ? 0xffff
                                              : (1u << (n - i)) - 1);
        __m512 a = _mm512_setzero_ps();

        for (int t = 0; t < T; t++)
            a = _mm512_fmadd_ps(_mm512_set1_ps(p[t]),
                                _mm512_maskz_loadu_ps(
                                    m, v + (size_t)t * ldv + i), a);
        _mm512_mask_storeu_ps(out + i, m, a);
    }
}

static bool have_avx512(void)
{
    static int v = -1;

    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return v;
}

#else

static bool have_avx512(void) { return false; }

#endif

/* ------------------------------------------------------------------------ */
/* Row ranges                                                                */

typedef struct rowmm_job {
    float *out;
    size_t ldo;
    const float *x;
    size_t ldx;
    const eng_tensor *W;
    int n;
    float alpha;
    int accumulate;
} rowmm_job;

/* rows [o0, o1) of w (f32, stride cols) */
static void range_f32(const rowmm_job *j, const float *w, int o0, int o1,
                      int pf_avail)
{
    int cols = j->W->cols, n = j->n;
    float *out = j->out + o0;

#if RM_AVX512
    if (have_avx512()) {
        if (cols <= 32)
            thin_avx512(w, o1 - o0, j->x, j->ldx, n, cols, out, j->ldo,
                        j->alpha, j->accumulate);
        else if (n == 1)
            rows1_avx512(w, (size_t)cols, o1 - o0, j->x, cols, out,
                         j->alpha, j->accumulate);
        else
            rowsn_avx512(w, (size_t)cols, o1 - o0, j->x, j->ldx, n, cols,
                         out, j->ldo, j->alpha, j->accumulate, pf_avail);
        return;
    }
#else
    (void)pf_avail;
#endif
    for (int r = 0; r < n; r++)
        for (int o = 0; o < o1 - o0; o++) {
            float d = j->alpha * dot_ref(w + (size_t)o * cols,
                                         j->x + (size_t)r * j->ldx, cols);
            float *y = out + (size_t)r * j->ldo + o;

            *y = j->accumulate ? *y + d : d;
        }
}

/* Output rows [o0, o1) of the job, every x row. */
static void rowmm_range(const rowmm_job *j, int o0, int o1)
{
    const eng_tensor *W = j->W;
    int cols = W->cols;

    if (W->dtype == ENG_DT_F32) {
        range_f32(j, (const float *)W->data + (size_t)o0 * cols, o0, o1,
                  W->rows - o0);
        return;
    }
    /* other dtypes: blocks of rows converted to f32 (about 64 KiB) */
    int blk = (int)((64 << 10) / ((size_t)cols * sizeof(float))) / G1 * G1;
    float *buf;

    blk = blk < G1 ? G1 : blk;
    buf = scratch_get((size_t)blk * cols);
    if (!buf) {
        /* out of memory: one row at a time on the stack would overflow
         * for wide rows; fall back to a row-sized allocation per row */
        float *row = malloc((size_t)cols * sizeof(float));

        assert(row);
        for (int o = o0; o < o1; o++) {
            eng_k_row_f32(W, o, row);
            range_f32(j, row, o, o + 1, 1);
        }
        free(row);
        return;
    }
    for (int b0 = o0; b0 < o1; b0 += blk) {
        int b1 = b0 + blk < o1 ? b0 + blk : o1;

        for (int o = b0; o < b1; o++)
            eng_k_row_f32(W, o, buf + (size_t)(o - b0) * cols);
        range_f32(j, buf, b0, b1, b1 - b0);
    }
}

/* ------------------------------------------------------------------------ */
/* Pool                                                                      */

/* A job is n_parts parts. Thread t of T (the caller is 0) owns the
 * contiguous run of parts [n_parts t / T, n_parts (t + 1) / T) and runs it
 * front to back, so its weight reads stay one sequential stream; a thread
 * done with its own run takes parts from the back of the others' runs. So
 * a helper that is slow to wake or was descheduled (a busy machine, a
 * training thread on the other core) costs at most the part it holds: the
 * caller takes the rest. Which thread runs a part never changes its
 * result. */
static struct {
    pthread_mutex_t use;        /* held by the caller using the pool */
    pthread_mutex_t mu;         /* sleep/wake */
    pthread_cond_t cv;
    int n_workers;
    atomic_uint gen;            /* bumped per job */
    atomic_uint closed;         /* the last job whose parts are all done */
    atomic_int done;            /* parts finished */
    atomic_int inside;          /* helpers reading or running the job */
    atomic_int sleeping;
    int threads;                /* caller + helpers the job wants */
    void (*fn)(void *arg, int part, int n_parts);
    void *arg;
    int n_parts;
    /* per thread: its unclaimed parts [lo, hi) as lo << 32 | hi */
    _Atomic uint64_t run[MAX_THREADS];
} pool = { .use = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER,
           .cv = PTHREAD_COND_INITIALIZER };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims a part of run t: its front (the owner) or its back (a thief).
 * -1 when the run is empty. */
static int claim(int t, bool front)
{
    uint64_t v = atomic_load(&pool.run[t]);

    for (;;) {
        uint32_t lo = (uint32_t)(v >> 32), hi = (uint32_t)v;
        uint64_t nv;

        if (lo >= hi)
            return -1;
        nv = front ? (uint64_t)(lo + 1) << 32 | hi
                   : (uint64_t)lo << 32 | (hi - 1);
        if (atomic_compare_exchange_weak(&pool.run[t], &v, nv))
            return front ? (int)lo : (int)(hi - 1);
    }
}

/* Thread t's share of the current job: its own run, then the others'. */
static void run_parts(int t)
{
    void (*fn)(void *, int, int) = pool.fn;
    void *arg = pool.arg;
    int n_parts = pool.n_parts, T = pool.threads, p;

    while ((p = claim(t, true)) >= 0) {
        fn(arg, p, n_parts);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    }
    for (int k = 1; k < T; k++)
        while ((p = claim((t + k) % T, false)) >= 0) {
            fn(arg, p, n_parts);
            atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
        }
}

typedef struct worker_arg {
    int id;
    unsigned gen;               /* pool.gen when it was created */
} worker_arg;

static void *worker(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    /* the generation of its creation, not the one it finds when it starts:
     * the job that created it may already have bumped gen */
    unsigned seen = wa.gen;

    free(p);
    for (;;) {
        unsigned g;
        int spins = 0;

        while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) ==
               seen) {
            if (++spins < 20000) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool.mu);
            atomic_fetch_add(&pool.sleeping, 1);
            while (atomic_load(&pool.gen) == seen)
                pthread_cond_wait(&pool.cv, &pool.mu);
            atomic_fetch_sub(&pool.sleeping, 1);
            pthread_mutex_unlock(&pool.mu);
            spins = 0;
        }
        seen = g;
        /* Enter, then check the job is still open: the caller closes it
         * and then waits for inside == 0 before it reuses the fields, so
         * a helper either sees it closed or reads fields still valid. */
        atomic_fetch_add(&pool.inside, 1);
        if (atomic_load(&pool.gen) == g && atomic_load(&pool.closed) != g &&
            wa.id < pool.threads)
            run_parts(wa.id);
        atomic_fetch_sub_explicit(&pool.inside, 1, memory_order_release);
    }
    return NULL;
}

/* Called with pool.use held, between jobs. */
static void grow(int want)
{
    pthread_attr_t at;

    pthread_attr_init(&at);
    /* no small stack: glibc carves the static TLS out of the thread's
     * stack, and a small stack can make pthread_create fail (EINVAL). The
     * default stack is virtual memory; only touched pages are resident. */
    while (pool.n_workers < want && pool.n_workers < MAX_THREADS - 1) {
        pthread_t th;
        worker_arg *wa = malloc(sizeof(*wa));

        if (!wa)
            break;
        wa->id = pool.n_workers + 1;
        wa->gen = atomic_load(&pool.gen);
        if (pthread_create(&th, &at, worker, wa)) {
            free(wa);
            break;
        }
        pthread_detach(th);
        pool.n_workers++;
    }
    pthread_attr_destroy(&at);
}

/* Runs the parts on the caller and up to threads - 1 helpers. */
static void parallel(void (*fn)(void *arg, int part, int n_parts), void *arg,
                     int n_parts, int threads)
{
    if (threads > n_parts)
        threads = n_parts;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads <= 1 || pthread_mutex_trylock(&pool.use) != 0) {
        for (int p = 0; p < n_parts; p++)
            fn(arg, p, n_parts);
        return;
    }
    if (pool.n_workers < threads - 1)
        grow(threads - 1);
    pool.fn = fn;
    pool.arg = arg;
    pool.n_parts = n_parts;
    pool.threads = threads;
    for (int t = 0; t < threads; t++)
        atomic_store(&pool.run[t],
                     (uint64_t)((int64_t)n_parts * t / threads) << 32 |
                     (uint64_t)((int64_t)n_parts * (t + 1) / threads));
    atomic_store(&pool.done, 0);
    unsigned g = atomic_fetch_add(&pool.gen, 1) + 1;
    if (atomic_load(&pool.sleeping) > 0) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
    }
    run_parts(0);
    /* parts still running on helpers */
    for (int spins = 0;
         atomic_load_explicit(&pool.done, memory_order_acquire) < n_parts;
         spins++) {
        cpu_relax();
        if (spins > 20000)
            sched_yield(); /* its helper was descheduled (busy machine) */
    }
    atomic_store(&pool.closed, g);
    for (int spins = 0; atomic_load(&pool.inside) > 0; spins++) {
        cpu_relax();
        if (spins > 20000)
            sched_yield();
    }
    pthread_mutex_unlock(&pool.use);
}

int eng_k_parallel(void (*fn)(void *arg, int part, int n_parts), void *arg,
                   int n_parts)
{
    if (n_parts > MAX_THREADS)
        n_parts = MAX_THREADS;
    parallel(fn, arg, n_parts, n_parts);
    return n_parts;
}

void eng_k_parallel_on(void (*fn)(void *arg, int part, int n_parts),
                       void *arg, int n_parts, int threads)
{
    if (n_parts > 0)
        parallel(fn, arg, n_parts, threads);
}

static void rowmm_part(void *arg, int part, int n_parts)
{
    rowmm_job *j = arg;
    int rows = j->W->rows;
    int o0 = (int)((int64_t)rows * part / n_parts / SPLIT * SPLIT);
    int o1 = part + 1 == n_parts ? rows
             : (int)((int64_t)rows * (part + 1) / n_parts / SPLIT * SPLIT);

    if (o1 > o0)
        rowmm_range(j, o0, o1);
}

/* Per calling thread: the parts rowmm and batch attention split into
 * (0: OpenBLAS's process-wide count). A serving thread sets its own so a
 * training thread's eng_k_set_threads does not change it. */
static _Thread_local int pool_threads;

void eng_k_set_pool_threads(int n)
{
    pool_threads = n > 0 ? n : 0;
}

int eng_k_pool_threads(void)
{
    return pool_threads > 0 ? pool_threads : eng_k_get_threads();
}

void eng_k_rowmm(float *out, size_t ldo, const float *x, size_t ldx,
                 const eng_tensor *W, int n, float alpha, int accumulate)
{
    rowmm_job j = { out, ldo, x, ldx, W, n, alpha, accumulate };
    int rows = W->rows, parts;

    if (n <= 0 || rows <= 0)
        return;
    /* Below ~64K multiply-adds a wake-up costs more than it saves. Above,
     * parts of about PART_MACS (at least one per thread, at most
     * MAX_PARTS_PER_THREAD per thread), claimed dynamically. */
    double macs = (double)rows * W->cols * n;
    int threads = macs < 65536.0 ? 1 : eng_k_pool_threads();

    if (threads > rows / SPLIT)
        threads = rows / SPLIT > 0 ? rows / SPLIT : 1;
    if (threads <= 1) {
        rowmm_range(&j, 0, rows);
        return;
    }
    parts = (int)(macs / PART_MACS);
    if (parts > threads * MAX_PARTS_PER_THREAD)
        parts = threads * MAX_PARTS_PER_THREAD;
    if (parts > rows / SPLIT)
        parts = rows / SPLIT;
    if (parts < threads)
        parts = threads;
    parallel(rowmm_part, &j, parts, threads);
}

float eng_k_dot(const float *a, const float *b, int n)
{
#if RM_AVX512
    if (have_avx512())
        return dot_avx512(a, b, n);
#endif
    return dot_ref(a, b, n);
}

void eng_k_dots(float *out, const float *q, const float *k, size_t ldk,
                int T, int n, float scale)
{
#if RM_AVX512
    if (have_avx512()) {
        dots_avx512(out, q, k, ldk, T, n, scale);
        return;
    }
#endif
    for (int t = 0; t < T; t++)
        out[t] = dot_ref(q, k + (size_t)t * ldk, n) * scale;
}

void eng_k_wsum(float *out, const float *p, const float *v, size_t ldv,
                int T, int n)
{
#if RM_AVX512
    if (have_avx512()) {
        wsum_avx512(out, p, v, ldv, T, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) {
        float a = 0.0f;

        for (int t = 0; t < T; t++)
            a = fmaf(p[t], v[(size_t)t * ldv + i], a);
        out[i] = a;
    }
}
