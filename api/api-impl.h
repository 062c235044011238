/* SPDX-License-Identifier: MIT */
/*
 * api-impl.h - private to api/: the call object every handler receives, the
 * route table entry, reply helpers and the parse-or-fail getters.
 *
 * A handler gets an api_call with the matched {id} (already checked against
 * the id pattern of the route), the parsed JSON body when the route takes
 * JSON, and fills c->res through api_reply_* / api_error. Getters in the
 * style of Redis' ...OrReply return 0, or -1 after writing a 400 that names
 * the field, so a handler reads:
 *
 *     if (api_get_int(c, obj, "max_tokens", 1, 2048, 64, &n) < 0) return;
 */
#ifndef TUNA_API_IMPL_H
#define TUNA_API_IMPL_H

#include "api/api.h"

#include <cjson/cJSON.h>
#include <stdio.h>

/* ------------------------------------------------------------------------ */
/* Calls and routes                                                          */

/* Who calls: set by the router before any handler runs. */
typedef struct api_caller {
    bool auth;            /* API keys are on (some key is active) */
    bool admin;           /* admin key, or keys off: sees everything */
    char key_id[48];      /* "" when keys are off */
    char key_name[128];
} api_caller;

typedef struct api_call {
    api_ctx *ctx;
    const api_request *req;
    api_response *res;
    char id[64];          /* the {id} segment, validated */
    cJSON *json;          /* parsed body for API_BODY_JSON routes, else NULL */
    api_caller who;       /* the resolved API key (auth.c) */
    bool dry_run;         /* POST /jobs preflight: store and queue nothing */
} api_call;

typedef void (*api_handler)(api_call *c);

enum {
    API_BODY_JSON = 1 << 0,   /* body must be a JSON object (415 otherwise) */
    API_BODY_ANY = 1 << 1,    /* handler reads the body itself */
    API_ID_DS = 1 << 2,       /* {id} must be ds_<hex> */
    API_ID_JOB = 1 << 3,      /* {id} must be job_<hex> */
    /* auth.c: */
    API_PUBLIC = 1 << 12,     /* no API key needed (/health) */
    API_ADMIN = 1 << 13,      /* admin keys only (403 for members) */
    API_QUOTA_JOB = 1 << 14,  /* creates a job: jobs-in-flight quota */
    API_QUOTA_STORAGE = 1 << 15, /* may store a dataset: storage quota */
    /* router.c: */
    API_QUERY_ANY = 1 << 16,  /* query not checked by the router (the
                                 handler checks it, or OpenAI leniency) */
};

typedef struct api_route {
    const char *method;
    const char *pattern;      /* literal segments and at most one {id} */
    api_handler handler;
    unsigned flags;
    /* The query parameters the route accepts, space-separated (NULL: none);
     * any other is a 400 naming it before the handler runs, unless
     * API_QUERY_ANY. */
    const char *query;
} api_route;

/* ------------------------------------------------------------------------ */
/* Replies (response.c)                                                      */

/* Takes ownership of obj and sends it as the JSON body. */
void api_reply_json(api_call *c, int status, cJSON *obj);
/* Maps a negative errno to an error reply (see the table in response.c). */
void api_reply_errno(api_call *c, int neg_errno, const char *message);
int api_errno_status(int neg_errno);
/* Adds a JSON member that is a number, or null when isnan/negative sentinel. */
void api_json_add_time(cJSON *obj, const char *name, int64_t t);
void api_json_add_num_or_null(cJSON *obj, const char *name, double v,
                              bool is_null);

/* ------------------------------------------------------------------------ */
/* Validation helpers (util.c)                                               */

bool api_utf8_valid(const char *s, size_t len);
/* The request body in memory: req->body, or req->body_file read into a
 * malloc'd *ret_owned (free it). -1 after an error reply. */
int api_body_load(api_call *c, char **ret_owned, const char **ret_body,
                  size_t *ret_len);
/* Parses a JSON body after checking its UTF-8; NULL with *err set. */
cJSON *api_json_parse(const char *s, size_t len, char *err, size_t errlen);
bool api_id_valid(const char *id, const char *prefix);
/* The job id in a finetuned model's name "ft:<base>:<suffix>:<job id>";
 * any other name as it is. */
const char *api_job_id_of(const char *name);
/* 24 random hex digits after prefix ("ds_", "job_"). */
int api_id_new(const char *prefix, char *buf, size_t len);
/* Content type without parameters, lower case, compared with want. */
bool api_content_type_is(const char *ct, const char *want);
/* Value of a parameter of a header (e.g. boundary=...) into buf. */
bool api_header_param(const char *hv, const char *name, char *buf, size_t len);

