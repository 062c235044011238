/* SPDX-License-Identifier: MIT */
/*
 * jobs.c - /jobs handlers: creation (JSON body, or a JSONL body with the
 * settings in the query string), listing, one job, cancel, events.
 *
 * Creation checks everything that can be checked before writing anything:
 * top-level keys, base model, suffix, hyperparameters (with defaults filled,
 * against the base model's limits), then the dataset. Only a fully valid
 * request stores a dataset and queues a job. An Idempotency-Key that was
 * already used returns the existing job (200) and stores nothing new.
 */
#include "api/api-impl.h"
#include "api/models-impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct job_req {
    const char *base;
    const char *suffix;      /* NULL: "tuna" in the model name */
    cJSON *hp;               /* validated, defaults filled (owned) */
    eng_model *m;
    eng_tokenizer *t;
    store_dataset ds;
    bool ds_created;
    bool shared;             /* "shared": visible to the whole team */         /* stored by this request */
    const cJSON *opts;       /* jobctl.c options (borrowed), may be NULL */
} job_req;

static void job_req_done(job_req *jr)
{
    cJSON_Delete(jr->hp);
    eng_model_unref(jr->m);
    eng_tokenizer_unref(jr->t);
}

/* ------------------------------------------------------------------------ */
/* Job object                                                                */

static cJSON *progress_json(const store_job *j)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "step", j->step);
    cJSON_AddNumberToObject(p, "total_steps", j->total_steps);
    cJSON_AddNumberToObject(p, "epoch", j->epoch);
    api_json_add_num_or_null(p, "train_loss", j->train_loss, false);
    api_json_add_num_or_null(p, "validation_loss", j->val_loss, false);
    api_json_add_num_or_null(p, "tokens_per_second", j->tokens_per_second,
                             j->tokens_per_second <= 0);
    api_json_add_num_or_null(p, "eta_seconds", j->eta_seconds,
                             j->eta_seconds < 0 ||
                             strcmp(j->status, "running") != 0);
    return p;
}

/* Adds the JSON text as a value, null when empty or unparsable. */
static void add_raw_json(cJSON *o, const char *name, const char *txt)
{
    cJSON *v = txt && *txt ? cJSON_Parse(txt) : NULL;
    if (v)
        cJSON_AddItemToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

cJSON *api_job_json(api_call *c, const store_job *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", "job");
    cJSON_AddStringToObject(o, "status", j->status);
    cJSON_AddStringToObject(o, "base_model", j->base_model);
    cJSON_AddStringToObject(o, "dataset_id", j->dataset_id);
    add_raw_json(o, "hyperparameters", j->hyperparameters);
    if (j->suffix[0])
        cJSON_AddStringToObject(o, "suffix", j->suffix);
    else
        cJSON_AddNullToObject(o, "suffix");
    cJSON_AddStringToObject(o, "model", j->model);
    api_json_add_time(o, "created_at", j->created_at);
    api_json_add_time(o, "started_at", j->started_at);
    api_json_add_time(o, "finished_at", j->finished_at);
    cJSON_AddItemToObject(o, "progress", progress_json(j));
    add_raw_json(o, "error", j->error);
    api_job_json_more(c, j, o);
    int pos;
    if (strcmp(j->status, "queued") == 0 &&
        store_job_queue_position(c->ctx->db, j->id, &pos) == 0)
        cJSON_AddNumberToObject(o, "queue_position", pos);
    return o;
}

static void reply_job(api_call *c, int status, const char *id)
{
    store_job j;
    int r = store_job_get(c->ctx->db, id, &j);
    if (r < 0) {
        api_reply_errno(c, r, "could not read the job");
        return;
    }
    api_reply_json(c, status, api_job_json(c, &j));
    store_job_done(&j);
}

/* ------------------------------------------------------------------------ */
/* Shared creation steps                                                     */

static int check_base(api_call *c, job_req *jr)
{
    int r = c->ctx->models
                ? api_registry_get_base(c->ctx->models, jr->base, &jr->m, &jr->t)
                : -ENOENT;
    if (r < 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "unknown base model '%.128s'", jr->base);
        api_error(c->res, 404, "model_not_found", msg, -1, "base_model");
        return -1;
    }
    return 0;
}

