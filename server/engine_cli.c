/* SPDX-License-Identifier: MIT */
/*
 * engine_cli.c - `tunad generate` and `tunad train`: the engine library
 * driven from the command line.
 *
 *   tunad generate [--model PATH] [--tokenizer FILE] [--adapter DIR]
 *                  [--temperature T] [--top-p P] [--top-k K]
 *                  [--max-tokens N] [--seed S] [--stop STR]... [--chat]
 *                  [--threads N] "prompt"
 *   tunad train --data FILE.jsonl --out DIR [--model PATH] [--tokenizer F]
 *               [--epochs N] [--lr X] [--rank R] [--alpha A]
 *               [--dropout D] [--targets q,k,v,o,gate,up,down]
 *               [--batch-size B] [--grad-accum G] [--max-seq-len L]
 *               [--warmup N] [--schedule cosine|linear|constant]
 *               [--weight-decay W] [--seed S] [--threads N] [--packing]
 *
 * PATH is a llama2.c checkpoint (.bin), a folder holding one (with its
 * tokenizer.bin or tok*.bin beside it, like models/stories260K), a Hugging
 * Face model folder (config.json) or a GGUF file; without --model the
 * embedded stories260K is used. Generation streams the completion to stdout
 * as it is produced; training prints one progress line per step on stderr
 * and writes a PEFT adapter folder. Ctrl-C stops either cleanly.
 */
#include "server/engine_cli.h"
#include "api/api.h"
#include "engine/engine.h"
#include "engine/decode.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static bool abort_hook(void *user)
{
    (void)user;
    return interrupted != 0;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (int)n : 1;
}

/* ------------------------------------------------------------------------ */
/* Finding a model and its tokenizer                                         */

static bool is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static bool is_gguf(const char *path)
{
    char magic[4] = { 0 };
    FILE *f = fopen(path, "rb");
    bool yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);

    if (f)
        fclose(f);
    return yes;
}

static bool is_tokenizer_name(const char *name)
{
    return !strcmp(name, "tokenizer.bin") || !strncmp(name, "tok", 3);
}

/* In a llama2.c folder: the largest .bin that is not a tokenizer is the
 * checkpoint; tokenizer.bin or a tok*.bin is its tokenizer. */
static int scan_llama2c_dir(const char *dir, char *model, char *tok,
                            size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    off_t best = -1;

    if (!d)
        return -errno;
    model[0] = tok[0] = '\0';
    while ((e = readdir(d))) {
        char path[4096];
        struct stat st;

        if (!has_suffix(e->d_name, ".bin"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) || !S_ISREG(st.st_mode))
            continue;
        if (is_tokenizer_name(e->d_name)) {
            if (!tok[0] || !strcmp(e->d_name, "tokenizer.bin"))
                snprintf(tok, cap, "%s", path);
        } else if (st.st_size > best) {
            best = st.st_size;
            snprintf(model, cap, "%s", path);
        }
    }
    closedir(d);
    return model[0] ? 0 : -ENOENT;
}

static const char *default_model_dir(void)
{
#ifdef TUNA_SOURCE_MODELS_DIR
    if (is_dir(TUNA_SOURCE_MODELS_DIR "/stories260K"))
        return TUNA_SOURCE_MODELS_DIR "/stories260K";
#endif
#ifdef TUNA_INSTALL_MODELS_DIR
    if (is_dir(TUNA_INSTALL_MODELS_DIR "/stories260K"))
        return TUNA_INSTALL_MODELS_DIR "/stories260K";
#endif
    return "models/stories260K";
}

static int load_tokenizer_file(const char *path, const eng_model *m,
                               eng_tokenizer **ret, char *err, size_t errlen)
{
    if (has_suffix(path, ".json") || is_dir(path))
        return eng_tokenizer_load_hf(path, ret, err, errlen);
    if (is_gguf(path))
        return eng_tokenizer_load_gguf(path, ret, err, errlen);
    return eng_tokenizer_load_llama2c(path, eng_model_config(m)->vocab_size,
                                      ret, err, errlen);
}

