/* SPDX-License-Identifier: MIT */
/*
 * bench_serve.c - serving figures of issue #6 on this machine: batched
 * decode across sequences with mixed adapters (eng_batch_eval, the path
 * every daemon generation takes), time to first token idle and under a
 * training job (with the daemon's yield), the memory bandwidth and batch-1
 * decode as a fraction of its roofline. See bench/README.md.
 *
 * Usage: bench_serve [--threads N] [--shape stories260K|smollm2-135m]
 *                    [--tokens N] [--ttft N] [--repeat N]
 *                    [--part decode|prefill|ttft]
 */
#include "engine/batch.h"
#include "engine/decode.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "bench_common.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef TUNA_SOURCE_ROOT
#define TUNA_SOURCE_ROOT "."
#endif

static int g_threads = 2, g_tokens = 32, g_ttft = 6, g_repeat = 1;
static const char *g_shape = NULL, *g_part = NULL;

static bool part_on(const char *name)
{
    return !g_part || !strcmp(g_part, name);
}

typedef struct shape {
    const char *name;
    bool file;
    eng_config cfg;
} shape;

static shape shapes[] = {
    { .name = "stories260K", .file = true },
    { .name = "smollm2-135m", .file = false,
      .cfg = BENCH_SMOLLM2_135M_CFG },
};

/* ------------------------------------------------------------------------ */
/* Memory bandwidth: a read of 512 MiB over the threads, best of 5          */

static double bandwidth_gb_s(int threads)
{
    size_t n = (size_t)512 << 20 >> 2;
    float *a = bench_bw_alloc(n);
    double best = 0;
    if (!a)
        return 0;
    /* no page repeats another (a 4 KiB-periodic fill could be merged by a
     * deduplicating host) */
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(uint32_t)(i * 2654435761u >> 8);
    best = bench_bw_run(BENCH_BW_READ, a, NULL, NULL, n, threads, 5);
    free(a);
    return best;
}

/* ------------------------------------------------------------------------ */
/* Decode                                                                    */

/* greedy sampling as the daemon does it (engine/generate.c) */
static int32_t argmax(const float *x, int n)
{
    return eng_k_argmax(x, n);
}

enum { PROMPT = 16, N_ADAPTERS = 3 };

/* n sequences (sequence i on adapters[i % (N_ADAPTERS + 1)], slot 0 the
 * base) decoding `tokens` tokens together after a PROMPT-token prefill;
 * returns the decode seconds (prefill excluded). */
static double decode_batch(eng_model *m, eng_adapter **ad, int n, int first,
                           int tokens)
{
    const eng_config *c = eng_model_config(m);
    eng_session *s[64];
    eng_batch_item it[64];
    int32_t ids[64][PROMPT], next[64];
    eng_batch *b = NULL;
    uint64_t r = 99;
    if (eng_batch_new(m, n, &b))
        exit(1);
    for (int i = 0; i < n; i++) {
        if (eng_session_new(m, PROMPT + tokens + 1, 1, &s[i]) ||
            eng_session_set_adapter(s[i], ad[(first + i) % (N_ADAPTERS + 1)]))
            exit(1);
        for (int k = 0; k < PROMPT; k++)
            ids[i][k] = (int32_t)(bench_rng_next(&r) % (uint64_t)c->vocab_size);
        it[i] = (eng_batch_item){ s[i], ids[i], PROMPT };
    }
    if (eng_batch_eval(b, it, n))
        exit(1);
    double t0 = bench_now_s();
    for (int t = 0; t < tokens; t++) {
        for (int i = 0; i < n; i++) {
            next[i] = argmax(eng_session_logits(s[i]), c->vocab_size);
            it[i] = (eng_batch_item){ s[i], &next[i], 1 };
        }
        if (eng_batch_eval(b, it, n))
            exit(1);
    }
    double dt = bench_now_s() - t0;
    for (int i = 0; i < n; i++)
        eng_session_free(s[i]);
    eng_batch_free(b);
    return dt;
}

