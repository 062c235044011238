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

static int read_ckpt(sqlite3_stmt *st, void *row)
{
    store_checkpoint *c = row;
    memset(c, 0, sizeof(*c));
    store_col_text(st, 0, c->job_id, sizeof(c->job_id));
    c->step = sqlite3_column_int(st, 1);
    store_col_text(st, 2, c->path, sizeof(c->path));
    c->train_loss = store_col_real(st, 3);
    c->val_loss = store_col_real(st, 4);
    c->val_accuracy = store_col_real(st, 5);
    c->created_at = store_col_int64(st, 6);
    return 0;
}

static const store_rowtype ckpt_row = { sizeof(store_checkpoint), read_ckpt,
                                        NULL };

int store_checkpoint_add(store *s, const store_checkpoint *c)
{
    if (!c || !c->job_id[0] || c->step < 0 || !c->path[0])
        return -EINVAL;
    store_lock(s);
    int r = store_exec(s, SQL_CKPT_ADD, NULL, "titrrrI", c->job_id, c->step,
                       c->path, c->train_loss, c->val_loss, c->val_accuracy,
                       c->created_at > 0 ? c->created_at : store_now());
    store_unlock(s);
    return r;
}

int store_checkpoint_list(store *s, const char *job_id,
                          store_checkpoint **ret, int *ret_n)
{
    if (!job_id || !ret || !ret_n)
        return -EINVAL;
    store_lock(s);
    int r = store_query_rows(s, SQL_CKPT_LIST, &ckpt_row, (void **)ret, ret_n,
                             "t", job_id);
    store_unlock(s);
    return r;
}

int store_checkpoint_get(store *s, const char *job_id, int step,
                         store_checkpoint *ret)
{
    if (!job_id || !ret)
        return -EINVAL;
    store_lock(s);
    int r = store_query_row(s, SQL_CKPT_GET, &ckpt_row, ret, "ti", job_id,
                            step);
    store_unlock(s);
    return r;
}

int store_checkpoint_delete(store *s, const char *job_id, int step)
{
    if (!job_id)
        return -EINVAL;
    int changed = 0;
    store_lock(s);
    int r = store_exec(s, SQL_CKPT_DELETE, &changed, "ti", job_id, step);
    store_unlock(s);
    return r == 0 && changed == 0 ? -ENOENT : r;
}

int store_checkpoint_delete_all(store *s, const char *job_id)
{
    if (!job_id)
        return -EINVAL;
    store_lock(s);
    int r = store_exec(s, SQL_CKPT_DELETE_ALL, NULL, "t", job_id);
    store_unlock(s);
    return r;
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

static int read_wh(sqlite3_stmt *st, void *row)
{
    store_webhook *w = row;
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

static void wh_done(void *row) { store_webhook_done(row); }

static const store_rowtype wh_row = { sizeof(store_webhook), read_wh,
                                      wh_done };

int store_webhook_next_due(store *s, int64_t now, store_webhook *ret)
{
    if (!ret)
        return -EINVAL;
    store_lock(s);
    int r = store_query_row(s, SQL_WH_DUE, &wh_row, ret, "I", now);
    store_unlock(s);
    return r;
}

int store_webhook_next_time(store *s, int64_t *ret)
{
    if (!ret)
        return -EINVAL;
    store_lock(s);
    int r = store_query_int64(s, SQL_WH_NEXT, ret, "");
    store_unlock(s);
    return r;
}

int store_webhook_set_body(store *s, int64_t seq, const char *body)
{
    if (!body)
        return -EINVAL;
    store_lock(s);
    int r = store_exec(s, SQL_WH_BODY, NULL, "It", seq, body);
    store_unlock(s);
    return r;
}

int store_webhook_attempted(store *s, int64_t seq, bool ok, int http_status,
                            const char *error, int64_t next_at)
{
    int changed = 0;
    store_lock(s);
    int r = store_exec(s, SQL_WH_ATTEMPT, &changed, "IiinII", seq, (int)ok,
                       http_status, error, next_at, store_now());
    store_unlock(s);
    return r == 0 && changed == 0 ? -ENOENT : r;
}

int store_webhook_list(store *s, const char *job_id, store_webhook **ret,
                       int *ret_n)
{
    if (!job_id || !ret || !ret_n)
        return -EINVAL;
    store_lock(s);
    int r = store_query_rows(s, SQL_WH_LIST, &wh_row, (void **)ret, ret_n,
                             "t", job_id);
    store_unlock(s);
    return r;
}