/* Loads the model at path (or the embedded one) and its tokenizer (tok_path
 * if given, else the one that belongs with the model). */
static int load_model(const char *path, const char *tok_path,
                      eng_model **ret_m, eng_tokenizer **ret_t)
{
    char model_file[4096], tok_file[4096] = "", err[512] = "";
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    int rc;

    if (!path)
        path = default_model_dir();
    snprintf(model_file, sizeof(model_file), "%s", path);
    if (is_dir(path)) {
        char cfg[4096];

        snprintf(cfg, sizeof(cfg), "%s/config.json", path);
        if (is_file(cfg)) {
            rc = eng_model_load_hf(path, &m, err, sizeof(err));
            snprintf(tok_file, sizeof(tok_file), "%s", path);
        } else if ((rc = scan_llama2c_dir(path, model_file, tok_file,
                                          sizeof(model_file))) == 0) {
            rc = eng_model_load_llama2c(model_file, &m, err, sizeof(err));
        } else {
            snprintf(err, sizeof(err), "%s: no config.json or .bin checkpoint",
                     path);
        }
    } else {
        rc = eng_model_load(path, &m, err, sizeof(err));
        if (!rc && is_gguf(path)) {
            snprintf(tok_file, sizeof(tok_file), "%s", path);
        } else if (!rc) {
            char dir[4096], mtmp[4096];
            const char *slash = strrchr(path, '/');

            snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1,
                     slash ? path : ".");
            scan_llama2c_dir(dir, mtmp, tok_file, sizeof(tok_file));
        }
    }
    if (rc) {
        fprintf(stderr, "tunad: cannot load model %s: %s\n", path,
                err[0] ? err : strerror(-rc));
        return rc;
    }
    /* decode streams every weight per token: huge pages of our own when
     * they fit in half of the free memory (tunad serve's --weights auto) */
    {
        size_t avail = eng_mem_available();

        if (eng_model_pin(m, avail == SIZE_MAX ? avail : avail / 2) < 0)
            fprintf(stderr, "tunad: weights stay memory-mapped (out of "
                    "memory copying them)\n");
    }
    if (tok_path)
        snprintf(tok_file, sizeof(tok_file), "%s", tok_path);
    if (!tok_file[0]) {
        fprintf(stderr, "tunad: no tokenizer found for %s (use --tokenizer)\n",
                path);
        eng_model_unref(m);
        return -ENOENT;
    }
    rc = load_tokenizer_file(tok_file, m, &t, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "tunad: cannot load tokenizer %s: %s\n", tok_file,
                err[0] ? err : strerror(-rc));
        eng_model_unref(m);
        return rc;
    }
    *ret_m = m;
    *ret_t = t;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Option parsing helpers                                                    */

static int parse_int(const char *opt, const char *s, long lo, long hi,
                     int *ret)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "tunad: --%s wants an integer in [%ld, %ld], got '%s'\n",
                opt, lo, hi, s);
        return -EINVAL;
    }
    *ret = (int)v;
    return 0;
}

static int parse_float(const char *opt, const char *s, double lo, double hi,
                       float *ret)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "tunad: --%s wants a number in [%g, %g], got '%s'\n",
                opt, lo, hi, s);
        return -EINVAL;
    }
    *ret = (float)v;
    return 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "tunad: --%s wants a non-negative integer, got '%s'\n",
                opt, s);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

