/* SPDX-License-Identifier: MIT */
/*
 * store.h - Tuna's persistent state: datasets, jobs, events, metrics.
 *
 * Every SQL statement of the project lives behind this interface, so a second
 * backend (PostgreSQL, for several tunad nodes on one queue) can implement the
 * same functions. The SQLite backend keeps one WAL-mode database file under
 * the data dir, applies migrations/NNNN_name.sql at open (each in a
 * transaction, recorded in PRAGMA user_version) and refuses a database newer
 * than the binary.
 *
 * Conventions: 0 or a negative errno (-ENOENT no such row, -EBUSY/-EEXIST
 * conflict, -EINVAL bad argument, -EIO database failure). Output structs are
 * filled only on success. JSON columns (hyperparameters, error, data) are
 * opaque text to the store. Times are Unix seconds (int64).
 *
 * Thread safety: a store handle may be used from any thread; calls on one
 * handle are serialised by an internal mutex. Open several handles (one per
 * worker) for parallelism; job claiming is atomic across handles and across
 * processes.
 */
#ifndef TUNA_STORE_H
#define TUNA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store;

/* Opens (creating if needed) the database at path and migrates it. */
int store_open(const char *path, store **ret, char *err, size_t errlen);
void store_close(store *s);
/* Schema version of the open database and the newest this binary knows. */
int store_schema_version(store *s);
int store_schema_latest(void);
/* Copies the last failure message of this handle (e.g. SQLite's text for an
 * -EIO) into buf, "" when none; for the caller's log. */
