/* SPDX-License-Identifier: MIT */
/*
 * bench_engine.c - one command that measures the engine beside PyTorch.
 *
 * For stories260K (the embedded checkpoint) and a random-weight model shaped
 * like SmolLM2-135M it prints, with the same thread count throughout:
 *
 *   - LoRA training tokens/s: r=8, alpha 16 on q,k,v,o; micro-batch 4 x 256
 *     random token ids with every target in the loss; AdamW; one warm-up
 *     step excluded; tokens = 4 * 256 per step (the positions run through
 *     the model, as the PyTorch peer counts them);
 *   - peak RSS of the training process (a forked child: ru_maxrss via wait4,
 *     so the figure holds the model, the trainer and nothing else);
 *   - prefill tokens/s of a 256-token prompt (best of several runs after a
 *     warm-up) and batch-1 decode tokens/s continuing after that prompt,
 *     both through the session API on token ids (a random model has no
 *     tokenizer), in a second forked child;
 *   - the machine's memory bandwidth (read and STREAM triad, the same
 *     threads, buffers far larger than the caches), and batch-1 decode as a
 *     fraction of its roofline: bandwidth / weight bytes read per token.
 *
 * Then it runs bench/peer_torch.py under Debian's /usr/bin/python3 with
 * OMP_WAIT_POLICY=PASSIVE and the same threads (skipped with a message when
 * torch is missing) and prints a table: metric, tuna, pytorch, ratio and
 * the issues' targets, met or not. --repeat N runs N rounds of each shape
 * (tuna then peer) and keeps each side's best throughput, which tames the
 * noise of other processes on a shared machine. See bench/README.md.
 *
 * Usage: bench_engine [--threads N] [--shape stories260K|smollm2-135m]
 *                     [--no-peer] [--decode N] [--steps N] [--repeat N]
 *                     [--root DIR]
 *                     [--part bw|train|infer]
 */
#include "engine/engine.h"
#include "engine/session.h"
#include "bench_common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TUNA_SOURCE_ROOT
#define TUNA_SOURCE_ROOT "."
#endif

#define BATCH 4
#define SEQ 256

static int g_threads = 2;
static int g_decode = 64;
static int g_min_steps = 3;
static int g_repeat = 1;
static const char *g_root = TUNA_SOURCE_ROOT;
static const char *g_part = NULL; /* NULL all, "bw", "train", "infer" */

static bool part(const char *p)
{
    return !g_part || !strcmp(g_part, p);
}

/* ------------------------------------------------------------------------ */
/* Results: a small table of (shape, metric) -> value per side               */

enum { M_TRAIN, M_RSS, M_PREFILL, M_DECODE, M_COUNT };
static const char *metric_key[M_COUNT] = {
    "train_tok_s", "train_peak_rss_mib", "prefill_tok_s", "decode_tok_s",
};

typedef struct shape {
    const char *name;
    bool file;          /* load models/stories260K instead of random */
    eng_config cfg;
    double tuna[M_COUNT], peer[M_COUNT];
    double infer_rss_mib, weight_bytes;
    bool have_peer;
    bool ran;
} shape;

static shape shapes[] = {
    { .name = "stories260K", .file = true },
    { .name = "smollm2-135m", .file = false,
      .cfg = BENCH_SMOLLM2_135M_CFG },
};
enum { N_SHAPES = sizeof(shapes) / sizeof(shapes[0]) };

/* ------------------------------------------------------------------------ */
/* Forked measurements: the child writes "key value" lines to a pipe        */

typedef void (*child_fn)(shape *sh, FILE *out);

/* Runs fn in a child; parses its lines into vals (by key) and returns the
 * child's peak RSS in MiB, or -1 on failure. */
