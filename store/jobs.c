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

static int read_row(sqlite3_stmt *st, store_job *j)
{
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
        store_col_dup(st, 27, &j->note) < 0) {
        store_job_done(j);
        return -ENOMEM;
    }
    return 0;
}

/* Runs a one-row SELECT of JOB_COLS (or RETURNING) and reads the row;
 * -ENOENT when there is none. Leaves the statement reset. */
static int step_job(store *s, sqlite3_stmt *st, store_job *ret)
{
    store_job j;
    int rc = sqlite3_step(st), r;
    if (rc == SQLITE_ROW) {
        r = read_row(st, &j);
        if (r == 0 && (rc = sqlite3_step(st)) != SQLITE_DONE &&
            rc != SQLITE_ROW) {
            store_job_done(&j);
            r = store_fail(s, rc);
        }
        if (r == 0)
            *ret = j;
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : store_fail(s, rc);
    }
    sqlite3_reset(st);
    return r;
}

/* One-int/one-text query helpers for the checks below. */
static int query_int(store *s, const char *sql, const char *arg, int *ret)
{
    sqlite3_stmt *st = store_stmt(s, sql);
    if (!st)
        return -EIO;
    store_bind_text(st, 1, arg);
    int rc = sqlite3_step(st), r = 0;
    if (rc == SQLITE_ROW)
        *ret = sqlite3_column_int(st, 0);
    else
        r = rc == SQLITE_DONE ? -ENOENT : store_fail(s, rc);
    sqlite3_reset(st);
    return r;
}

static int query_status(store *s, const char *id, char *buf, size_t len)
{
    sqlite3_stmt *st = store_stmt(s, SQL_STATUS);
    if (!st)
        return -EIO;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st), r = 0;
    if (rc == SQLITE_ROW)
        store_col_text(st, 0, buf, len);
    else
        r = rc == SQLITE_DONE ? -ENOENT : store_fail(s, rc);
    sqlite3_reset(st);
    return r;
}

/* Runs a bound UPDATE; *ret_changes gets the number of rows it changed. */
static int run_update(store *s, sqlite3_stmt *st, int *ret_changes)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return store_fail(s, rc);
    if (ret_changes)
        *ret_changes = sqlite3_changes(s->db);
    return 0;
}

/* -ENOENT when id does not exist, else -EBUSY: for updates that matched no
 * row because of the job's status. */
static int why_unchanged(store *s, const char *id)
{
    char status[16];
    int r = query_status(s, id, status, sizeof(status));
    return r < 0 ? r : -EBUSY;
}

/* ------------------------------------------------------------------------ */
/* Insert, get, list                                                         */

static int check_insert(store *s, const store_job *j, char *existing)
{
    sqlite3_stmt *st;
    int r, exists = 0;
    if (j->idempotency_key[0]) {
        if (!(st = store_stmt(s, SQL_BY_IDEMPOTENCY)))
            return -EIO;
        store_bind_text(st, 1, j->owner);
        store_bind_text(st, 2, j->idempotency_key);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            store_col_text(st, 0, existing, 48);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
            return -EEXIST;
        if (rc != SQLITE_DONE)
            return store_fail(s, rc);
    }
    r = query_int(s, SQL_DATASET_EXISTS, j->dataset_id, &exists);
    if (r == 0 && !exists)
        r = -ENOENT;
    if (r == 0 && j->val_dataset_id[0]) {
        r = query_int(s, SQL_DATASET_EXISTS, j->val_dataset_id, &exists);
        if (r == 0 && !exists)
            r = -ENOENT;
    }
    return r;
}

int store_job_insert(store *s, const store_job *j, char *ret_existing_id)
{
    if (!j || !j->id[0] || !j->dataset_id[0] || !j->base_model[0])
        return -EINVAL;
    char existing[48] = "";
    sqlite3_stmt *st;
    int r;
    store_lock(s);
    if ((r = store_begin(s)) < 0 || (r = check_insert(s, j, existing)) < 0)
        goto out;
    if (!(st = store_stmt(s, SQL_INSERT))) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, j->id);
    store_bind_text(st, 2, j->base_model);
    store_bind_text(st, 3, j->dataset_id);
    store_bind_text_or_null(st, 4, j->val_dataset_id);
    store_bind_text(st, 5, j->hyperparameters ? j->hyperparameters : "{}");
    store_bind_text(st, 6, j->suffix);
    store_bind_text(st, 7, j->model);
    sqlite3_bind_int64(st, 8, j->created_at > 0 ? j->created_at
                                                 : store_now());
    sqlite3_bind_int(st, 9, j->priority);
    store_bind_text(st, 10, j->owner);
    sqlite3_bind_int(st, 11, j->shared);
    store_bind_text_or_null(st, 12, j->idempotency_key);
    store_bind_text_or_null(st, 13, j->webhook_url);
    store_bind_text_or_null(st, 14, j->webhook_secret);
    if ((r = run_update(s, st, NULL)) < 0)
        goto out;
    r = store_commit(s);
