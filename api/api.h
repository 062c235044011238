/* SPDX-License-Identifier: MIT */
/*
 * api.h - turns finished HTTP requests into calls on store/ and engine/ and
 * their results into JSON. One place for routing, validation and the error
 * format. api/ never includes microhttpd.h: server/http.c collects a request
 * into an api_request and sends back the api_response, so everything here is
 * testable without sockets.
 *
 * Errors are always {"error":{"code","message"[,"line"][,"field"]}} with the
 * HTTP status that fits (see api_error()).
 */
#ifndef TUNA_API_H
#define TUNA_API_H

#include "engine/engine.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------------------------ */
/* Configuration shared by api and server                                    */

typedef struct api_limits {
    size_t max_body_bytes;     /* default 64 MiB; 413 beyond it */
    int64_t max_rows;          /* default 100000 rows per dataset */
    int max_seq_len;           /* default 2048 (cap on hyperparameter) */
    int max_gen_tokens;        /* default 2048 */
    int max_prompts;           /* default 64 prompts per /generate */
    /* Per API key (0 = no limit; keys off: not applied) */
    int max_jobs_in_flight;    /* queued, running or paused jobs; 429 */
    int64_t max_storage_bytes; /* bytes of the key's datasets; 429 */
    int rate_limit_rpm;        /* requests per minute; 429 + Retry-After */
    /* Global (0 = no limit) */
    int max_streams;           /* concurrent streamed responses; 503 */
} api_limits;

void api_limits_default(api_limits *l);

/* ------------------------------------------------------------------------ */
/* Model registry: base models by name, loaded once and shared; tuned models
 * (job adapters) loaded once and cached. Thread-safe.                       */

typedef struct api_registry api_registry;

/* models_dir may be NULL. The embedded stories260K is always present
 * (found under embedded_dir, e.g. <prefix>/models/stories260K). */
int api_registry_new(const char *embedded_dir, const char *models_dir,
                     api_registry **ret, char *err, size_t errlen);
void api_registry_free(api_registry *r);
/* Base model by name, with its tokenizer: refs taken, caller unrefs both.
 * -ENOENT for an unknown name. */
int api_registry_get_base(api_registry *r, const char *name,
                          eng_model **ret_model, eng_tokenizer **ret_tok);
/* Adapter saved at dir for base model m, cached by dir path; ref taken. */
int api_registry_get_adapter(api_registry *r, eng_model *m, const char *dir,
                             eng_adapter **ret, char *err, size_t errlen);
/* Memory budget of the resident adapters (least recently used leave
 * first; default 1 GiB). */
void api_registry_set_adapter_budget(api_registry *r, size_t bytes);
/* Where a models_dir base keeps its weights once loaded: AUTO (default)
 * copies them into memory of their own (huge pages: decode ran 13-32%
 * faster than through the file mapping) when they take at most half of
 * the memory available at load time, else leaves them mapped; MEMORY
 * always copies; MMAP never does (eng_model_pin). Set before serving. */
enum { API_WEIGHTS_AUTO = 0, API_WEIGHTS_MEMORY = 1, API_WEIGHTS_MMAP = 2 };
void api_registry_set_weights(api_registry *r, int mode);
/* Base models and adapters in memory (for /metrics). */
void api_registry_counts(api_registry *r, int *ret_bases, int *ret_adapters);
/* Names of the base models (malloc'd array of borrowed names; free() it). */
int api_registry_list(api_registry *r, const char ***ret_names, int *ret_n);

/* ------------------------------------------------------------------------ */
/* Requests and responses                                                    */

typedef struct api_request {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* decoded path, no query */
    const char *query;         /* raw query string without '?', or NULL */
    const char *content_type;  /* header value or NULL */
    const char *accept;
    const char *authorization;
    const char *idempotency_key;
    const char *last_event_id;
    const char *origin;
    const char *body;          /* whole body in memory, or NULL */
    size_t body_len;
    const char *body_file;     /* or: body streamed to this file (uploads) */
    bool body_too_large;       /* server saw more than max_body_bytes */
    const char *request_id;    /* for logs and errors, may be NULL */
    const char *if_none_match; /* header value or NULL (ui.c: 304) */
} api_request;