static double prefill_tok_s(eng_model *m, int len)
{
    const eng_config *c = eng_model_config(m);
    int32_t *ids = malloc((size_t)len * sizeof(*ids));
    uint64_t r = 5;
    eng_batch *b = NULL;
    eng_session *s = NULL;
    double best = 1e30;
    for (int i = 0; i < len; i++)
        ids[i] = (int32_t)(bench_rng_next(&r) % (uint64_t)c->vocab_size);
    if (eng_batch_new(m, 1, &b) || eng_session_new(m, len, 1, &s))
        exit(1);
    for (int rep = 0; rep < 4; rep++) { /* first one warms up */
        eng_session_reset(s);
        eng_batch_item it = { s, ids, len };
        double t0 = bench_now_s();
        if (eng_batch_eval(b, &it, 1))
            exit(1);
        double dt = bench_now_s() - t0;
        if (rep && dt < best)
            best = dt;
    }
    eng_session_free(s);
    eng_batch_free(b);
    free(ids);
    return len / best;
}

/* ------------------------------------------------------------------------ */
/* Time to first token, idle and while a LoRA job trains                     */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int pending;     /* requests in flight (the scheduler's count) */
    atomic_bool stop;
    bool yield;             /* the daemon's yield on/off */
    int steps;
} tr = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, true,
         0 };

/* The daemon's srv_sched_yield: before each micro-step, wait while
 * requests are in flight, at most 1 s. */
static bool train_abort(void *user)
{
    (void)user;
    if (tr.yield && atomic_load(&tr.pending) > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_mutex_lock(&tr.mu);
        while (atomic_load(&tr.pending) > 0)
            if (pthread_cond_timedwait(&tr.cv, &tr.mu, &until))
                break;
        pthread_mutex_unlock(&tr.mu);
    }
    return atomic_load(&tr.stop);
}

static void *trainer_main(void *arg)
{
    eng_trainer *t = arg;
    eng_hooks h = { .abort = train_abort };
    eng_progress p;
    while (!atomic_load(&tr.stop) &&
           eng_trainer_step_index(t) < eng_trainer_total_steps(t)) {
        if (eng_trainer_step(t, &h, &p) == 0)
            tr.steps++;
    }
    return NULL;
}

static eng_trainer *make_trainer(eng_model *m)
{
    const eng_config *c = eng_model_config(m);
    enum { SEQ = 128, N = 400 };
    eng_example *ex = bench_random_examples(N, SEQ, c->vocab_size, 42);
    eng_trainer *t = NULL;
    char err[256];
    if (!ex)
        exit(1);
    eng_train_params p;
    eng_train_params_default(&p);
    p.epochs = 1;
    p.batch_size = 1;       /* micro-steps of one 128-token row */
    p.grad_accum = 4;
    p.max_seq_len = SEQ;
    p.n_threads = 1;        /* the daemon's split on 2 cores: 1 + 1 */
    if (eng_trainer_new(m, &p, ex, N, &t, err, sizeof err)) {
        fprintf(stderr, "bench_serve: trainer: %s\n", err);
        exit(1);
    }
    for (int i = 0; i < N; i++)
        eng_example_done(&ex[i]);
    free(ex);
    return t;
}

/* Median seconds from submitting a PROMPT-token request to its first
 * token, over g_ttft requests 0.3 s apart. */
static double ttft(eng_model *m)
{
    const eng_config *c = eng_model_config(m);
    double t[64];
    int n = g_ttft < 64 ? g_ttft : 64;
    eng_batch *b = NULL;
    uint64_t r = 3;
    if (eng_batch_new(m, 1, &b))
        exit(1);
    for (int k = 0; k < n; k++) {
        struct timespec ts = { 0, 300000000L };
        nanosleep(&ts, NULL);
        int32_t ids[PROMPT];
        eng_session *s = NULL;
        for (int i = 0; i < PROMPT; i++)
            ids[i] = (int32_t)(bench_rng_next(&r) % (uint64_t)c->vocab_size);
        double t0 = bench_now_s();
        atomic_fetch_add(&tr.pending, 1);
        if (eng_session_new(m, PROMPT + 2, 1, &s))
            exit(1);
        eng_batch_item it = { s, ids, PROMPT };
        if (eng_batch_eval(b, &it, 1))
            exit(1);
        volatile int32_t first = argmax(eng_session_logits(s), c->vocab_size);
        (void)first;
        t[k] = bench_now_s() - t0;
        pthread_mutex_lock(&tr.mu);
        atomic_fetch_sub(&tr.pending, 1);
        pthread_cond_broadcast(&tr.cv);
        pthread_mutex_unlock(&tr.mu);
        eng_session_free(s);
    }
    eng_batch_free(b);
    for (int i = 1; i < n; i++) /* insertion sort */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return t[n / 2];
}