static int check_suffix(api_call *c, const char *s)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= 40;
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
             (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' ||
             s[i] == '.';
    if (!ok)
        api_error(c->res, 400, "invalid_parameter",
                  "suffix must be 1 to 40 characters among letters, digits, "
                  "'-', '_' and '.'", -1, "suffix");
    return ok ? 0 : -1;
}

static int check_idempotency_key(api_call *c)
{
    const char *k = c->req->idempotency_key;
    if (!k)
        return 0;
    size_t n = strlen(k);
    bool ok = n >= 1 && n < sizeof(((store_job *)0)->idempotency_key);
    for (size_t i = 0; ok && i < n; i++)
        ok = k[i] > 32 && k[i] < 127;
    if (!ok)
        api_error(c->res, 400, "invalid_header",
                  "Idempotency-Key must be 1 to 127 printable ASCII characters",
                  -1, "Idempotency-Key");
    return ok ? 0 : -1;
}

/* At least one training row must remain after the validation split. */
static int check_split(api_call *c, job_req *jr)
{
    double vs = cJSON_GetObjectItemCaseSensitive(jr->hp, "validation_split")
                    ->valuedouble;
    int64_t val = (int64_t)ceil((double)jr->ds.rows * vs);
    if (jr->ds.rows - val >= 1)
        return 0;
    char msg[160];
    snprintf(msg, sizeof(msg), "validation_split %g leaves no training rows "
             "out of %lld", vs, (long long)jr->ds.rows);
    api_error(c->res, 400, "invalid_parameter", msg, -1, "validation_split");
    return -1;
}

static void drop_created_dataset(api_call *c, job_req *jr)
{
    if (!jr->ds_created)
        return;
    if (c->dry_run) {            /* a temp file, never recorded */
        unlink(jr->ds.path);
        return;
    }
    char path[1024];
    store_dataset_delete(c->ctx->db, jr->ds.id);
    api_dataset_path(c->ctx->data_dir, jr->ds.id, path, sizeof(path));
    unlink(path);
}

static void insert_job(api_call *c, job_req *jr)
{
    if (check_split(c, jr) < 0) {
        drop_created_dataset(c, jr);
        return;
    }
    double vs = cJSON_GetObjectItemCaseSensitive(jr->hp, "validation_split")
                    ->valuedouble;
    if (api_hparams_resolve_auto(jr->hp, jr->m, jr->ds.rows -
                                 (int64_t)ceil((double)jr->ds.rows * vs)) < 0) {
        drop_created_dataset(c, jr);
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return;
    }
    if (c->dry_run) {
        api_preflight_reply(c, jr->base, jr->m, jr->t, jr->hp, &jr->ds);
        drop_created_dataset(c, jr);
        return;
    }
    store_job j = { .train_loss = NAN, .val_loss = NAN, .eta_seconds = -1 };
    char existing[48] = "";
    int r = api_id_new("job_", j.id, sizeof(j.id));
    snprintf(j.status, sizeof(j.status), "queued");
    snprintf(j.base_model, sizeof(j.base_model), "%s", jr->base);
    snprintf(j.dataset_id, sizeof(j.dataset_id), "%s", jr->ds.id);
    snprintf(j.suffix, sizeof(j.suffix), "%s", jr->suffix ? jr->suffix : "");
    snprintf(j.model, sizeof(j.model), "ft:%s:%s:%s", jr->base,
             jr->suffix ? jr->suffix : "tuna", j.id);
    snprintf(j.idempotency_key, sizeof(j.idempotency_key), "%s",
             c->req->idempotency_key ? c->req->idempotency_key : "");
    j.created_at = api_now();
    snprintf(j.owner, sizeof(j.owner), "%s", api_owner_stamp(c));
    j.shared = jr->shared;
    api_job_options_apply(jr->opts, &j);
    j.hyperparameters = cJSON_PrintUnformatted(jr->hp);
    if (r == 0)
        r = j.hyperparameters ? store_job_insert(c->ctx->db, &j, existing)
                              : -ENOMEM;
    free(j.hyperparameters);
    if (r == -EEXIST) {
        drop_created_dataset(c, jr);
        reply_job(c, 200, existing);
        return;
    }
    if (r < 0) {
        drop_created_dataset(c, jr);
        api_reply_errno(c, r, "could not queue the job");
        return;
    }
    store_event_add(c->ctx->db, j.id, "info", "status", "Job queued", NULL,
                    NULL);
    api_job_chat_template_save(c, j.id, jr->t, jr->ds.format);
    if (c->ctx->notify_jobs)
        c->ctx->notify_jobs(c->ctx->notify_user);
    char loc[80];
    snprintf(loc, sizeof(loc), "/jobs/%s", j.id);
    api_response_header(c->res, "Location", loc);
    reply_job(c, 201, j.id);
}

