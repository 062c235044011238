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

static int read_row(sqlite3_stmt *st, void *row)
{
    store_dataset *d = row;
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
    return 0;
}

static const store_rowtype ds_row = { sizeof(store_dataset), read_row, NULL };

int store_dataset_insert(store *s, const store_dataset *d)
{
    if (!d || !d->id[0] || !d->path[0])
        return -EINVAL;
    store_lock(s);
    int r = store_exec(s, SQL_INSERT, NULL, "tttIIIttIti", d->id, d->name,
                       d->format, d->rows, d->tokens, d->bytes, d->sha256,
                       d->path, d->created_at > 0 ? d->created_at
                                                  : store_now(),
                       d->owner, (int)d->shared);
    store_unlock(s);
    return r;
}

int store_dataset_get(store *s, const char *id, store_dataset *ret)
{
    if (!id || !ret)
        return -EINVAL;
    store_lock(s);
    int r = store_query_row(s, SQL_GET, &ds_row, ret, "t", id);
    store_unlock(s);
    return r;
}

int store_dataset_list(store *s, int limit, store_dataset **ret, int *ret_n)
{
    if (!ret || !ret_n)
        return -EINVAL;
    store_lock(s);
    int r = store_query_rows(s, SQL_LIST, &ds_row, (void **)ret, ret_n, "i",
                             limit > 0 ? limit : -1);
    store_unlock(s);
    return r;
}

int store_dataset_delete(store *s, const char *id)
{
    if (!id)
        return -EINVAL;
    int64_t in_use = 0;
    int changed = 0, r;
    store_lock(s);
    if ((r = store_begin(s)) == 0 &&
        (r = store_query_int64(s, SQL_IN_USE, &in_use, "t", id)) == 0) {
        if (in_use)
            r = -EBUSY;
        else if ((r = store_exec(s, SQL_DELETE, &changed, "t", id)) == 0 &&
                 !changed)
            r = -ENOENT;
    }
    r = store_end(s, r);
    store_unlock(s);
    return r;
}