/* Query strings: iterate name=value pairs, percent-decoded into buffers.
 * *pos starts at 0; returns false at the end. */
bool api_query_next(const char *q, size_t *pos, char *name, size_t nlen,
                    char *value, size_t vlen);
/* Value of one parameter (last wins); false when absent. */
bool api_query_get(const char *q, const char *name, char *value, size_t vlen);

/* Parse-or-fail getters. Absent member or JSON null: *ret = def, 0.
 * Wrong type or out of range: 400 naming field, -1. */
int api_get_int(api_call *c, const cJSON *obj, const char *field,
                int64_t min, int64_t max, int64_t def, int64_t *ret);
int api_get_num(api_call *c, const cJSON *obj, const char *field,
                double min, double max, double def, double *ret);
int api_get_bool(api_call *c, const cJSON *obj, const char *field, bool def,
                 bool *ret);
/* String member: absent -> def (may be NULL); non-string or longer than
 * maxlen bytes -> 400. *ret is borrowed from obj or is def. */
int api_get_str(api_call *c, const cJSON *obj, const char *field,
                size_t maxlen, const char *def, const char **ret);
/* Every member of obj must be named in keys or more (NULL-terminated; more
 * may be NULL). -1 after a 400 "unknown field" naming the first other
 * one. */
int api_check_keys(api_call *c, const cJSON *obj, const char *const *keys,
                   const char *const *more);
/* Query-string getters with the same contract (strict number syntax). */
int api_query_int(api_call *c, const char *field, int64_t min, int64_t max,
                  int64_t def, int64_t *ret);
/* A boolean parameter is exactly "true" or "false", on every route;
 * anything else (including an empty value) is a 400 naming it. */
int api_query_bool(api_call *c, const char *field, bool def, bool *ret);
/* A text parameter: absent -> "" in buf; longer than maxlen bytes (buf
 * holds at least maxlen + 1), not UTF-8 or with a NUL byte -> 400. */
int api_query_str(api_call *c, const char *field, size_t maxlen, char *buf,
                  size_t len);
/* Every parameter of the query must be named in names (space-separated;
 * NULL: none is accepted). -1 after a 400 naming the first other one. */
int api_query_check(api_call *c, const char *names);

/* Turns a query string into a JSON object: numbers, true/false, strings;
 * the parameters named in strings (NULL-terminated, may be NULL) stay
 * strings whatever their text ("name=3" is the name "3"). Returns NULL with
 * a 400 sent for a malformed query. */
cJSON *api_query_to_json(api_call *c, const char *const *strings);

int64_t api_now(void);

/* ------------------------------------------------------------------------ */
/* Datasets (dataset.c, multipart.c)                                         */

typedef enum {
    API_FMT_NONE = 0,
    API_FMT_PROMPT_COMPLETION,
    API_FMT_INPUT_OUTPUT,
    API_FMT_CHAT,
    API_FMT_TEXT,
} api_format;

const char *api_format_name(api_format f);  /* "completion" | "chat" | "text" */

/* Why a dataset was rejected: line (1-based, or -1), field (or ""). */
typedef struct api_ds_error {
    int status;
    const char *code;
    long line;
    char field[96];
    char message[256];
} api_ds_error;

/* Validates one parsed record. On success fills *ret_fmt and rec (strings
 * borrowed from obj; messages malloc'd into *ret_msgs, free() it). */
int api_record_parse(const cJSON *obj, api_format *ret_fmt, eng_record *rec,
                     eng_message **ret_msgs, char *field, size_t flen,
                     char *msg, size_t mlen);

/* Reads JSONL from in, validates every line, writes the dataset durably under
 * <data_dir>/datasets/<new id>.jsonl, inserts its row and fills *ret.
 * 0, or -1 with *e filled (nothing left behind). */
int api_dataset_ingest(api_ctx *ctx, FILE *in, const char *name,
                       store_dataset *ret, api_ds_error *e);

/* Like api_dataset_ingest, but keeps the validated file as a temp file and
 * stores no row: ret->id is "", ret->path the file's path (the caller
 * unlinks it). For dry runs. */
int api_dataset_ingest_temp(api_ctx *ctx, FILE *in, const char *name,
                            store_dataset *ret, api_ds_error *e);

/* Reads the request body as a JSONL dataset: raw or multipart (part "file").
 * With c->dry_run, nothing is stored (see api_dataset_ingest_temp).
 * Writes the error reply itself and returns -1 on failure. */
int api_dataset_from_request(api_call *c, const char *name,
                             store_dataset *ret);

/* Copies the bytes of the multipart part named part into out. */
int api_multipart_extract(FILE *in, const char *boundary, const char *part,
                          FILE *out, char *filename, size_t fnlen, char *err,
                          size_t errlen);