static double ttft_training(eng_model *m, bool yield)
{
    eng_trainer *t = make_trainer(m);
    pthread_t th;
    tr.yield = yield;
    tr.steps = 0;
    atomic_store(&tr.stop, false);
    pthread_create(&th, NULL, trainer_main, t);
    struct timespec ts = { 1, 0 }; /* training under way */
    nanosleep(&ts, NULL);
    double v = ttft(m);
    atomic_store(&tr.stop, true);
    pthread_join(th, NULL);
    eng_trainer_free(t);
    return v;
}

/* ------------------------------------------------------------------------ */

static double dmax(double a, double b) { return a > b ? a : b; }

/* Best figures over the rounds (each round measures everything once, in
 * the same order, so load from other processes biases no figure). */
typedef struct figs {
    double bw, b1, b1ad, agg[3], alone[3], prefill, peer_prefill, peak;
} figs;

/* Multiply-adds per token of the layers' linears (q, k, v, o, gate, up,
 * down), and of the LM head. */
static double linear_macs(const eng_config *c)
{
    double q = (double)c->n_heads * c->head_dim;
    double kv = (double)c->n_kv_heads * c->head_dim;
    return (double)c->n_layers *
           (2.0 * c->dim * q + 2.0 * c->dim * kv + 3.0 * c->dim * c->hidden_dim);
}

static double head_macs(const eng_config *c)
{
    return (double)c->vocab_size * c->dim;
}

/* PyTorch's prefill of the same shape (bench/peer_torch.py, at its best:
 * OMP_WAIT_POLICY=PASSIVE, the same threads, best of 3 after a warm-up);
 * 0 when Debian's python3-torch is not there. */
static double peer_prefill(const char *shape, int len)
{
    char cmd[8192], line[512];
    double v = 0, best = 0;
    if (!bench_torch_available())
        return 0;
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=PASSIVE " BENCH_PY " "
             "'%s/bench/peer_torch.py' --shape %s --threads %d --seq %d "
             "--prefill-only", TUNA_SOURCE_ROOT, shape, g_threads, len);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    while (fgets(line, sizeof line, p)) {
        char shp[64], key[64];
        if (sscanf(line, "peer %63s %63s %lf", shp, key, &v) == 3 &&
            !strcmp(key, "prefill_tok_s") && v > best)
            best = v;
    }
    pclose(p);
    return best;
}

