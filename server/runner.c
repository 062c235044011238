/* SPDX-License-Identifier: MIT */
/*
 * runner.c - one training job, from a claimed row to a final status.
 *
 * The steps: load the base model (shared, from the registry), read and
 * tokenize the stored dataset, set aside a validation split (a seeded
 * shuffle, or the job's validation dataset), build the trainer and step it.
 * After every optimizer step the runner writes progress (with an ETA from
 * the measured step rate), a "step" event with the losses, and a metrics
 * row; the validation loss is measured about ten times per run and at the
 * end. On success the adapter is saved under the job's folder before the
 * job is marked succeeded, so a succeeded job always has its model.
 *
 * Cancellation: the engine polls the abort hook at least once per step. The
 * hook reads the shutdown flag (an atomic) and the job's cancel_requested
 * column, re-read from the store at most every CANCEL_POLL_S seconds. A
 * cancel ends the job as cancelled; a shutdown leaves it running, and the
 * next daemon start queues it again (store_job_requeue_running).
 */
#include "server/runner.h"

#include "server/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CANCEL_POLL_S 0.5
/* A job that keeps taking the daemon down is failed, not retried forever. */
#define MAX_ATTEMPTS 20
#define EVALS_PER_RUN 10

typedef struct run {
    const srv_runner_env *env;
    const store_job *job;
    double t_start;
    double last_cancel_check;
    bool cancel;
    eng_model *model;
    eng_tokenizer *tok;
    eng_example *ex, *val_own;     /* as loaded: freed with api_examples_free */
    int n_ex, n_val_own;
    eng_example *train, *val;      /* views into the loaded examples */
    int n_train, n_val;
    eng_train_params params;
    double val_split;
    eng_trainer *tr;
    float val_loss, val_acc;
    float train_loss;              /* of the last step */
    const char *err_code;
    char err[512];
} run;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------ */
/* Events                                                                    */

/* Adds an event; data (may be NULL) is consumed. */
static void event(run *r, const char *level, const char *type,
                  const char *msg, cJSON *data)
{
    char *json = data ? cJSON_PrintUnformatted(data) : NULL;
    int e = store_event_add(r->env->db, r->job->id, level, type, msg, json,
                            NULL);
    if (e < 0)
        srv_warn("job %s: cannot add event: %s", r->job->id, strerror(-e));
    free(json);
    cJSON_Delete(data);
}

static cJSON *status_data(const char *status)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "status", status);
    return d;
}

static void finish(run *r, const char *status, const char *level,
                   const char *msg, cJSON *error)
{
    char *ejson = error ? cJSON_PrintUnformatted(error) : NULL;
    int e = store_job_finish(r->env->db, r->job->id, status, ejson);
    if (e < 0)
        srv_error("job %s: cannot mark it %s: %s", r->job->id, status,
                  strerror(-e));
    cJSON *d = status_data(status);
    if (error)
        cJSON_AddItemToObject(d, "error", error);
    event(r, level, "status", msg, d);
    free(ejson);
}

static void fail(run *r)
{
    cJSON *err = cJSON_CreateObject();
    cJSON_AddStringToObject(err, "code", r->err_code ? r->err_code
                                                     : "internal_error");
    cJSON_AddStringToObject(err, "message", r->err);
    srv_warn("job %s failed: %s: %s", r->job->id, r->err_code, r->err);
    char msg[600];
    snprintf(msg, sizeof msg, "job failed: %s", r->err);
    finish(r, "failed", "error", msg, err);
}