static double run_child(shape *sh, child_fn fn, const char *const *keys,
                        double *vals, int nkeys)
{
    int fd[2];
    if (pipe(fd))
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        FILE *out = fdopen(fd[1], "w");
        fn(sh, out);
        fclose(out);
        _exit(0);
    }
    close(fd[1]);
    FILE *in = fdopen(fd[0], "r");
    char line[256], key[64];
    double v;
    while (in && fgets(line, sizeof line, in))
        if (sscanf(line, "%63s %lf", key, &v) == 2)
            for (int i = 0; i < nkeys; i++)
                if (!strcmp(key, keys[i]))
                    vals[i] = v;
    if (in)
        fclose(in);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status)) {
        fprintf(stderr, "bench: %s: child failed (status %d)\n",
                sh ? sh->name : "bandwidth", status);
        return -1;
    }
    return ru.ru_maxrss / 1024.0;
}

/* LoRA training: enough examples for the warm-up step plus up to max_steps
 * timed ones; timed steps run until min_steps are done and 2 s have passed. */
static void child_train(shape *sh, FILE *out)
{
    eng_model *m = NULL;
    eng_trainer *t = NULL;
    char err[256] = "";
    if (bench_make_model(sh->file, &sh->cfg, g_root, "bench", &m))
        _exit(1);
    const eng_config *c = eng_model_config(m);
    int max_steps = c->dim >= 256 ? g_min_steps : 200;
    int n_ex = BATCH * (max_steps + 1);
    eng_example *ex = bench_random_examples(n_ex, SEQ, c->vocab_size, 42);
    if (!ex)
        _exit(1);
    eng_train_params p;
    eng_train_params_default(&p);
    p.lora_rank = 8;
    p.lora_alpha = 16.0f;
    p.targets = ENG_TARGET_DEFAULT;
    p.epochs = 1;
    p.batch_size = BATCH;
    p.max_seq_len = SEQ;
    p.learning_rate = 1e-4f;
    p.n_threads = g_threads;
    int rc = eng_trainer_new(m, &p, ex, n_ex, &t, err, sizeof err);
    for (int i = 0; i < n_ex; i++)
        eng_example_done(&ex[i]);
    free(ex);
    if (rc) {
        fprintf(stderr, "bench: trainer: %s (%d)\n", err, rc);
        _exit(1);
    }
    eng_progress pr;
    if (eng_trainer_step(t, NULL, &pr)) /* warm-up */
        _exit(1);
    int steps = 0;
    double t0 = bench_now_s(), dt;
    double worst = 0, best = 1e30;
    do {
        double s0 = bench_now_s();
        if (eng_trainer_step(t, NULL, &pr))
            _exit(1);
        double d = bench_now_s() - s0;
        worst = d > worst ? d : worst;
        best = d < best ? d : best;
        steps++;
        dt = bench_now_s() - t0;
    } while (steps < max_steps && (steps < g_min_steps || dt < 2.0));
    fprintf(out, "train_tok_s %.3f\n", (double)BATCH * SEQ * steps / dt);
    fprintf(out, "train_steps %d\n", steps);
    fprintf(out, "train_step_best_s %.4f\ntrain_step_worst_s %.4f\n", best,
            worst);
    fprintf(out, "train_loss %.4f\n", pr.train_loss);
    eng_trainer_free(t);
    eng_model_unref(m);
}

/* Prefill (best of >= 3 runs, >= 1 s, after a warm-up) then decode
 * g_decode tokens greedily after the prompt. */
static void child_infer(shape *sh, FILE *out)
{
    eng_model *m = NULL;
    eng_session *s = NULL;
    if (bench_make_model(sh->file, &sh->cfg, g_root, "bench", &m))
        _exit(1);
    const eng_config *c = eng_model_config(m);
    int ctx = SEQ + g_decode + 1;
    if (ctx > c->max_seq_len) {
        fprintf(stderr, "bench: context %d > max_seq_len %d\n", ctx,
                c->max_seq_len);
        _exit(1);
    }
    eng_set_threads(g_threads);
    if (eng_session_new(m, ctx, SEQ, &s))
        _exit(1);
    int32_t ids[SEQ];
    uint64_t r = 7;
    for (int i = 0; i < SEQ; i++)
        ids[i] = (int32_t)(bench_rng_next(&r) % (uint64_t)c->vocab_size);
    if (eng_session_eval(s, ids, SEQ)) /* warm-up */
        _exit(1);
    double best = 1e30, t_all = bench_now_s();
    int runs = 0;
    do {
        eng_session_reset(s);
        double t0 = bench_now_s();
        if (eng_session_eval(s, ids, SEQ))
            _exit(1);
        double d = bench_now_s() - t0;
        best = d < best ? d : best;
        runs++;
    } while (runs < 3 || (bench_now_s() - t_all < 1.0 && runs < 1000));
    fprintf(out, "prefill_tok_s %.3f\n", SEQ / best);
    /* decode after the prompt */
    double t0 = bench_now_s();
    for (int i = 0; i < g_decode; i++) {
        int32_t tok = 0;
        for (int j = 1; j < c->vocab_size; j++)
            if (s->logits[j] > s->logits[tok])
                tok = j;
        if (eng_session_eval(s, &tok, 1))
            _exit(1);
    }
    fprintf(out, "decode_tok_s %.3f\n", g_decode / (bench_now_s() - t0));
    eng_session_free(s);
    eng_model_unref(m);
}

