/* SPDX-License-Identifier: MIT */
/*
 * runner.c - one training job, from a claimed row to a final status.
 *
 * The steps: load the base model (shared, from the registry), read and
 * tokenize the stored dataset, set aside a validation split (a seeded
 * shuffle, or the job's validation dataset), build the trainer and step it.
 * After every optimizer step the runner writes progress (with an ETA from
 * the step rate measured in this attempt), a "step" event with the losses,
 * and a metrics row. Validation loss and token accuracy are measured every
 * eval_every steps (default: about ten times a run) and at the end.
 *
 * Checkpoints (ckpt.c) are saved every checkpoint_every steps, at every
 * evaluation that improves the best validation loss when early stopping is
 * on, at the end, and whenever the job stops early (pause, stop, shutdown).
 * A job starting again (after a crash, a shutdown or a pause) first loads
 * its newest readable checkpoint, so it continues with the same weights,
 * optimizer moments, RNG and data order, and ends exactly where an
 * uninterrupted run ends. Early stopping ends training after
 * early_stopping_patience evaluations without a better validation loss; the
 * job's model is then its best checkpoint.
 *
 * At the end the adapter is saved under the job's folder, the
 * prompting-vs-finetuning report (report.c) is written, and only then is
 * the job marked succeeded, so a succeeded job always has both.
 *
 * Controls: the engine polls the abort hook at least once per step. The hook
 * reads the shutdown flag (an atomic) and the job's row (cancel_requested,
 * control), re-read at most every CANCEL_POLL_S seconds. A cancel ends the
 * job as cancelled and discards its checkpoints and adapter; a stop saves
 * the current weights and ends it succeeded with a note; a pause saves a
 * checkpoint and parks the job as paused, freeing the worker; a shutdown
 * saves a checkpoint and leaves it running, and the next daemon start
 * queues it again (store_job_requeue_running).
 */
#include "server/runner-impl.h"

#include "server/log.h"

#include <cjson/cJSON.h>
#include <dirent.h>
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

/* How training ended, besides errors. */
enum { TRAIN_DONE = 0, TRAIN_EARLY_STOP = 1 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------ */
/* Events                                                                    */

void srv_run_event(run *r, const char *level, const char *type,
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
    srv_run_event(r, level, "status", msg, d);
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

int srv_run_err(run *r, const char *code, const char *fmt, ...)
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

bool srv_run_abort(void *user)
{
    run *r = user;
    if (atomic_load(r->env->stopping))
        return true;
    if (r->env->yield)
        r->env->yield(r->env->yield_user); /* requests first */
    double t = now_s();
    if (!r->cancel && !r->stop && !r->pause &&
        t - r->last_cancel_check >= CANCEL_POLL_S) {
        store_job j;
        r->last_cancel_check = t;
        int e = store_job_get(r->env->db, r->job->id, &j);
        if (e == -ENOENT) {
            r->cancel = true;
        } else if (e == 0) {
            r->cancel = j.cancel_requested || strcmp(j.status, "running");
            r->stop = !strcmp(j.control, "stop");
            r->pause = !strcmp(j.control, "pause");
            store_job_done(&j);
        }
    }
    return r->cancel || r->stop || r->pause;
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
        return srv_run_err(r, "dataset_not_found", "dataset %s not found", id);
    dataset_file(r, ds.path, path, sizeof path);
    int e = api_dataset_load_examples(path, r->tok, r->params.max_seq_len,
                                      ret, ret_n, &truncated, err,
                                      sizeof err);
    if (e < 0)
        return srv_run_err(r, "dataset_unreadable", "dataset %s: %s", id,
                       *err ? err : strerror(-e));
    char msg[256];
    int64_t tokens = 0;
    for (int i = 0; i < *ret_n; i++)
        tokens += (*ret)[i].n;
    snprintf(msg, sizeof msg, "dataset %s: %d examples, %lld tokens with "
             "the tokenizer of %.100s", id, *ret_n, (long long)tokens,
             r->job->base_model);
    srv_run_event(r, "info", "message", msg, NULL);
    if (truncated) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "truncated", truncated);
        cJSON_AddNumberToObject(d, "max_seq_len", r->params.max_seq_len);
        snprintf(msg, sizeof msg,
                 "dataset %s: %d of %d examples truncated to %d tokens", id,
                 truncated, *ret_n, r->params.max_seq_len);
        srv_run_event(r, "warn", "message", msg, d);
    }
    return 0;
}