/* Sets the failure reason; returns -1 for `return set_err(...)`. */
__attribute__((format(printf, 3, 4)))
static int set_err(run *r, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    r->err_code = code;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Hooks                                                                     */

static bool hook_abort(void *user)
{
    run *r = user;
    if (atomic_load(r->env->stopping))
        return true;
    double t = now_s();
    if (!r->cancel && t - r->last_cancel_check >= CANCEL_POLL_S) {
        store_job j;
        r->last_cancel_check = t;
        int e = store_job_get(r->env->db, r->job->id, &j);
        if (e == -ENOENT) {
            r->cancel = true;
        } else if (e == 0) {
            r->cancel = j.cancel_requested || strcmp(j.status, "running");
            store_job_done(&j);
        }
    }
    return r->cancel;
}

static void hook_progress(void *user, const eng_progress *p) {}

static void hook_log(void *user, const char *msg)
{
    run *r = user;
    srv_debug("job %s: engine: %s", r->job->id, msg);
}

/* ------------------------------------------------------------------------ */
/* Preparing                                                                 */

static void dataset_file(const run *r, const char *p, char *buf, size_t len)
{
    if (p[0] == '/' || access(p, R_OK) == 0)
        snprintf(buf, len, "%s", p);
    else
        snprintf(buf, len, "%s/%s", r->env->data_dir, p);
}

static int load_dataset(run *r, const char *id, eng_example **ret, int *ret_n)
{
    store_dataset ds;
    char path[1024], err[256] = "";
    int truncated = 0;
    if (store_dataset_get(r->env->db, id, &ds) < 0)
        return set_err(r, "dataset_not_found", "dataset %s not found", id);
    dataset_file(r, ds.path, path, sizeof path);
    int e = api_dataset_load_examples(path, r->tok, r->params.max_seq_len,
                                      ret, ret_n, &truncated, err,
                                      sizeof err);
    if (e < 0)
        return set_err(r, "dataset_unreadable", "dataset %s: %s", id,
                       *err ? err : strerror(-e));
    char msg[256];
    int64_t tokens = 0;
    for (int i = 0; i < *ret_n; i++)
        tokens += (*ret)[i].n;
    snprintf(msg, sizeof msg, "dataset %s: %d examples, %lld tokens with "
             "the tokenizer of %.100s", id, *ret_n, (long long)tokens,
             r->job->base_model);
    event(r, "info", "message", msg, NULL);
    if (truncated) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "truncated", truncated);
        cJSON_AddNumberToObject(d, "max_seq_len", r->params.max_seq_len);
        snprintf(msg, sizeof msg,
                 "dataset %s: %d of %d examples truncated to %d tokens", id,
                 truncated, *ret_n, r->params.max_seq_len);
        event(r, "warn", "message", msg, d);
    }
    return 0;
}

/* Splits the loaded examples into train and validation views. */
static int split(run *r)
{
    int n = r->n_ex, n_val = 0;
    r->train = malloc(sizeof *r->train * (size_t)(n ? n : 1));
    if (!r->train)
        return set_err(r, "internal_error", "out of memory");
    if (r->val_own) {
        r->val = r->val_own;
        r->n_val = r->n_val_own;
    } else if (r->val_split > 0 && n >= 2) {
        n_val = (int)lround(r->val_split * n);
        if (n_val < 1) n_val = 1;
        if (n_val > n - 1) n_val = n - 1;
    }
    /* Seeded Fisher-Yates over indices: the same job splits the same way
     * after a restart. */
    int *idx = malloc(sizeof *idx * (size_t)(n ? n : 1));
    if (!idx)
        return set_err(r, "internal_error", "out of memory");
    for (int i = 0; i < n; i++)
        idx[i] = i;
    uint64_t s = r->params.seed * 0x9E3779B97F4A7C15ull + 0x5851F42D4C957F2Dull;
    for (int i = n - 1; n_val && i > 0; i--) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        int k = (int)(s % (uint64_t)(i + 1));
        int t = idx[i]; idx[i] = idx[k]; idx[k] = t;
    }
    if (n_val) {
        r->val = malloc(sizeof *r->val * (size_t)n_val);
        if (!r->val) {
            free(idx);
            return set_err(r, "internal_error", "out of memory");
        }
        for (int i = 0; i < n_val; i++)
            r->val[i] = r->ex[idx[i]];
        r->n_val = n_val;
    }
    for (int i = n_val; i < n; i++)
        r->train[r->n_train++] = r->ex[idx[i]];
    free(idx);
    if (r->n_train < 1)
        return set_err(r, "empty_dataset", "no training examples");
    return 0;
}

