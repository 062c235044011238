/* SPDX-License-Identifier: MIT */
/*
 * report.c - prompting vs finetuning, measured on each job when it ends.
 *
 * Three ways to get the completions of the job's data are compared on the
 * same examples:
 *   base     the base model with the plain prompt;
 *   k_shot   the base model with K_SHOT training examples (prompt and
 *            completion, separated by a blank line) before the prompt, K
 *            lowered until it fits the context;
 *   tuned    the base model with the job's adapter (the final model).
 * Each is scored on loss (mean cross-entropy of the completion tokens, and
 * next-token accuracy) over up to MAX_LOSS_EXAMPLES examples, and on greedy
 * generations over up to MAX_GEN_EXAMPLES: exact match, contains match (the
 * expected completion appears in the generated text; whitespace collapsed)
 * and word F1, with the first MAX_SHOWN side by side.
 *
 * The examples are the validation examples; without a validation set they
 * are training examples the model saw, and the report says so ("source").
 * Losses of the base model come from a second trainer over the same model:
 * a fresh LoRA adapter has B = 0, so it computes exactly the base model.
 * The report is written atomically to <data>/jobs/<id>/report.json.
 */
#include "server/runner-impl.h"

#include "server/log.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define K_SHOT 3
#define MAX_LOSS_EXAMPLES 64
#define MAX_GEN_EXAMPLES 16
#define MAX_SHOWN 3
#define MAX_GEN_TOKENS 128

enum { V_BASE, V_KSHOT, V_TUNED, N_VARIANTS };
static const char *const variant_names[N_VARIANTS] = {"base", "k_shot",
                                                      "tuned"};

typedef struct variant_score {
    float loss, accuracy;
    int exact, contains;
    double f1;
    int n_gen;
} variant_score;

typedef struct report {
    run *r;
    const eng_example *ex;     /* the examples scored */
    int n_ex;
    eng_example *kshot;        /* ex with the k-shot prefix (owned ids) */
    int k;                     /* shots that fit */
    eng_trainer *base;         /* B = 0: the base model */
    variant_score sc[N_VARIANTS];
    cJSON *shown;
} report;

/* ------------------------------------------------------------------------ */
/* Text comparisons                                                          */

/* Lower case, whitespace runs to one space, trimmed; malloc'd. */
static char *normalize(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isspace(c)) {
            if (o && d[o - 1] != ' ')
                d[o++] = ' ';
        } else {
            d[o++] = (char)tolower(c);
        }
    }
    while (o && d[o - 1] == ' ')
        o--;
    d[o] = 0;
    return d;
}

/* Splits normalized text into words (in place); returns the count. */
static int words(char *s, char **w, int cap)
{
    int n = 0;
    for (char *t = strtok(s, " "); t && n < cap; t = strtok(NULL, " "))
        w[n++] = t;
    return n;
}

/* Word-level F1 of bag-of-words overlap (SQuAD style). */
static double word_f1(const char *got, const char *want)
{
    char *a = normalize(got), *b = normalize(want);
    char *wa[512], *wb[512];
    double f1 = 0;
    if (a && b) {
        int na = words(a, wa, 512), nb = words(b, wb, 512), common = 0;
        bool used[512] = {false};
        for (int i = 0; i < na; i++)
            for (int j = 0; j < nb; j++)
                if (!used[j] && !strcmp(wa[i], wb[j])) {
                    used[j] = true;
                    common++;
                    break;
                }
        if (common)
            f1 = 2.0 * common / (na + nb);
        else if (!na && !nb)
            f1 = 1;
    }
    free(a);
    free(b);
    return f1;
}

static void score_text(variant_score *s, const char *got, const char *want)
{
    char *a = normalize(got), *b = normalize(want);
    if (a && b) {
        s->exact += !strcmp(a, b);
        s->contains += *b && strstr(a, b) != NULL;
    }
    free(a);
    free(b);
    s->f1 += word_f1(got, want);
    s->n_gen++;
}

/* ------------------------------------------------------------------------ */
/* Examples                                                                  */

/* The prompt is everything before the first trained token; the expected
 * completion is the first run of trained tokens, without the EOS. */
static int first_masked(const eng_example *e)
{
    int i = 0;
    while (i < e->n && !e->mask[i])
        i++;
    return i;
}

