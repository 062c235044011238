/* SPDX-License-Identifier: MIT */
/*
 * jobctl.c - controlling a job and reading what it produced: pause, resume,
 * stop-and-save, priority; checkpoints (listed, and servable as
 * "<job model>:step-<n>"), metrics as CSV, the prompting-vs-finetuning
 * report; and the job options of POST /jobs that go with them (priority,
 * webhook_url, webhook_secret, validation_dataset_id).
 *
 * Pause and stop of a running job are requests its worker carries out
 * within a training step (the answer shows the job still running); a
 * queued job pauses at once. Checkpoint rows and folders are written by the
 * worker (server/ckpt.c); this file only reads them, and removes a
 * cancelled job's files when the cancel ends the job at once.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PRIORITY_MIN (-1000)
#define PRIORITY_MAX 1000

/* ------------------------------------------------------------------------ */
/* POST /jobs options                                                        */

static int check_url(api_call *c, const char *url)
{
    bool ok = (!strncmp(url, "http://", 7) && url[7]) ||
              (!strncmp(url, "https://", 8) && url[8]);
    for (const char *p = url; ok && *p; p++)
        ok = *p > 32 && *p < 127;
    if (!ok)
        api_error(c->res, 400, "invalid_parameter", "webhook_url must be an "
                  "http:// or https:// URL without spaces (at most 1000 "
                  "bytes)", -1, "webhook_url");
    return ok ? 0 : -1;
}

static const char *val_field(const cJSON *o)
{
    return cJSON_GetObjectItemCaseSensitive(o, "validation_file")
               ? "validation_file" : "validation_dataset_id";
}

static int check_val_dataset(api_call *c, const cJSON *o)
{
    const char *id, *field = val_field(o);
    store_dataset ds;
    if (api_get_str(c, o, field, 64, NULL, &id) < 0)
        return -1;
    if (!id)
        return 0;
    /* A validation dataset replaces validation_split: both is ambiguous. */
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(o, "hyperparameters");
    const cJSON *vs[] = { cJSON_GetObjectItemCaseSensitive(o, "validation_split"),
                          cJSON_IsObject(hp) ? cJSON_GetObjectItemCaseSensitive(
                                                   hp, "validation_split")
                                             : NULL };
    for (int i = 0; i < 2; i++)
        if (cJSON_IsNumber(vs[i]) && vs[i]->valuedouble != 0) {
            api_error(c->res, 400, "invalid_parameter", "give either "
                      "validation_split or a validation dataset, not both",
                      -1, "validation_split");
            return -1;
        }
    int r = api_id_valid(id, "ds_")
                ? store_dataset_get_for(c->ctx->db, id, api_owner(c), &ds)
                : -ENOENT;
    if (r == -ENOENT) {
        char msg[160];
        snprintf(msg, sizeof(msg), "no dataset with id '%.64s'", id);
        api_error(c->res, 404, "dataset_not_found", msg, -1, field);
    } else if (r < 0) {
        api_reply_errno(c, r, "could not read the validation dataset");
    }
    return r < 0 ? -1 : 0;
}

int api_job_options_check(api_call *c, const cJSON *o)
{
    const char *url, *secret;
    int64_t prio;
    if (!o)
        return 0;
    if (api_get_int(c, o, "priority", PRIORITY_MIN, PRIORITY_MAX, 0,
                    &prio) < 0 ||
        api_get_str(c, o, "webhook_url", 1000, NULL, &url) < 0 ||
        (url && check_url(c, url) < 0) ||
        api_get_str(c, o, "webhook_secret", 255, NULL, &secret) < 0 ||
        check_val_dataset(c, o) < 0)
        return -1;
    if (secret && !*secret) {
        api_error(c->res, 400, "invalid_parameter", "webhook_secret must not "
                  "be empty", -1, "webhook_secret");
        return -1;
    }
    return 0;
}