static int prepare(run *r)
{
    const store_job *j = r->job;
    char err[256] = "";
    int e = api_hparams_to_engine(j->hyperparameters ? j->hyperparameters
                                                     : "{}",
                                  &r->params, &r->val_split, err, sizeof err);
    if (e < 0)
        return set_err(r, "invalid_hyperparameters", "%s",
                       *err ? err : strerror(-e));
    r->params.n_threads = r->env->n_threads;
    e = api_registry_get_base(r->env->models, j->base_model, &r->model,
                              &r->tok);
    if (e < 0)
        return set_err(r, "base_model_not_found", "base model %s: %s",
                       j->base_model, strerror(-e));
    if (load_dataset(r, j->dataset_id, &r->ex, &r->n_ex) < 0)
        return -1;
    if (j->val_dataset_id[0] &&
        load_dataset(r, j->val_dataset_id, &r->val_own, &r->n_val_own) < 0)
        return -1;
    if (split(r) < 0)
        return -1;
    e = eng_trainer_new(r->model, &r->params, r->train, r->n_train, &r->tr,
                        err, sizeof err);
    if (e < 0)
        return set_err(r, "training_failed", "cannot start training: %s",
                       *err ? err : strerror(-e));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */

static void evaluate(run *r)
{
    if (!r->n_val)
        return;
    float loss, acc;
    if (eng_trainer_evaluate(r->tr, r->val, r->n_val, &loss, &acc) == 0) {
        r->val_loss = loss;
        r->val_acc = acc;
    }
}

static void after_step(run *r, const eng_progress *p, bool evaluated)
{
    const store_job *j = r->job;
    double el = now_s() - r->t_start;
    r->train_loss = p->train_loss;
    double eta = p->step > 0 ? el / p->step * (p->total_steps - p->step) : -1;
    store_job_set_progress(r->env->db, j->id, p->step, p->total_steps,
                           p->epoch, p->train_loss, r->val_loss,
                           p->tokens_per_second, eta);
    store_metric m = {
        .step = p->step,
        .train_loss = p->train_loss,
        .val_loss = evaluated ? r->val_loss : NAN,
        .val_accuracy = evaluated ? r->val_acc : NAN,
        .lr = p->lr,
        .grad_norm = p->grad_norm,
        .tokens_per_second = p->tokens_per_second,
        .created_at = (int64_t)time(NULL),
    };
    store_metric_add(r->env->db, j->id, &m);

    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "step", p->step);
    cJSON_AddNumberToObject(d, "total_steps", p->total_steps);
    cJSON_AddNumberToObject(d, "epoch", p->epoch);
    cJSON_AddNumberToObject(d, "train_loss", p->train_loss);
    if (evaluated) {
        cJSON_AddNumberToObject(d, "val_loss", r->val_loss);
        cJSON_AddNumberToObject(d, "val_accuracy", r->val_acc);
    }
    cJSON_AddNumberToObject(d, "learning_rate", p->lr);
    cJSON_AddNumberToObject(d, "grad_norm", p->grad_norm);
    cJSON_AddNumberToObject(d, "tokens_per_second", p->tokens_per_second);
    char msg[160];
    int n = snprintf(msg, sizeof msg, "step %d/%d: train loss %.4f",
                     p->step, p->total_steps, p->train_loss);
    if (evaluated)
        snprintf(msg + n, sizeof msg - (size_t)n, ", validation loss %.4f",
                 r->val_loss);
    event(r, "info", "step", msg, d);
}