static char *expected_text(const run *r, const eng_example *e)
{
    int a = first_masked(e), b = a;
    while (b < e->n && e->mask[b] && e->ids[b] != eng_tokenizer_eos(r->tok))
        b++;
    char *txt = NULL;
    if (eng_tokenizer_decode(r->tok, e->ids + a, b - a, &txt) < 0)
        return NULL;
    return txt;
}

/* The shot's tokens after its BOS and before its EOS. */
static void shot_span(const run *r, const eng_example *e, int *ret_a,
                      int *ret_b)
{
    int a = e->n && e->ids[0] == eng_tokenizer_bos(r->tok) ? 1 : 0, b = e->n;
    if (b > a && e->ids[b - 1] == eng_tokenizer_eos(r->tok))
        b--;
    *ret_a = a;
    *ret_b = b;
}

/* Builds ex[i] with k shots in front: BOS shot1 "\n\n" shot2 ... ex[i]. */
static int kshot_example(report *rp, const eng_example *e, int k, int cap,
                         eng_example *out)
{
    run *r = rp->r;
    int32_t sep[8];
    int n_sep = 0;
    if (eng_tokenizer_encode(r->tok, "\n\n", 2, false, false, sep, 8,
                             &n_sep) < 0 || n_sep > 8)
        n_sep = 0;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    uint8_t *mask = calloc((size_t)cap, 1);
    int n = 0;
    if (!ids || !mask)
        goto fail;
    ids[n++] = eng_tokenizer_bos(r->tok);
    for (int s = 0, used = 0; used < k && s < r->n_train; s++) {
        const eng_example *sh = &r->train[s];
        int a, b;
        if (sh->ids == e->ids)
            continue;
        shot_span(r, sh, &a, &b);
        if (n + (b - a) + n_sep > cap)
            goto fail;
        memcpy(ids + n, sh->ids + a, sizeof *ids * (size_t)(b - a));
        n += b - a;
        memcpy(ids + n, sep, sizeof *ids * (size_t)n_sep);
        n += n_sep;
        used++;
    }
    int a = e->n && e->ids[0] == eng_tokenizer_bos(r->tok) ? 1 : 0;
    if (n + e->n - a > cap)
        goto fail;
    memcpy(ids + n, e->ids + a, sizeof *ids * (size_t)(e->n - a));
    memcpy(mask + n, e->mask + a, (size_t)(e->n - a));
    n += e->n - a;
    *out = (eng_example){.ids = ids, .mask = mask, .n = n};
    return 0;
fail:
    free(ids);
    free(mask);
    return -E2BIG;
}

static void kshot_free(report *rp)
{
    for (int i = 0; rp->kshot && i < rp->n_ex; i++) {
        free(rp->kshot[i].ids);
        free(rp->kshot[i].mask);
    }
    free(rp->kshot);
    rp->kshot = NULL;
}

/* The largest k <= K_SHOT for which every example fits the context. */
static int build_kshot(report *rp, int cap)
{
    rp->kshot = calloc((size_t)rp->n_ex, sizeof *rp->kshot);
    if (!rp->kshot)
        return -ENOMEM;
    int k_max = K_SHOT < rp->r->n_train ? K_SHOT : rp->r->n_train - 1;
    for (int k = k_max; k >= 0; k--) {
        int i = 0;
        while (i < rp->n_ex &&
               kshot_example(rp, &rp->ex[i], k, cap, &rp->kshot[i]) == 0)
            i++;
        if (i == rp->n_ex) {
            rp->k = k;
            return 0;
        }
        kshot_free(rp);
        rp->kshot = calloc((size_t)rp->n_ex, sizeof *rp->kshot);
        if (!rp->kshot)
            return -ENOMEM;
    }
    return -E2BIG;
}

/* ------------------------------------------------------------------------ */
/* Scoring                                                                   */

static bool report_abort(void *user)
{
    run *r = user;
    return atomic_load(r->env->stopping);
}

static int losses(report *rp)
{
    run *r = rp->r;
    int n = rp->n_ex < MAX_LOSS_EXAMPLES ? rp->n_ex : MAX_LOSS_EXAMPLES;
    variant_score *s = rp->sc;
    int e = eng_trainer_evaluate(rp->base, rp->ex, n, &s[V_BASE].loss,
                                 &s[V_BASE].accuracy);
    if (e == 0)
        e = eng_trainer_evaluate(rp->base, rp->kshot, n, &s[V_KSHOT].loss,
                                 &s[V_KSHOT].accuracy);
    if (e == 0)
        e = eng_trainer_evaluate(r->tr, rp->ex, n, &s[V_TUNED].loss,
                                 &s[V_TUNED].accuracy);
    return e;
}