/* ------------------------------------------------------------------------ */
/* JSON form                                                                 */

static const char *const json_keys[] = {
    "base_model", "dataset_id", "training_data", "validation_split",
    "hyperparameters", "suffix", "dry_run", "shared",
    "priority", "webhook_url", "webhook_secret", "validation_dataset_id",
    "validation_file", NULL,
};

/* hyperparameters with the top-level validation_split merged in. */
static int json_hparams(api_call *c, const cJSON *o, job_req *jr)
{
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(o, "hyperparameters");
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(o, "validation_split");
    if (hp && !cJSON_IsNull(hp) && !cJSON_IsObject(hp)) {
        api_error(c->res, 400, "invalid_parameter",
                  "hyperparameters must be an object", -1, "hyperparameters");
        return -1;
    }
    cJSON *in = hp && cJSON_IsObject(hp) ? cJSON_Duplicate(hp, true)
                                         : cJSON_CreateObject();
    if (vs && in) {
        cJSON_DeleteItemFromObjectCaseSensitive(in, "validation_split");
        cJSON_AddItemToObject(in, "validation_split", cJSON_Duplicate(vs, true));
    }
    jr->hp = in ? api_hparams_validate(c, in, jr->m) : NULL;
    if (!in)
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
    cJSON_Delete(in);
    return jr->hp ? 0 : -1;
}

static int json_dataset_id(api_call *c, const cJSON *o, job_req *jr)
{
    const char *id;
    if (api_get_str(c, o, "dataset_id", 64, NULL, &id) < 0)
        return -1;
    int r = api_id_valid(id, "ds_") ? store_dataset_get_for(c->ctx->db, id, api_owner(c), &jr->ds)
                                    : -ENOENT;
    if (r == -ENOENT) {
        char msg[160];
        snprintf(msg, sizeof(msg), "no dataset with id '%.64s'", id);
        api_error(c->res, 404, "dataset_not_found", msg, -1, "dataset_id");
    } else if (r < 0) {
        api_reply_errno(c, r, "could not read the dataset");
    }
    return r < 0 ? -1 : 0;
}

static void create_json(api_call *c)
{
    char *owned = NULL, err[160];
    const char *body;
    size_t len;
    if (api_query_check(c, "dry_run shared") < 0 ||
        api_body_load(c, &owned, &body, &len) < 0)
        return;
    cJSON *o = api_json_parse(body, len, err, sizeof(err));
    free(owned);
    if (!o || !cJSON_IsObject(o)) {
        api_error(c->res, 400, "invalid_json",
                  o ? "the request body must be a JSON object" : err, -1, NULL);
        cJSON_Delete(o);
        return;
    }
    api_jobs_create_object(c, o);
    cJSON_Delete(o);
}