void api_job_options_apply(const cJSON *o, store_job *j)
{
    const cJSON *it;
    if (!o)
        return;
    it = cJSON_GetObjectItemCaseSensitive(o, "priority");
    if (cJSON_IsNumber(it))
        j->priority = it->valueint;
    it = cJSON_GetObjectItemCaseSensitive(o, "webhook_url");
    if (cJSON_IsString(it))
        snprintf(j->webhook_url, sizeof(j->webhook_url), "%s",
                 it->valuestring);
    it = cJSON_GetObjectItemCaseSensitive(o, "webhook_secret");
    if (cJSON_IsString(it))
        snprintf(j->webhook_secret, sizeof(j->webhook_secret), "%s",
                 it->valuestring);
    it = cJSON_GetObjectItemCaseSensitive(o, val_field(o));
    if (cJSON_IsString(it))
        snprintf(j->val_dataset_id, sizeof(j->val_dataset_id), "%s",
                 it->valuestring);
}

/* ------------------------------------------------------------------------ */
/* The job object                                                            */

void api_job_json_more(api_call *c, const store_job *j, cJSON *o)
{
    (void)c;
    cJSON_AddNumberToObject(o, "priority", j->priority);
    if (j->val_dataset_id[0])
        cJSON_AddStringToObject(o, "validation_dataset_id",
                                j->val_dataset_id);
    else
        cJSON_AddNullToObject(o, "validation_dataset_id");
    if (j->webhook_url[0])
        cJSON_AddStringToObject(o, "webhook_url", j->webhook_url);
    else
        cJSON_AddNullToObject(o, "webhook_url");
    if (j->note)
        cJSON_AddStringToObject(o, "note", j->note);
    else
        cJSON_AddNullToObject(o, "note");
    if (j->control[0] && !strcmp(j->status, "running"))
        cJSON_AddStringToObject(o, "requested", j->control);
    cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "progress");
    if (cJSON_IsObject(p)) {
        bool eta = !strcmp(j->status, "running") && j->eta_seconds >= 0;
        api_json_add_num_or_null(p, "estimated_finish",
                                 eta ? (double)(api_now() +
                                                (int64_t)ceil(j->eta_seconds))
                                     : 0, !eta);
    }
}

int api_job_render(const api_ctx *ctx, store *db, const char *id,
                   char **ret_json)
{
    api_ctx local = *ctx;
    api_request req = {.method = "GET", .path = "/"};
    api_response res = {0};
    api_call c = {.ctx = &local, .req = &req, .res = &res};
    store_job j;
    local.db = db;
    int r = store_job_get(db, id, &j);
    if (r < 0)
        return r;
    cJSON *o = api_job_json(&c, &j);
    store_job_done(&j);
    char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    api_response_done(&res);
    if (!txt)
        return -ENOMEM;
    *ret_json = txt;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

void api_job_discard(api_ctx *ctx, const char *id)
{
    char dir[1024];
    store_checkpoint_delete_all(ctx->db, id);
    snprintf(dir, sizeof(dir), "%s/jobs/%s/checkpoints", ctx->data_dir, id);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    api_job_adapter_dir(ctx->data_dir, id, dir, sizeof(dir));
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------------ */
/* Controls                                                                  */

static void reply_job(api_call *c)
{
    store_job j;
    int r = store_job_get(c->ctx->db, c->id, &j);
    if (r < 0) {
        api_reply_errno(c, r, "could not read the job");
        return;
    }
    api_reply_json(c, 200, api_job_json(c, &j));
    store_job_done(&j);
}

static void not_found(api_call *c)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "no job with id '%s'", c->id);
    api_error(c->res, 404, "not_found", msg, -1, "id");
}

/* 409 naming the job's status; code job_finished once it has ended. */
static void conflict(api_call *c, const char *what)
{
    store_job j;
    char msg[200] = "the job cannot do that now";
    const char *code = "job_finished";
    if (store_job_get(c->ctx->db, c->id, &j) == 0) {
        bool live = !strcmp(j.status, "queued") ||
                    !strcmp(j.status, "running") ||
                    !strcmp(j.status, "paused");
        if (live)
            code = "invalid_state";
        snprintf(msg, sizeof(msg), "cannot %s a job that is %s", what,
                 j.status);
        store_job_done(&j);
    }
    api_error(c->res, 409, code, msg, -1, "id");
}

