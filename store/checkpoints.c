/* SPDX-License-Identifier: MIT */
/*
 * checkpoints.c - the job_checkpoints table and the webhook outbox
 * (migration 0003).
 *
 * Checkpoint rows describe folders the job runner wrote under the data dir;
 * the runner writes the folder first and the row second, and deletes the
 * row before the folder, so a row always names a complete folder (a folder
 * without a row is an orphan the runner removes).
 *
 * Webhook rows are inserted by the jobs_webhook_outbox trigger, in the
 * transaction that gives a job its terminal status. The delivery thread
 * takes due rows one at a time and records each attempt.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-impl.h"

static const char SQL_CKPT_ADD[] =
    "INSERT INTO job_checkpoints (job_id, step, path, train_loss, val_loss,"
    " val_accuracy, created_at) VALUES (?,?,?,?,?,?,?)"
    " ON CONFLICT (job_id, step) DO UPDATE SET path = excluded.path,"
    "  train_loss = excluded.train_loss, val_loss = excluded.val_loss,"
    "  val_accuracy = excluded.val_accuracy, created_at = excluded.created_at";
#define CKPT_COLS "job_id, step, path, train_loss, val_loss, val_accuracy, " \
    "created_at"
static const char SQL_CKPT_LIST[] =
    "SELECT " CKPT_COLS " FROM job_checkpoints WHERE job_id = ? ORDER BY step";
static const char SQL_CKPT_GET[] =
    "SELECT " CKPT_COLS " FROM job_checkpoints WHERE job_id = ? AND step = ?";
static const char SQL_CKPT_DELETE[] =
    "DELETE FROM job_checkpoints WHERE job_id = ? AND step = ?";
static const char SQL_CKPT_DELETE_ALL[] =
    "DELETE FROM job_checkpoints WHERE job_id = ?";

#define WH_COLS "seq, job_id, event, url, body, state, attempts, next_at, " \
    "last_status, last_error, created_at, delivered_at"
static const char SQL_WH_DUE[] =
    "SELECT " WH_COLS " FROM webhook_deliveries"
    " WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, seq LIMIT 1";
static const char SQL_WH_NEXT[] =
    "SELECT min(next_at) FROM webhook_deliveries WHERE state = 'pending'";
static const char SQL_WH_BODY[] =
    "UPDATE webhook_deliveries SET body = ?2 WHERE seq = ?1 AND body IS NULL";
static const char SQL_WH_ATTEMPT[] =
    "UPDATE webhook_deliveries SET attempts = attempts + 1,"
    " last_status = ?3, last_error = ?4,"
    " state = CASE WHEN ?2 THEN 'delivered' WHEN ?5 = 0 THEN 'failed'"
    "         ELSE 'pending' END,"
    " next_at = CASE WHEN ?5 = 0 THEN next_at ELSE ?5 END,"
    " delivered_at = CASE WHEN ?2 THEN ?6 ELSE NULL END"
    " WHERE seq = ?1 AND state = 'pending'";
static const char SQL_WH_LIST[] =
    "SELECT " WH_COLS " FROM webhook_deliveries WHERE job_id = ? ORDER BY seq";

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */

int store_checkpoint_add(store *s, const store_checkpoint *c)
{
    if (!c || !c->job_id[0] || c->step < 0 || !c->path[0])
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_CKPT_ADD);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, c->job_id);
    sqlite3_bind_int(st, 2, c->step);
    store_bind_text(st, 3, c->path);
    store_bind_real(st, 4, c->train_loss);
    store_bind_real(st, 5, c->val_loss);
    store_bind_real(st, 6, c->val_accuracy);
    sqlite3_bind_int64(st, 7, c->created_at > 0 ? c->created_at : store_now());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        r = store_fail(s, rc);
out:
    store_unlock(s);
    return r;
}

static void read_ckpt(sqlite3_stmt *st, store_checkpoint *c)
{
    memset(c, 0, sizeof(*c));
    store_col_text(st, 0, c->job_id, sizeof(c->job_id));
    c->step = sqlite3_column_int(st, 1);
    store_col_text(st, 2, c->path, sizeof(c->path));
    c->train_loss = store_col_real(st, 3);
    c->val_loss = store_col_real(st, 4);
    c->val_accuracy = store_col_real(st, 5);
    c->created_at = store_col_int64(st, 6);
}

int store_checkpoint_list(store *s, const char *job_id,
                          store_checkpoint **ret, int *ret_n)
{
    if (!job_id || !ret || !ret_n)
        return -EINVAL;
    store_checkpoint *v = NULL;
    int n = 0, cap = 0, r = 0, rc;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_CKPT_LIST);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, job_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            int ncap = cap ? cap * 2 : 16;
            store_checkpoint *nv = realloc(v, (size_t)ncap * sizeof(*v));
            if (!nv) {
                r = -ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        read_ckpt(st, &v[n++]);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_fail(s, rc);
    sqlite3_reset(st);
out:
    store_unlock(s);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int store_checkpoint_get(store *s, const char *job_id, int step,
                         store_checkpoint *ret)
{
    if (!job_id || !ret)
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_CKPT_GET);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, job_id);
    sqlite3_bind_int(st, 2, step);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_ckpt(st, ret);
    else
        r = rc == SQLITE_DONE ? -ENOENT : store_fail(s, rc);
    sqlite3_reset(st);
