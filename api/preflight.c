/* SPDX-License-Identifier: MIT */
/*
 * preflight.c - POST /jobs?dry_run=true: what a job would do, measured on
 * this machine, without queueing or storing anything.
 *
 * jobs.c validates the request exactly as for a real job (same checks, same
 * "auto" choices), then hands the dataset and the hyperparameters here:
 *
 *   1. tokens: the dataset is tokenized with the base model's tokenizer, as
 *      the job runner will; examples longer than max_seq_len are counted as
 *      truncated, examples left with no loss tokens as skipped;
 *   2. the validation split is the runner's (the same seeded shuffle), so
 *      the training rows are exactly the job's;
 *   3. steps: a real trainer is built on those rows, which plans the epochs
 *      exactly as the job will (micro-batches, packing, grad_accum);
 *   4. time: that trainer runs a few real optimizer steps (the first one
 *      warms up and is not timed), and the measured seconds per trained
 *      token are extrapolated to every epoch, plus the validation passes
 *      (forward only, counted as a third of a training step's cost);
 *   5. RAM: computed from the model and training sizes (adapter, gradients
 *      and AdamW moments, the activation block the trainer allocates,
 *      the tokenized data), and checked against the growth of this
 *      process's resident memory while the trainer above existed.
 *
 * The measurement uses the training threads of one worker; when other jobs
 * are training at the same time it is pessimistic, as the job will be.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Tokenize whole records (up to this many tokens) to count truncation. */
#define PF_MAX_TOKENS (1 << 16)
/* Measured steps: at most this many after the warm-up, or this much time. */
#define PF_MAX_TIMED_STEPS 3
#define PF_TIME_BUDGET_S 1.5
/* Validation passes the runner makes in a run (server/runner.c). */
#define PF_EVALS_PER_RUN 10

typedef struct pf {
    eng_example *ex;           /* every row, untruncated */
    int n;
    eng_example *train;        /* views: the job's training rows, in order */
    int n_train, n_val;
    int64_t tokens_all;        /* whole records */
    int64_t tokens_train;      /* training rows as trained (truncated) */
    int64_t tokens_val;
    int max_len;               /* longest record */
    int truncated, skipped;
    eng_train_params p;
    double val_split;
    /* measurements */
    int total_steps, timed_steps;
    double sec_per_token, sec_per_step;
    int64_t rss_before, rss_peak;
} pf;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident set size of this process, bytes; 0 when unknown. */
static int64_t rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

static int masked_in(const eng_example *e, int len)
{
    int n = 0;
    for (int i = 1; i < len; i++)
        n += e->mask[i] != 0;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Data                                                                      */

/* The runner's split (server/runner.c split()): a seeded Fisher-Yates over
 * the row indices; the first n_val are validation, the rest train. */
static int split(pf *f)
{
    int n = f->n, n_val = 0;
    if (f->val_split > 0 && n >= 2) {
        n_val = (int)lround(f->val_split * n);
        n_val = n_val < 1 ? 1 : n_val > n - 1 ? n - 1 : n_val;
    }
    int *idx = malloc(sizeof(*idx) * (size_t)(n ? n : 1));
    f->train = malloc(sizeof(*f->train) * (size_t)(n ? n : 1));
    if (!idx || !f->train) {
        free(idx);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++)
        idx[i] = i;
    uint64_t s = f->p.seed * 0x9E3779B97F4A7C15ull + 0x5851F42D4C957F2Dull;
    for (int i = n - 1; n_val && i > 0; i--) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        int k = (int)(s % (uint64_t)(i + 1));
        int t = idx[i]; idx[i] = idx[k]; idx[k] = t;
    }
    int L = f->p.max_seq_len;
    for (int i = 0; i < n; i++) {
        const eng_example *e = &f->ex[idx[i]];
        int len = e->n < L ? e->n : L;
        if (i < n_val) {
            f->tokens_val += len;
            continue;
        }
        f->train[f->n_train++] = *e;
        if (masked_in(e, len))
            f->tokens_train += len;
        else
            f->skipped++;
    }
    f->n_val = n_val;
    free(idx);
    return 0;
}

