/* SPDX-License-Identifier: MIT */
/*
 * owners.c - who may see what: owner-aware lookups and lists of datasets
 * and jobs, sharing, the per-owner totals the quotas need, and job counts
 * by status for /metrics.
 *
 * A row is visible to an owner when its owner column is that key id or
 * its shared flag is set; a NULL owner (an admin, or keys switched off)
 * sees every row. Lists select the visible ids with one statement (so
 * LIMIT counts visible rows only) and read each row with the plain getter:
 * a row deleted in between is skipped. An invisible row answers -ENOENT,
 * exactly like a missing one, so a caller cannot tell "not yours" from
 * "not there".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-impl.h"

static const char SQL_DS_IDS[] =
    "SELECT id FROM datasets WHERE ?1 IS NULL OR owner = ?1 OR shared = 1"
    " ORDER BY seq DESC LIMIT ?2";
static const char SQL_JOB_IDS[] =
    "SELECT id FROM jobs WHERE (?1 IS NULL OR owner = ?1 OR shared = 1)"
    " AND (?2 IS NULL OR status = ?2) ORDER BY seq DESC LIMIT ?3";
static const char SQL_DS_SHARE[] =
    "UPDATE datasets SET shared = ?2 WHERE id = ?1";
static const char SQL_JOB_SHARE[] =
    "UPDATE jobs SET shared = ?2 WHERE id = ?1";
static const char SQL_OWNER_TOTALS[] =
    "SELECT (SELECT count(*) FROM jobs WHERE owner = ?1"
    "         AND status IN ('queued', 'running', 'paused')),"
    "       (SELECT coalesce(sum(bytes), 0) FROM datasets WHERE owner = ?1)";
static const char SQL_STATUS_COUNTS[] =
    "SELECT status, count(*) FROM jobs GROUP BY status";

static bool visible(const char *owner, const char *row_owner, bool shared)
{
    return !owner || shared || strcmp(owner, row_owner) == 0;
}

int store_dataset_get_for(store *s, const char *id, const char *owner,
                          store_dataset *ret)
{
    store_dataset d;
    int r = store_dataset_get(s, id, &d);
    if (r < 0)
        return r;
    if (!visible(owner, d.owner, d.shared))
        return -ENOENT;
    *ret = d;
    return 0;
}

int store_job_get_for(store *s, const char *id, const char *owner,
                      store_job *ret)
{
    int r = store_job_get(s, id, ret);
    if (r < 0)
        return r;
    if (!visible(owner, ret->owner, ret->shared)) {
        store_job_done(ret);
        return -ENOENT;
    }
    return 0;
}

/* The ids an owner sees, newest first: a malloc'd array of 48-byte ids. */
static int visible_ids(store *s, const char *sql, const char *owner,
                       const char *status, int limit, store_text48 **ret,
                       int *ret_n)
{
    int r;
    limit = limit > 0 ? limit : -1;
    store_lock(s);
    if (sql == SQL_JOB_IDS)
        r = store_query_rows(s, sql, &store_text48_row, (void **)ret, ret_n,
                             "nni", owner, status, limit);
    else
        r = store_query_rows(s, sql, &store_text48_row, (void **)ret, ret_n,
                             "ni", owner, limit);
    store_unlock(s);
    return r;
}

/* How a list reads the rows of the ids it selected: the table's plain
 * getter, the row size and what frees a row (NULL: nothing). */
typedef struct visible_type {
    int (*get)(store *s, const char *id, void *ret);
    size_t size;
    void (*done)(void *row);
} visible_type;

/* The rows an owner sees (sql selects their ids, see visible_ids), read
 * one by one with t->get; a row deleted in between is skipped. */