/* ------------------------------------------------------------------------ */
/* Memory bandwidth                                                          */

static void child_bandwidth(shape *unused, FILE *out)
{
    int th = g_threads < 64 ? g_threads : 64;
    size_t n_read = (size_t)512 << 20 >> 2;  /* 512 MiB */
    size_t n_tri = (size_t)128 << 20 >> 2;   /* 3 x 128 MiB */
    float *a = bench_bw_alloc(n_read);
    if (!a)
        _exit(1);
    for (size_t i = 0; i < n_read; i++)
        a[i] = (float)(i & 1023);
    fprintf(out, "read_gb_s %.3f\n", bench_bw_run(BENCH_BW_READ, a, NULL, NULL, n_read, th, 5));
    float *b = a + n_tri, *c = b + n_tri;
    fprintf(out, "triad_gb_s %.3f\n", bench_bw_run(BENCH_BW_TRIAD, a, b, c, n_tri, th, 5));
    fprintf(out, "read1_gb_s %.3f\n", bench_bw_run(BENCH_BW_READ, a, NULL, NULL, n_read, 1, 3));
    free(a);
}

/* ------------------------------------------------------------------------ */
/* PyTorch peer                                                              */

static int run_peer(shape *sh, char *why, size_t whylen)
{
    char cmd[8192], line[512];
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=PASSIVE " BENCH_PY " '%s/bench/peer_torch.py' "
             "--shape %s --threads %d --batch %d --seq %d --decode %d",
             g_root, sh->name, g_threads, BATCH, SEQ, g_decode);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, whylen, "cannot run %s", BENCH_PY);
        return -1;
    }
    while (fgets(line, sizeof line, p)) {
        char shp[64], key[64];
        double v;
        if (sscanf(line, "peer %63s %63s %lf", shp, key, &v) != 3 ||
            strcmp(shp, sh->name))
            continue;
        printf("  %s", line);
        for (int i = 0; i < M_COUNT; i++)
            if (!strcmp(key, metric_key[i])) {
                sh->peer[i] = i == M_RSS ? v : v > sh->peer[i] ? v
                                                               : sh->peer[i];
                sh->have_peer = true;
            }
    }
    int st = pclose(p);
    if (st != 0 && !sh->have_peer) {
        snprintf(why, whylen, "peer_torch.py failed (status %d)", st);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                    */

static void loadavg(char *buf, size_t len)
{
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = '\0';
    if (f) {
        if (fgets(buf, (int)len, f))
            buf[strcspn(buf, "\n")] = '\0';
        fclose(f);
    }
}

static void row(const char *metric, double tuna, double peer, bool have_peer,
                bool higher_better, const char *target, int met)
{
    char t[32], p[32], r[32];
    snprintf(t, sizeof t, tuna > 0 ? "%.1f" : "-", tuna);
    snprintf(p, sizeof p, have_peer && peer > 0 ? "%.1f" : "-", peer);
    if (have_peer && peer > 0 && tuna > 0)
        snprintf(r, sizeof r, "%.2fx", tuna / peer);
    else
        snprintf(r, sizeof r, "-");
    (void)higher_better;
    printf("  %-28s %10s %10s %8s  %-24s %s\n", metric, t, p, r,
           target ? target : "", met < 0 ? "" : met ? "met" : "NOT MET");
}

static double best(double a, double b)
{
    return a > b ? a : b;
}

/* One round for a shape: tuna's children, then the peer. Throughputs keep
 * the best round (both sides alike, so load from other processes biases
 * neither); RSS keeps the last. */
static void measure_shape(shape *sh, int rep, bool peer, bool have_torch)
{
    static const char *tk[] = { "train_tok_s", "train_steps",
                                "train_step_best_s", "train_step_worst_s",
                                "train_loss" };
    static const char *ik[] = { "prefill_tok_s", "decode_tok_s" };
    double tv[5] = { 0 }, iv[2] = { 0 };
    char la[128];
    loadavg(la, sizeof la);
    printf("%s, round %d/%d (loadavg %s)\n", sh->name, rep + 1, g_repeat, la);
    if (part("train")) {
        double rss = run_child(sh, child_train, tk, tv, 5);
        sh->tuna[M_TRAIN] = best(sh->tuna[M_TRAIN], tv[0]);
        sh->tuna[M_RSS] = rss;
        printf("  tuna train %.1f tok/s over %.0f steps (step best %.3f s, "
               "worst %.3f s, loss %.3f), peak RSS %.0f MiB\n",
               tv[0], tv[1], tv[2], tv[3], tv[4], rss);
    }
    if (part("infer")) {
        sh->infer_rss_mib = run_child(sh, child_infer, ik, iv, 2);
        sh->tuna[M_PREFILL] = best(sh->tuna[M_PREFILL], iv[0]);
        sh->tuna[M_DECODE] = best(sh->tuna[M_DECODE], iv[1]);
        printf("  tuna prefill %.1f tok/s, decode %.1f tok/s, peak RSS %.0f "
               "MiB\n", iv[0], iv[1], sh->infer_rss_mib);
    }
    if (!peer) {
        if (!rep)
            printf("  PyTorch peer skipped\n");
        return;
    }
    if (!have_torch) {
        if (!rep)
            printf("  PyTorch peer SKIPPED: %s with torch not found "
                   "(apt install python3-torch)\n", BENCH_PY);
        return;
    }
    char why[256] = "";
    printf("  PyTorch peer (OMP_WAIT_POLICY=PASSIVE, %d threads):\n",
           g_threads);
    if (run_peer(sh, why, sizeof why))
        printf("  PyTorch peer SKIPPED: %s\n", why);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--threads N] [--shape stories260K|smollm2-135m]\n"
            "          [--no-peer] [--decode N] [--steps N] [--repeat N]\n"
            "          [--root DIR]\n"
            "          [--part bw|train|infer]  (one part alone, no peer: "
            "for profiling)\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    bool peer = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            g_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--no-peer"))
            peer = false;
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc)
            g_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            g_min_steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            g_repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--root") && i + 1 < argc)
            g_root = argv[++i];
        else if (!strcmp(argv[i], "--part") && i + 1 < argc)
            g_part = argv[++i], peer = false;
        else
            usage(argv[0]);
    }
    if (g_threads < 1 || g_decode < 1 || g_min_steps < 1 || g_repeat < 1)
        usage(argv[0]);
    if (only) {
        bool found = false;
        for (int i = 0; i < N_SHAPES; i++)
            found |= !strcmp(only, shapes[i].name);
        if (!found)
            usage(argv[0]);
    }
    /* The engine's BLAS threads; the peer gets the same count. */
    char nt[16];
    snprintf(nt, sizeof nt, "%d", g_threads);
    setenv("OPENBLAS_NUM_THREADS", nt, 1);

    char la0[128], la1[128], date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&now));
    loadavg(la0, sizeof la0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_engine %s: threads %d, %ld online CPUs, loadavg %s\n", date,
           g_threads, ncpu, la0);
    printf("LoRA r=8 alpha=16 on q,k,v,o; batch %d x %d tokens; prefill %d "
           "tokens; decode %d tokens after it\n\n", BATCH, SEQ, SEQ, g_decode);

    /* memory bandwidth */
    static const char *bw_keys[] = { "read_gb_s", "triad_gb_s", "read1_gb_s" };
    double bw[3] = { 0 };
    printf("memory bandwidth (%d threads, 512 MiB read / 3x128 MiB triad, "
           "best of 5) ...\n", g_threads);
    if (part("bw"))
        run_child(NULL, child_bandwidth, bw_keys, bw, 3);
    printf("  read %.1f GB/s, triad %.1f GB/s (read on 1 thread %.1f GB/s)\n\n",
           bw[0], bw[1], bw[2]);

    bool have_torch = peer && bench_torch_available();
    for (int i = 0; i < N_SHAPES; i++) {
        shape *sh = &shapes[i];
        if (only && strcmp(only, sh->name))
            continue;
        sh->ran = true;
        /* the weight bytes per decoded token, from the config */
        eng_model *m = NULL;
        if (sh->file && bench_make_model(sh->file, &sh->cfg, g_root, "bench", &m) == 0)
            sh->cfg = *eng_model_config(m);
        eng_model_unref(m);
        sh->weight_bytes = bench_decode_weight_bytes(&sh->cfg);
        for (int rep = 0; rep < g_repeat; rep++)
            measure_shape(sh, rep, peer, have_torch);
    }

    loadavg(la1, sizeof la1);
    printf("==== summary (threads %d, best of %d round(s); loadavg before %s, "
           "after %s) ====\n", g_threads, g_repeat, la0, la1);
    printf("memory bandwidth: read %.1f GB/s, triad %.1f GB/s\n", bw[0],
           bw[1]);
    for (int i = 0; i < N_SHAPES; i++) {
        shape *sh = &shapes[i];
        if (!sh->ran)
            continue;
        bool tgt = !sh->file; /* the issues' targets are on the 135M shape */
        bool hp = sh->have_peer;
        printf("\n%s\n  %-28s %10s %10s %8s  %-24s %s\n", sh->name, "metric",
               "tuna", "pytorch", "ratio", "target", "");
        double rt = hp && sh->peer[M_TRAIN] > 0 ?
                    sh->tuna[M_TRAIN] / sh->peer[M_TRAIN] : 0;
        double rp = hp && sh->peer[M_PREFILL] > 0 ?
                    sh->tuna[M_PREFILL] / sh->peer[M_PREFILL] : 0;
        row("LoRA train tok/s", sh->tuna[M_TRAIN], sh->peer[M_TRAIN], hp, true,
            tgt ? ">= 1.5x pytorch (#2)" : NULL,
            tgt && hp ? rt >= 1.5 : -1);
        row("prefill tok/s (256)", sh->tuna[M_PREFILL], sh->peer[M_PREFILL],
            hp, true, tgt ? ">= 1.5x pytorch (#2)" : NULL,
            tgt && hp ? rp >= 1.5 : -1);
        if (tgt)
            row("", 0, 0, false, true, ">= 2x pytorch (#6)",
                hp ? rp >= 2.0 : -1);
        row("decode tok/s (batch 1)", sh->tuna[M_DECODE], sh->peer[M_DECODE],
            hp, true, NULL, -1);
        row("train peak RSS MiB", sh->tuna[M_RSS], sh->peer[M_RSS], hp, false,
            tgt ? "< 1536 MiB (#2)" : NULL,
            tgt ? sh->tuna[M_RSS] > 0 && sh->tuna[M_RSS] < 1536 : -1);
        double roof = bw[0] * 1e9 / sh->weight_bytes;
        double frac = roof > 0 ? sh->tuna[M_DECODE] / roof : 0;
        printf("  decode roofline: %.1f MB weights/token / %.1f GB/s read = "
               "%.1f tok/s; tuna decode = %.0f%% of it%s\n",
               sh->weight_bytes / 1e6, bw[0], roof, frac * 100,
               sh->file ? " (weights fit in cache: not bandwidth bound)" :
               frac >= 0.70 ? "  [>= 70% (#6): met]" :
                              "  [>= 70% (#6): NOT MET]");
        if (!hp)
            printf("  (no PyTorch figures: peer skipped)\n");
    }
    printf("\nnote: timings are noisy when other processes share the cores "
           "(see the loadavg above).\n");
    return 0;
}
