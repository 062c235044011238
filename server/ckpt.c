/* SPDX-License-Identifier: MIT */
/*
 * ckpt.c - a job's checkpoints on disk and in the store.
 *
 * Layout: <data>/jobs/<id>/checkpoints/step-<n>/ holds the trainer's
 * checkpoint.safetensors (adapter, AdamW moments, step, RNG and data-order
 * fingerprint: everything eng_trainer_load_checkpoint needs to continue
 * bit-exactly) and a PEFT adapter folder's two files, so the checkpoint is
 * servable as the model "<job model>:step-<n>".
 *
 * Atomicity: a checkpoint is written into .tmp-step-<n>/ (each file fsynced
 * by the engine), renamed to step-<n>/ and the parent fsynced; only then is
 * its row added. Retention deletes the row first, then the folder. So a row
 * always names a whole folder; a kill -9 at any moment leaves at worst a
 * temp folder or a folder without a row, which the next resume removes. A
 * checkpoint damaged on disk fails the engine's checksum when loaded: resume
 * drops it and takes the one before.
 */
#include "server/runner-impl.h"

#include "server/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int srv_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

static void ckpt_root(const run *r, char *buf, size_t len)
{
    snprintf(buf, len, "%s/jobs/%s/checkpoints", r->env->data_dir,
             r->job->id);
}

/* ------------------------------------------------------------------------ */
/* Saving and retention                                                      */

/* Which checkpoints to keep: the last keep_checkpoints and the one with the
 * lowest validation loss. */
static void retain(run *r)
{
    store_checkpoint *v = NULL;
    int n = 0, best = -1;
    if (store_checkpoint_list(r->env->db, r->job->id, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i].val_loss) &&
            (best < 0 || v[i].val_loss < v[best].val_loss))
            best = i;
    for (int i = 0; i < n - r->set.keep_checkpoints; i++) {
        if (i == best)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", r->env->data_dir, v[i].path);
        if (store_checkpoint_delete(r->env->db, r->job->id, v[i].step) == 0)
            srv_rm_rf(path);
    }
    free(v);
}

static int write_folder(run *r, const char *tmp, char *err, size_t errlen)
{
    int e = srv_rm_rf(tmp);
    if (e == 0)
        e = api_mkdir_p(tmp);
    if (e < 0) {
        snprintf(err, errlen, "%.128s: %s", tmp, strerror(-e));
        return e;
    }
    e = eng_trainer_save_checkpoint(r->tr, tmp, err, errlen);
    eng_adapter *a = eng_trainer_adapter(r->tr);
    if (e == 0 && a)
        e = eng_adapter_save(a, tmp, r->job->base_model, err, errlen);
    return e;
}

int srv_ckpt_save(run *r)
{
    int step = eng_trainer_step_index(r->tr);
    char root[1024], tmp[1100], dst[1100], err[256] = "";
    if (step == r->saved_step)
        return 0;
    ckpt_root(r, root, sizeof root);
    snprintf(tmp, sizeof tmp, "%s/.tmp-step-%d", root, step);
    snprintf(dst, sizeof dst, "%s/step-%d", root, step);
    int e = api_mkdir_p(root);
    if (e == 0)
        e = write_folder(r, tmp, err, sizeof err);
    if (e == 0 && (e = srv_rm_rf(dst)) == 0 && rename(tmp, dst) < 0)
        e = -errno;
    if (e < 0) {
        srv_rm_rf(tmp);
        return srv_run_err(r, "checkpoint_failed", "cannot save the "
                           "checkpoint of step %d: %s", step,
                           *err ? err : strerror(-e));
    }
    api_fsync_dir(root);
    store_checkpoint c = {
        .step = step, .train_loss = r->train_loss,
        .val_loss = r->val_step == step ? r->val_loss : NAN,
        .val_accuracy = r->val_step == step ? r->val_acc : NAN,
        .created_at = (int64_t)time(NULL),
    };
    snprintf(c.job_id, sizeof c.job_id, "%s", r->job->id);
    snprintf(c.path, sizeof c.path, "jobs/%s/checkpoints/step-%d", r->job->id,
             step);
    if ((e = store_checkpoint_add(r->env->db, &c)) < 0)
        return srv_run_err(r, "checkpoint_failed", "cannot record the "
                           "checkpoint of step %d: %s", step, strerror(-e));
    r->saved_step = step;
    retain(r);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "step", step);
    char name[400], msg[480];
    snprintf(name, sizeof name, "%s:step-%d", r->job->model, step);
    cJSON_AddStringToObject(d, "model", name);
    if (!isnan(c.val_loss))
        cJSON_AddNumberToObject(d, "val_loss", c.val_loss);
    snprintf(msg, sizeof msg, "checkpoint saved at step %d: %s", step, name);
    srv_run_event(r, "info", "checkpoint", msg, d);
    return 0;
}