/* Steps to the end. 0 when done, -ECANCELED when aborted, -1 on error. */
static int train(run *r)
{
    eng_hooks hooks = {
        .progress = hook_progress, .abort = hook_abort, .log = hook_log,
        .user = r,
    };
    int total = eng_trainer_total_steps(r->tr);
    int every = total / EVALS_PER_RUN > 0 ? total / EVALS_PER_RUN : 1;
    store_job_set_progress(r->env->db, r->job->id,
                           eng_trainer_step_index(r->tr), total, 1, NAN,
                           NAN, 0, -1);
    r->t_start = now_s();
    while (eng_trainer_step_index(r->tr) < total) {
        eng_progress p;
        int e = eng_trainer_step(r->tr, &hooks, &p);
        if (e == -ECANCELED)
            return e;
        if (e < 0)
            return set_err(r, "training_failed", "step %d: %s",
                           eng_trainer_step_index(r->tr) + 1, strerror(-e));
        bool eval = r->n_val && (p.step % every == 0 || p.step == total);
        if (eval)
            evaluate(r);
        after_step(r, &p, eval);
        if (hook_abort(r))
            return -ECANCELED;
    }
    return 0;
}

static int mkdirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int save(run *r)
{
    char dir[1024], err[256] = "";
    eng_adapter *a = eng_trainer_adapter(r->tr);
    if (!a)
        return set_err(r, "unsupported", "full finetuning cannot be saved "
                       "yet; use LoRA");
    api_job_adapter_dir(r->env->data_dir, r->job->id, dir, sizeof dir);
    int e = mkdirs(dir);
    if (e == 0)
        e = eng_adapter_save(a, dir, r->job->base_model, err, sizeof err);
    if (e < 0)
        return set_err(r, "save_failed", "cannot save the adapter: %s",
                       *err ? err : strerror(-e));
    return 0;
}

/* ------------------------------------------------------------------------ */

static void run_free(run *r)
{
    eng_trainer_free(r->tr);
    if (r->val != r->val_own)
        free(r->val);
    free(r->train);
    if (r->ex)
        api_examples_free(r->ex, r->n_ex);
    if (r->val_own)
        api_examples_free(r->val_own, r->n_val_own);
    eng_tokenizer_unref(r->tok);
    eng_model_unref(r->model);
}

int srv_runner_run(const srv_runner_env *env, const store_job *j)
{
    run r = {.env = env, .job = j, .val_loss = NAN, .val_acc = NAN,
             .train_loss = NAN};
    int ret = 0;
    double t0 = now_s();
    char msg[256];

    srv_info("job %s: started (attempt %d, dataset %s, base %s)", j->id,
             j->attempts, j->dataset_id, j->base_model);
    snprintf(msg, sizeof msg, "job started (attempt %d)", j->attempts);
    event(&r, "info", "status", msg, status_data("running"));
    if (j->attempts > MAX_ATTEMPTS) {
        set_err(&r, "too_many_attempts", "the job was started %d times "
                "without finishing", j->attempts);
        fail(&r);
        goto out;
    }
    if (prepare(&r) < 0) {
        fail(&r);
        goto out;
    }
    snprintf(msg, sizeof msg, "training on %d examples, validating on %d, "
             "%d steps, %d threads", r.n_train, r.n_val,
             eng_trainer_total_steps(r.tr), env->n_threads);
    event(&r, "info", "message", msg, NULL);

    int e = train(&r);
    if (e == -ECANCELED && atomic_load(env->stopping)) {
        srv_info("job %s: interrupted by shutdown at step %d; it will run "
                 "again at the next start", j->id,
                 eng_trainer_step_index(r.tr));
        event(&r, "warn", "message", "the daemon is shutting down; the job "
              "will run again when it starts", NULL);
        ret = -ECANCELED;
        goto out;
    }
    if (e == -ECANCELED) {
        srv_info("job %s: cancelled at step %d", j->id,
                 eng_trainer_step_index(r.tr));
        finish(&r, "cancelled", "info", "job cancelled", NULL);
        goto out;
    }
    if (e < 0 || save(&r) < 0) {
        fail(&r);
        goto out;
    }
    finish(&r, "succeeded", "info", "job succeeded", NULL);
    srv_info("job %s: succeeded in %.1fs (%d steps, last train loss %.4f)",
             j->id, now_s() - t0, eng_trainer_total_steps(r.tr),
             r.train_loss);
out:
    run_free(&r);
    return ret;
}