static int parse_targets(const char *s, unsigned *ret)
{
    static const char *names[] = { "q", "k", "v", "o", "gate", "up", "down" };
    unsigned t = 0;
    char buf[256], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", s);
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        unsigned bit = 0;

        for (int i = 0; i < 7; i++)
            if (!strcmp(w, names[i]) ||
                (strlen(w) > 5 && !strncmp(w + strlen(w) - 5, "_proj", 5) &&
                 !strncmp(w, names[i], strlen(w) - 5) &&
                 strlen(names[i]) == strlen(w) - 5))
                bit = 1u << i;
        if (!strcmp(w, "all"))
            bit = ENG_TARGET_ALL;
        if (!bit) {
            fprintf(stderr, "tunad: --targets: unknown module '%s' (q, k, v, o, "
                            "gate, up, down, all)\n", w);
            return -EINVAL;
        }
        t |= bit;
    }
    if (!t)
        return -EINVAL;
    *ret = t;
    return 0;
}

static void install_sigint(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------ */
/* generate                                                                  */

static const char generate_usage[] =
    "usage: tunad generate [options] \"prompt\"\n"
    "  --model PATH        llama2.c .bin or folder, Hugging Face folder, GGUF\n"
    "                      (default: the embedded stories260K)\n"
    "  --tokenizer FILE    tokenizer.bin, tokenizer.json or GGUF\n"
    "  --adapter DIR       LoRA adapter folder (adapter_config.json + "
    "safetensors)\n"
    "  --temperature T     0 = greedy (default 0.8)\n"
    "  --top-p P           nucleus sampling (default 0.95)\n"
    "  --top-k K           keep the K likeliest tokens (default 0 = off)\n"
    "  --max-tokens N      completion length limit (default 256)\n"
    "  --seed S            sampling seed (default: from the clock)\n"
    "  --stop STR          stop string, repeatable\n"
    "  --chat              wrap the prompt as a user turn of the default chat\n"
    "                      template and stop at <|end|>\n"
    "  --threads N         compute threads (default: all cores)\n";

static bool print_piece(void *user, const char *text, size_t len)
{
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* How a generation ended (eng_seq's done callback). */
typedef struct gen_end {
    eng_finish finish;
    int prompt_tokens, completion_tokens;
} gen_end;

static void on_done(void *user, eng_finish finish, int prompt_tokens,
                    int completion_tokens)
{
    gen_end *e = user;

    e->finish = finish;
    e->prompt_tokens = prompt_tokens;
    e->completion_tokens = completion_tokens;
}

/* The daemon's decode path (eng_seq steps over a batch of one): the same
 * sampling as eng_generate, through the batched forward on every thread
 * (eng_generate's session decode is single-threaded: 52.5 against 63-67
 * tok/s on the 135M shape, bench_engine against bench_serve, memory at
 * ~38 GB/s). -ECANCELED when interrupted. */
static int generate_batched(eng_model *m, const eng_adapter *a,
                            const eng_tokenizer *t, const char *prompt,
                            const eng_sample_params *sp, gen_end *end,
                            char *err, size_t errlen)
{
    eng_seq_params p = { 0 };
    eng_seq *q = NULL;
    eng_batch *b = NULL;
    int32_t *ids = NULL;
    int n = 0, rc;

    if ((rc = eng_prompt_encode(t, prompt, strlen(prompt), false, &ids, &n))) {
        snprintf(err, errlen, "prompt is not valid UTF-8");
        return rc;
    }
    p.tok = t;
    p.adapter = a;
    p.ids = ids;
    p.n_ids = n;
    p.sp = *sp;
    p.text = print_piece;
    p.done = on_done;
    p.user = end;
    eng_seq_set_threads(sp->n_threads);
    if (!(rc = eng_seq_new(m, &p, &q, err, errlen)) &&
        !(rc = eng_batch_new(m, 1, &b)))
        while ((rc = eng_seq_step(b, &q, 1, 512)) > 0)
            if (interrupted) {
                rc = -ECANCELED;
                break;
            }
    eng_batch_free(b);
    eng_seq_free(q);
    free(ids);
    return rc;
}

typedef struct gen_opts {
    const char *model, *tokenizer, *adapter, *prompt;
    const char *stops[16];
    bool chat;
    eng_sample_params sp;
} gen_opts;

static int parse_generate(int argc, char **argv, gen_opts *o)
{
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },
        { "tokenizer", required_argument, NULL, 't' },
        { "adapter", required_argument, NULL, 'a' },
        { "temperature", required_argument, NULL, 'T' },
        { "top-p", required_argument, NULL, 'p' },
        { "top-k", required_argument, NULL, 'k' },
        { "max-tokens", required_argument, NULL, 'n' },
        { "seed", required_argument, NULL, 's' },
        { "stop", required_argument, NULL, 'S' },
        { "chat", no_argument, NULL, 'c' },
        { "threads", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c, rc = 0;

    eng_sample_params_default(&o->sp);
    o->sp.temperature = 0.8f;
    o->sp.top_p = 0.95f;
    o->sp.max_tokens = 256;
    o->sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    o->sp.n_threads = default_threads();
    o->sp.stop = o->stops;
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'a': o->adapter = optarg; break;
        case 'T': rc = parse_float("temperature", optarg, 0, 100, &o->sp.temperature); break;
        case 'p': rc = parse_float("top-p", optarg, 0, 1, &o->sp.top_p); break;
        case 'k': rc = parse_int("top-k", optarg, 0, 1 << 30, &o->sp.top_k); break;
        case 'n': rc = parse_int("max-tokens", optarg, 0, 1 << 20, &o->sp.max_tokens); break;
        case 's': rc = parse_u64("seed", optarg, &o->sp.seed); break;
        case 'j': rc = parse_int("threads", optarg, 1, 1024, &o->sp.n_threads); break;
        case 'c': o->chat = true; break;
        case 'S':
            if (o->sp.n_stop == 15) {
                fprintf(stderr, "tunad: at most 15 --stop strings\n");
                rc = -EINVAL;
            } else {
                o->stops[o->sp.n_stop++] = optarg;
            }
            break;
        case 'h': fputs(generate_usage, stdout); return 1;
        default: rc = -EINVAL; break;
        }
    }
    if (!rc && optind != argc - 1) {
        fprintf(stderr, "tunad: generate wants exactly one prompt argument\n");
        rc = -EINVAL;
    }
    if (rc) {
        fputs(generate_usage, stderr);
        return rc;
    }
    o->prompt = argv[optind];
    if (o->chat)
        o->stops[o->sp.n_stop++] = "<|end|>";
    return 0;
}

static int cmd_generate(int argc, char **argv)
{
    gen_opts o = { 0 };
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    eng_adapter *a = NULL;
    gen_end e = { ENG_FINISH_LENGTH, 0, 0 };
    char *chat = NULL, err[512] = "";
    double t0;
    int rc = parse_generate(argc, argv, &o);

    if (rc)
        return rc > 0 ? 0 : 2;
    if (load_model(o.model, o.tokenizer, &m, &t))
        return 1;
    if (o.adapter && (rc = eng_adapter_load(m, o.adapter, &a, err, sizeof(err)))) {
        fprintf(stderr, "tunad: cannot load adapter %s: %s\n", o.adapter,
                err[0] ? err : strerror(-rc));
        goto out;
    }
    if (o.chat) {
        eng_message msg = { "user", o.prompt };

        if ((rc = eng_chat_render_default(&msg, 1, true, &chat)))
            goto out;
    }
    install_sigint();
    t0 = now_s();
    rc = generate_batched(m, a, t, chat ? chat : o.prompt, &o.sp, &e, err,
                          sizeof(err));
    if (rc == 0) {
        double dt = now_s() - t0;

        putchar('\n');
        fflush(stdout);
        fprintf(stderr, "[%d prompt + %d completion tokens, %.1f tokens/s, "
                        "finish: %s]\n", e.prompt_tokens, e.completion_tokens,
                dt > 0 ? e.completion_tokens / dt : 0.0,
                e.finish == ENG_FINISH_STOP ? "stop" : "length");
    } else if (rc == -ECANCELED) {
        fprintf(stderr, "\ntunad: interrupted\n");
    } else {
        fprintf(stderr, "tunad: generate: %s\n", err[0] ? err : strerror(-rc));
    }
out:
    free(chat);
    eng_adapter_unref(a);
    eng_tokenizer_unref(t);
    eng_model_unref(m);
    return rc == 0 ? 0 : rc == -ECANCELED ? 130 : 1;
}

/* ------------------------------------------------------------------------ */
/* train                                                                     */

static const char train_usage[] =
    "usage: tunad train --data FILE.jsonl --out DIR [options]\n"
    "  --model PATH        base model (default: the embedded stories260K)\n"
    "  --tokenizer FILE    tokenizer (default: the model's)\n"
    "  --epochs N          (default 3)      --lr X        peak learning rate\n"
    "  --rank R            LoRA rank (8)    --alpha A     LoRA alpha (16)\n"
    "  --dropout D         LoRA dropout (0) --targets L   q,k,v,o,gate,up,down\n"
    "  --batch-size B      (4)              --grad-accum G (1)\n"
    "  --max-seq-len L     (256)            --warmup N    warmup steps (0)\n"
    "  --schedule S        cosine|linear|constant\n"
    "  --weight-decay W    (0)              --seed S      (42)\n"
    "  --packing           pack examples into full rows\n"
    "  --threads N         BLAS threads (default: all cores)\n";

typedef struct train_opts {
    const char *model, *tokenizer, *data, *out;
    eng_train_params p;
} train_opts;

static int parse_schedule(const char *s, eng_schedule *ret)
{
    if (!strcmp(s, "cosine"))
        *ret = ENG_SCHED_COSINE;
    else if (!strcmp(s, "linear"))
        *ret = ENG_SCHED_LINEAR;
    else if (!strcmp(s, "constant"))
        *ret = ENG_SCHED_CONSTANT;
    else {
        fprintf(stderr, "tunad: --schedule: cosine, linear or constant\n");
        return -EINVAL;
    }
    return 0;
}

static int parse_train(int argc, char **argv, train_opts *o)
{
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },
        { "tokenizer", required_argument, NULL, 't' },
        { "data", required_argument, NULL, 'd' },
        { "out", required_argument, NULL, 'o' },
        { "epochs", required_argument, NULL, 'e' },
        { "lr", required_argument, NULL, 'l' },
        { "rank", required_argument, NULL, 'r' },
        { "alpha", required_argument, NULL, 'A' },
        { "dropout", required_argument, NULL, 'D' },
        { "targets", required_argument, NULL, 'g' },
        { "batch-size", required_argument, NULL, 'b' },
        { "grad-accum", required_argument, NULL, 'G' },
        { "max-seq-len", required_argument, NULL, 'L' },
        { "warmup", required_argument, NULL, 'w' },
        { "schedule", required_argument, NULL, 'c' },
        { "weight-decay", required_argument, NULL, 'W' },
        { "seed", required_argument, NULL, 's' },
        { "packing", no_argument, NULL, 'P' },
        { "threads", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    eng_train_params *p = &o->p;
    int c, rc = 0;

    eng_train_params_default(p);
    p->n_threads = default_threads();
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'd': o->data = optarg; break;
        case 'o': o->out = optarg; break;
        case 'e': rc = parse_int("epochs", optarg, 1, 1000, &p->epochs); break;
        case 'l': rc = parse_float("lr", optarg, 0, 1, &p->learning_rate); break;
        case 'r': rc = parse_int("rank", optarg, 1, 1024, &p->lora_rank); break;
        case 'A': rc = parse_float("alpha", optarg, 0, 1e6, &p->lora_alpha); break;
        case 'D': rc = parse_float("dropout", optarg, 0, 0.99, &p->lora_dropout); break;
        case 'g': rc = parse_targets(optarg, &p->targets); break;
        case 'b': rc = parse_int("batch-size", optarg, 1, 4096, &p->batch_size); break;
        case 'G': rc = parse_int("grad-accum", optarg, 1, 4096, &p->grad_accum); break;
        case 'L': rc = parse_int("max-seq-len", optarg, 2, 1 << 20, &p->max_seq_len); break;
        case 'w': rc = parse_int("warmup", optarg, 0, 1 << 30, &p->warmup_steps); break;
        case 'c': rc = parse_schedule(optarg, &p->schedule); break;
        case 'W': rc = parse_float("weight-decay", optarg, 0, 10, &p->weight_decay); break;
        case 's': rc = parse_u64("seed", optarg, &p->seed); break;
        case 'P': p->packing = true; break;
        case 'j': rc = parse_int("threads", optarg, 1, 1024, &p->n_threads); break;
        case 'h': fputs(train_usage, stdout); return 1;
        default: rc = -EINVAL; break;
        }
    }
    if (!rc && (!o->data || !o->out || optind != argc)) {
        fprintf(stderr, "tunad: train wants --data and --out (and no other "
                        "arguments)\n");
        rc = -EINVAL;
    }
    if (rc)
        fputs(train_usage, stderr);
    return rc;
}

