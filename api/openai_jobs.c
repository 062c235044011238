/* SPDX-License-Identifier: MIT */
/*
 * openai_jobs.c - OpenAI's fine-tuning API over Tuna's jobs:
 * POST /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs,
 * GET /v1/fine_tuning/jobs/{id}, POST .../{id}/cancel, .../pause,
 * .../resume, GET .../{id}/events, GET .../{id}/checkpoints.
 *
 * One job model underneath: creation translates the OpenAI request into
 * the JSON form of POST /jobs and runs the very same code (validation,
 * "auto" hyperparameters, Idempotency-Key, queueing); cancel, pause and
 * resume are the native controls; the answers are the same store rows
 * rendered as OpenAI objects:
 *
 *   n_epochs                  <-> epochs
 *   batch_size                <-> batch_size
 *   learning_rate_multiplier  <-> learning_rate / (the "auto" learning rate
 *                                 of the base model)
 *   seed                      <-> hyperparameters.seed
 *   training_file "file-<hex>" <-> dataset_id "ds_<hex>"
 *   id "ftjob-<hex>"          <-> "job_<hex>"
 *   fine_tuned_model          <-  the job's model, once it succeeded
 *
 * OpenAI lists are newest first with an "after" cursor naming the last
 * object of the previous page; has_more says whether there is another.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JOBS_MAX_LIST 10000

/* ------------------------------------------------------------------------ */
/* Objects                                                                   */

static const char *oai_status(const char *s)
{
    /* Tuna validates files before it answers, so a job is never in
     * "validating_files"; "paused" has no OpenAI equivalent and shows as
     * it is. */
    return s;
}

/* The base model's "auto" learning rate, for the multiplier. */
static double auto_lr(api_call *c, const char *base, bool full)
{
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    if (!c->ctx->models ||
        api_registry_get_base(c->ctx->models, base, &m, &t) < 0)
        return api_hparams_auto_lr(NULL, full);
    double lr = api_hparams_auto_lr(m, full);
    eng_model_unref(m);
    eng_tokenizer_unref(t);
    return lr;
}

static double hp_num(const cJSON *hp, const char *name, double def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(hp, name);
    return cJSON_IsNumber(it) ? it->valuedouble : def;
}

static cJSON *oai_hparams(api_call *c, const store_job *j, const cJSON *hp)
{
    bool full = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(hp,
                                                              "full_finetune"));
    double lr = hp_num(hp, "learning_rate", 1e-3);
    double mult = lr / auto_lr(c, j->base_model, full);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n_epochs", hp_num(hp, "epochs", 3));
    cJSON_AddNumberToObject(o, "batch_size", hp_num(hp, "batch_size", 4));
    cJSON_AddNumberToObject(o, "learning_rate_multiplier",
                            round(mult * 1e6) / 1e6);
    return o;
}

static void add_file_id(cJSON *o, const char *name, const char *ds_id)
{
    char id[64];
    if (!ds_id || !ds_id[0]) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    api_oai_id(ds_id, id, sizeof(id));
    cJSON_AddStringToObject(o, name, id);
}

static void add_error(cJSON *o, const store_job *j)
{
    cJSON *e = j->error && *j->error ? cJSON_Parse(j->error) : NULL;
    if (!e) {
        cJSON_AddNullToObject(o, "error");
        return;
    }
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    cJSON *oe = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(oe, "code", cJSON_IsString(code)
                                            ? code->valuestring : "error");
    cJSON_AddStringToObject(oe, "message", cJSON_IsString(msg)
                                               ? msg->valuestring : "");
    cJSON_AddNullToObject(oe, "param");
    cJSON_Delete(e);
}

/* trained_tokens once the job succeeded: the dataset's tokens per epoch. */
static void add_trained_tokens(api_call *c, cJSON *o, const store_job *j,
                               const cJSON *hp)
{
    store_dataset d;
    if (strcmp(j->status, "succeeded") ||
        store_dataset_get(c->ctx->db, j->dataset_id, &d) < 0) {
        cJSON_AddNullToObject(o, "trained_tokens");
        return;
    }
    cJSON_AddNumberToObject(o, "trained_tokens",
                            (double)d.tokens * hp_num(hp, "epochs", 1));
}

