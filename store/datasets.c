/* SPDX-License-Identifier: MIT */
/*
 * datasets.c - the datasets table: one row per uploaded JSONL file (the
 * file itself lives under the data dir; the row records where, its sha256
 * and what the parser counted).
 *
 * Deleting a dataset takes the write lock first (BEGIN IMMEDIATE) so that
 * "no queued or running job uses it" and the DELETE are one atomic step
 * against job inserts and claims from other handles.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-impl.h"

#define DS_COLS "id, name, format, rows, tokens, bytes, sha256, path, " \
                "created_at, owner, shared"

static const char SQL_INSERT[] =
    "INSERT INTO datasets (" DS_COLS ") VALUES (?,?,?,?,?,?,?,?,?,?,?)";
static const char SQL_GET[] =
    "SELECT " DS_COLS " FROM datasets WHERE id = ?";
static const char SQL_LIST[] =
    "SELECT " DS_COLS " FROM datasets ORDER BY seq DESC LIMIT ?";
static const char SQL_IN_USE[] =
    "SELECT EXISTS (SELECT 1 FROM jobs"
    " WHERE status IN ('queued', 'running', 'paused')"
    " AND (dataset_id = ?1 OR val_dataset_id = ?1))";
static const char SQL_DELETE[] = "DELETE FROM datasets WHERE id = ?";

static void read_row(sqlite3_stmt *st, store_dataset *d)
{
    memset(d, 0, sizeof(*d));
    store_col_text(st, 0, d->id, sizeof(d->id));
    store_col_text(st, 1, d->name, sizeof(d->name));
    store_col_text(st, 2, d->format, sizeof(d->format));
    d->rows = store_col_int64(st, 3);
    d->tokens = store_col_int64(st, 4);
    d->bytes = store_col_int64(st, 5);
    store_col_text(st, 6, d->sha256, sizeof(d->sha256));
    store_col_text(st, 7, d->path, sizeof(d->path));
    d->created_at = store_col_int64(st, 8);
    store_col_text(st, 9, d->owner, sizeof(d->owner));
    d->shared = sqlite3_column_int(st, 10) != 0;
}

int store_dataset_insert(store *s, const store_dataset *d)
{
    if (!d || !d->id[0] || !d->path[0])
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_INSERT);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, d->id);
    store_bind_text(st, 2, d->name);
    store_bind_text(st, 3, d->format);
    sqlite3_bind_int64(st, 4, d->rows);
    sqlite3_bind_int64(st, 5, d->tokens);
    sqlite3_bind_int64(st, 6, d->bytes);
    store_bind_text(st, 7, d->sha256);
    store_bind_text(st, 8, d->path);
    sqlite3_bind_int64(st, 9, d->created_at > 0 ? d->created_at
                                                 : store_now());
    store_bind_text(st, 10, d->owner);
    sqlite3_bind_int(st, 11, d->shared);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        r = store_fail(s, rc);
    sqlite3_reset(st);
out:
    store_unlock(s);
    return r;
}

int store_dataset_get(store *s, const char *id, store_dataset *ret)
{
    if (!id || !ret)
        return -EINVAL;
    int r = 0;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_GET);
    if (!st) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_row(st, ret);
    else
        r = rc == SQLITE_DONE ? -ENOENT : store_fail(s, rc);
    sqlite3_reset(st);
out:
    store_unlock(s);
    return r;
}

int store_dataset_list(store *s, int limit, store_dataset **ret, int *ret_n)
{
    if (!ret || !ret_n)
        return -EINVAL;
    int r = 0, n = 0, cap = 0, rc;
    store_dataset *v = NULL;
    store_lock(s);
    sqlite3_stmt *st = store_stmt(s, SQL_LIST);
    if (!st) {
        r = -EIO;
        goto out;
    }
    sqlite3_bind_int(st, 1, limit > 0 ? limit : -1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            int ncap = cap ? cap * 2 : 16;
            store_dataset *nv = realloc(v, (size_t)ncap * sizeof(*v));
            if (!nv) {
                r = -ENOMEM;
                goto out;
            }
            v = nv;
            cap = ncap;
        }
        read_row(st, &v[n++]);
    }
    if (rc != SQLITE_DONE)
        r = store_fail(s, rc);
out:
    if (st)
        sqlite3_reset(st);
    store_unlock(s);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int store_dataset_delete(store *s, const char *id)
{
    if (!id)
        return -EINVAL;
    int rc, r;
    sqlite3_stmt *st;
    store_lock(s);
    r = store_begin(s);
    if (r < 0)
        goto out;
    if (!(st = store_stmt(s, SQL_IN_USE))) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        r = store_fail(s, rc);
        goto out;
    }
    bool in_use = sqlite3_column_int(st, 0) != 0;
    sqlite3_reset(st);
    if (in_use) {
        r = -EBUSY;
        goto out;
    }
    if (!(st = store_stmt(s, SQL_DELETE))) {
        r = -EIO;
        goto out;
    }
    store_bind_text(st, 1, id);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = store_fail(s, rc);
        goto out;
    }
    if (sqlite3_changes(s->db) == 0) {
        r = -ENOENT;
        goto out;
    }
    r = store_commit(s);
out:
    if (r < 0)
        store_rollback(s);
    store_unlock(s);
    return r;
}