static void after_change(api_call *c, const char *msg)
{
    store_event_add(c->ctx->db, c->id, "info", "status", msg, NULL, NULL);
    if (c->ctx->notify_jobs)
        c->ctx->notify_jobs(c->ctx->notify_user);
    reply_job(c);
}

static void control(api_call *c, const char *action)
{
    char status[16] = "";
    int r = store_job_control(c->ctx->db, c->id, action, status);
    if (r == -ENOENT) {
        not_found(c);
    } else if (r == -EBUSY) {
        conflict(c, action);
    } else if (r < 0) {
        api_reply_errno(c, r, "could not change the job");
    } else if (!strcmp(action, "pause")) {
        after_change(c, !strcmp(status, "paused") ? "Job paused"
                                                  : "Pause requested");
    } else {
        after_change(c, !strcmp(status, "queued")
                            ? "Stop requested: the paused job resumes to "
                              "save its model"
                            : "Stop requested: the job saves its model at "
                              "the current step");
    }
}

void api_h_jobs_pause(api_call *c)
{
    control(c, "pause");
}

void api_h_jobs_stop(api_call *c)
{
    control(c, "stop");
}

void api_h_jobs_resume(api_call *c)
{
    int r = store_job_resume(c->ctx->db, c->id);
    if (r == -ENOENT)
        not_found(c);
    else if (r == -EBUSY)
        conflict(c, "resume");
    else if (r < 0)
        api_reply_errno(c, r, "could not resume the job");
    else
        after_change(c, "Job resumed: queued again");
}

void api_h_jobs_priority(api_call *c)
{
    int64_t prio;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(c->json, "priority");
    const cJSON *k;
    cJSON_ArrayForEach(k, c->json) {
        if (strcmp(k->string, "priority")) {
            char msg[128];
            snprintf(msg, sizeof(msg), "unknown field '%.64s'", k->string);
            api_error(c->res, 400, "invalid_parameter", msg, -1, k->string);
            return;
        }
    }
    if (!it) {
        api_error(c->res, 400, "invalid_parameter", "priority is required",
                  -1, "priority");
        return;
    }
    if (api_get_int(c, c->json, "priority", PRIORITY_MIN, PRIORITY_MAX, 0,
                    &prio) < 0)
        return;
    int r = store_job_set_priority(c->ctx->db, c->id, (int)prio);
    char msg[64];
    snprintf(msg, sizeof(msg), "Priority set to %d", (int)prio);
    if (r == -ENOENT)
        not_found(c);
    else if (r == -EBUSY)
        conflict(c, "reprioritize");
    else if (r < 0)
        api_reply_errno(c, r, "could not change the priority");
    else
        after_change(c, msg);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */

/* The checkpoint whose val_loss is lowest, -1 when none was validated. */
static int best_of(const store_checkpoint *v, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i].val_loss) &&
            (best < 0 || v[i].val_loss < v[best].val_loss))
            best = i;
    return best;
}

static cJSON *checkpoint_json(const store_job *j, const store_checkpoint *k,
                              bool best)
{
    char name[400];
    cJSON *o = cJSON_CreateObject();
    snprintf(name, sizeof(name), "%s:step-%d", j->model, k->step);
    cJSON_AddStringToObject(o, "id", name);
    cJSON_AddStringToObject(o, "object", "checkpoint");
    cJSON_AddStringToObject(o, "model", name);
    cJSON_AddStringToObject(o, "job", j->id);
    cJSON_AddNumberToObject(o, "step", k->step);
    api_json_add_num_or_null(o, "train_loss", k->train_loss, false);
    api_json_add_num_or_null(o, "val_loss", k->val_loss, false);
    api_json_add_num_or_null(o, "val_accuracy", k->val_accuracy, false);
    cJSON_AddBoolToObject(o, "best", best);
    api_json_add_time(o, "created_at", k->created_at);
    return o;
}