/* Greedy completion of the prompt part of e; malloc'd text. */
static char *complete(report *rp, const eng_example *e, const eng_adapter *a,
                      int want_tokens)
{
    run *r = rp->r;
    eng_sample_params sp;
    eng_generation g = {0};
    eng_hooks h = {.abort = report_abort, .user = r};
    eng_sample_params_default(&sp);
    sp.temperature = 0;
    sp.max_tokens = want_tokens + 8 < MAX_GEN_TOKENS ? want_tokens + 8
                                                     : MAX_GEN_TOKENS;
    sp.n_threads = r->env->n_threads;
    char err[128];
    int n = first_masked(e);
    if (n < 1 || eng_generate_ids(r->model, a, r->tok, e->ids, n, &sp, NULL,
                                  NULL, &h, &g, err, sizeof err) < 0)
        return NULL;
    return g.text;
}

static cJSON *prompt_json(const report *rp, const eng_example *e)
{
    char *txt = NULL;
    cJSON *s;
    if (eng_tokenizer_decode(rp->r->tok, e->ids, first_masked(e), &txt) < 0)
        return cJSON_CreateNull();
    s = cJSON_CreateString(txt);
    free(txt);
    return s;
}

static int generations(report *rp)
{
    run *r = rp->r;
    int n = rp->n_ex < MAX_GEN_EXAMPLES ? rp->n_ex : MAX_GEN_EXAMPLES;
    const eng_adapter *tuned = eng_trainer_adapter(r->tr);
    for (int i = 0; i < n; i++) {
        if (report_abort(r))
            return -ECANCELED;
        char *want = expected_text(r, &rp->ex[i]);
        int want_n = rp->ex[i].n - first_masked(&rp->ex[i]);
        char *got[N_VARIANTS] = {
            complete(rp, &rp->ex[i], NULL, want_n),
            complete(rp, &rp->kshot[i], NULL, want_n),
            complete(rp, &rp->ex[i], tuned, want_n),
        };
        for (int v = 0; v < N_VARIANTS && want; v++)
            score_text(&rp->sc[v], got[v] ? got[v] : "", want);
        if (i < MAX_SHOWN && want) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToObject(o, "prompt", prompt_json(rp, &rp->ex[i]));
            cJSON_AddStringToObject(o, "expected", want);
            for (int v = 0; v < N_VARIANTS; v++)
                cJSON_AddStringToObject(o, variant_names[v],
                                        got[v] ? got[v] : "");
            cJSON_AddItemToArray(rp->shown, o);
        }
        for (int v = 0; v < N_VARIANTS; v++)
            free(got[v]);
        free(want);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                    */

static cJSON *variant_json(const variant_score *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "loss", s->loss);
    cJSON_AddNumberToObject(o, "token_accuracy", s->accuracy);
    cJSON_AddNumberToObject(o, "exact_match",
                            s->n_gen ? (double)s->exact / s->n_gen : 0);
    cJSON_AddNumberToObject(o, "contains_match",
                            s->n_gen ? (double)s->contains / s->n_gen : 0);
    cJSON_AddNumberToObject(o, "word_f1", s->n_gen ? s->f1 / s->n_gen : 0);
    return o;
}

static const char *winner(const report *rp)
{
    const variant_score *s = rp->sc;
    int best = V_BASE;
    for (int v = 1; v < N_VARIANTS; v++)
        if (s[v].loss < s[best].loss)
            best = v;
    return variant_names[best];
}

static cJSON *report_json(const report *rp)
{
    const run *r = rp->r;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "report");
    cJSON_AddStringToObject(o, "job", r->job->id);
    cJSON_AddStringToObject(o, "model", r->job->model);
    cJSON_AddStringToObject(o, "base_model", r->job->base_model);
    cJSON_AddNumberToObject(o, "created_at", (double)time(NULL));
    cJSON_AddStringToObject(o, "source", r->n_val ? "validation"
                                                  : "training");
    if (!r->n_val)
        cJSON_AddStringToObject(o, "note", "no validation set: measured on "
                                "training examples the tuned model was "
                                "trained on, which flatters it");
    int n_loss = rp->n_ex < MAX_LOSS_EXAMPLES ? rp->n_ex : MAX_LOSS_EXAMPLES;
    cJSON_AddNumberToObject(o, "examples_loss", n_loss);
    cJSON_AddNumberToObject(o, "examples_generated", rp->sc[V_BASE].n_gen);
    cJSON_AddNumberToObject(o, "k_shot", rp->k);
    cJSON *v = cJSON_AddObjectToObject(o, "variants");
    for (int i = 0; i < N_VARIANTS; i++)
        cJSON_AddItemToObject(v, variant_names[i], variant_json(&rp->sc[i]));
    cJSON_AddStringToObject(o, "best_by_loss", winner(rp));
    cJSON_AddItemReferenceToObject(o, "examples", rp->shown);
    return o;
}

