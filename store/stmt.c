/* SPDX-License-Identifier: MIT */
/*
 * stmt.c - running a cached statement in one call: bind its parameters from
 * a format string, step it, read its rows into typed structs, reset it.
 *
 * Every query function of the per-table files is "prepare (cached), bind,
 * step, read the row(s), reset, map the result code"; these helpers hold
 * that sequence once, so a query function is its SQL, its argument check
 * and one call. Each table describes its row struct once (a store_rowtype:
 * size, reader, destructor) and every getter and list of that table uses it.
 *
 * The statement is always left reset, so it holds no read transaction
 * open, and its bindings are cleared at the next store_stmt(). Results are
 * written only on success; on a failure every row already read is freed
 * with the type's destructor.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-impl.h"

_Static_assert(sizeof(store_job) <= STORE_ROW_MAX, "raise STORE_ROW_MAX");
_Static_assert(sizeof(store_webhook) <= STORE_ROW_MAX, "raise STORE_ROW_MAX");
_Static_assert(sizeof(store_dataset) <= STORE_ROW_MAX, "raise STORE_ROW_MAX");

/* Binds ap by fmt (see store-impl.h). SQLite's code of the first failure. */
static int bind_args(sqlite3_stmt *st, const char *fmt, va_list ap)
{
    int rc = SQLITE_OK;
    for (int i = 1; fmt && *fmt && rc == SQLITE_OK; fmt++, i++) {
        switch (*fmt) {
        case 't': rc = store_bind_text(st, i, va_arg(ap, const char *)); break;
        case 'n':
            rc = store_bind_text_or_null(st, i, va_arg(ap, const char *));
            break;
        case 'i': rc = sqlite3_bind_int(st, i, va_arg(ap, int)); break;
        case 'I': rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t)); break;
        case 'r': rc = store_bind_real(st, i, va_arg(ap, double)); break;
        case 'd': rc = sqlite3_bind_double(st, i, va_arg(ap, double)); break;
        default: rc = SQLITE_MISUSE; break;     /* a bad format: our bug */
        }
    }
    return rc;
}

/* The cached statement for sql with ap bound; NULL with *ret_r set. */
static sqlite3_stmt *prepare(store *s, const char *sql, const char *fmt,
                             va_list ap, int *ret_r)
{
    sqlite3_stmt *st = store_stmt(s, sql);
    if (!st) {
        *ret_r = -EIO;
        return NULL;
    }
    int rc = bind_args(st, fmt, ap);
    if (rc != SQLITE_OK) {
        *ret_r = store_fail(s, rc);
        sqlite3_reset(st);
        return NULL;
    }
    return st;
}

int store_execv(store *s, const char *sql, int *ret_changes, const char *fmt,
                va_list ap)
{
    int r = 0;
    sqlite3_stmt *st = prepare(s, sql, fmt, ap, &r);
    if (!st)
        return r;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_fail(s, rc);
    if (ret_changes)
        *ret_changes = sqlite3_changes(s->db);
    return 0;
}

int store_exec(store *s, const char *sql, int *ret_changes, const char *fmt,
               ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = store_execv(s, sql, ret_changes, fmt, ap);
    va_end(ap);
    return r;
}

/* Reads the first row of a bound statement into ret, then steps once more
 * so that an error of the rest of the statement (an UPDATE ... RETURNING)
 * is not lost. */
static int first_row(store *s, sqlite3_stmt *st, const store_rowtype *t,
                     void *ret)
{
    union {
        max_align_t align;
        unsigned char b[STORE_ROW_MAX];
    } tmp;
    assert(t->size <= sizeof(tmp));
    int rc = sqlite3_step(st), r;
    if (rc != SQLITE_ROW) {
        r = rc == SQLITE_DONE ? -ENOENT : store_fail(s, rc);
    } else if ((r = t->read(st, &tmp)) < 0) {
        if (t->done)
            t->done(&tmp);
    } else if ((rc = sqlite3_step(st)) != SQLITE_DONE && rc != SQLITE_ROW) {
        if (t->done)
            t->done(&tmp);
        r = store_fail(s, rc);
    } else {
        memcpy(ret, &tmp, t->size);
    }
    sqlite3_reset(st);
    return r;
}

int store_query_row(store *s, const char *sql, const store_rowtype *t,
                    void *ret, const char *fmt, ...)
{
    int r = 0;
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = prepare(s, sql, fmt, ap, &r);
    va_end(ap);
    return st ? first_row(s, st, t, ret) : r;
}

static void free_rows(const store_rowtype *t, char *v, int n)
{
    for (int i = 0; t->done && i < n; i++)
        t->done(v + (size_t)i * t->size);
    free(v);
}

/* Reads every row of a bound statement into a malloc'd array. */
static int all_rows(store *s, sqlite3_stmt *st, const store_rowtype *t,
                    void **ret, int *ret_n)
{
    char *v = NULL;
    int n = 0, cap = 0, r = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            int ncap = cap ? cap * 2 : 16;
            char *nv = realloc(v, (size_t)ncap * t->size);
            if (!nv) {
                r = -ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        /* counted before reading: a half-read row is freed with the rest */
        if ((r = t->read(st, v + (size_t)n++ * t->size)) < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_fail(s, rc);
    sqlite3_reset(st);
    if (r < 0) {
        free_rows(t, v, n);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int store_query_rows(store *s, const char *sql, const store_rowtype *t,
                     void **ret, int *ret_n, const char *fmt, ...)
{
    int r = 0;
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = prepare(s, sql, fmt, ap, &r);
    va_end(ap);
    return st ? all_rows(s, st, t, ret, ret_n) : r;
}

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */

static int read_text48(sqlite3_stmt *st, void *row)
{
    store_col_text(st, 0, row, sizeof(store_text48));
    return 0;
}

const store_rowtype store_text48_row = { sizeof(store_text48), read_text48,
                                         NULL };

static int read_int64(sqlite3_stmt *st, void *row)
{
    if (sqlite3_column_type(st, 0) == SQLITE_NULL)
        return -ENOENT;
    *(int64_t *)row = sqlite3_column_int64(st, 0);
    return 0;
}

int store_query_int64(store *s, const char *sql, int64_t *ret,
                      const char *fmt, ...)
{
    static const store_rowtype t = { sizeof(int64_t), read_int64, NULL };
    int r = 0;
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = prepare(s, sql, fmt, ap, &r);
    va_end(ap);
    return st ? first_row(s, st, &t, ret) : r;
}