/* training_data of POST /jobs: an array of records, each checked (errors
 * name training_data[i].field), then stored like an upload. -1 after an
 * error reply. */
int api_dataset_from_records(api_call *c, const cJSON *arr,
                             store_dataset *ret);

cJSON *api_dataset_json(const store_dataset *d);
void api_dataset_path(const char *data_dir, const char *id, char *buf,
                      size_t len);

/* ------------------------------------------------------------------------ */
/* Jobs (hparams.c, jobs.c)                                                  */

/* Validates user hyperparameters (obj may be NULL) for base model m and
 * returns a new object with every default filled in; NULL after a 400. */
cJSON *api_hparams_validate(api_call *c, const cJSON *obj, const eng_model *m);
/* The names api_hparams_validate accepts (NULL-terminated). */
extern const char *const api_hparam_names[];

cJSON *api_job_json(api_call *c, const store_job *j);

/* Resolves a /generate model name to base model + optional adapter. Sends the
 * error reply itself and returns -1 when it cannot. */
int api_model_resolve(api_call *c, const char *name, eng_model **ret_m,
                      eng_tokenizer **ret_t, eng_adapter **ret_a,
                      char *ret_name, size_t namelen);
/* The adapter in dir on the base just taken into *m, *t (models.c). When
 * it cannot be loaded the base is let go too and *m, *t are NULL (the
 * caller unrefs what it holds), with the reason in err when known. */
int api_adapter_on_base(api_ctx *ctx, const char *dir, eng_model **m,
                        eng_tokenizer **t, eng_adapter **ret_a, char *err,
                        size_t errlen);