/* Splits the loaded examples into train and validation views. */
static int split(run *r)
{
    int n = r->n_ex, n_val = 0;
    r->train = malloc(sizeof *r->train * (size_t)(n ? n : 1));
    if (!r->train)
        return srv_run_err(r, "internal_error", "out of memory");
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
        return srv_run_err(r, "internal_error", "out of memory");
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
            return srv_run_err(r, "internal_error", "out of memory");
        }
        for (int i = 0; i < n_val; i++)
            r->val[i] = r->ex[idx[i]];
        r->n_val = n_val;
    }
    for (int i = n_val; i < n; i++)
        r->train[r->n_train++] = r->ex[idx[i]];
    free(idx);
    if (r->n_train < 1)
        return srv_run_err(r, "empty_dataset", "no training examples");
    return 0;
}

static int setting(const cJSON *hp, const char *name, int def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(hp, name);
    return cJSON_IsNumber(it) ? it->valueint : def;
}

/* eval_every, checkpoint_every, keep_checkpoints, early_stopping_patience,
 * with the automatic values filled in once the step count is known. */
static void read_settings(run *r)
{
    cJSON *hp = cJSON_Parse(r->job->hyperparameters ? r->job->hyperparameters
                                                    : "{}");
    int total = eng_trainer_total_steps(r->tr);
    run_settings *s = &r->set;
    s->eval_every = setting(hp, "eval_every", 0);
    s->checkpoint_every = setting(hp, "checkpoint_every", 0);
    s->keep_checkpoints = setting(hp, "keep_checkpoints", 2);
    s->patience = setting(hp, "early_stopping_patience", 0);
    cJSON_Delete(hp);
    if (s->eval_every <= 0)
        s->eval_every = total / EVALS_PER_RUN > 0 ? total / EVALS_PER_RUN : 1;
    if (s->checkpoint_every <= 0)
        s->checkpoint_every = s->eval_every;
    if (s->keep_checkpoints < 1)
        s->keep_checkpoints = 1;
}