out:
    if (r < 0)
        store_rollback(s);
    store_unlock(s);
    if (r == -EEXIST && existing[0] && ret_existing_id)
        memcpy(ret_existing_id, existing, sizeof(existing));
    return r;
}

int store_job_get(store *s, const char *id, store_job *ret)
{
    if (!id || !ret)
        return -EINVAL;
    int r;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_GET);
    if (!st) {
        r = -EIO;
    } else {
        store_bind_text(st, 1, id);
        r = step_job(s, st, ret);
    }
    store_unlock(s);
    return r;
}

static int collect(store *s, sqlite3_stmt *st, store_job **ret, int *ret_n)
{
    store_job *v = NULL;
    int n = 0, cap = 0, r = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            int ncap = cap ? cap * 2 : 16;
            store_job *nv = realloc(v, (size_t)ncap * sizeof(*v));
            if (!nv) {
                r = -ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        if ((r = read_row(st, &v[n])) < 0)
            break;
        n++;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_fail(s, rc);
    sqlite3_reset(st);
    if (r < 0) {
        store_job_list_free(v, n);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int store_job_list(store *s, const char *status, int limit, store_job **ret,
                   int *ret_n)
{
    if (!ret || !ret_n || (status && !is_status(status)))
        return -EINVAL;
    int r, i = 1;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, status ? SQL_LIST_STATUS : SQL_LIST_ALL);
    if (!st) {
        r = -EIO;
    } else {
        if (status)
            store_bind_text(st, i++, status);
        sqlite3_bind_int(st, i, limit > 0 ? limit : -1);
        r = collect(s, st, ret, ret_n);
    }
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
    sqlite3_stmt *st;
    store_lock(s);
    if ((r = store_begin(s)) < 0)
        goto out;
    if (!(st = store_stmt(s, SQL_CLAIM))) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, worker);
    sqlite3_bind_int64(st, 2, store_now());
    if ((r = step_job(s, st, ret)) < 0)
        goto out;
    if ((r = store_commit(s)) < 0)
        store_job_done(ret);
out:
    if (r < 0)
        store_rollback(s);
    store_unlock(s);
    return r;
}

int store_job_set_progress(store *s, const char *id, int step,
                           int total_steps, int epoch, double train_loss,
                           double val_loss, double tokens_per_second,
                           double eta_seconds)
{
    if (!id)
        return -EINVAL;
    int r, changed = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_PROGRESS);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    sqlite3_bind_int(st, 2, step);
    sqlite3_bind_int(st, 3, total_steps);
    sqlite3_bind_int(st, 4, epoch);
    store_bind_real(st, 5, train_loss);
    store_bind_real(st, 6, val_loss);
    sqlite3_bind_double(st, 7, tokens_per_second == tokens_per_second
                               ? tokens_per_second : 0);
    sqlite3_bind_double(st, 8, eta_seconds == eta_seconds ? eta_seconds : -1);
    r = run_update(s, st, &changed);
    if (r == 0 && !changed)
        r = why_unchanged(s, id);
out:
    store_unlock(s);
    return r;
}

int store_job_finish(store *s, const char *id, const char *status,
                     const char *error_json)
{
    if (!id || !status || (strcmp(status, "succeeded") &&
        strcmp(status, "failed") && strcmp(status, "cancelled")))
        return -EINVAL;
    int r, changed = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_FINISH);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, status);
    store_bind_text_or_null(st, 3, error_json);
    sqlite3_bind_int64(st, 4, store_now());
    r = run_update(s, st, &changed);
    if (r == 0 && !changed)
        r = why_unchanged(s, id);
out:
    store_unlock(s);
    return r;
}

int store_job_cancel(store *s, const char *id, char *ret_status)
{
    if (!id)
        return -EINVAL;
    char status[16];
    int r;
    sqlite3_stmt *st = NULL;
    store_lock(s);
    if ((r = store_begin(s)) < 0 ||
        (r = query_status(s, id, status, sizeof(status))) < 0)
        goto out;
    if (!strcmp(status, "queued") || !strcmp(status, "paused")) {
        if ((st = store_stmt(s, SQL_CANCEL_QUEUED)))
            sqlite3_bind_int64(st, 2, store_now());
        snprintf(status, sizeof(status), "cancelled");
    } else if (!strcmp(status, "running")) {
        st = store_stmt(s, SQL_CANCEL_RUNNING);
    } else {
        r = -EBUSY;
        goto out;
    }
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    if ((r = run_update(s, st, NULL)) < 0)
        goto out;
    r = store_commit(s);
out:
    if (r < 0)
        store_rollback(s);
    store_unlock(s);
    if (r == 0 && ret_status)
        memcpy(ret_status, status, sizeof(status));
    return r;
}