cJSON *api_oai_job_json(api_call *c, const store_job *j)
{
    char id[64];
    cJSON *hp = j->hyperparameters ? cJSON_Parse(j->hyperparameters) : NULL;
    cJSON *o = cJSON_CreateObject();
    api_oai_id(j->id, id, sizeof(id));
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "fine_tuning.job");
    cJSON_AddStringToObject(o, "model", j->base_model);
    cJSON_AddNumberToObject(o, "created_at", (double)j->created_at);
    api_json_add_time(o, "finished_at", j->finished_at);
    if (!strcmp(j->status, "succeeded"))
        cJSON_AddStringToObject(o, "fine_tuned_model", j->model);
    else
        cJSON_AddNullToObject(o, "fine_tuned_model");
    cJSON_AddStringToObject(o, "organization_id", "org-tuna");
    cJSON_AddArrayToObject(o, "result_files");
    cJSON_AddStringToObject(o, "status", oai_status(j->status));
    add_file_id(o, "training_file", j->dataset_id);
    add_file_id(o, "validation_file", j->val_dataset_id);
    cJSON *h = oai_hparams(c, j, hp);
    cJSON_AddItemToObject(o, "hyperparameters", h);
    add_trained_tokens(c, o, j, hp);
    add_error(o, j);
    cJSON_AddNumberToObject(o, "seed", hp_num(hp, "seed", 0));
    if (!strcmp(j->status, "running") && j->eta_seconds >= 0)
        cJSON_AddNumberToObject(o, "estimated_finish",
                                (double)(api_now() +
                                         (int64_t)ceil(j->eta_seconds)));
    else
        cJSON_AddNullToObject(o, "estimated_finish");
    cJSON_AddArrayToObject(o, "integrations");
    cJSON_AddNullToObject(o, "metadata");
    cJSON *method = cJSON_AddObjectToObject(o, "method");
    cJSON_AddStringToObject(method, "type", "supervised");
    cJSON *sup = cJSON_AddObjectToObject(method, "supervised");
    cJSON_AddItemToObject(sup, "hyperparameters", cJSON_Duplicate(h, true));
    if (j->suffix[0])
        cJSON_AddStringToObject(o, "user_provided_suffix", j->suffix);
    else
        cJSON_AddNullToObject(o, "user_provided_suffix");
    /* Tuna's own view of the same job */
    cJSON_AddStringToObject(o, "tuna_job_id", j->id);
    cJSON_AddStringToObject(o, "tuna_model", j->model);
    cJSON_Delete(hp);
    return o;
}

static void reply_job(api_call *c, const char *native_id)
{
    store_job j;
    int r = store_job_get(c->ctx->db, native_id, &j);
    if (r < 0) {
        api_reply_errno(c, r, "could not read the job");
        return;
    }
    api_reply_json(c, 200, api_oai_job_json(c, &j));
    store_job_done(&j);
}

static int get_job(api_call *c, store_job *j)
{
    int r = store_job_get(c->ctx->db, c->id, j);
    if (r == -ENOENT) {
        char id[64], msg[128];
        api_oai_id(c->id, id, sizeof(id));
        snprintf(msg, sizeof(msg), "No such fine-tuning job: %s", id);
        api_error(c->res, 404, "not_found", msg, -1, "id");
    } else if (r < 0) {
        api_reply_errno(c, r, "could not read the job");
    }
    return r;
}

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */

static const char *const create_keys[] = {
    "model", "training_file", "validation_file", "hyperparameters",
    "suffix", "seed", "method", "integrations", "metadata", NULL,
};

static int bad(api_call *c, const char *param, const char *msg)
{
    api_error(c->res, 400, "invalid_parameter", msg, -1, param);
    return -1;
}

/* A file id ("file-<hex>", or a native "ds_<hex>") into a dataset id. */
static int file_param(api_call *c, const cJSON *o, const char *name,
                      bool required, cJSON *out, const char *native_name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    char msg[96], ds[64];
    if (!it || cJSON_IsNull(it)) {
        snprintf(msg, sizeof(msg), "%s is required", name);
        return required ? bad(c, name, msg) : 0;
    }
    if (!cJSON_IsString(it) || strlen(it->valuestring) > 60) {
        snprintf(msg, sizeof(msg), "%s must be a file id", name);
        return bad(c, name, msg);
    }
    if (!api_oai_id_to_native(it->valuestring, ds, sizeof(ds)))
        snprintf(ds, sizeof(ds), "%s", it->valuestring);
    cJSON_AddStringToObject(out, native_name, ds);
    return 0;
}