static int prepare(run *r)
{
    const store_job *j = r->job;
    char err[256] = "";
    int e = api_hparams_to_engine(j->hyperparameters ? j->hyperparameters
                                                     : "{}",
                                  &r->params, &r->val_split, err, sizeof err);
    if (e < 0)
        return srv_run_err(r, "invalid_hyperparameters", "%s",
                       *err ? err : strerror(-e));
    r->params.n_threads = r->env->n_threads;
    e = api_registry_get_base(r->env->models, j->base_model, &r->model,
                              &r->tok);
    if (e < 0)
        return srv_run_err(r, "base_model_not_found", "base model %s: %s",
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
        return srv_run_err(r, "training_failed", "cannot start training: %s",
                       *err ? err : strerror(-e));
    read_settings(r);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */

/* Measures validation loss and accuracy; returns whether it improved on the
 * best so far. */
static bool evaluate(run *r, int step)
{
    float loss, acc;
    if (!r->n_val ||
        eng_trainer_evaluate(r->tr, r->val, r->n_val, &loss, &acc) < 0)
        return false;
    r->val_loss = loss;
    r->val_acc = acc;
    r->val_step = step;
    if (loss < r->best_val) {
        r->best_val = loss;
        r->best_step = step;
        r->bad_evals = 0;
        return true;
    }
    r->bad_evals++;
    return false;
}

static void after_step(run *r, const eng_progress *p, bool evaluated)
{
    const store_job *j = r->job;
    double el = now_s() - r->t_start;
    int done = p->step - r->step_start;
    r->train_loss = p->train_loss;
    if (!r->usage_started) {   /* tokens before this step: the average */
        r->usage_prev = p->step > 0 ? p->tokens_seen - p->tokens_seen /
                                                        p->step : 0;
        r->usage_started = true;
    }
    r->usage_tokens += p->tokens_seen - r->usage_prev;
    r->usage_prev = p->tokens_seen;
    double eta = done > 0 ? el / done * (p->total_steps - p->step) : -1;
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
    srv_run_event(r, "info", "step", msg, d);
}

static bool early_stop_due(const run *r)
{
    return r->set.patience > 0 && r->n_val &&
           r->bad_evals >= r->set.patience;
}

/* One step with its evaluation, metrics and checkpoint. 0, TRAIN_EARLY_STOP,
 * -ECANCELED when aborted, -1 on error. */
static int train_step(run *r, const eng_hooks *hooks, int total)
{
    eng_progress p;
    int e = eng_trainer_step(r->tr, hooks, &p);
    if (e == -ECANCELED)
        return e;
    if (e < 0)
        return srv_run_err(r, "training_failed", "step %d: %s",
                           eng_trainer_step_index(r->tr) + 1, strerror(-e));
    bool eval = r->n_val && (p.step % r->set.eval_every == 0 ||
                             p.step % r->set.checkpoint_every == 0 ||
                             p.step == total);
    bool improved = eval && evaluate(r, p.step);
    after_step(r, &p, eval);
    if ((p.step % r->set.checkpoint_every == 0 || p.step == total ||
         (improved && r->set.patience > 0)) && srv_ckpt_save(r) < 0)
        return -1;
    if (eval && early_stop_due(r))
        return TRAIN_EARLY_STOP;
    return 0;
}

/* Steps to the end: TRAIN_DONE, TRAIN_EARLY_STOP, -ECANCELED when aborted
 * (shutdown, cancel, stop, pause), -1 on error. */
static int train(run *r)
{
    eng_hooks hooks = {
        .progress = hook_progress, .abort = srv_run_abort, .log = hook_log,
        .user = r,
    };
    int total = eng_trainer_total_steps(r->tr);
    if (srv_ckpt_resume(r) < 0)
        return -1;
    r->step_start = eng_trainer_step_index(r->tr);
    store_job_set_progress(r->env->db, r->job->id, r->step_start, total, 1,
                           r->step_start ? r->train_loss : NAN,
                           r->val_loss, 0, -1);
    if (early_stop_due(r))   /* the decision was made before a restart */
        return TRAIN_EARLY_STOP;
    r->t_start = now_s();
    while (eng_trainer_step_index(r->tr) < total) {
        int e = train_step(r, &hooks, total);
        if (e != 0)
            return e;
        if (srv_run_abort(r))
            return -ECANCELED;
    }
    return TRAIN_DONE;
}

/* The engine writes each adapter file as <name>.tmp.XXXXXX and renames it
 * into place: a kill -9 in between leaves the temp file, and the job saves
 * again when it resumes. Removes those leftovers (never read, but they
 * would pile up and be copied by backups). */
static void remove_stale_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[1400];
    if (!d)
        return;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, ".tmp."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

static int save(run *r)
{
    char dir[1024], err[256] = "";
    eng_adapter *a = eng_trainer_adapter(r->tr);
    if (!a)
        return srv_run_err(r, "unsupported", "full finetuning cannot be "
                           "saved yet; use LoRA");
    api_job_adapter_dir(r->env->data_dir, r->job->id, dir, sizeof dir);
    remove_stale_temps(dir);
    int e = api_mkdir_p(dir);
    if (e == 0)
        e = eng_adapter_save(a, dir, r->job->base_model, err, sizeof err);
    if (e < 0)
        return srv_run_err(r, "save_failed", "cannot save the adapter: %s",
                           *err ? err : strerror(-e));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Endings                                                                   */

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

static void set_note(run *r, const char *note)
{
    store_job_set_note(r->env->db, r->job->id, note);
    srv_run_event(r, "info", "message", note, NULL);
}

/* Early stopping: the weights of the best checkpoint become the model. */
static int take_best(run *r)
{
    char note[256];
    int step = eng_trainer_step_index(r->tr);
    if (r->best_step >= 0 && r->best_step != step &&
        srv_ckpt_load(r, r->best_step) < 0)
        return -1;
    snprintf(note, sizeof note, "early stopping at step %d of %d: no better "
             "validation loss in %d evaluations; the model is the best "
             "checkpoint, step %d (validation loss %.4f)", step,
             eng_trainer_total_steps(r->tr), r->set.patience, r->best_step,
             r->best_val);
    set_note(r, note);
    return 0;
}

/* Saves the final adapter, writes the report and marks the job succeeded. */
static void succeed(run *r, double t0)
{
    if (save(r) < 0) {
        fail(r);
        return;
    }
    if (srv_report_run(r) < 0) {
        if (srv_run_abort(r) && atomic_load(r->env->stopping))
            return;  /* shutdown during the report: it runs again */
        char msg[600];
        snprintf(msg, sizeof msg, "the prompting-vs-finetuning report "
                 "failed: %s", r->err);
        srv_run_event(r, "warn", "message", msg, NULL);
    }
    finish(r, "succeeded", "info", "job succeeded", NULL);
    srv_info("job %s: succeeded in %.1fs (step %d of %d, last train loss "
             "%.4f)", r->job->id, now_s() - t0, eng_trainer_step_index(r->tr),
             eng_trainer_total_steps(r->tr), r->train_loss);
}

/* Training was aborted: by a shutdown, cancel, stop or pause. Returns the
 * srv_runner_run() result. */
static int interrupted(run *r, double t0)
{
    const store_job *j = r->job;
    int step = eng_trainer_step_index(r->tr);
    char note[256];
    if (r->cancel && !atomic_load(r->env->stopping)) {
        srv_info("job %s: cancelled at step %d", j->id, step);
        srv_ckpt_discard(r->env, j->id);
        finish(r, "cancelled", "info", "job cancelled; its checkpoints "
               "were discarded", NULL);
        return 0;
    }
    if (step > 0 && srv_ckpt_save(r) < 0) {
        fail(r);
        return 0;
    }
    if (atomic_load(r->env->stopping)) {
        srv_info("job %s: interrupted by shutdown at step %d; it will "
                 "resume at the next start", j->id, step);
        srv_run_event(r, "warn", "message", "the daemon is shutting down; "
                      "the job resumes from its checkpoint when it starts",
                      NULL);
        return -ECANCELED;
    }
    if (r->pause) {
        store_job_pause(r->env->db, j->id);
        snprintf(note, sizeof note, "job paused at step %d of %d", step,
                 eng_trainer_total_steps(r->tr));
        srv_run_event(r, "info", "status", note, status_data("paused"));
        srv_info("job %s: paused at step %d", j->id, step);
        return 0;
    }
    snprintf(note, sizeof note, "stopped by request at step %d of %d; the "
             "model has the weights of step %d", step,
             eng_trainer_total_steps(r->tr), step);
    set_note(r, note);
    succeed(r, t0);
    return 0;
}

/* CPU seconds: the worker thread's own time when it trains alone (one
 * engine thread), else the process's, which on a multi-threaded step is
 * mostly this job's. */
static double cpu_now(int n_threads)
{
    struct timespec ts;
    clock_gettime(n_threads <= 1 ? CLOCK_THREAD_CPUTIME_ID
                                 : CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Charges the attempt's tokens and CPU time to the job's API key. */
static void charge(const run *r, double cpu0)
{
    if (!r->job->owner[0])
        return;
    double cpu = cpu_now(r->env->n_threads) - cpu0;
    int e = store_key_usage_add(r->env->db, r->job->owner,
                                r->usage_tokens > 0 ? r->usage_tokens : 0, 0,
                                cpu > 0 ? cpu : 0);
    if (e < 0 && e != -ENOENT)
        srv_warn("job %s: cannot record usage: %s", r->job->id, strerror(-e));
}

int srv_runner_run(const srv_runner_env *env, const store_job *j)
{
    double cpu0 = cpu_now(env->n_threads);
    run r = {.env = env, .job = j, .val_loss = NAN, .val_acc = NAN,
             .train_loss = NAN, .val_step = -1, .best_val = INFINITY,
             .best_step = -1, .saved_step = -1};
    int ret = 0;
    double t0 = now_s();
    char msg[256];

    srv_info("job %s: started (attempt %d, dataset %s, base %s)", j->id,
             j->attempts, j->dataset_id, j->base_model);
    snprintf(msg, sizeof msg, "job started (attempt %d)", j->attempts);
    srv_run_event(&r, "info", "status", msg, status_data("running"));
    if (j->attempts > MAX_ATTEMPTS) {
        srv_run_err(&r, "too_many_attempts", "the job was started %d times "
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
    srv_run_event(&r, "info", "message", msg, NULL);

    int e = train(&r);
    if (e == -ECANCELED) {
        ret = interrupted(&r, t0);
        goto out;
    }
    if (e < 0 || (e == TRAIN_EARLY_STOP && take_best(&r) < 0)) {
        fail(&r);
        goto out;
    }
    succeed(&r, t0);
out:
    charge(&r, cpu0);
    run_free(&r);
    return ret;
}