void api_jobs_create_object(api_call *c, cJSON *o)
{
    job_req jr = { 0 };
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(o, "dataset_id");
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(o, "training_data");
    if (api_check_keys(c, o, json_keys, NULL) < 0 ||
        check_idempotency_key(c) < 0 ||
        api_get_str(c, o, "base_model", 127, api_default_base(c->ctx),
                    &jr.base) < 0 ||
        api_get_str(c, o, "suffix", 64, NULL, &jr.suffix) < 0 ||
        api_get_bool(c, o, "dry_run", c->dry_run, &c->dry_run) < 0 ||
        api_shared_param(c, o, &jr.shared) < 0 ||
        api_job_options_check(c, jr.opts = o) < 0 ||
        check_suffix(c, jr.suffix) < 0 || check_base(c, &jr) < 0 ||
        json_hparams(c, o, &jr) < 0)
        goto out;
    if ((!ds || cJSON_IsNull(ds)) == (!td || cJSON_IsNull(td))) {
        api_error(c->res, 400, "invalid_parameter",
                  "give exactly one of dataset_id and training_data", -1,
                  ds ? "training_data" : "dataset_id");
        goto out;
    }
    if (ds && !cJSON_IsNull(ds)) {
        if (json_dataset_id(c, o, &jr) < 0)
            goto out;
    } else {
        if (api_dataset_from_records(c, td, &jr.ds) < 0)
            goto out;
        jr.ds_created = true;
    }
    insert_job(c, &jr);
out:
    job_req_done(&jr);
}

/* ------------------------------------------------------------------------ */
/* JSONL body + query string                                                 */

static const char *const query_keys[] = { "base_model", "suffix", "name",
                                          "dry_run", "shared",
                                          "priority", "webhook_url",
                                          "webhook_secret",
                                          "validation_dataset_id", NULL };
/* Those whose value is text whatever it looks like (name=3, suffix=2024). */
static const char *const query_strings[] = { "base_model", "suffix", "name",
                                             "webhook_url", "webhook_secret",
                                             "validation_dataset_id", NULL };

static void create_jsonl(api_call *c)
{
    job_req jr = { 0 };
    cJSON *q = api_query_to_json(c, query_strings);
    const char *name;
    if (!q || api_check_keys(c, q, query_keys, api_hparam_names) < 0 ||
        check_idempotency_key(c) < 0 ||
        api_get_str(c, q, "name", 255, NULL, &name) < 0 ||
        api_get_str(c, q, "base_model", 127, api_default_base(c->ctx),
                    &jr.base) < 0 ||
        api_get_str(c, q, "suffix", 64, NULL, &jr.suffix) < 0 ||
        api_job_options_check(c, jr.opts = q) < 0 ||
        api_shared_param(c, NULL, &jr.shared) < 0 ||
        check_suffix(c, jr.suffix) < 0 || check_base(c, &jr) < 0)
        goto out;
    cJSON *hp = cJSON_Duplicate(q, true);
    for (int i = 0; hp && query_keys[i]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(hp, query_keys[i]);
    jr.hp = hp ? api_hparams_validate(c, hp, jr.m) : NULL;
    cJSON_Delete(hp);
    if (!jr.hp) {
        if (!hp)
            api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        goto out;
    }
    if (api_dataset_from_request(c, name, &jr.ds) < 0)
        goto out;
    jr.ds_created = true;
    insert_job(c, &jr);
out:
    cJSON_Delete(q);
    job_req_done(&jr);
}

void api_h_jobs_create(api_call *c)
{
    /* ?dry_run=true|false in both forms */
    if (api_query_bool(c, "dry_run", false, &c->dry_run) < 0)
        return;
    if (api_content_type_is(c->req->content_type, "application/json"))
        create_json(c);
    else
        create_jsonl(c);
}

/* ------------------------------------------------------------------------ */
/* Reading and cancelling                                                    */

static const char *const statuses[] = { "queued", "running", "paused",
                                        "succeeded", "failed", "cancelled",
                                        NULL };

void api_h_jobs_list(api_call *c)
{
    char status[32] = "";
    int64_t limit;
    if (api_query_get(c->req->query, "status", status, sizeof(status))) {
        bool ok = false;
        for (int i = 0; !ok && statuses[i]; i++)
            ok = strcmp(statuses[i], status) == 0;
        if (!ok) {
            api_error(c->res, 400, "invalid_parameter",
                      "status must be queued, running, paused, succeeded, "
                      "failed or cancelled", -1, "status");
            return;
        }
    }
    if (api_query_int(c, "limit", 1, 1000, 100, &limit) < 0)
        return;
    store_job *jobs = NULL;
    int n = 0;
    int r = store_job_list_for(c->ctx->db, api_owner(c),
                               status[0] ? status : NULL, (int)limit,
                           &jobs, &n);
    if (r < 0) {
        api_reply_errno(c, r, "could not list jobs");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *arr = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, api_job_json(c, &jobs[i]));
    store_job_list_free(jobs, n);
    api_reply_json(c, 200, o);
}

static void job_not_found(api_call *c)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "no job with id '%s'", c->id);
    api_error(c->res, 404, "not_found", msg, -1, "id");
}

