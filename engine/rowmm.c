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
 * order: sixteen lanes, lane j accumulating elements i = j (mod 16) in
 * ascending i (a fused multiply-add where the CPU has one), the cols % 16
 * tail summed separately in ascending order, then the lanes folded in a
 * fixed tree and the tail added. The tile a row lands in (1 to 4 x rows by
 * 1 to 4 weight rows, all from the same code) and the thread that computes
 * it change nothing, so row r's bits depend only on x_r and W.
 *
 * Speed. Decoding one row reads every weight once: the kernel streams 4
 * weight rows at a time against the x rows, split over the threads by
 * output rows, which is what makes batch-1 decode bandwidth bound (it is
 * also the gemv of issue #6's roofline target, now on every thread). With B
 * rows each weight tile is reused B times from L1, so a decode step for 16
 * sequences costs little more than one. Prefill runs the same kernel over
 * blocks of rows (4 x 4 register tiles of 16-float vectors: 16 FMAs per 8
 * loads).
 *
 * Weights in f32 are read in place; any other dtype is converted 4 rows at
 * a time into a per-thread scratch (eng_k_row_f32), then multiplied as f32.
 *
 * Threads. A process-wide pool of n-1 helpers (n = eng_k_get_threads(),
 * OpenBLAS's count, which eng_set_threads sets) created on first use. A
 * call splits its output rows into n contiguous ranges (multiples of 4):
 * the caller runs range 0, helpers the rest. Helpers spin briefly between
 * calls (a decode step makes hundreds of calls a few microseconds apart)
 * and then sleep on a condition variable. Only one caller uses the pool at
 * a time; a second concurrent caller (another engine thread) computes its
 * whole call alone, which gives the same bits.
 */
#include "kernels.h"

/* v16 values passed by value between inlined helpers: no ABI involved. */
#pragma GCC diagnostic ignored "-Wpsabi"

#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));

enum { TW = 4, TX = 4, SCRATCH = 16 * 32768, MAX_THREADS = 64 };

static inline v16 ld16(const float *p)
{
    v16 v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* The fixed fold of one accumulator plus its tail: halves added lane-wise
 * (16 -> 8 -> 4 -> 2 -> 1), then the tail. */
static inline float fold(v16 a, float tail)
{
    typedef float v8 __attribute__((vector_size(32)));
    typedef float v4 __attribute__((vector_size(16)));
    v8 lo8, hi8;
    v4 lo4, hi4;

    memcpy(&lo8, &a, sizeof(lo8));
    memcpy(&hi8, (const char *)&a + sizeof(lo8), sizeof(hi8));
    lo8 += hi8;
    memcpy(&lo4, &lo8, sizeof(lo4));
    memcpy(&hi4, (const char *)&lo8 + sizeof(lo4), sizeof(hi4));
    lo4 += hi4;
    return ((lo4[0] + lo4[2]) + (lo4[1] + lo4[3])) + tail;
}

/* out[r][o] (+)= alpha * x_r . w_o for nw weight rows and nx x rows (both
 * compile-time constants at every call site, so acc lives in registers). */
static inline __attribute__((always_inline)) void
tile(const float *w, size_t ldw, int nw, const float *x, size_t ldx, int nx,
     int cols, float *out, size_t ldo, float alpha, int accumulate)
{
    v16 acc[TW][TX];
    int i, c16 = cols & ~15;

    for (int a = 0; a < nw; a++)
        for (int r = 0; r < nx; r++)
            acc[a][r] = (v16){ 0 };
    for (i = 0; i < c16; i += 16) {
        v16 wv[TW], xv[TX];

        for (int a = 0; a < nw; a++)
            wv[a] = ld16(w + a * ldw + i);
        for (int r = 0; r < nx; r++)
            xv[r] = ld16(x + r * ldx + i);
        for (int a = 0; a < nw; a++)
            for (int r = 0; r < nx; r++)
                acc[a][r] += wv[a] * xv[r];
    }
    for (int a = 0; a < nw; a++)
        for (int r = 0; r < nx; r++) {
            float t = 0.0f, d;

            for (int k = c16; k < cols; k++)
                t += w[a * ldw + k] * x[r * ldx + k];
            d = alpha * fold(acc[a][r], t);
            out[r * ldo + a] = accumulate ? out[r * ldo + a] + d : d;
        }
}

#define TILE(NW, NX) tile(w, ldw, NW, x, ldx, NX, cols, out, ldo, alpha, acc)

/* nw (1..4) weight rows against nx (1..4) x rows. */
static inline __attribute__((always_inline)) void
tile_any(const float *w, size_t ldw, int nw, const float *x, size_t ldx,
         int nx, int cols, float *out, size_t ldo, float alpha, int acc)
{
    switch (nw * 8 + nx) {
    case 4 * 8 + 4: TILE(4, 4); break;
    case 4 * 8 + 3: TILE(4, 3); break;
    case 4 * 8 + 2: TILE(4, 2); break;
    case 4 * 8 + 1: TILE(4, 1); break;
    case 3 * 8 + 4: TILE(3, 4); break;
    case 3 * 8 + 3: TILE(3, 3); break;
    case 3 * 8 + 2: TILE(3, 2); break;
    case 3 * 8 + 1: TILE(3, 1); break;
    case 2 * 8 + 4: TILE(2, 4); break;
    case 2 * 8 + 3: TILE(2, 3); break;
    case 2 * 8 + 2: TILE(2, 2); break;
    case 2 * 8 + 1: TILE(2, 1); break;
    case 1 * 8 + 4: TILE(1, 4); break;
    case 1 * 8 + 3: TILE(1, 3); break;
    case 1 * 8 + 2: TILE(1, 2); break;
    default: TILE(1, 1); break;
    }
}

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

static _Thread_local float conv[SCRATCH];

/* Output rows [o0, o1) of the job, every x row, in blocks of weight rows
 * small enough to stay in L1 while the x rows pass. The first pass over a
 * block streams it from memory one weight row at a time (one sequential
 * stream is what the hardware prefetcher follows best: 4 interleaved rows
 * read at half the bandwidth here); later passes read it from cache in
 * 4 x 4 tiles. */
ENG_K_CLONES
static void rowmm_range(const rowmm_job *j, int o0, int o1)
{
    const eng_tensor *W = j->W;
    int cols = W->cols, n = j->n, wb;
    bool f32 = W->dtype == ENG_DT_F32;
    size_t ldw = (size_t)cols, ldx = j->ldx, ldo = j->ldo;
    float alpha = j->alpha;
    int acc = j->accumulate;

    assert(f32 || (size_t)cols * 16 <= SCRATCH);
    wb = 16384 / (cols * 4) / TW * TW;
    wb = wb < TW ? TW : wb > 16 ? 16 : wb;
    for (int b0 = o0; b0 < o1; b0 += wb) {
        int b1 = b0 + wb < o1 ? b0 + wb : o1;
        const float *wblk = (const float *)W->data + (size_t)b0 * cols;

        if (!f32) {
            for (int o = b0; o < b1; o++)
                eng_k_row_f32(W, o, conv + (size_t)(o - b0) * cols);
            wblk = conv;
        }
        for (int r = 0; r < n; r += TX) {
            int nx = n - r < TX ? n - r : TX, step = r == 0 ? 1 : TW;
            const float *x = j->x + (size_t)r * ldx;

            for (int o = b0; o < b1; o += step) {
                int nw = b1 - o < step ? b1 - o : step;
                const float *w = wblk + (size_t)(o - b0) * cols;
                float *out = j->out + (size_t)r * ldo + o;

                tile_any(w, ldw, nw, x, ldx, nx, cols, out, ldo, alpha, acc);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Pool                                                                      */

static struct {
    pthread_mutex_t use;        /* held by the caller using the pool */
    pthread_mutex_t mu;         /* sleep/wake */
    pthread_cond_t cv;
    int n_workers;
    atomic_uint gen;            /* bumped per job */
    atomic_int pending;         /* helpers still working on the job */
    atomic_int sleeping;
    void (*fn)(void *arg, int part, int n_parts);
    void *arg;
    int n_parts;
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
           PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, NULL, 0 };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned seen = atomic_load(&pool.gen);

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
        if (id < pool.n_parts)
            pool.fn(pool.arg, id, pool.n_parts);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
    }
    return NULL;
}

static void grow(int want)
{
    pthread_attr_t at;

    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 << 10);
    while (pool.n_workers < want && pool.n_workers < MAX_THREADS - 1) {
        pthread_t th;

        if (pthread_create(&th, &at, worker,
                           (void *)(intptr_t)(pool.n_workers + 1)))
            break;
        pthread_detach(th);
        pool.n_workers++;
    }
    pthread_attr_destroy(&at);
}

int eng_k_parallel(void (*fn)(void *arg, int part, int n_parts), void *arg,
                   int n_parts)
{
    if (n_parts > MAX_THREADS)
        n_parts = MAX_THREADS;
    if (n_parts <= 1 || pthread_mutex_trylock(&pool.use) != 0) {
        for (int p = 0; p < n_parts; p++)
            fn(arg, p, n_parts);
        return n_parts;
    }
    if (pool.n_workers < n_parts - 1)
        grow(n_parts - 1);
    if (pool.n_workers < n_parts - 1)
        n_parts = pool.n_workers + 1;
    pool.fn = fn;
    pool.arg = arg;
    pool.n_parts = n_parts;
    atomic_store(&pool.pending, pool.n_workers);
    atomic_fetch_add(&pool.gen, 1);
    if (atomic_load(&pool.sleeping) > 0) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
    }
    fn(arg, 0, n_parts);
    for (int spins = 0;
         atomic_load_explicit(&pool.pending, memory_order_acquire) > 0;
         spins++) {
        cpu_relax();
        if (spins > 100000)
            sched_yield(); /* a helper was descheduled (busy machine) */
    }
    pthread_mutex_unlock(&pool.use);
    return n_parts;
}

static void rowmm_part(void *arg, int part, int n_parts)
{
    rowmm_job *j = arg;
    int rows = j->W->rows;
    int o0 = (int)((int64_t)rows * part / n_parts / TW * TW);
    int o1 = part + 1 == n_parts ? rows
             : (int)((int64_t)rows * (part + 1) / n_parts / TW * TW);

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
    /* Below ~64K multiply-adds a wake-up costs more than it saves. */
    parts = (double)rows * W->cols * n < 65536.0 ? 1 : eng_k_pool_threads();
    if (parts > rows / TW)
        parts = rows / TW > 0 ? rows / TW : 1;
    eng_k_parallel(rowmm_part, &j, parts);
}

ENG_K_CLONES
float eng_k_dot(const float *a, const float *b, int n)
{
    v16 acc = { 0 };
    float t = 0.0f;
    int i, c16 = n & ~15;

    for (i = 0; i < c16; i += 16)
        acc += ld16(a + i) * ld16(b + i);
    for (; i < n; i++)
        t += a[i] * b[i];
    return fold(acc, t);
}