static int load(api_call *c, pf *f, eng_tokenizer *t, const store_dataset *ds,
                char *err, size_t errlen)
{
    char path[1024];
    /* A stored dataset's path is relative to the data dir; a body's temp
     * file (no id) is the path it was written to, as it is. */
    if (ds->path[0] == '/' || !ds->id[0])
        snprintf(path, sizeof(path), "%s", ds->path);
    else
        snprintf(path, sizeof(path), "%s/%s", c->ctx->data_dir, ds->path);
    int r = api_dataset_load_examples(path, t, PF_MAX_TOKENS, &f->ex, &f->n,
                                      NULL, err, errlen);
    if (r < 0)
        return r;
    for (int i = 0; i < f->n; i++) {
        f->tokens_all += f->ex[i].n;
        f->max_len = f->ex[i].n > f->max_len ? f->ex[i].n : f->max_len;
        f->truncated += f->ex[i].n > f->p.max_seq_len;
    }
    return split(f);
}

/* ------------------------------------------------------------------------ */
/* Measurement                                                               */

static bool never_abort(void *user)
{
    (void)user;
    return false;
}

/* Builds the job's trainer, reads its plan, times a few real steps. */
static int measure(pf *f, eng_model *m, char *err, size_t errlen)
{
    eng_trainer *tr = NULL;
    f->rss_before = rss_bytes();
    int r = eng_trainer_new(m, &f->p, f->train, f->n_train, &tr, err, errlen);
    if (r < 0)
        return r;
    f->total_steps = eng_trainer_total_steps(tr);
    eng_hooks h = { .abort = never_abort };
    eng_progress p;
    double t_start = 0, t0 = mono_s();
    int64_t tok0 = 0;
    for (int i = 0; i <= PF_MAX_TIMED_STEPS && i < f->total_steps; i++) {
        if ((r = eng_trainer_step(tr, &h, &p)) < 0)
            break;
        double t = mono_s();
        if (i == 0) {              /* warm-up: caches, first-touch pages */
            t_start = t;
            tok0 = p.tokens_seen;
            f->sec_per_step = t - t0;
            f->sec_per_token = p.tokens_seen > 0 ? (t - t0) / p.tokens_seen
                                                 : 0;
            if (t - t0 > PF_TIME_BUDGET_S)
                break;
            continue;
        }
        f->timed_steps = i;
        f->sec_per_step = (t - t_start) / i;
        if (p.tokens_seen > tok0)
            f->sec_per_token = (t - t_start) / (double)(p.tokens_seen - tok0);
        if (t - t_start > PF_TIME_BUDGET_S)
            break;
    }
    f->rss_peak = rss_bytes();
    eng_trainer_free(tr);
    if (r < 0)
        snprintf(err, errlen, "a training step failed: %s", strerror(-r));
    return r < 0 ? r : 0;
}

/* ------------------------------------------------------------------------ */
/* RAM                                                                       */

/* LoRA parameters of the targeted projections (see engine/lora.c). */
static int64_t lora_floats(const eng_config *k, int rank, unsigned targets)
{
    int64_t D = k->dim, H = k->hidden_dim;
    int64_t Q = (int64_t)k->n_heads * k->head_dim;
    int64_t KV = (int64_t)k->n_kv_heads * k->head_dim;
    const struct { unsigned bit; int64_t in, out; } mods[] = {
        { ENG_TARGET_Q, D, Q },    { ENG_TARGET_K, D, KV },
        { ENG_TARGET_V, D, KV },   { ENG_TARGET_O, Q, D },
        { ENG_TARGET_GATE, D, H }, { ENG_TARGET_UP, D, H },
        { ENG_TARGET_DOWN, H, D },
    };
    int64_t n = 0;
    for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++)
        if (targets & mods[i].bit)
            n += rank * (mods[i].in + mods[i].out);
    return n * k->n_layers;
}

/* The trainer's activation block (engine/train.c layout_buffers): N =
 * batch_size * max_seq_len token rows. */