/* The default base model's name. */
const char *api_default_base(api_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Event streams, preflight, "auto" hyperparameters (events.c, preflight.c,  */
/* hparams.c)                                                                */

/* One event as the JSON list and the SSE stream show it. */
cJSON *api_event_json(const store_event *e);
/* Whether GET /jobs/{id}/events asks for SSE: ?stream=true|false, else
 * an Accept of text/event-stream. -1 after a 400 (a bad ?stream=). */
int api_events_want_stream(api_call *c, bool *ret);
/* Answers with the SSE stream of job c->id's events. */
void api_events_stream(api_call *c);

/* The hyperparameters that accept "auto" (NULL-terminated). */
extern const char *const api_hparam_auto_names[];
/* Replaces each "auto" of epochs, learning_rate and batch_size in hp (as
 * api_hparams_validate returned it) with the value chosen for base model m
 * and n_train training rows, and adds "auto": [the names chosen]. 0 or
 * -ENOMEM. */
int api_hparams_resolve_auto(cJSON *hp, const eng_model *m, int64_t n_train);
/* The learning rate "auto" picks for m (LoRA, or full finetuning). */
double api_hparams_auto_lr(const eng_model *m, bool full_finetune);

/* POST /jobs?dry_run=true: answers the preflight for a validated request
 * (hp with "auto" resolved; ds may be a temp file from a dry-run upload). */
void api_preflight_reply(api_call *c, const char *base, eng_model *m,
                         eng_tokenizer *t, const cJSON *hp,
                         const store_dataset *ds);
/* POST /jobs with a parsed JSON body (the OpenAI routes build one). */
void api_jobs_create_object(api_call *c, cJSON *o);

/* ------------------------------------------------------------------------ */
/* The OpenAI-compatible routes (openai.c, openai_files.c, openai_jobs.c)    */

/* "file-<hex>" -> "ds_<hex>", "ftjob-<hex>" -> "job_<hex>" into buf; false
 * when id has neither prefix (or buf is too small). */
bool api_oai_id_to_native(const char *id, char *buf, size_t len);
/* The other way; an id of no known prefix is copied as it is. */
void api_oai_id(const char *native_id, char *buf, size_t len);
/* Rewrites a Tuna error body into OpenAI's {"error":{"message","type",
 * "param","code"}} (router, for /v1 paths). */
void api_oai_error_convert(const api_request *req, api_response *r);
/* ?limit= of an OpenAI list (1..max, default def). */
int api_oai_limit(api_call *c, int64_t max, int64_t def, int64_t *ret);
/* {"object":"list","data","has_more","first_id","last_id"}; takes data. */
cJSON *api_oai_list(cJSON *data, bool has_more);
cJSON *api_oai_job_json(api_call *c, const store_job *j);

void api_h_oai_files_create(api_call *c);
void api_h_oai_files_list(api_call *c);
void api_h_oai_files_get(api_call *c);
void api_h_oai_files_content(api_call *c);
void api_h_oai_files_delete(api_call *c);
void api_h_oai_jobs_create(api_call *c);
void api_h_oai_jobs_list(api_call *c);
void api_h_oai_jobs_get(api_call *c);
void api_h_oai_jobs_cancel(api_call *c);
void api_h_oai_jobs_pause(api_call *c);
void api_h_oai_jobs_resume(api_call *c);
void api_h_oai_jobs_events(api_call *c);
void api_h_oai_jobs_checkpoints(api_call *c);

/* ------------------------------------------------------------------------ */
/* Keys, ownership, quotas, usage (auth.c)                                   */

/* Runs for every matched route before its handler: resolves the bearer key
 * (401), checks the role (403), the per-key rate limit (429 +
 * Retry-After), the quotas of API_QUOTA_* routes (429) and the visibility
 * of the {id} of API_ID_DS / API_ID_JOB routes (404). false after an error
 * reply. */
bool api_auth_route(api_call *c, unsigned flags);
bool api_auth_resource(api_call *c, unsigned flags);
/* The owner filter for store_*_for: NULL when the caller sees everything
 * (admin, keys off), else its key id. */
const char *api_owner(const api_call *c);
/* The owner to record on a new dataset or job ("" when keys are off). */
const char *api_owner_stamp(const api_call *c);
/* "shared" of a new resource: the JSON member (obj may be NULL), else the
 * ?shared= query parameter; false when absent. -1 after a 400. */
int api_shared_param(api_call *c, const cJSON *obj, bool *ret);
/* Records n generated tokens against the caller's key and the metrics. */
void api_usage_generated(api_call *c, int64_t n);
/* The same for key_id ("" none), where the call is gone (streams). */
void api_usage_add(api_ctx *ctx, const char *key_id, int64_t n);
/* Counts a streamed response against limits.max_streams: wraps
 * c->res->stream so its end releases the slot; 503 when none is free.
 * Called by the router after the handler. */
void api_stream_guard(api_call *c);

/* api_dataset_ingest for an owner ("" none) with the shared flag. */
int api_dataset_ingest_owned(api_ctx *ctx, FILE *in, const char *name,
                             const char *owner, bool shared,
                             store_dataset *ret, api_ds_error *e);

void api_h_usage(api_call *c);
void api_h_keys_list(api_call *c);
void api_h_datasets_share(api_call *c);
void api_h_jobs_share(api_call *c);
void api_h_metrics(api_call *c);

/* ------------------------------------------------------------------------ */
/* Handlers                                                                  */

void api_h_health(api_call *c);
void api_h_datasets_create(api_call *c);
void api_h_datasets_list(api_call *c);
void api_h_datasets_get(api_call *c);
void api_h_datasets_delete(api_call *c);
void api_h_jobs_create(api_call *c);
void api_h_jobs_list(api_call *c);
void api_h_jobs_get(api_call *c);
void api_h_jobs_cancel(api_call *c);
void api_h_jobs_events(api_call *c);
/* jobctl.c: controls, checkpoints, metrics, report */
void api_h_jobs_pause(api_call *c);
void api_h_jobs_resume(api_call *c);
void api_h_jobs_stop(api_call *c);
void api_h_jobs_priority(api_call *c);
void api_h_jobs_checkpoints(api_call *c);
void api_h_jobs_metrics_csv(api_call *c);
void api_h_jobs_report(api_call *c);

/* POST /jobs options of jobctl.c (priority, webhook_url, webhook_secret,
 * validation_dataset_id or validation_file), read from the JSON body or the
 * query object o (may be NULL): checked before anything is stored (-1 after
 * an error reply), then copied into the new job's row. */
int api_job_options_check(api_call *c, const cJSON *o);
void api_job_options_apply(const cJSON *o, store_job *j);
/* Adds priority, validation_dataset_id, webhook_url, note, requested and
 * progress.estimated_finish to a job object. */
void api_job_json_more(api_call *c, const store_job *j, cJSON *o);
/* Removes a cancelled job's checkpoints and adapter (rows and files). */
void api_job_discard(api_ctx *ctx, const char *id);
/* Resolves "<job id or model>:step-<n>" to base model + checkpoint adapter
 * (any job status but cancelled). 1 when name is not a checkpoint name, 0
 * when resolved, -1 after an error reply. */
int api_checkpoint_resolve(api_call *c, const char *name, eng_model **ret_m,
                           eng_tokenizer **ret_t, eng_adapter **ret_a,
                           char *ret_name, size_t namelen);
/* Appends the checkpoints of the caller's jobs to a /models list. */
void api_checkpoint_models(api_call *c, cJSON *arr);
void api_h_generate(api_call *c);
void api_h_models_list(api_call *c);

#endif