/* One of n_epochs, batch_size, learning_rate_multiplier: a number or
 * "auto" (the default). */
static int hp_param(api_call *c, const cJSON *in, const char *name,
                    const char *native, double lr_auto, cJSON *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(in, name);
    char param[64], msg[128];
    snprintf(param, sizeof(param), "hyperparameters.%s", name);
    if (!it || cJSON_IsNull(it) ||
        (cJSON_IsString(it) && !strcmp(it->valuestring, "auto"))) {
        cJSON_AddStringToObject(out, native, "auto");
        return 0;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) ||
        it->valuedouble <= 0) {
        snprintf(msg, sizeof(msg), "%s must be \"auto\" or a positive number",
                 param);
        return bad(c, param, msg);
    }
    double v = it->valuedouble;
    if (lr_auto > 0)
        v = v * lr_auto;
    cJSON_AddNumberToObject(out, native, v);
    return 0;
}

/* hyperparameters, or method.supervised.hyperparameters. */
static const cJSON *pick_hparams(api_call *c, const cJSON *o, int *err)
{
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(o, "hyperparameters");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "method");
    *err = 0;
    if (m && !cJSON_IsNull(m)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
        if (!cJSON_IsObject(m) || !cJSON_IsString(type) ||
            strcmp(type->valuestring, "supervised")) {
            *err = bad(c, "method.type", "method.type must be \"supervised\" "
                       "(the only method this server trains)");
            return NULL;
        }
        const cJSON *sup = cJSON_GetObjectItemCaseSensitive(m, "supervised");
        const cJSON *mhp = cJSON_GetObjectItemCaseSensitive(sup,
                                                            "hyperparameters");
        if (mhp && !cJSON_IsNull(mhp))
            hp = mhp;
    }
    if (hp && !cJSON_IsNull(hp) && !cJSON_IsObject(hp)) {
        *err = bad(c, "hyperparameters", "hyperparameters must be an object");
        return NULL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, hp) {
        if (strcmp(it->string, "n_epochs") && strcmp(it->string, "batch_size") &&
            strcmp(it->string, "learning_rate_multiplier")) {
            char param[96], msg[160];
            snprintf(param, sizeof(param), "hyperparameters.%.64s", it->string);
            snprintf(msg, sizeof(msg), "unknown hyperparameter \"%.64s\"",
                     it->string);
            *err = bad(c, param, msg);
            return NULL;
        }
    }
    return hp;
}

/* The OpenAI request -> the JSON form of POST /jobs. NULL after an error
 * reply. */
static cJSON *native_request(api_call *c, const cJSON *o)
{
    const cJSON *it, *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    cJSON_ArrayForEach(it, o) {
        bool ok = false;
        for (int i = 0; !ok && create_keys[i]; i++)
            ok = !strcmp(create_keys[i], it->string);
        if (!ok) {
            char msg[128];
            snprintf(msg, sizeof(msg), "Unrecognized request argument "
                     "supplied: %.64s", it->string);
            bad(c, it->string, msg);
            return NULL;
        }
    }
    if (!cJSON_IsString(model) || !model->valuestring[0]) {
        bad(c, "model", "model is required: a base model name from /models");
        return NULL;
    }
    int err;
    const cJSON *hp = pick_hparams(c, o, &err);
    if (err)
        return NULL;
    cJSON *n = cJSON_CreateObject();
    cJSON *nhp = cJSON_AddObjectToObject(n, "hyperparameters");
    cJSON_AddStringToObject(n, "base_model", model->valuestring);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(o, "suffix");
    if (seed && !cJSON_IsNull(seed))
        cJSON_AddItemToObject(nhp, "seed", cJSON_Duplicate(seed, true));
    if (suffix && !cJSON_IsNull(suffix))
        cJSON_AddItemToObject(n, "suffix", cJSON_Duplicate(suffix, true));
    if (file_param(c, o, "training_file", true, n, "dataset_id") < 0 ||
        file_param(c, o, "validation_file", false, n,
                   "validation_dataset_id") < 0 ||
        hp_param(c, hp, "n_epochs", "epochs", 0, nhp) < 0 ||
        hp_param(c, hp, "batch_size", "batch_size", 0, nhp) < 0 ||
        hp_param(c, hp, "learning_rate_multiplier", "learning_rate",
                 auto_lr(c, model->valuestring, false), nhp) < 0) {
        cJSON_Delete(n);
        return NULL;
    }
    return n;
}