static int write_report(run *r, cJSON *o)
{
    char dir[1024], path[1100], tmp[1200];
    api_job_dir(r->env->data_dir, r->job->id, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/report.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char *txt = cJSON_Print(o);
    int e = txt ? api_mkdir_p(dir) : -ENOMEM;
    FILE *f = e == 0 ? fopen(tmp, "w") : NULL;
    if (e == 0 && !f)
        e = -errno;
    if (f) {
        bool ok = fputs(txt, f) >= 0 && fputc('\n', f) != EOF &&
                  fflush(f) == 0 && fsync(fileno(f)) == 0;
        if (fclose(f) != 0 || !ok)
            e = -EIO;
        if (e == 0 && rename(tmp, path) < 0)
            e = -errno;
    }
    free(txt);
    return e;
}

/* ------------------------------------------------------------------------ */

static int make_base(report *rp, int *ret_cap)
{
    run *r = rp->r;
    eng_train_params p = r->params;
    int ctx = eng_model_config(r->model)->max_seq_len;
    p.epochs = 1;
    p.batch_size = 1;
    p.grad_accum = 1;
    p.lora_dropout = 0;
    p.packing = false;
    p.full_finetune = false;
    p.max_seq_len = ctx < 2048 ? ctx : 2048;
    *ret_cap = p.max_seq_len;
    char err[256] = "";
    int e = eng_trainer_new(r->model, &p, rp->ex, 1, &rp->base, err,
                            sizeof err);
    if (e < 0)
        return srv_run_err(r, "report_failed", "base model trainer: %s",
                           *err ? err : strerror(-e));
    return 0;
}

int srv_report_run(run *r)
{
    report rp = {.r = r, .shown = cJSON_CreateArray()};
    int cap, e = -1;
    char msg[400];
    if (r->n_val) {
        rp.ex = r->val;
        rp.n_ex = r->n_val;
    } else {  /* the last training examples of the split order */
        rp.n_ex = r->n_train < MAX_GEN_EXAMPLES ? r->n_train
                                                : MAX_GEN_EXAMPLES;
        rp.ex = r->train + (r->n_train - rp.n_ex);
    }
    if (!rp.shown || !eng_trainer_adapter(r->tr) || make_base(&rp, &cap) < 0)
        goto out;
    if ((e = build_kshot(&rp, cap)) < 0 || (e = losses(&rp)) < 0 ||
        (e = generations(&rp)) < 0) {
        if (e != -ECANCELED)
            srv_run_err(r, "report_failed", "%s", strerror(-e));
        goto out;
    }
    cJSON *o = report_json(&rp);
    e = o ? write_report(r, o) : -ENOMEM;
    if (e < 0) {
        srv_run_err(r, "report_failed", "cannot write it: %s", strerror(-e));
    } else {
        const variant_score *s = rp.sc;
        cJSON *d = cJSON_CreateObject();
        for (int v = 0; v < N_VARIANTS; v++)
            cJSON_AddNumberToObject(d, variant_names[v], s[v].loss);
        snprintf(msg, sizeof msg, "report: completion loss base %.4f, "
                 "%d-shot %.4f, tuned %.4f; exact match %d/%d/%d of %d",
                 s[V_BASE].loss, rp.k, s[V_KSHOT].loss, s[V_TUNED].loss,
                 s[V_BASE].exact, s[V_KSHOT].exact, s[V_TUNED].exact,
                 s[V_BASE].n_gen);
        srv_run_event(r, "info", "report", msg, d);
    }
    cJSON_Delete(o);
out:
    kshot_free(&rp);
    eng_trainer_free(rp.base);
    cJSON_Delete(rp.shown);
    return e < 0 ? -1 : 0;
}