void store_last_error(store *s, char *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Datasets                                                                  */

typedef struct store_dataset {
    char id[48];          /* "ds_" + 24 hex */
    char name[256];       /* user-given file name, may be empty */
    char format[16];      /* "completion" | "chat" | "text" */
    int64_t rows;
    int64_t tokens;       /* with the default tokenizer at upload */
    int64_t bytes;
    char sha256[65];
    char path[512];       /* file under the data dir */
    int64_t created_at;
    char owner[48];       /* API key id, "" when keys are off */
    bool shared;
} store_dataset;

int store_dataset_insert(store *s, const store_dataset *d);
int store_dataset_get(store *s, const char *id, store_dataset *ret);
/* Newest first. *ret is malloc'd (free()); *ret_n rows. */
int store_dataset_list(store *s, int limit, store_dataset **ret, int *ret_n);
/* -EBUSY while a queued or running job uses it; -ENOENT if absent. */
int store_dataset_delete(store *s, const char *id);

/* ------------------------------------------------------------------------ */
/* Jobs                                                                      */

typedef struct store_job {
    char id[48];              /* "job_" + 24 hex */
    char status[16];          /* queued|running|paused|succeeded|failed|
                                 cancelled */
    char base_model[128];
    char dataset_id[48];
    char val_dataset_id[48];  /* "" if none */
    char *hyperparameters;    /* JSON text, malloc'd (store_job_done) */
    char suffix[64];
    char model[256];          /* servable name of the result */
    int64_t created_at, started_at, finished_at; /* 0 = not yet */
    /* progress */
    int step, total_steps, epoch;
    double train_loss;        /* NaN when none yet */
    double val_loss;          /* NaN when none yet */
    double tokens_per_second;
    double eta_seconds;       /* -1 when unknown */
    char *error;              /* JSON text or NULL */
    int priority;             /* higher first; FIFO within a priority */
    bool cancel_requested;
    char worker[64];          /* who runs it */
    int attempts;             /* times it was claimed */
    char owner[48];
    bool shared;
    char idempotency_key[128];
    /* migration 0003 */
    char control[8];          /* "" | "stop" | "pause": asked of the worker */
    char *note;               /* malloc'd sentence or NULL */
    char webhook_url[1024];   /* "" if none */
    char webhook_secret[256]; /* "" if none (the server's secret applies) */
} store_job;

void store_job_done(store_job *j);           /* frees the malloc'd fields */
void store_job_list_free(store_job *jobs, int n);

/* Inserts a queued job (status forced to "queued"). With a non-empty
 * idempotency_key already used by a job of the same owner: -EEXIST and
 * *ret_existing_id (if not NULL, 48 bytes) gets that job's id. */
int store_job_insert(store *s, const store_job *j, char *ret_existing_id);
int store_job_get(store *s, const char *id, store_job *ret);
/* Newest first; status may be NULL (all). */
int store_job_list(store *s, const char *status, int limit, store_job **ret,
                   int *ret_n);
/* Atomically moves the oldest highest-priority queued job to running for
 * worker and returns it; -ENOENT when none is queued. */
int store_job_claim_next(store *s, const char *worker, store_job *ret);
/* Updates the progress fields of a running job. */
int store_job_set_progress(store *s, const char *id, int step,
                           int total_steps, int epoch, double train_loss,
                           double val_loss, double tokens_per_second,
                           double eta_seconds);
/* Ends a job: status is succeeded|failed|cancelled; error_json may be NULL. */
int store_job_finish(store *s, const char *id, const char *status,
                     const char *error_json);
/* Cancels: a queued job becomes cancelled at once; a running one gets
 * cancel_requested (the worker ends it). -EBUSY if already finished.
 * *ret_status (16 bytes, may be NULL) gets the status after the call. */
int store_job_cancel(store *s, const char *id, char *ret_status);
/* At start-up: jobs left running by a crash go back to queued. */
int store_job_requeue_running(store *s, int *ret_n);
/* Number of queued jobs ahead of id (0 = next); -ENOENT if not queued. */
int store_job_queue_position(store *s, const char *id, int *ret_pos);

/* Controls (migration 0003). Status changes:
 *   queued  --pause-->  paused            running --pause--> control "pause"
 *   paused  --resume--> queued                     (worker: store_job_pause)
 *   paused  --stop-->   queued + control "stop"   (resumes, saves, succeeds)
 *   running --stop-->   control "stop"
 *   paused  --cancel--> cancelled (store_job_cancel)
 * store_job_control: action is "stop" or "pause". -EBUSY when the job's
 * status does not allow it (finished; stop of a queued job that never ran);
 * -ENOENT if absent. *ret_status (16 bytes, may be NULL) gets the status
 * after the call. */
int store_job_control(store *s, const char *id, const char *action,
                      char *ret_status);
/* The worker parks a running job: status paused, control cleared, worker
 * and progress kept. -EBUSY unless running. */
int store_job_pause(store *s, const char *id);
/* paused -> queued (control kept, so a pending stop still applies); -EBUSY
 * unless paused. */
int store_job_resume(store *s, const char *id);
/* Sets the priority of a job that has not finished (-EBUSY otherwise); the
 * queue takes higher priorities first, FIFO within one. */
int store_job_set_priority(store *s, const char *id, int priority);
/* Sets (or with NULL clears) the job's note. */
int store_job_set_note(store *s, const char *id, const char *note);
/* Number of jobs with this status (queued, running, ...). */
int store_job_count(store *s, const char *status, int *ret_n);

/* ------------------------------------------------------------------------ */
/* Events and metrics                                                        */

typedef struct store_event {
    int64_t seq;          /* increasing cursor, unique across jobs */
    char job_id[48];
    int64_t created_at;
    char level[8];        /* info|warn|error */
    char type[32];        /* e.g. "status", "step", "message" */
    char *message;        /* malloc'd */
    char *data;           /* JSON text or NULL, malloc'd */
} store_event;

int store_event_add(store *s, const char *job_id, const char *level,
                    const char *type, const char *message,
                    const char *data_json, int64_t *ret_seq);
/* Events of job_id with seq > after, oldest first, at most limit. */
int store_event_list(store *s, const char *job_id, int64_t after, int limit,
                     store_event **ret, int *ret_n);
void store_event_list_free(store_event *ev, int n);

typedef struct store_metric {
    int step;
    double train_loss, val_loss, val_accuracy, lr, grad_norm;
    double tokens_per_second;  /* NaN where not measured */
    int64_t created_at;
} store_metric;

int store_metric_add(store *s, const char *job_id, const store_metric *m);
int store_metric_list(store *s, const char *job_id, store_metric **ret,
                      int *ret_n);

/* ------------------------------------------------------------------------ */
/* Checkpoints (migration 0003)                                              */

typedef struct store_checkpoint {
    char job_id[48];
    int step;
    char path[512];           /* folder, relative to the data dir */
    double train_loss, val_loss, val_accuracy;  /* NaN where not measured */
    int64_t created_at;
} store_checkpoint;

/* Records a checkpoint; the same (job, step) again replaces the row. */
int store_checkpoint_add(store *s, const store_checkpoint *c);
/* Checkpoints of a job by step, ascending. *ret is malloc'd (free()). */
int store_checkpoint_list(store *s, const char *job_id,
                          store_checkpoint **ret, int *ret_n);
int store_checkpoint_get(store *s, const char *job_id, int step,
                         store_checkpoint *ret);
/* Forgets one checkpoint (-ENOENT if absent) or all of a job's. */
int store_checkpoint_delete(store *s, const char *job_id, int step);
int store_checkpoint_delete_all(store *s, const char *job_id);

/* ------------------------------------------------------------------------ */
/* Webhook deliveries (migration 0003)                                       */

/* A trigger queues one delivery when a job with a webhook_url reaches
 * succeeded, failed or cancelled (one per job and terminal state). */
typedef struct store_webhook {
    int64_t seq;
    char job_id[48];
    char event[16];           /* the terminal status */
    char url[1024];
    char *body;               /* malloc'd JSON, NULL before the 1st attempt */
    char state[16];           /* pending | delivered | failed */
    int attempts;
    int64_t next_at;          /* next attempt (pending) */
    int last_status;          /* HTTP status of the last attempt, 0 none */
    char last_error[256];
    int64_t created_at, delivered_at;
} store_webhook;

void store_webhook_done(store_webhook *w);
void store_webhook_list_free(store_webhook *w, int n);
/* The oldest pending delivery due at now; -ENOENT when none. */
int store_webhook_next_due(store *s, int64_t now, store_webhook *ret);
/* Time of the earliest pending attempt; -ENOENT when none. */
int store_webhook_next_time(store *s, int64_t *ret);
/* Fixes the body of a delivery (first attempt). */
int store_webhook_set_body(store *s, int64_t seq, const char *body);
/* Records an attempt: delivered when ok, else pending again at next_at, or
 * failed (given up) when next_at is 0. error may be NULL. */
int store_webhook_attempted(store *s, int64_t seq, bool ok, int http_status,
                            const char *error, int64_t next_at);
/* Deliveries of a job, oldest first. */
int store_webhook_list(store *s, const char *job_id, store_webhook **ret,
                       int *ret_n);

/* ------------------------------------------------------------------------ */
/* API keys and usage (migration 0002)                                       */

typedef struct store_key {
    char id[48];          /* "key_" + hex; what owner columns hold */
    char name[128];       /* unique among active keys */
    char role[16];        /* "admin" | "member" */
    char hash[65];        /* sha256 of the secret, lower-case hex */
    char prefix[16];      /* first characters of the secret, for display */
    int64_t created_at;
    int64_t revoked_at;   /* 0 = active */
} store_key;

/* -EEXIST when the id or hash exists or an active key has the name;
 * -EINVAL for a bad role or a hash that is not 64 hex digits. */
int store_key_insert(store *s, const store_key *k);
int store_key_get(store *s, const char *id, store_key *ret);
/* The key with this secret hash, revoked or not (the caller tells 401 from
 * "revoked" by revoked_at); -ENOENT if none. */
int store_key_find_hash(store *s, const char *hash, store_key *ret);
/* The active key with this name; -ENOENT if none. */
int store_key_find_name(store *s, const char *name, store_key *ret);
/* Oldest first. *ret is malloc'd (free()). */
int store_key_list(store *s, bool include_revoked, store_key **ret,
                   int *ret_n);
/* Number of active keys (auth is on when it is > 0). */
int store_key_count_active(store *s, int *ret_n);
/* Revokes a key now; revoking a revoked key keeps its first revoked_at and
 * succeeds. -ENOENT if absent. */
int store_key_revoke(store *s, const char *id);

typedef struct store_key_usage {
    char key_id[48];
    int64_t tokens_trained;
    int64_t tokens_generated;
    double cpu_seconds;
    int64_t updated_at;   /* 0 = never used */
} store_key_usage;

/* Adds to a key's counters (negative amounts: -EINVAL; unknown key:
 * -ENOENT). */
int store_key_usage_add(store *s, const char *key_id, int64_t tokens_trained,
                        int64_t tokens_generated, double cpu_seconds);
/* A key's counters, zeros when it was never used; -ENOENT if no such key. */
int store_key_usage_get(store *s, const char *key_id, store_key_usage *ret);
/* Every key's counters (keys never used included, with zeros), in key
 * order. *ret is malloc'd (free()). */
int store_key_usage_list(store *s, store_key_usage **ret, int *ret_n);

/* ------------------------------------------------------------------------ */
/* Backup                                                                    */

/* Writes a consistent copy of the database to dest_path with SQLite's
 * online backup API, while other handles keep reading and writing: the copy
 * is written next to dest_path, checked (quick_check) and renamed over it.
 * Holds this handle's mutex for the duration. -EIO with store_last_error
 * set on failure. */
int store_backup(store *s, const char *dest_path);

/* ------------------------------------------------------------------------ */
/* Ownership (owners.c)                                                      */

/* A dataset or job is visible to owner (an API key id) when its owner
 * column is owner or it is shared; owner NULL (an admin, or keys off) sees
 * everything. An invisible row is -ENOENT, like a missing one. */
int store_dataset_get_for(store *s, const char *id, const char *owner,
                          store_dataset *ret);
int store_job_get_for(store *s, const char *id, const char *owner,
                      store_job *ret);
/* Visible rows, newest first; limit counts visible rows. *ret is malloc'd
 * (free() / store_job_list_free()). status may be NULL (all). */
int store_dataset_list_for(store *s, const char *owner, int limit,
                           store_dataset **ret, int *ret_n);
int store_job_list_for(store *s, const char *owner, const char *status,
                       int limit, store_job **ret, int *ret_n);
/* Shares a row with the team, or makes it private again; -ENOENT if
 * absent. (Callers check ownership first.) */
int store_dataset_set_shared(store *s, const char *id, bool shared);
int store_job_set_shared(store *s, const char *id, bool shared);
/* An owner's jobs in flight (queued, running, paused) and the bytes of its
 * datasets, for the per-key quotas. */
int store_owner_totals(store *s, const char *owner, int *ret_jobs_in_flight,
                       int64_t *ret_dataset_bytes);

#define STORE_MAX_STATUSES 8
typedef struct store_job_counts {
    int n;                               /* statuses present */
    char status[STORE_MAX_STATUSES][16];
    int64_t count[STORE_MAX_STATUSES];
} store_job_counts;
/* Number of jobs per status (statuses without jobs are absent). */
int store_job_status_counts(store *s, store_job_counts *ret);

#endif