void api_h_oai_jobs_create(api_call *c)
{
    cJSON *n = native_request(c, c->json);
    if (!n)
        return;
    api_jobs_create_object(c, n);
    cJSON_Delete(n);
    if (c->res->status != 200 && c->res->status != 201)
        return;
    cJSON *job = cJSON_ParseWithLength(c->res->body, c->res->body_len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(job, "id");
    char native[64] = "";
    if (cJSON_IsString(id))
        snprintf(native, sizeof(native), "%s", id->valuestring);
    cJSON_Delete(job);
    reply_job(c, native);
}

/* ------------------------------------------------------------------------ */
/* Reading and controls                                                      */

/* ?after=<job id> (either form), ?limit= (1-100, default 20). */
void api_h_oai_jobs_list(api_call *c)
{
    char after[64] = "", native[64];
    int64_t limit;
    api_query_get(c->req->query, "after", after, sizeof(after));
    if (api_oai_limit(c, 100, 20, &limit) < 0)
        return;
    if (!api_oai_id_to_native(after, native, sizeof(native)))
        snprintf(native, sizeof(native), "%s", after);
    store_job *jobs = NULL;
    int n = 0;
    int r = store_job_list_for(c->ctx->db, api_owner(c), NULL, JOBS_MAX_LIST,
                               &jobs, &n);
    if (r < 0) {
        api_reply_errno(c, r, "could not list jobs");
        return;
    }
    int k = 0;
    if (native[0]) {
        while (k < n && strcmp(jobs[k].id, native))
            k++;
        k++;                       /* past the cursor (or past the end) */
    }
    cJSON *data = cJSON_CreateArray();
    int taken = 0;
    for (; k < n && taken < limit; k++, taken++)
        cJSON_AddItemToArray(data, api_oai_job_json(c, &jobs[k]));
    bool more = k < n;
    store_job_list_free(jobs, n);
    api_reply_json(c, 200, api_oai_list(data, more));
}

void api_h_oai_jobs_get(api_call *c)
{
    store_job j;
    if (get_job(c, &j) < 0)
        return;
    api_reply_json(c, 200, api_oai_job_json(c, &j));
    store_job_done(&j);
}

void api_h_oai_jobs_cancel(api_call *c)
{
    api_h_jobs_cancel(c);             /* the native cancel, its events */
    if (c->res->status == 200)
        reply_job(c, c->id);
}

/* pause and resume: the native handlers (jobctl.c), so both families
 * answer a conflict with the same codes (409 invalid_state, job_finished
 * once the job has ended), then OpenAI's job object. */
void api_h_oai_jobs_pause(api_call *c)
{
    api_h_jobs_pause(c);
    if (c->res->status == 200)
        reply_job(c, c->id);
}

void api_h_oai_jobs_resume(api_call *c)
{
    api_h_jobs_resume(c);
    if (c->res->status == 200)
        reply_job(c, c->id);
}

/* ------------------------------------------------------------------------ */
/* Events and checkpoints                                                    */

static cJSON *oai_event(const store_event *e)
{
    char id[48];
    snprintf(id, sizeof(id), "ftevent-%lld", (long long)e->seq);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "fine_tuning.job.event");
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "created_at", (double)e->created_at);
    cJSON_AddStringToObject(o, "level", e->level);
    cJSON_AddStringToObject(o, "message", e->message ? e->message : "");
    bool step = !strcmp(e->type, "step");
    cJSON_AddStringToObject(o, "type", step ? "metrics" : "message");
    cJSON *d = e->data ? cJSON_Parse(e->data) : NULL;
    if (!d)
        d = cJSON_CreateObject();
    if (step) {   /* OpenAI's names for the step metrics */
        static const char *const names[][2] = {
            { "val_loss", "valid_loss" },
            { "val_accuracy", "valid_mean_token_accuracy" },
        };
        for (size_t i = 0; i < 2; i++) {
            cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(d, names[i][0]);
            if (v)
                cJSON_AddItemToObject(d, names[i][1], v);
        }
    }
    cJSON_AddItemToObject(o, "data", d);
    cJSON_AddStringToObject(o, "tuna_type", e->type);
    return o;
}

