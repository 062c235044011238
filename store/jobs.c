/* SPDX-License-Identifier: MIT */
/*
 * jobs.c - the jobs table and its state machine:
 *
 *   queued --claim--> running --finish--> succeeded | failed | cancelled
 *     |                  |  ^
 *     |                  |  '--requeue_running (start-up after a crash)
 *     '--cancel--> cancelled      running --cancel--> cancel_requested = 1
 *
 *   queued --pause--> paused --resume--> queued     running --pause/stop-->
 *   paused --cancel--> cancelled                     control = 'pause'|'stop'
 *   running --pause (the worker, at a step)--> paused
 *
 * A running job's pause and stop are requests (the control column) that
 * its worker acts on within a step, as it does for cancel_requested.
 *
 * Claiming is one UPDATE ... WHERE seq = (oldest highest-priority queued)
 * ... RETURNING inside BEGIN IMMEDIATE: the write lock is held from the
 * choice to the change, so no two handles, threads or processes can take the
 * same job. seq (the INTEGER PRIMARY KEY) orders jobs by insertion, which
 * makes the queue FIFO within a priority even when created_at ties.
 *
 * Every other read-then-write (insert with its idempotency and dataset
 * checks, cancel) also runs under BEGIN IMMEDIATE so it cannot interleave
 * with a claim.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-impl.h"

#define JOB_COLS "id, status, base_model, dataset_id, val_dataset_id, " \
    "hyperparameters, suffix, model, created_at, started_at, finished_at, " \
    "step, total_steps, epoch, train_loss, val_loss, tokens_per_second, " \
    "eta_seconds, error, priority, cancel_requested, worker, attempts, " \
    "owner, shared, idempotency_key, control, note, webhook_url, " \
    "webhook_secret"

static const char SQL_INSERT[] =
    "INSERT INTO jobs (id, status, base_model, dataset_id, val_dataset_id,"
    " hyperparameters, suffix, model, created_at, priority, owner, shared,"
    " idempotency_key, webhook_url, webhook_secret)"
    " VALUES (?,'queued',?,?,?,?,?,?,?,?,?,?,?,?,?)";
static const char SQL_BY_IDEMPOTENCY[] =
    "SELECT id FROM jobs WHERE owner = ? AND idempotency_key = ?";
static const char SQL_DATASET_EXISTS[] =
    "SELECT EXISTS (SELECT 1 FROM datasets WHERE id = ?)";
static const char SQL_GET[] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?";
static const char SQL_LIST_ALL[] =
    "SELECT " JOB_COLS " FROM jobs ORDER BY seq DESC LIMIT ?";
static const char SQL_LIST_STATUS[] =
    "SELECT " JOB_COLS " FROM jobs WHERE status = ? ORDER BY seq DESC LIMIT ?";
static const char SQL_CLAIM[] =
    "UPDATE jobs SET status = 'running', worker = ?1, started_at = ?2,"
    " attempts = attempts + 1"
    " WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued'"
    "              ORDER BY priority DESC, seq LIMIT 1)"
    " RETURNING " JOB_COLS;
static const char SQL_STATUS[] = "SELECT status FROM jobs WHERE id = ?";
static const char SQL_PROGRESS[] =
    "UPDATE jobs SET step = ?2, total_steps = ?3, epoch = ?4,"
    " train_loss = coalesce(?5, train_loss), val_loss = coalesce(?6, val_loss),"
    " tokens_per_second = ?7, eta_seconds = ?8"
    " WHERE id = ?1 AND status = 'running'";
static const char SQL_FINISH[] =
    "UPDATE jobs SET status = ?2, error = ?3, finished_at = ?4, control = NULL"
    " WHERE id = ?1 AND status IN ('queued', 'running', 'paused')";
static const char SQL_CANCEL_QUEUED[] =
    "UPDATE jobs SET status = 'cancelled', cancel_requested = 1,"
    " finished_at = ?2 WHERE id = ?1 AND status IN ('queued', 'paused')";
static const char SQL_CANCEL_RUNNING[] =
    "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'";
/* A job whose cancel was requested before the crash ends as cancelled
 * instead of running again. */