static int list_visible(store *s, const visible_type *t, const char *sql,
                        const char *owner, const char *status, int limit,
                        void **ret, int *ret_n)
{
    if (!ret || !ret_n)
        return -EINVAL;
    store_text48 *ids = NULL;
    int n = 0, k = 0;
    int r = visible_ids(s, sql, owner, status, limit, &ids, &n);
    if (r < 0)
        return r;
    char *v = calloc((size_t)(n ? n : 1), t->size);
    if (!v) {
        free(ids);
        return -ENOMEM;
    }
    for (int i = 0; i < n && r == 0; i++) {
        r = t->get(s, ids[i], v + (size_t)k * t->size);
        if (r == 0)
            k++;
        else if (r == -ENOENT)
            r = 0;
    }
    free(ids);
    if (r < 0) {
        for (int i = 0; t->done && i < k; i++)
            t->done(v + (size_t)i * t->size);
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = k;
    return 0;
}

static int get_dataset(store *s, const char *id, void *ret)
{
    return store_dataset_get(s, id, ret);
}

static int get_job(store *s, const char *id, void *ret)
{
    return store_job_get(s, id, ret);
}

static void job_done(void *row) { store_job_done(row); }

int store_dataset_list_for(store *s, const char *owner, int limit,
                           store_dataset **ret, int *ret_n)
{
    static const visible_type t = { get_dataset, sizeof(store_dataset),
                                    NULL };
    return list_visible(s, &t, SQL_DS_IDS, owner, NULL, limit, (void **)ret,
                        ret_n);
}

int store_job_list_for(store *s, const char *owner, const char *status,
                       int limit, store_job **ret, int *ret_n)
{
    static const visible_type t = { get_job, sizeof(store_job), job_done };
    return list_visible(s, &t, SQL_JOB_IDS, owner, status, limit,
                        (void **)ret, ret_n);
}

static int set_shared(store *s, const char *sql, const char *id, bool shared)
{
    if (!id)
        return -EINVAL;
    int changed = 0;
    store_lock(s);
    int r = store_exec(s, sql, &changed, "ti", id, shared ? 1 : 0);
    store_unlock(s);
    return r == 0 && changed == 0 ? -ENOENT : r;
}

int store_dataset_set_shared(store *s, const char *id, bool shared)
{
    return set_shared(s, SQL_DS_SHARE, id, shared);
}

int store_job_set_shared(store *s, const char *id, bool shared)
{
    return set_shared(s, SQL_JOB_SHARE, id, shared);
}

typedef struct owner_totals {
    int jobs;
    int64_t bytes;
} owner_totals;

static int read_totals(sqlite3_stmt *st, void *row)
{
    owner_totals *t = row;
    t->jobs = sqlite3_column_int(st, 0);
    t->bytes = sqlite3_column_int64(st, 1);
    return 0;
}

int store_owner_totals(store *s, const char *owner, int *ret_jobs_in_flight,
                       int64_t *ret_dataset_bytes)
{
    static const store_rowtype totals_row = { sizeof(owner_totals),
                                              read_totals, NULL };
    if (!owner || !ret_jobs_in_flight || !ret_dataset_bytes)
        return -EINVAL;
    owner_totals t;
    store_lock(s);
    int r = store_query_row(s, SQL_OWNER_TOTALS, &totals_row, &t, "t", owner);
    store_unlock(s);
    if (r == 0) {
        *ret_jobs_in_flight = t.jobs;
        *ret_dataset_bytes = t.bytes;
    }
    return r;
}

int store_job_status_counts(store *s, store_job_counts *ret)
{
    if (!ret)
        return -EINVAL;
    store_job_counts c;
    memset(&c, 0, sizeof(c));
    int r = 0, rc;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_STATUS_COUNTS);
    if (!st) {
        r = -EIO;
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && c.n < STORE_MAX_STATUSES) {
        store_col_text(st, 0, c.status[c.n], sizeof(c.status[0]));
        c.count[c.n++] = sqlite3_column_int64(st, 1);
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = store_fail(s, rc);
    sqlite3_reset(st);
out:
    store_unlock(s);
    if (r == 0)
        *ret = c;
    return r;
}