/* Newest first; ?after=ftevent-<seq> gives the ones before it. */
void api_h_oai_jobs_events(api_call *c)
{
    char after[64] = "";
    int64_t limit, before = INT64_MAX;
    store_job j;
    api_query_get(c->req->query, "after", after, sizeof(after));
    if (api_oai_limit(c, 1000, 20, &limit) < 0 || get_job(c, &j) < 0)
        return;
    store_job_done(&j);
    if (after[0]) {
        const char *p = strncmp(after, "ftevent-", 8) ? after : after + 8;
        char *end;
        before = strtoll(p, &end, 10);
        if (end == p || *end || before < 0) {
            bad(c, "after", "after must be an event id (ftevent-<n>)");
            return;
        }
    }
    store_event *ev = NULL;
    int n = 0;
    int r = store_event_list(c->ctx->db, c->id, 0, -1, &ev, &n);
    if (r < 0) {
        api_reply_errno(c, r, "could not read the events");
        return;
    }
    int k = n - 1;
    while (k >= 0 && ev[k].seq >= before)
        k--;
    cJSON *data = cJSON_CreateArray();
    for (int taken = 0; k >= 0 && taken < limit; k--, taken++)
        cJSON_AddItemToArray(data, oai_event(&ev[k]));
    store_event_list_free(ev, n);
    api_reply_json(c, 200, api_oai_list(data, k >= 0));
}

static cJSON *oai_checkpoint(const store_job *j, const store_checkpoint *k)
{
    char id[96], job_id[64], name[400];
    api_oai_id(j->id, job_id, sizeof(job_id));
    snprintf(id, sizeof(id), "ftckpt-%s-%d", j->id + 4, k->step);
    snprintf(name, sizeof(name), "%s:step-%d", j->model, k->step);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "fine_tuning.job.checkpoint");
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "created_at", (double)k->created_at);
    cJSON_AddStringToObject(o, "fine_tuned_model_checkpoint", name);
    cJSON_AddStringToObject(o, "fine_tuning_job_id", job_id);
    cJSON_AddNumberToObject(o, "step_number", k->step);
    cJSON *m = cJSON_AddObjectToObject(o, "metrics");
    cJSON_AddNumberToObject(m, "step", k->step);
    api_json_add_num_or_null(m, "train_loss", k->train_loss,
                             isnan(k->train_loss));
    api_json_add_num_or_null(m, "valid_loss", k->val_loss, isnan(k->val_loss));
    api_json_add_num_or_null(m, "valid_mean_token_accuracy", k->val_accuracy,
                             isnan(k->val_accuracy));
    return o;
}

/* Newest first; ?after=<checkpoint id> gives the older ones. */
void api_h_oai_jobs_checkpoints(api_call *c)
{
    char after[96] = "";
    int64_t limit;
    store_job j;
    api_query_get(c->req->query, "after", after, sizeof(after));
    if (api_oai_limit(c, 100, 10, &limit) < 0 || get_job(c, &j) < 0)
        return;
    store_checkpoint *ck = NULL;
    int n = 0;
    int r = store_checkpoint_list(c->ctx->db, c->id, &ck, &n);
    if (r < 0) {
        store_job_done(&j);
        api_reply_errno(c, r, "could not read the checkpoints");
        return;
    }
    const char *dash = after[0] ? strrchr(after, '-') : NULL;
    long before = dash ? strtol(dash + 1, NULL, 10) : -1;
    int k = n - 1;
    while (dash && k >= 0 && ck[k].step >= before)
        k--;
    cJSON *data = cJSON_CreateArray();
    for (int taken = 0; k >= 0 && taken < limit; k--, taken++)
        cJSON_AddItemToArray(data, oai_checkpoint(&j, &ck[k]));
    free(ck);
    store_job_done(&j);
    api_reply_json(c, 200, api_oai_list(data, k >= 0));
}