int store_job_requeue_running(store *s, int *ret_n)
{
    int r, n = 0;
    sqlite3_stmt *st;
    store_lock(s);
    if ((r = store_begin(s)) < 0)
        goto out;
    if (!(st = store_stmt(s, SQL_REQUEUE_CANCELLED))) {
        r = -EIO;
        goto out;
    }
    sqlite3_bind_int64(st, 1, store_now());
    if ((r = run_update(s, st, NULL)) < 0)
        goto out;
    if (!(st = store_stmt(s, SQL_REQUEUE_PAUSED))) {
        r = -EIO;
        goto out;
    }
    if ((r = run_update(s, st, NULL)) < 0)
        goto out;
    if (!(st = store_stmt(s, SQL_REQUEUE))) {
        r = -EIO;
        goto out;
    }
    if ((r = run_update(s, st, &n)) < 0)
        goto out;
    r = store_commit(s);
out:
    if (r < 0)
        store_rollback(s);
    store_unlock(s);
    if (r == 0 && ret_n)
        *ret_n = n;
    return r;
}

int store_job_queue_position(store *s, const char *id, int *ret_pos)
{
    if (!id || !ret_pos)
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_QUEUE_POS);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *status = sqlite3_column_text(st, 0);
        if (status && !strcmp((const char *)status, "queued"))
            *ret_pos = sqlite3_column_int(st, 1);
        else
            r = -ENOENT;
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : store_fail(s, rc);
    }
    sqlite3_reset(st);
out:
    store_unlock(s);
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

int store_job_control(store *s, const char *id, const char *action,
                      char *ret_status)
{
    if (!id || !action || (strcmp(action, "stop") && strcmp(action, "pause")))
        return -EINVAL;
    char status[16];
    int r;
    const char *sql;
    sqlite3_stmt *st = NULL;
    store_lock(s);
    if ((r = store_begin(s)) < 0 ||
        (r = query_status(s, id, status, sizeof(status))) < 0)
        goto out;
    if (!(sql = control_sql(action, status, status))) {
        r = -EBUSY;
        goto out;
    }
    if (!(st = store_stmt(s, sql))) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    if (sql == SQL_CONTROL_RUNNING)
        store_bind_text(st, 2, action);
    if (sql == SQL_STATUS) {
        sqlite3_step(st);
        sqlite3_reset(st);
    } else if ((r = run_update(s, st, NULL)) < 0) {
        goto out;
    }
    r = store_commit(s);
out:
    if (r < 0)
        store_rollback(s);
    store_unlock(s);
    if (r == 0 && ret_status)
        memcpy(ret_status, status, sizeof(status));
    return r;
}

/* Runs a one-id UPDATE (plus an optional text or int second parameter);
 * -EBUSY/-ENOENT when it matched nothing. */
static int update_one(store *s, const char *sql, const char *id,
                      const char *text2, const int *int2)
{
    if (!id)
        return -EINVAL;
    int r, changed = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, sql);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    if (int2)
        sqlite3_bind_int(st, 2, *int2);
    else if (sql == SQL_NOTE)
        store_bind_text_or_null(st, 2, text2 ? text2 : "");
    r = run_update(s, st, &changed);
    if (r == 0 && !changed)
        r = why_unchanged(s, id);
out:
    store_unlock(s);
    return r;
}

int store_job_pause(store *s, const char *id)
{
    return update_one(s, SQL_PAUSE_DONE, id, NULL, NULL);
}

int store_job_resume(store *s, const char *id)
{
    return update_one(s, SQL_RESUME, id, NULL, NULL);
}

int store_job_set_priority(store *s, const char *id, int priority)
{
    return update_one(s, SQL_PRIORITY, id, NULL, &priority);
}

int store_job_set_note(store *s, const char *id, const char *note)
{
    return update_one(s, SQL_NOTE, id, note, NULL);
}

int store_job_count(store *s, const char *status, int *ret_n)
{
    if (!status || !ret_n || !is_status(status))
        return -EINVAL;
    store_lock(s);
    int r = query_int(s, SQL_COUNT, status, ret_n);
    store_unlock(s);
    return r;
}