out:
    store_unlock(s);
    return r;
}

static int delete_ckpts(store *s, const char *sql, const char *job_id,
                        int step)
{
    if (!job_id)
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, sql);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, job_id);
    if (sql == SQL_CKPT_DELETE)
        sqlite3_bind_int(st, 2, step);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        r = store_fail(s, rc);
    else if (sql == SQL_CKPT_DELETE && sqlite3_changes(s->db) == 0)
        r = -ENOENT;
out:
    store_unlock(s);
    return r;
}

int store_checkpoint_delete(store *s, const char *job_id, int step)
{
    return delete_ckpts(s, SQL_CKPT_DELETE, job_id, step);
}

int store_checkpoint_delete_all(store *s, const char *job_id)
{
    return delete_ckpts(s, SQL_CKPT_DELETE_ALL, job_id, 0);
}

/* ------------------------------------------------------------------------ */
/* Webhook deliveries                                                        */

void store_webhook_done(store_webhook *w)
{
    if (!w)
        return;
    free(w->body);
    w->body = NULL;
}

void store_webhook_list_free(store_webhook *w, int n)
{
    for (int i = 0; w && i < n; i++)
        store_webhook_done(&w[i]);
    free(w);
}

static int read_wh(sqlite3_stmt *st, store_webhook *w)
{
    memset(w, 0, sizeof(*w));
    w->seq = store_col_int64(st, 0);
    store_col_text(st, 1, w->job_id, sizeof(w->job_id));
    store_col_text(st, 2, w->event, sizeof(w->event));
    store_col_text(st, 3, w->url, sizeof(w->url));
    store_col_text(st, 5, w->state, sizeof(w->state));
    w->attempts = sqlite3_column_int(st, 6);
    w->next_at = store_col_int64(st, 7);
    w->last_status = sqlite3_column_int(st, 8);
    store_col_text(st, 9, w->last_error, sizeof(w->last_error));
    w->created_at = store_col_int64(st, 10);
    w->delivered_at = store_col_int64(st, 11);
    return store_col_dup(st, 4, &w->body);
}

int store_webhook_next_due(store *s, int64_t now, store_webhook *ret)
{
    if (!ret)
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_WH_DUE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    sqlite3_bind_int64(st, 1, now);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        r = read_wh(st, ret);
    else
        r = rc == SQLITE_DONE ? -ENOENT : store_fail(s, rc);
    sqlite3_reset(st);
out:
    store_unlock(s);
    return r;
}

int store_webhook_next_time(store *s, int64_t *ret)
{
    if (!ret)
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_WH_NEXT);
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *ret = sqlite3_column_int64(st, 0);
    else
        r = rc == SQLITE_ROW ? -ENOENT : store_fail(s, rc);
    sqlite3_reset(st);
out:
    store_unlock(s);
    return r;
}

int store_webhook_set_body(store *s, int64_t seq, const char *body)
{
    if (!body)
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_WH_BODY);
    if (!st) {
        r = -EIO;
        goto out;
    }
    sqlite3_bind_int64(st, 1, seq);
    store_bind_text(st, 2, body);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        r = store_fail(s, rc);
out:
    store_unlock(s);
    return r;
}

int store_webhook_attempted(store *s, int64_t seq, bool ok, int http_status,
                            const char *error, int64_t next_at)
{
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_WH_ATTEMPT);
    if (!st) {
        r = -EIO;
        goto out;
    }
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int(st, 2, ok);
    sqlite3_bind_int(st, 3, http_status);
    store_bind_text_or_null(st, 4, error ? error : "");
    sqlite3_bind_int64(st, 5, next_at);
    sqlite3_bind_int64(st, 6, store_now());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        r = store_fail(s, rc);
    else if (sqlite3_changes(s->db) == 0)
        r = -ENOENT;
out:
    store_unlock(s);
    return r;
}

int store_webhook_list(store *s, const char *job_id, store_webhook **ret,
                       int *ret_n)
{
    if (!job_id || !ret || !ret_n)
        return -EINVAL;
    store_webhook *v = NULL;
    int n = 0, cap = 0, r = 0, rc;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_WH_LIST);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, job_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            int ncap = cap ? cap * 2 : 4;
            store_webhook *nv = realloc(v, (size_t)ncap * sizeof(*v));
            if (!nv) {
                r = -ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        if ((r = read_wh(st, &v[n])) < 0)
            break;
        n++;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_fail(s, rc);
    sqlite3_reset(st);
out:
    store_unlock(s);
    if (r < 0) {
        store_webhook_list_free(v, n);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}