static int64_t activation_bytes(const eng_config *k, const eng_train_params *p,
                                int n_lora_targets)
{
    int64_t N = (int64_t)p->batch_size * p->max_seq_len, D = k->dim;
    int64_t H = k->hidden_dim, T = p->max_seq_len, V = k->vocab_size;
    int64_t Q = (int64_t)k->n_heads * k->head_dim;
    int64_t KV = (int64_t)k->n_kv_heads * k->head_dim;
    int64_t r = p->full_finetune ? 0 : p->lora_rank;
    int64_t wmax = D > Q ? D : Q;
    wmax = wmax > H ? wmax : H;
    int64_t per_layer = N * (2 + 2 * Q + 2 * KV + D + 2 * H) +
                        N * r * n_lora_targets;
    int64_t f = (k->n_layers + 1) * N * D + k->n_layers * per_layer +
                N * (1 + 3 * D + 2 * Q + 2 * KV + 3 * H) +
                (p->lora_dropout > 0 ? N * wmax : 0) + N * (r ? r : 1) +
                2 * T * T + T * k->head_dim;
    int64_t C = ((int64_t)1 << 23) / V;
    C = C < 1 ? 1 : C > N ? N : C;
    f += C * V + 2 * C * D;
    return f * 4 + N * 16 + C * 4;
}

static cJSON *ram_json(const pf *f, const eng_model *m)
{
    const eng_config *k = eng_model_config(m);
    int n_targets = 0;
    for (unsigned b = f->p.targets; b; b >>= 1)
        n_targets += b & 1;
    int64_t params = f->p.full_finetune
                         ? eng_model_n_params(m)
                         : lora_floats(k, f->p.lora_rank, f->p.targets);
    int64_t model = eng_model_n_params(m) * 4;
    int64_t trained = params * 4;                 /* adapter, or own copy */
    int64_t optimizer = params * 4 * 3;           /* gradients, m1, m2 */
    int64_t act = activation_bytes(k, &f->p, n_targets);
    int64_t data = f->tokens_train * 5 +
                   (int64_t)f->n_train * f->p.epochs * 40;
    int64_t trainer = trained + optimizer + act + data;
    int64_t measured = f->rss_peak > f->rss_before && f->rss_before > 0
                           ? f->rss_peak - f->rss_before
                           : 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "model_bytes", (double)model);
    cJSON_AddNumberToObject(o, f->p.full_finetune ? "weights_bytes"
                                                  : "adapter_bytes",
                            (double)trained);
    cJSON_AddNumberToObject(o, "optimizer_bytes", (double)optimizer);
    cJSON_AddNumberToObject(o, "activation_bytes", (double)act);
    cJSON_AddNumberToObject(o, "data_bytes", (double)data);
    cJSON_AddNumberToObject(o, "trainer_bytes", (double)trainer);
    cJSON_AddNumberToObject(o, "total_bytes", (double)(model + trainer));
    cJSON_AddNumberToObject(o, "measured_trainer_bytes", (double)measured);
    return o;
}

/* ------------------------------------------------------------------------ */
/* Reply                                                                     */

static cJSON *time_json(const pf *f)
{
    int epochs = f->p.epochs;
    double train_s = f->sec_per_token * (double)f->tokens_train * epochs;
    int evals = f->n_val ? (f->total_steps < PF_EVALS_PER_RUN
                                ? f->total_steps : PF_EVALS_PER_RUN) : 0;
    double val_s = f->sec_per_token * (double)f->tokens_val * evals / 3.0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seconds", round((train_s + val_s) * 10) / 10);
    cJSON_AddNumberToObject(o, "training_seconds", round(train_s * 10) / 10);
    cJSON_AddNumberToObject(o, "validation_seconds", round(val_s * 10) / 10);
    cJSON_AddNumberToObject(o, "seconds_per_step", f->sec_per_step);
    cJSON_AddNumberToObject(o, "tokens_per_second",
                            f->sec_per_token > 0 ? round(1 / f->sec_per_token)
                                                 : 0);
    cJSON_AddNumberToObject(o, "measured_steps", f->timed_steps + 1);
    cJSON_AddNumberToObject(o, "threads", f->p.n_threads);
    return o;
}