/* A streamed body (SSE and token streams). read() is called from a server
 * thread; it returns bytes written into buf, 0 to wait a little and be called
 * again, or -1 at the end of the stream. */
typedef struct api_stream {
    ssize_t (*read)(void *ctx, char *buf, size_t max);
    void (*free)(void *ctx);
    void *ctx;
} api_stream;

#define API_MAX_HEADERS 8

typedef struct api_response {
    int status;
    const char *content_type;       /* static string */
    char *body;                     /* malloc'd, owned by the response */
    size_t body_len;
    api_stream stream;              /* stream.read != NULL: streamed body */
    const char *header_names[API_MAX_HEADERS];   /* static strings */
    char *header_values[API_MAX_HEADERS];        /* malloc'd */
    int n_headers;
    /* Set by api_dispatch for the server's logs and metrics: */
    const char *route;              /* matched pattern (static), or NULL */
    char key_id[48];                /* the caller's API key id, or "" */
} api_response;

void api_response_done(api_response *r);
/* Adds a header (value copied). */
void api_response_header(api_response *r, const char *name, const char *value);
/* Sets an error response. line < 0 and field == NULL leave them out. */
void api_error(api_response *r, int status, const char *code,
               const char *message, long line, const char *field);

/* ------------------------------------------------------------------------ */
/* The service context handed to every handler                              */

struct api_sched_job;              /* below */

typedef struct api_ctx {
    store *db;
    api_registry *models;
    /* Generation admission (api_serve_new); NULL: no limits. */
    struct api_serve *serve;
    /* Runs fn(arg) on a new thread (server/ owns threads): a streamed
     * generation is produced there while the connection thread sends it.
     * NULL, or a non-zero return: the stream is produced in full first. */
    int (*spawn)(void *user, void (*fn)(void *arg), void *arg);
    void *spawn_user;
    const char *data_dir;          /* datasets/, jobs/ live under it */
    api_limits limits;
    const char *cors_origins;      /* "*" or comma-separated list */
    /* Called when a job was queued or cancelled, so the server can wake its
     * workers (may be NULL). */
    void (*notify_jobs)(void *user);
    void *notify_user;
    int gen_threads;               /* engine threads for /generate */
    int train_threads;             /* engine threads of one training worker
                                    * (dry runs measure with them; 0: use
                                    * gen_threads) */
    struct api_runtime *runtime;   /* may be NULL: no rate limit, no stats */
    /* GET /metrics: appends the server's own metrics (HTTP requests,
     * latency, memory) in Prometheus text format. May be NULL. */
    void (*metrics)(void *user, FILE *out);
    void *metrics_user;
    /* Continuous batching: hands a generation's sequences to the server's
     * scheduler thread (server/scheduler.c), which decodes them together
     * with every other request on the same base. 0, or -ESHUTDOWN. NULL:
     * api_serve_generate steps the request's own sequences on the calling
     * thread (same kernels, same tokens). */
    int (*submit)(void *user, struct api_sched_job *job);
    void *submit_user;
    /* POST /v1/load_lora_adapter: lora_path must lie under data_dir, the
     * models dir, or one of these colon-separated folders (may be NULL). */
    const char *lora_dirs;
    const char *models_dir;
} api_ctx;

/* ------------------------------------------------------------------------ */
/* Continuous batching: one request as the scheduler sees it                */

struct eng_seq;                    /* engine/decode.h */

typedef struct api_sched_job {
    eng_model *model;              /* the base every sequence runs on */
    struct eng_seq **seqs;         /* owned by the submitter */
    int n_seqs;
    /* Polled before every step, from the scheduler thread: true drops the
     * job's sequences at once. */
    bool (*cancelled)(void *user);
    /* Called once, from the scheduler thread, when every sequence ended
     * (rc 0), the job was dropped (-ECANCELED, also at shutdown) or failed
     * (< 0). The scheduler does not touch the job afterwards. */
    void (*finished)(void *user, int rc);
    void *user;
    struct api_sched_job *next;    /* the scheduler's */
} api_sched_job;