int srv_ckpt_load(run *r, int step)
{
    char dir[1100], err[256] = "";
    snprintf(dir, sizeof dir, "%s/jobs/%s/checkpoints/step-%d",
             r->env->data_dir, r->job->id, step);
    int e = eng_trainer_load_checkpoint(r->tr, dir, err, sizeof err);
    if (e < 0)
        return srv_run_err(r, "checkpoint_unreadable", "checkpoint of step "
                           "%d: %s", step, *err ? err : strerror(-e));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Resuming                                                                  */

static bool has_row(const store_checkpoint *v, int n, const char *name)
{
    char want[64];
    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof want, "step-%d", v[i].step);
        if (!strcmp(want, name))
            return true;
    }
    return false;
}

/* Temp folders and folders whose row was never written (a kill between the
 * rename and the insert, or between a row's delete and its folder's). */
static void remove_orphans(run *r, const store_checkpoint *v, int n)
{
    char root[1024], path[1400];
    ckpt_root(r, root, sizeof root);
    DIR *d = opendir(root);
    struct dirent *de;
    if (!d)
        return;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            has_row(v, n, de->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", root, de->d_name);
        srv_rm_rf(path);
    }
    closedir(d);
}

/* Early stopping's state at the resumed step, replayed from the stored
 * validation losses (the same evaluations at the same steps). */
static void replay_early_stopping(run *r, int upto)
{
    store_metric *m = NULL;
    int n = 0;
    if (store_metric_list(r->env->db, r->job->id, &m, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        if (m[i].step > upto || isnan(m[i].val_loss))
            continue;
        if (m[i].val_loss < r->best_val) {
            r->best_val = m[i].val_loss;
            r->best_step = m[i].step;
            r->bad_evals = 0;
        } else {
            r->bad_evals++;
        }
        r->val_loss = (float)m[i].val_loss;
        r->val_acc = (float)m[i].val_accuracy;
        r->val_step = m[i].step;
        r->train_loss = (float)m[i].train_loss;
    }
    free(m);
}

int srv_ckpt_resume(run *r)
{
    store_checkpoint *v = NULL;
    int n = 0, e;
    char msg[700];
    if ((e = store_checkpoint_list(r->env->db, r->job->id, &v, &n)) < 0)
        return srv_run_err(r, "internal_error", "cannot list checkpoints: "
                           "%s", strerror(-e));
    remove_orphans(r, v, n);
    for (int i = n - 1; i >= 0; i--) {
        if (srv_ckpt_load(r, v[i].step) == 0) {
            r->saved_step = v[i].step;
            replay_early_stopping(r, v[i].step);
            cJSON *d = cJSON_CreateObject();
            cJSON_AddNumberToObject(d, "step", v[i].step);
            snprintf(msg, sizeof msg, "resumed from the checkpoint of step "
                     "%d", v[i].step);
            srv_run_event(r, "info", "message", msg, d);
            free(v);
            return 0;
        }
        snprintf(msg, sizeof msg, "%s; using the one before", r->err);
        srv_warn("job %s: %s", r->job->id, msg);
        srv_run_event(r, "warn", "message", msg, NULL);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", r->env->data_dir, v[i].path);
        if (store_checkpoint_delete(r->env->db, r->job->id, v[i].step) == 0)
            srv_rm_rf(path);
    }
    free(v);
    r->err[0] = 0;
    r->err_code = NULL;
    return 0;
}

void srv_ckpt_discard(const srv_runner_env *env, const char *job_id)
{
    char dir[1024];
    store_checkpoint_delete_all(env->db, job_id);
    snprintf(dir, sizeof dir, "%s/jobs/%s/checkpoints", env->data_dir,
             job_id);
    srv_rm_rf(dir);
    api_job_adapter_dir(env->data_dir, job_id, dir, sizeof dir);
    srv_rm_rf(dir);
}