static void run_shape(shape *sh)
{
    eng_model *m = NULL;
    eng_adapter *ad[N_ADAPTERS + 1] = { NULL };
    figs f = { 0 };
    if (bench_make_model(sh->file, &sh->cfg, TUNA_SOURCE_ROOT, "bench_serve", &m))
        exit(1);
    const eng_config *c = eng_model_config(m);
    for (int i = 1; i <= N_ADAPTERS; i++)
        if (eng_adapter_new(m, 8 * i, 16.0f, i == 2 ? ENG_TARGET_ALL
                                                    : ENG_TARGET_DEFAULT,
                            (uint64_t)i, &ad[i]))
            exit(1);
    eng_seq_set_threads(g_threads);
    printf("\n== %s (dim %d, %d layers, vocab %d; %d threads) ==\n",
           sh->name, c->dim, c->n_layers, c->vocab_size, g_threads);
    fflush(stdout);
    if (part_on("decode"))
        decode_batch(m, ad, 1, 0, 4); /* warm-up */
    /* same-round pairs: the bandwidth read just before batch 1, and the
     * 16-sequence aggregate of the same round (the machine's load moves
     * between rounds, so a best bandwidth and a best decode from different
     * rounds need not have been possible together) */
    double frac_lo = 1e30, frac_hi = 0, ratio_lo = 1e30, ratio_hi = 0;
    int frac_met = 0, ratio_met = 0;
    for (int round = 0; round < g_repeat; round++) {
        double bw_r = bandwidth_gb_s(g_threads), b1_r = 0;
        f.bw = dmax(f.bw, bw_r);
        if (part_on("decode")) {
            b1_r = g_tokens / decode_batch(m, ad, 1, 0, g_tokens);
            f.b1 = dmax(f.b1, b1_r);
            f.b1ad = dmax(f.b1ad,
                          g_tokens / decode_batch(m, ad, 1, 1, g_tokens));
            for (int k = 0, n = 4; n <= 16; k++, n *= 2) {
                double seq = 0, agg_r = n * g_tokens /
                                        decode_batch(m, ad, n, 0, g_tokens);
                f.agg[k] = dmax(f.agg[k], agg_r);
                if (n == 16) {
                    double frac = b1_r * bench_decode_weight_bytes(c) /
                                  (bw_r * 1e9);
                    frac_lo = frac < frac_lo ? frac : frac_lo;
                    frac_hi = dmax(frac_hi, frac);
                    frac_met += frac >= 0.7;
                    ratio_lo = agg_r / b1_r < ratio_lo ? agg_r / b1_r
                                                       : ratio_lo;
                    ratio_hi = dmax(ratio_hi, agg_r / b1_r);
                    ratio_met += agg_r >= 8 * b1_r;
                    if (g_repeat > 1 && c->dim >= 256)
                        printf("round %d: bandwidth %.1f GB/s, batch 1 %.1f "
                               "tok/s (%.0f%% of its roofline), 16 seqs %.1f "
                               "tok/s (%.1fx)\n", round + 1, bw_r, b1_r,
                               100 * frac, agg_r, agg_r / b1_r);
                    else if (g_repeat > 1) /* weights in cache */
                        printf("round %d: batch 1 %.1f tok/s, 16 seqs %.1f "
                               "tok/s (%.1fx)\n", round + 1, b1_r, agg_r,
                               agg_r / b1_r);
                }
                for (int i = 0; i < n; i++)
                    seq += decode_batch(m, ad, 1, i, g_tokens);
                f.alone[k] = dmax(f.alone[k], n * g_tokens / seq);
            }
        }
        if (part_on("prefill")) {
            f.prefill = dmax(f.prefill, prefill_tok_s(m, 256));
            f.peer_prefill = dmax(f.peer_prefill,
                                  peer_prefill(sh->name, 256));
        }
        f.peak = dmax(f.peak, bench_fma_peak(g_threads));
        if (g_repeat > 1) {
            fprintf(stderr, "round %d: bw %.1f GB/s, b1 %.1f, agg16 %.1f, "
                    "prefill %.1f\n", round + 1, f.bw, f.b1, f.agg[2],
                    f.prefill);
        }
    }
    printf("memory bandwidth (read, %d threads, best of the rounds): "
           "%.1f GB/s\n", g_threads, f.bw);
    if (f.peak > 0)
        printf("f32 multiply-add peak (%d threads, best of the rounds): "
               "%.1f GFLOP/s\n", g_threads, f.peak);
    if (part_on("decode")) {
        double roof = f.bw * 1e9 / bench_decode_weight_bytes(c);
        printf("decode batch 1 (base)          %9.1f tok/s", f.b1);
        if (c->dim >= 256)
            printf("   roofline %.1f tok/s (%.0f MB/token at %.1f GB/s): "
                   "%.0f%% %s\n", roof, bench_decode_weight_bytes(c) / 1e6, f.bw,
                   100 * f.b1 / roof, f.b1 >= 0.7 * roof ? "[>= 70%: met]"
                                                         : "[>= 70%: NOT met]");
        else
            printf("   (weights in cache: no roofline)\n");
        printf("decode batch 1 (rank-8 LoRA)   %9.1f tok/s\n", f.b1ad);
        for (int k = 0, n = 4; n <= 16; k++, n *= 2)
            printf("decode %2d seqs, mixed adapters %8.1f tok/s aggregate "
                   "(one at a time: %.1f tok/s; %.1fx batch 1)%s\n", n,
                   f.agg[k], f.alone[k], f.agg[k] / f.b1,
                   n == 16 && c->dim >= 256
                       ? (f.agg[k] >= 8 * f.b1 ? "  [>= 8x: met]"
                                               : "  [>= 8x: NOT met]")
                       : "");
    }
    if (part_on("decode") && f.peak > 0 && c->dim >= 256) {
        /* the 16-sequence step does 16 tokens' multiply-adds: at best the
         * peak, whatever the kernels */
        double ceil16 = f.peak * 1e9 / (2 * (linear_macs(c) + head_macs(c)));
        printf("  16 seqs: ceiling at 100%% of the f32 peak %.0f tok/s = "
               "%.1fx batch 1; 8x batch 1 (%.0f tok/s) needs %.0f%% of the "
               "peak; measured %.0f%%\n", ceil16, ceil16 / f.b1, 8 * f.b1,
               100 * 8 * f.b1 / ceil16, 100 * f.agg[2] / ceil16);
    }
    if (part_on("decode") && g_repeat > 1 && c->dim >= 256)
        printf("same-round pairs over %d rounds: batch 1 at %.0f-%.0f%% of "
               "the roofline (>= 70%%: met in %d of %d), 16 seqs at "
               "%.1f-%.1fx batch 1 (>= 8x: met in %d of %d)\n", g_repeat,
               100 * frac_lo, 100 * frac_hi, frac_met, g_repeat, ratio_lo,
               ratio_hi, ratio_met, g_repeat);
    if (part_on("prefill")) {
        printf("prefill 256 tokens (batched path) %6.1f tok/s", f.prefill);
        if (f.peer_prefill > 0)
            printf("   PyTorch %.1f tok/s: %.2fx %s", f.peer_prefill,
                   f.prefill / f.peer_prefill,
                   c->dim < 256 ? "(targets: 135M shape)"
                   : f.prefill >= 2 * f.peer_prefill ? "[>= 2x: met]"
                                                     : "[>= 2x: NOT met]");
        else
            printf("   (no PyTorch peer: Debian's python3-torch missing)");
        printf("\n");
        if (f.peak > 0 && c->dim >= 256) {
            /* the last row's LM head once per prompt */
            double ceil_p = f.peak * 1e9 /
                            (2 * (linear_macs(c) + head_macs(c) / 256));
            printf("  prefill: ceiling at 100%% of the f32 peak %.0f tok/s; "
                   "measured %.0f%%", ceil_p, 100 * f.prefill / ceil_p);
            if (f.peer_prefill > 0)
                printf("; 2x PyTorch (%.0f tok/s) needs %.0f%% of the peak",
                       2 * f.peer_prefill, 100 * 2 * f.peer_prefill / ceil_p);
            printf("\n");
        }
    }
    fflush(stdout);
    if (part_on("ttft")) {
        /* time to first token: the daemon's split (1 generation thread) */
        eng_seq_set_threads(1);
        double idle = ttft(m);
        double busy = ttft_training(m, true);
        int steps = tr.steps;
        double busy_no = ttft_training(m, false);
        printf("TTFT (%d-token prompt, 1 gen thread): idle %.1f ms, training "
               "with yield %.1f ms (%.2fx idle%s), training without yield "
               "%.1f ms (%.2fx); %d training steps ran meanwhile\n", PROMPT,
               idle * 1e3, busy * 1e3, busy / idle,
               busy <= 2 * idle ? ", <= 2x: met" : ", <= 2x: NOT met",
               busy_no * 1e3, busy_no / idle, steps);
    }
    fflush(stdout);
    for (int i = 1; i <= N_ADAPTERS; i++)
        eng_adapter_unref(ad[i]);
    eng_model_unref(m);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            g_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc)
            g_shape = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            g_tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ttft") && i + 1 < argc)
            g_ttft = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            g_repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--part") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "decode") ||
                  !strcmp(argv[i + 1], "prefill") ||
                  !strcmp(argv[i + 1], "ttft")))
            g_part = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--shape stories260K|"
                    "smollm2-135m] [--tokens N] [--ttft N] [--repeat N] "
                    "[--part decode|prefill|ttft]\n", argv[0]);
            return 2;
        }
    }
    if (g_threads < 1 || g_tokens < 1 || g_ttft < 1 || g_repeat < 1)
        return 2;
    eng_set_threads(g_threads);
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        if (!g_shape || !strcmp(g_shape, shapes[i].name))
            run_shape(&shapes[i]);
    return 0;
}