static const char SQL_REQUEUE_CANCELLED[] =
    "UPDATE jobs SET status = 'cancelled', finished_at = ?"
    " WHERE status = 'running' AND cancel_requested = 1";
/* A pause asked before the crash parks the job instead. */
static const char SQL_REQUEUE_PAUSED[] =
    "UPDATE jobs SET status = 'paused', control = NULL, worker = ''"
    " WHERE status = 'running' AND control = 'pause'";
static const char SQL_REQUEUE[] =
    "UPDATE jobs SET status = 'queued', worker = '', started_at = NULL"
    " WHERE status = 'running'";
static const char SQL_QUEUE_POS[] =
    "SELECT j.status, (SELECT count(*) FROM jobs q WHERE q.status = 'queued'"
    "  AND (q.priority > j.priority"
    "       OR (q.priority = j.priority AND q.seq < j.seq)))"
    " FROM jobs j WHERE j.id = ?";

static bool is_status(const char *st)
{
    static const char *const all[] = {"queued", "running", "paused",
                                      "succeeded", "failed", "cancelled"};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (!strcmp(st, all[i]))
            return true;
    return false;
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                      */

void store_job_done(store_job *j)
{
    if (!j)
        return;
    free(j->hyperparameters);
    free(j->error);
    free(j->note);
    j->hyperparameters = NULL;
    j->error = NULL;
    j->note = NULL;
}

void store_job_list_free(store_job *jobs, int n)
{
    for (int i = 0; jobs && i < n; i++)
        store_job_done(&jobs[i]);
    free(jobs);
}

static int read_row(sqlite3_stmt *st, void *row)
{
    store_job *j = row;
    memset(j, 0, sizeof(*j));
    store_col_text(st, 0, j->id, sizeof(j->id));
    store_col_text(st, 1, j->status, sizeof(j->status));
    store_col_text(st, 2, j->base_model, sizeof(j->base_model));
    store_col_text(st, 3, j->dataset_id, sizeof(j->dataset_id));
    store_col_text(st, 4, j->val_dataset_id, sizeof(j->val_dataset_id));
    store_col_text(st, 6, j->suffix, sizeof(j->suffix));
    store_col_text(st, 7, j->model, sizeof(j->model));
    j->created_at = store_col_int64(st, 8);
    j->started_at = store_col_int64(st, 9);
    j->finished_at = store_col_int64(st, 10);
    j->step = sqlite3_column_int(st, 11);
    j->total_steps = sqlite3_column_int(st, 12);
    j->epoch = sqlite3_column_int(st, 13);
    j->train_loss = store_col_real(st, 14);
    j->val_loss = store_col_real(st, 15);
    j->tokens_per_second = sqlite3_column_double(st, 16);
    j->eta_seconds = sqlite3_column_double(st, 17);
    j->priority = sqlite3_column_int(st, 19);
    j->cancel_requested = sqlite3_column_int(st, 20) != 0;
    store_col_text(st, 21, j->worker, sizeof(j->worker));
    j->attempts = sqlite3_column_int(st, 22);
    store_col_text(st, 23, j->owner, sizeof(j->owner));
    j->shared = sqlite3_column_int(st, 24) != 0;
    store_col_text(st, 25, j->idempotency_key, sizeof(j->idempotency_key));
    store_col_text(st, 26, j->control, sizeof(j->control));
    store_col_text(st, 28, j->webhook_url, sizeof(j->webhook_url));
    store_col_text(st, 29, j->webhook_secret, sizeof(j->webhook_secret));
    if (store_col_dup(st, 5, &j->hyperparameters) < 0 ||
        store_col_dup(st, 18, &j->error) < 0 ||
        store_col_dup(st, 27, &j->note) < 0)
        return -ENOMEM;
    return 0;
}

static void job_done(void *row) { store_job_done(row); }

static const store_rowtype job_row = { sizeof(store_job), read_row,
                                       job_done };

static int query_status(store *s, const char *id, char *buf, size_t len)
{
    store_text48 status;
    int r = store_query_row(s, SQL_STATUS, &store_text48_row, status, "t", id);
    if (r == 0) {
        size_t n = strnlen(status, len - 1);
        memcpy(buf, status, n);
        buf[n] = '\0';
    }
    return r;
}

/* -ENOENT when id does not exist, else -EBUSY: for updates that matched no
 * row because of the job's status. */
static int why_unchanged(store *s, const char *id)
{
    char status[16];
    int r = query_status(s, id, status, sizeof(status));
    return r < 0 ? r : -EBUSY;
}

/* Runs an UPDATE of job id with the arguments of fmt (id among them);
 * -EBUSY/-ENOENT when it matched nothing. */
static int update_one(store *s, const char *sql, const char *id,
                      const char *fmt, ...)
{
    if (!id)
        return -EINVAL;
    int changed = 0;
    va_list ap;
    va_start(ap, fmt);
    store_lock(s);
    int r = store_execv(s, sql, &changed, fmt, ap);
    if (r == 0 && !changed)
        r = why_unchanged(s, id);
    store_unlock(s);
    va_end(ap);
    return r;
}

/* A change that depends on the job's status (cancel, pause, stop): runs
 * the statement status allows, with action (NULL for cancel), and leaves
 * the status the job ends in in status (16 bytes); -EBUSY when status
 * allows none. */
typedef int status_change(store *s, const char *id, const char *action,
                          char *status);

/* Reads job id's status and applies change in one write transaction, so
 * no claim can come between; ret_status (may be NULL) gets the status
 * after it. */
static int change_by_status(store *s, const char *id, const char *action,
                            status_change *change, char *ret_status)
{
    char status[16];
    int r;
    store_lock(s);
    if ((r = store_begin(s)) == 0 &&
        (r = query_status(s, id, status, sizeof(status))) == 0)
        r = change(s, id, action, status);
    r = store_end(s, r);
    store_unlock(s);
    if (r == 0 && ret_status)
        memcpy(ret_status, status, sizeof(status));
    return r;
}

/* ------------------------------------------------------------------------ */
/* Insert, get, list                                                         */

/* Whether dataset id exists: 0, -ENOENT, or a failure. */
static int dataset_exists(store *s, const char *id)
{
    int64_t exists = 0;
    int r = store_query_int64(s, SQL_DATASET_EXISTS, &exists, "t", id);
    return r == 0 && !exists ? -ENOENT : r;
}

static int check_insert(store *s, const store_job *j, char *existing)
{
    int r;
    if (j->idempotency_key[0]) {
        r = store_query_row(s, SQL_BY_IDEMPOTENCY, &store_text48_row,
                            existing, "tt", j->owner, j->idempotency_key);
        if (r != -ENOENT)
            return r == 0 ? -EEXIST : r;
    }
    r = dataset_exists(s, j->dataset_id);
    if (r == 0 && j->val_dataset_id[0])
        r = dataset_exists(s, j->val_dataset_id);
    return r;
}

int store_job_insert(store *s, const store_job *j, char *ret_existing_id)
{
    if (!j || !j->id[0] || !j->dataset_id[0] || !j->base_model[0])
        return -EINVAL;
    store_text48 existing = "";
    int r;
    store_lock(s);
    if ((r = store_begin(s)) == 0 && (r = check_insert(s, j, existing)) == 0)
        r = store_exec(s, SQL_INSERT, NULL, "tttntttIitinnn", j->id,
                       j->base_model, j->dataset_id, j->val_dataset_id,
                       j->hyperparameters ? j->hyperparameters : "{}",
                       j->suffix, j->model,
                       j->created_at > 0 ? j->created_at : store_now(),
                       j->priority, j->owner, (int)j->shared,
                       j->idempotency_key, j->webhook_url, j->webhook_secret);
    r = store_end(s, r);
    store_unlock(s);
    if (r == -EEXIST && existing[0] && ret_existing_id)
        memcpy(ret_existing_id, existing, sizeof(existing));
    return r;
}

int store_job_get(store *s, const char *id, store_job *ret)
{
    if (!id || !ret)
        return -EINVAL;
    store_lock(s);
    int r = store_query_row(s, SQL_GET, &job_row, ret, "t", id);
    store_unlock(s);
    return r;
}

int store_job_list(store *s, const char *status, int limit, store_job **ret,
                   int *ret_n)
{
    if (!ret || !ret_n || (status && !is_status(status)))
        return -EINVAL;
    int r;
    limit = limit > 0 ? limit : -1;
    store_lock(s);
    if (status)
        r = store_query_rows(s, SQL_LIST_STATUS, &job_row, (void **)ret,
                             ret_n, "ti", status, limit);
    else
        r = store_query_rows(s, SQL_LIST_ALL, &job_row, (void **)ret, ret_n,
                             "i", limit);
    store_unlock(s);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The state machine                                                         */

int store_job_claim_next(store *s, const char *worker, store_job *ret)
{
    if (!ret)
        return -EINVAL;
    int r;
    store_lock(s);
    bool claimed = (r = store_begin(s)) == 0 &&
                   (r = store_query_row(s, SQL_CLAIM, &job_row, ret, "tI",
                                        worker, store_now())) == 0;
    if ((r = store_end(s, r)) < 0 && claimed)
        store_job_done(ret);    /* the commit failed: the claim is undone */
    store_unlock(s);
    return r;
}

int store_job_set_progress(store *s, const char *id, int step,
                           int total_steps, int epoch, double train_loss,
                           double val_loss, double tokens_per_second,
                           double eta_seconds)
{
    return update_one(s, SQL_PROGRESS, id, "tiiirrdd", id, step, total_steps,
                      epoch, train_loss, val_loss,
                      tokens_per_second == tokens_per_second
                          ? tokens_per_second : 0.0,
                      eta_seconds == eta_seconds ? eta_seconds : -1.0);
}

int store_job_finish(store *s, const char *id, const char *status,
                     const char *error_json)
{
    if (!status || (strcmp(status, "succeeded") &&
        strcmp(status, "failed") && strcmp(status, "cancelled")))
        return -EINVAL;
    return update_one(s, SQL_FINISH, id, "ttnI", id, status, error_json,
                      store_now());
}

static int cancel_change(store *s, const char *id, const char *action,
                         char *status)
{
    (void)action;
    if (!strcmp(status, "queued") || !strcmp(status, "paused")) {
        snprintf(status, 16, "cancelled");
        return store_exec(s, SQL_CANCEL_QUEUED, NULL, "tI", id, store_now());
    }
    if (!strcmp(status, "running"))
        return store_exec(s, SQL_CANCEL_RUNNING, NULL, "t", id);
    return -EBUSY;
}

int store_job_cancel(store *s, const char *id, char *ret_status)
{
    if (!id)
        return -EINVAL;
    return change_by_status(s, id, NULL, cancel_change, ret_status);
}

int store_job_requeue_running(store *s, int *ret_n)
{
    int r, n = 0;
    store_lock(s);
    if ((r = store_begin(s)) == 0 &&
        (r = store_exec(s, SQL_REQUEUE_CANCELLED, NULL, "I",
                        store_now())) == 0 &&
        (r = store_exec(s, SQL_REQUEUE_PAUSED, NULL, "")) == 0)
        r = store_exec(s, SQL_REQUEUE, &n, "");
    r = store_end(s, r);
    store_unlock(s);
    if (r == 0 && ret_n)
        *ret_n = n;
    return r;
}

typedef struct queue_pos {
    store_text48 status;
    int pos;
} queue_pos;

static int read_queue_pos(sqlite3_stmt *st, void *row)
{
    queue_pos *q = row;
    store_col_text(st, 0, q->status, sizeof(q->status));
    q->pos = sqlite3_column_int(st, 1);
    return 0;
}

int store_job_queue_position(store *s, const char *id, int *ret_pos)
{
    static const store_rowtype pos_row = { sizeof(queue_pos), read_queue_pos,
                                           NULL };
    if (!id || !ret_pos)
        return -EINVAL;
    queue_pos q;
    store_lock(s);
    int r = store_query_row(s, SQL_QUEUE_POS, &pos_row, &q, "t", id);
    store_unlock(s);
    if (r == 0 && strcmp(q.status, "queued"))
        r = -ENOENT;
    if (r == 0)
        *ret_pos = q.pos;
    return r;
}

/* ------------------------------------------------------------------------ */
/* Controls (migration 0003)                                                 */

static const char SQL_PAUSE_QUEUED[] =
    "UPDATE jobs SET status = 'paused' WHERE id = ? AND status = 'queued'";
static const char SQL_CONTROL_RUNNING[] =
    "UPDATE jobs SET control = ?2 WHERE id = ?1 AND status = 'running'";
static const char SQL_STOP_PAUSED[] =
    "UPDATE jobs SET status = 'queued', control = 'stop'"
    " WHERE id = ? AND status = 'paused'";
static const char SQL_PAUSE_DONE[] =
    "UPDATE jobs SET status = 'paused', control = NULL, eta_seconds = -1"
    " WHERE id = ? AND status = 'running'";
static const char SQL_RESUME[] =
    "UPDATE jobs SET status = 'queued' WHERE id = ? AND status = 'paused'";
static const char SQL_PRIORITY[] =
    "UPDATE jobs SET priority = ?2 WHERE id = ?1"
    " AND status IN ('queued', 'running', 'paused')";
static const char SQL_NOTE[] = "UPDATE jobs SET note = ?2 WHERE id = ?1";
static const char SQL_COUNT[] = "SELECT count(*) FROM jobs WHERE status = ?";

/* Picks the statement for action on a job in status; NULL: not allowed. */
static const char *control_sql(const char *action, const char *status,
                               char *ret_status)
{
    bool pause = !strcmp(action, "pause");
    if (!strcmp(status, "running"))
        return SQL_CONTROL_RUNNING;
    if (pause && !strcmp(status, "queued")) {
        snprintf(ret_status, 16, "paused");
        return SQL_PAUSE_QUEUED;
    }
    if (pause && !strcmp(status, "paused"))
        return SQL_STATUS;   /* already paused: nothing to change */
    if (!pause && !strcmp(status, "paused")) {
        snprintf(ret_status, 16, "queued");
        return SQL_STOP_PAUSED;
    }
    return NULL;
}

static int control_change(store *s, const char *id, const char *action,
                          char *status)
{
    const char *sql = control_sql(action, status, status);
    if (!sql)
        return -EBUSY;
    if (sql == SQL_CONTROL_RUNNING)
        return store_exec(s, sql, NULL, "tt", id, action);
    if (sql == SQL_STATUS)   /* already paused */
        return 0;
    return store_exec(s, sql, NULL, "t", id);
}

int store_job_control(store *s, const char *id, const char *action,
                      char *ret_status)
{
    if (!id || !action || (strcmp(action, "stop") && strcmp(action, "pause")))
        return -EINVAL;
    return change_by_status(s, id, action, control_change, ret_status);
}

int store_job_pause(store *s, const char *id)
{
    return update_one(s, SQL_PAUSE_DONE, id, "t", id);
}

int store_job_resume(store *s, const char *id)
{
    return update_one(s, SQL_RESUME, id, "t", id);
}

int store_job_set_priority(store *s, const char *id, int priority)
{
    return update_one(s, SQL_PRIORITY, id, "ti", id, priority);
}

int store_job_set_note(store *s, const char *id, const char *note)
{
    return update_one(s, SQL_NOTE, id, "tn", id, note);
}

int store_job_count(store *s, const char *status, int *ret_n)
{
    if (!status || !ret_n || !is_status(status))
        return -EINVAL;
    int64_t n;
    store_lock(s);
    int r = store_query_int64(s, SQL_COUNT, &n, "t", status);
    store_unlock(s);
    if (r == 0)
        *ret_n = (int)n;
    return r;
}