/* ------------------------------------------------------------------------ */
/* Runtime state shared by every request: per-key rate buckets, open
 * streams, generation counters (auth.c). Thread-safe.                      */

typedef struct api_runtime api_runtime;

int api_runtime_new(api_runtime **ret);
void api_runtime_free(api_runtime *rt);   /* NULL is fine */

typedef struct api_runtime_stats {
    int64_t generated_tokens;      /* since start */
    double generation_tps;         /* tokens/s over the last minute */
    int streams_open;
    int64_t rate_limited;          /* 429s from the rate limit, since start */
} api_runtime_stats;

void api_runtime_get_stats(api_runtime *rt, api_runtime_stats *ret);

/* API keys: a new secret ("tuna_" + 40 random base62 characters, written
 * into secret, 64 bytes) and its row for store_key_insert (id, name, role,
 * hash, prefix, created_at filled). -EINVAL for a bad name or role. */
int api_key_new(const char *name, const char *role, char *secret,
                store_key *ret);
/* sha256 of a secret as lower-case hex (65 bytes). */
void api_key_hash(const char *secret, char *hex);

/* Routes one request. Never fails: the response holds an error instead. */
void api_dispatch(api_ctx *ctx, const api_request *req, api_response *ret);

/* ------------------------------------------------------------------------ */
/* Generation admission and the serving path (serve.c)                      */

typedef struct api_serve api_serve;

typedef struct api_serve_limits {
    int max_concurrent;        /* generation requests running, default 4 */
    int max_queued;            /* waiting beyond those, default 64; 429 past */
    int request_timeout_s;     /* per generation request, queue wait
                                * included; default 300, 0 = none */
} api_serve_limits;

void api_serve_limits_default(api_serve_limits *l);
/* Admission state for those limits. */
int api_serve_new(const api_serve_limits *l, api_serve **ret);
/* Refuses new requests, cancels queued and running ones (each stops within
 * a token) and waits until every request has left. Call before freeing
 * what the requests use (the registry, the context). */
void api_serve_stop(api_serve *s);
void api_serve_free(api_serve *s);    /* NULL is fine */

/* ------------------------------------------------------------------------ */
/* Pieces the server's job runner reuses                                     */

/* Reads a stored JSONL dataset file into tokenized examples (for tokenizer
 * t, truncated to max_len). *ret is malloc'd; free with
 * api_examples_free. *ret_truncated counts truncated examples. */
int api_dataset_load_examples(const char *path, const eng_tokenizer *t,
                              int max_len, eng_example **ret, int *ret_n,
                              int *ret_truncated, char *err, size_t errlen);
void api_examples_free(eng_example *ex, int n);

/* Job hyperparameters JSON (as stored, defaults filled) to engine params. */
int api_hparams_to_engine(const char *json, eng_train_params *ret,
                          double *ret_validation_split, char *err,
                          size_t errlen);

/* The job object of id (as GET /jobs/{id} answers it) as malloc'd JSON
 * text, read through db (a handle the caller owns; ctx's own is not used).
 * For webhook bodies. -ENOENT, -ENOMEM. */
int api_job_render(const api_ctx *ctx, store *db, const char *id,
                   char **ret_json);

/* mkdir -p: every missing folder of path (mode 0755); 0, or -errno
 * (-ENOTDIR when path exists and is not a folder). */
int api_mkdir_p(const char *path);
/* fsync of a folder, so the entries just renamed into it last; 0 or
 * -errno. */
int api_fsync_dir(const char *dir);

/* Paths of a job's artefacts under data_dir. */
void api_job_dir(const char *data_dir, const char *job_id, char *buf,
                 size_t len);
void api_job_adapter_dir(const char *data_dir, const char *job_id, char *buf,
                         size_t len);

#endif