void api_h_jobs_checkpoints(api_call *c)
{
    store_job j;
    store_checkpoint *v = NULL;
    int n = 0, r = store_job_get(c->ctx->db, c->id, &j);
    if (r == -ENOENT) {
        not_found(c);
        return;
    }
    if (r == 0 && (r = store_checkpoint_list(c->ctx->db, c->id, &v, &n)) < 0)
        store_job_done(&j);
    if (r < 0) {
        api_reply_errno(c, r, "could not list the checkpoints");
        return;
    }
    int best = best_of(v, n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *arr = cJSON_AddArrayToObject(o, "data");
    for (int i = n - 1; i >= 0; i--)
        cJSON_AddItemToArray(arr, checkpoint_json(&j, &v[i], i == best));
    if (best >= 0)
        cJSON_AddNumberToObject(o, "best_step", v[best].step);
    else
        cJSON_AddNullToObject(o, "best_step");
    free(v);
    store_job_done(&j);
    api_reply_json(c, 200, o);
}

/* Adds every checkpoint of the visible, not cancelled jobs to a /models
 * list. */
void api_checkpoint_models(api_call *c, cJSON *arr)
{
    store_job *jobs = NULL;
    int nj = 0;
    if (store_job_list_for(c->ctx->db, api_owner(c), NULL, 1000, &jobs,
                           &nj) < 0)
        return;
    for (int i = 0; i < nj; i++) {
        store_checkpoint *v = NULL;
        int n = 0;
        if (!strcmp(jobs[i].status, "cancelled") ||
            store_checkpoint_list(c->ctx->db, jobs[i].id, &v, &n) < 0)
            continue;
        int best = best_of(v, n);
        for (int k = n - 1; k >= 0; k--) {
            cJSON *o = checkpoint_json(&jobs[i], &v[k], k == best);
            cJSON_ReplaceItemInObjectCaseSensitive(o, "object",
                                                   cJSON_CreateString("model"));
            cJSON_AddStringToObject(o, "type", "checkpoint");
            cJSON_AddStringToObject(o, "base", jobs[i].base_model);
            cJSON_AddItemToArray(arr, o);
        }
        free(v);
    }
    store_job_list_free(jobs, nj);
}

/* "<job id or job model>:step-<n>": 1 when name is not of that form. */
static int split_step(const char *name, char *job, size_t len, int *ret_step)
{
    const char *p = strrchr(name, ':');
    char *end;
    if (!p || strncmp(p, ":step-", 6) || !p[6])
        return 1;
    long step = strtol(p + 6, &end, 10);
    if (*end || step < 0 || step > 100000000 || (size_t)(p - name) >= len)
        return 1;
    snprintf(job, len, "%.*s", (int)(p - name), name);
    *ret_step = (int)step;
    return 0;
}

int api_checkpoint_resolve(api_call *c, const char *name, eng_model **ret_m,
                           eng_tokenizer **ret_t, eng_adapter **ret_a,
                           char *ret_name, size_t namelen)
{
    char jname[300], msg[400], dir[1200], err[256] = "";
    int step;
    store_job j;
    store_checkpoint k;
    if (split_step(name, jname, sizeof(jname), &step))
        return 1;
    const char *id = api_job_id_of(jname);
    int r = api_id_valid(id, "job_")
                ? store_job_get_for(c->ctx->db, id, api_owner(c), &j)
                : -ENOENT;
    if (r == 0 && strcmp(id, jname) && strcmp(j.model, jname))
        r = -ENOENT;
    if (r == 0 && (strcmp(j.status, "cancelled") == 0 ||
                   store_checkpoint_get(c->ctx->db, j.id, step, &k) < 0)) {
        store_job_done(&j);
        r = -ENOENT;
    }
    if (r < 0) {
        snprintf(msg, sizeof(msg), "unknown model '%.128s'", name);
        api_error(c->res, 404, "model_not_found", msg, -1, "model");
        return -1;
    }
    r = api_registry_get_base(c->ctx->models, j.base_model, ret_m, ret_t);
    if (r == 0) {
        snprintf(dir, sizeof(dir), "%s/%s", c->ctx->data_dir, k.path);
        r = api_adapter_on_base(c->ctx, dir, ret_m, ret_t, ret_a, err,
                                sizeof(err));
    }
    if (r < 0) {
        snprintf(msg, sizeof(msg), "checkpoint %d of job %s cannot be "
                 "loaded: %s", step, j.id, err[0] ? err : strerror(-r));
        api_error(c->res, 503, "model_unavailable", msg, -1, "model");
    } else {
        snprintf(ret_name, namelen, "%s:step-%d", j.model, step);
    }
    store_job_done(&j);
    return r < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Metrics and report                                                        */

static void csv_num(FILE *f, double v)
{
    if (isnan(v))
        fputc(',', f);
    else
        fprintf(f, ",%.9g", v);
}

void api_h_jobs_metrics_csv(api_call *c)
{
    store_job j;
    store_metric *m = NULL;
    int n = 0, r = store_job_get(c->ctx->db, c->id, &j);
    if (r == -ENOENT) {
        not_found(c);
        return;
    }
    if (r == 0) {
        store_job_done(&j);
        r = store_metric_list(c->ctx->db, c->id, &m, &n);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = r == 0 ? open_memstream(&buf, &len) : NULL;
    if (!f) {
        free(m);
        api_reply_errno(c, r < 0 ? r : -ENOMEM, "could not read the metrics");
        return;
    }
    fputs("step,train_loss,val_loss,val_accuracy,learning_rate,grad_norm,"
          "tokens_per_second,created_at\r\n", f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%d", m[i].step);
        csv_num(f, m[i].train_loss);
        csv_num(f, m[i].val_loss);
        csv_num(f, m[i].val_accuracy);
        csv_num(f, m[i].lr);
        csv_num(f, m[i].grad_norm);
        csv_num(f, m[i].tokens_per_second);
        fprintf(f, ",%lld\r\n", (long long)m[i].created_at);
    }
    fclose(f);
    free(m);
    c->res->status = 200;
    c->res->content_type = "text/csv; charset=utf-8";
    c->res->body = buf;
    c->res->body_len = len;
    char disp[128];
    snprintf(disp, sizeof(disp), "attachment; filename=\"%s-metrics.csv\"",
             c->id);
    api_response_header(c->res, "Content-Disposition", disp);
}

void api_h_jobs_report(api_call *c)
{
    store_job j;
    int r = store_job_get(c->ctx->db, c->id, &j);
    if (r == -ENOENT) {
        not_found(c);
        return;
    }
    if (r < 0) {
        api_reply_errno(c, r, "could not read the job");
        return;
    }
    char dir[1024], path[1100], msg[200], err[160];
    api_job_dir(c->ctx->data_dir, c->id, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/report.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        bool done = !strcmp(j.status, "succeeded");
        snprintf(msg, sizeof(msg), done ? "the job has no report"
                 : "the report is written when the job succeeds; the job is "
                   "%s", j.status);
        api_error(c->res, done ? 404 : 409,
                  done ? "not_found" : "report_not_ready", msg, -1, "id");
        store_job_done(&j);
        return;
    }
    store_job_done(&j);
    char *buf = NULL;
    size_t len = 0, got;
    char chunk[8192];
    FILE *m = open_memstream(&buf, &len);
    while (m && (got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, got, m);
    fclose(f);
    if (m)
        fclose(m);
    cJSON *o = buf ? api_json_parse(buf, len, err, sizeof(err)) : NULL;
    free(buf);
    if (!o) {
        api_error(c->res, 500, "internal_error", "the stored report is "
                  "unreadable", -1, NULL);
        return;
    }
    api_reply_json(c, 200, o);
}