void api_h_jobs_get(api_call *c)
{
    store_job j;
    int r = store_job_get(c->ctx->db, c->id, &j);
    if (r == -ENOENT) {
        job_not_found(c);
        return;
    }
    if (r < 0) {
        api_reply_errno(c, r, "could not read the job");
        return;
    }
    api_reply_json(c, 200, api_job_json(c, &j));
    store_job_done(&j);
}

void api_h_jobs_cancel(api_call *c)
{
    char status[16] = "";
    int r = store_job_cancel(c->ctx->db, c->id, status);
    if (r == -ENOENT) {
        job_not_found(c);
        return;
    }
    if (r == -EBUSY) {
        store_job j;
        char msg[128] = "the job has already finished";
        if (store_job_get(c->ctx->db, c->id, &j) == 0) {
            snprintf(msg, sizeof(msg), "the job has already %s",
                     j.status);
            store_job_done(&j);
        }
        api_error(c->res, 409, "job_finished", msg, -1, "id");
        return;
    }
    if (r < 0) {
        api_reply_errno(c, r, "could not cancel the job");
        return;
    }
    bool now = strcmp(status, "cancelled") == 0;
    if (now)
        api_job_discard(c->ctx, c->id);
    store_event_add(c->ctx->db, c->id, "info", "status",
                    now ? "Job cancelled" : "Cancellation requested", NULL,
                    NULL);
    if (c->ctx->notify_jobs)
        c->ctx->notify_jobs(c->ctx->notify_user);
    reply_job(c, 200, c->id);
}

void api_h_jobs_events(api_call *c)
{
    int64_t after, limit;
    bool stream;
    if (api_events_want_stream(c, &stream) < 0)
        return;
    if (stream) {
        api_events_stream(c);
        return;
    }
    store_job j;
    if (api_query_int(c, "after", 0, INT64_MAX / 2, 0, &after) < 0 ||
        api_query_int(c, "limit", 1, 1000, 100, &limit) < 0)
        return;
    int r = store_job_get(c->ctx->db, c->id, &j);
    if (r == -ENOENT) {
        job_not_found(c);
        return;
    }
    if (r == 0)
        store_job_done(&j);
    store_event *ev = NULL;
    int n = 0;
    if (r == 0)
        r = store_event_list(c->ctx->db, c->id, after, (int)limit, &ev, &n);
    if (r < 0) {
        api_reply_errno(c, r, "could not read the events");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *arr = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, api_event_json(&ev[i]));
    cJSON_AddBoolToObject(o, "has_more", n == (int)limit);
    if (n > 0)
        cJSON_AddNumberToObject(o, "last_id", (double)ev[n - 1].seq);
    else
        cJSON_AddNumberToObject(o, "last_id", (double)after);
    store_event_list_free(ev, n);
    api_reply_json(c, 200, o);
}