static void on_progress(void *user, const eng_progress *pr)
{
    (void)user;
    fprintf(stderr, "step %d/%d  epoch %d  loss %.4f  lr %.3g  grad-norm %.3f  "
                    "%.0f tokens/s\n", pr->step, pr->total_steps, pr->epoch,
            pr->train_loss, pr->lr, pr->grad_norm, pr->tokens_per_second);
}

static int cmd_train(int argc, char **argv)
{
    train_opts o = { 0 };
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    eng_trainer *tr = NULL;
    eng_example *ex = NULL;
    eng_hooks h = { .progress = on_progress, .abort = abort_hook };
    char err[512] = "";
    int n = 0, truncated = 0, rc = parse_train(argc, argv, &o);

    if (rc)
        return rc > 0 ? 0 : 2;
    if (o.p.full_finetune) /* no flag sets it: an adapter is what we save */
        return 2;
    if (load_model(o.model, o.tokenizer, &m, &t))
        return 1;
    rc = api_dataset_load_examples(o.data, t, o.p.max_seq_len, &ex, &n,
                                   &truncated, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "tunad: %s: %s\n", o.data, err[0] ? err : strerror(-rc));
        goto out;
    }
    fprintf(stderr, "%d examples (%d truncated to %d tokens)\n", n, truncated,
            o.p.max_seq_len);
    if ((rc = eng_trainer_new(m, &o.p, ex, n, &tr, err, sizeof(err)))) {
        fprintf(stderr, "tunad: train: %s\n", err[0] ? err : strerror(-rc));
        goto out;
    }
    install_sigint();
    rc = eng_trainer_run(tr, &h);
    if (rc == -ECANCELED) {
        fprintf(stderr, "tunad: interrupted; no adapter written\n");
        goto out;
    } else if (rc) {
        fprintf(stderr, "tunad: train: %s\n", strerror(-rc));
        goto out;
    }
    rc = eng_adapter_save(eng_trainer_adapter(tr), o.out,
                          o.model ? o.model : "stories260K", err, sizeof(err));
    if (rc)
        fprintf(stderr, "tunad: cannot write %s: %s\n", o.out,
                err[0] ? err : strerror(-rc));
    else
        fprintf(stderr, "adapter written to %s\n", o.out);
out:
    eng_trainer_free(tr);
    api_examples_free(ex, n);
    eng_tokenizer_unref(t);
    eng_model_unref(m);
    return rc == 0 ? 0 : rc == -ECANCELED ? 130 : 1;
}

int srv_engine_cli(int argc, char **argv)
{
    /* getopt sees "generate --model ..." as its own argv. */
    if (argc >= 2 && !strcmp(argv[1], "generate"))
        return cmd_generate(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "train"))
        return cmd_train(argc - 1, argv + 1);
    fprintf(stderr, "tunad: engine commands are train and generate\n");
    return 2;
}