static void reply(api_call *c, const pf *f, const char *base,
                  const eng_model *m, const cJSON *hp, const store_dataset *ds)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "job.preflight");
    cJSON_AddBoolToObject(o, "dry_run", true);
    cJSON_AddStringToObject(o, "base_model", base);
    if (ds->id[0])
        cJSON_AddStringToObject(o, "dataset_id", ds->id);
    else
        cJSON_AddNullToObject(o, "dataset_id");
    cJSON_AddStringToObject(o, "format", ds->format);
    cJSON_AddItemToObject(o, "hyperparameters", cJSON_Duplicate(hp, true));
    cJSON *ex = cJSON_AddObjectToObject(o, "examples");
    cJSON_AddNumberToObject(ex, "total", f->n);
    cJSON_AddNumberToObject(ex, "train", f->n_train - f->skipped);
    cJSON_AddNumberToObject(ex, "validation", f->n_val);
    cJSON_AddNumberToObject(ex, "truncated", f->truncated);
    cJSON_AddNumberToObject(ex, "skipped", f->skipped);
    cJSON *tk = cJSON_AddObjectToObject(o, "tokens");
    cJSON_AddNumberToObject(tk, "total", (double)f->tokens_all);
    cJSON_AddNumberToObject(tk, "train_per_epoch", (double)f->tokens_train);
    cJSON_AddNumberToObject(tk, "validation", (double)f->tokens_val);
    cJSON_AddNumberToObject(tk, "trained",
                            (double)f->tokens_train * f->p.epochs);
    cJSON_AddNumberToObject(tk, "longest_example", f->max_len);
    cJSON_AddNumberToObject(o, "truncated_examples", f->truncated);
    cJSON_AddNumberToObject(o, "max_seq_len", f->p.max_seq_len);
    cJSON_AddNumberToObject(o, "epochs", f->p.epochs);
    cJSON_AddNumberToObject(o, "total_steps", f->total_steps);
    cJSON_AddNumberToObject(o, "steps_per_epoch",
                            f->p.epochs ? f->total_steps / f->p.epochs : 0);
    cJSON *t = time_json(f);
    cJSON *ram = ram_json(f, m);
    cJSON_AddNumberToObject(o, "estimated_seconds",
                            cJSON_GetObjectItem(t, "seconds")->valuedouble);
    cJSON_AddNumberToObject(o, "estimated_ram_bytes",
                            cJSON_GetObjectItem(ram, "total_bytes")
                                ->valuedouble);
    cJSON *est = cJSON_AddObjectToObject(o, "estimate");
    cJSON_AddItemToObject(est, "time", t);
    cJSON_AddItemToObject(est, "ram", ram);
    api_reply_json(c, 200, o);
}

void api_preflight_reply(api_call *c, const char *base, eng_model *m,
                         eng_tokenizer *t, const cJSON *hp,
                         const store_dataset *ds)
{
    pf f = { 0 };
    char err[256] = "";
    char *txt = cJSON_PrintUnformatted(hp);
    int r = txt ? api_hparams_to_engine(txt, &f.p, &f.val_split, err,
                                        sizeof(err))
                : -ENOMEM;
    free(txt);
    if (r == 0) {
        f.p.n_threads = c->ctx->train_threads > 0 ? c->ctx->train_threads
                                                  : c->ctx->gen_threads;
        r = load(c, &f, t, ds, err, sizeof(err));
    }
    if (r == 0 && f.n_train - f.skipped < 1) {
        api_error(c->res, 422, "empty_dataset",
                  "no training example has tokens to learn from (all are "
                  "empty after truncation to max_seq_len)", -1,
                  "max_seq_len");
        goto out;
    }
    if (r == 0)
        r = measure(&f, m, err, sizeof(err));
    if (r == -ENOMEM)
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
    else if (r < 0)
        api_error(c->res, 422, "preflight_failed", *err ? err : strerror(-r),
                  -1, NULL);
    else
        reply(c, &f, base, m, hp, ds);
out:
    free(f.train);
    api_examples_free(f.ex, f.n);
}
