/* SPDX-License-Identifier: MIT */
/*
 * events.c - a job's event log and its per-step metrics.
 *
 * Events are append-only. Their seq is an AUTOINCREMENT key shared by all
 * jobs, so it only ever grows and serves as an SSE cursor (Last-Event-ID):
 * a client resumes with "seq > last seen" and misses nothing.
 *
 * Metrics keep one row per (job, step). A validation measurement reported
 * separately from the training one of the same step merges into the row
 * (only measured values, i.e. not NaN, replace stored ones), and a step
 * replayed after a resume overwrites what the first run wrote.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-impl.h"

static const char SQL_EVENT_ADD[] =
    "INSERT INTO job_events (job_id, created_at, level, type, message, data)"
    " VALUES (?,?,?,?,?,?)";
static const char SQL_EVENT_LIST[] =
    "SELECT seq, job_id, created_at, level, type, message, data"
    " FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?";
static const char SQL_METRIC_ADD[] =
    "INSERT INTO job_metrics (job_id, step, train_loss, val_loss,"
    " val_accuracy, lr, grad_norm, tokens_per_second, created_at)"
    " VALUES (?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (job_id, step) DO UPDATE SET"
    "  train_loss = coalesce(excluded.train_loss, train_loss),"
    "  val_loss = coalesce(excluded.val_loss, val_loss),"
    "  val_accuracy = coalesce(excluded.val_accuracy, val_accuracy),"
    "  lr = coalesce(excluded.lr, lr),"
    "  grad_norm = coalesce(excluded.grad_norm, grad_norm),"
    "  tokens_per_second = coalesce(excluded.tokens_per_second,"
    "                               tokens_per_second),"
    "  created_at = excluded.created_at";
static const char SQL_METRIC_LIST[] =
    "SELECT step, train_loss, val_loss, val_accuracy, lr, grad_norm,"
    " tokens_per_second, created_at FROM job_metrics WHERE job_id = ?"
    " ORDER BY step";

/* ------------------------------------------------------------------------ */
/* Events                                                                    */

int store_event_add(store *s, const char *job_id, const char *level,
                    const char *type, const char *message,
                    const char *data_json, int64_t *ret_seq)
{
    if (!job_id || !level || !type || !type[0] || !message)
        return -EINVAL;
    store_lock(s);
    /* unknown job: FK -> -ENOENT */
    int r = store_exec(s, SQL_EVENT_ADD, NULL, "tItttn", job_id, store_now(),
                       level, type, message, data_json);
    int64_t seq = sqlite3_last_insert_rowid(s->db);
    store_unlock(s);
    if (r == 0 && ret_seq)
        *ret_seq = seq;
    return r;
}

void store_event_list_free(store_event *ev, int n)
{
    for (int i = 0; ev && i < n; i++) {
        free(ev[i].message);
        free(ev[i].data);
    }
    free(ev);
}

static int read_event(sqlite3_stmt *st, void *row)
{
    store_event *e = row;
    memset(e, 0, sizeof(*e));
    e->seq = store_col_int64(st, 0);
    store_col_text(st, 1, e->job_id, sizeof(e->job_id));
    e->created_at = store_col_int64(st, 2);
    store_col_text(st, 3, e->level, sizeof(e->level));
    store_col_text(st, 4, e->type, sizeof(e->type));
    if (store_col_dup(st, 5, &e->message) < 0 ||
        store_col_dup(st, 6, &e->data) < 0)
        return -ENOMEM;
    if (!e->message && !(e->message = strdup("")))
        return -ENOMEM;
    return 0;
}

static void event_done(void *row)
{
    store_event *e = row;
    free(e->message);
    free(e->data);
}

static const store_rowtype event_row = { sizeof(store_event), read_event,
                                         event_done };

int store_event_list(store *s, const char *job_id, int64_t after, int limit,
                     store_event **ret, int *ret_n)
{
    if (!job_id || !ret || !ret_n)
        return -EINVAL;
    store_lock(s);
    int r = store_query_rows(s, SQL_EVENT_LIST, &event_row, (void **)ret,
                             ret_n, "tIi", job_id, after,
                             limit > 0 ? limit : -1);
    store_unlock(s);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */

int store_metric_add(store *s, const char *job_id, const store_metric *m)
{
    if (!job_id || !m || m->step < 0)
        return -EINVAL;
    store_lock(s);
    int r = store_exec(s, SQL_METRIC_ADD, NULL, "tirrrrrrI", job_id, m->step,
                       m->train_loss, m->val_loss, m->val_accuracy, m->lr,
                       m->grad_norm, m->tokens_per_second,
                       m->created_at > 0 ? m->created_at : store_now());
    store_unlock(s);
    return r;
}

static int read_metric(sqlite3_stmt *st, void *row)
{
    store_metric *m = row;
    m->step = sqlite3_column_int(st, 0);
    m->train_loss = store_col_real(st, 1);
    m->val_loss = store_col_real(st, 2);
    m->val_accuracy = store_col_real(st, 3);
    m->lr = store_col_real(st, 4);
    m->grad_norm = store_col_real(st, 5);
    m->tokens_per_second = store_col_real(st, 6);
    m->created_at = store_col_int64(st, 7);
    return 0;
}

static const store_rowtype metric_row = { sizeof(store_metric), read_metric,
                                          NULL };

int store_metric_list(store *s, const char *job_id, store_metric **ret,
                      int *ret_n)
{
    if (!job_id || !ret || !ret_n)
        return -EINVAL;
    store_lock(s);
    int r = store_query_rows(s, SQL_METRIC_LIST, &metric_row, (void **)ret,
                             ret_n, "t", job_id);
    store_unlock(s);
    return r;
}
