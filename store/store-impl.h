/* SPDX-License-Identifier: MIT */
/*
 * store-impl.h - private to store/ (and its tests): the handle, the
 * statement cache, the migration table and the helpers the per-table files
 * share.
 *
 * Locking: every public function takes s->mu for its whole duration, so the
 * statement cache and multi-statement transactions never interleave on one
 * handle. Across handles and processes SQLite's own locks apply; every write
 * transaction that reads first starts with BEGIN IMMEDIATE, so it takes the
 * write lock up front (waiting through busy_timeout) instead of failing with
 * SQLITE_BUSY when a read would have to be upgraded.
 */
#ifndef TUNA_STORE_IMPL_H
#define TUNA_STORE_IMPL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>

#include "store/store.h"

#define STORE_MAX_STMTS 64
#define STORE_BUSY_TIMEOUT_MS 10000

/* One forward-only schema step: migrations/NNNN_name.sql. */
typedef struct store_migration {
    int version;          /* NNNN; a table of n runs 1..n */
    const char *name;
    const char *sql;      /* one or more statements */
} store_migration;

/* Generated at build time from migrations/NNNN_name.sql (migrations.c). */
extern const store_migration store_migrations[];
extern const int store_migrations_n;

struct store {
    sqlite3 *db;
    pthread_mutex_t mu;
    int version;
    int n_stmts;
    /* Prepared statements, keyed by the address of their SQL text (each a
     * static string in the file that uses it), prepared on first use. */
    const char *stmt_sql[STORE_MAX_STMTS];
    sqlite3_stmt *stmt[STORE_MAX_STMTS];
    char errmsg[256];     /* last failure on this handle */
};

/* Applies migrations[0..n) above the database's user_version, each in its
 * own BEGIN IMMEDIATE transaction ending with PRAGMA user_version. A
 * database newer than migrations[n-1]: -EPROTO. *ret_version (may be NULL)
 * gets the version after the call. */
int store_migrate(sqlite3 *db, const store_migration *migrations, int n,
                  int *ret_version, char *err, size_t errlen);

/* store_open with an explicit migration table (tests use older or invented
 * tables to exercise upgrades). */
int store_open_migrations(const char *path, const store_migration *migrations,
                          int n, store **ret, char *err, size_t errlen);

/* Helpers for the store/ sources; all expect s->mu held. */
void store_lock(store *s);
void store_unlock(store *s);
/* The cached statement for sql (reset, bindings cleared), or NULL with
 * s->errmsg set. */
sqlite3_stmt *store_stmt(store *s, const char *sql);
/* Records sqlite's message for rc and maps rc to a negative errno. */
int store_fail(store *s, int rc);
int store_begin(store *s);        /* BEGIN IMMEDIATE */
int store_commit(store *s);
void store_rollback(store *s);
/* Ends what store_begin started (also after it failed): commits when r is
 * 0, rolls back when r or the commit failed. Returns r or the commit's
 * failure. */
int store_end(store *s, int r);
int64_t store_now(void);

/* Binding and reading, with the conventions of store.h: "" binds NULL where
 * a column uses NULL for "none", NaN binds NULL and NULL reads as NaN. */
int store_bind_text(sqlite3_stmt *st, int i, const char *v);
int store_bind_text_or_null(sqlite3_stmt *st, int i, const char *v);
int store_bind_real(sqlite3_stmt *st, int i, double v);
void store_col_text(sqlite3_stmt *st, int i, char *buf, size_t len);
/* malloc'd copy, NULL for a NULL column; -ENOMEM on failure. */
int store_col_dup(sqlite3_stmt *st, int i, char **ret);
double store_col_real(sqlite3_stmt *st, int i);
int64_t store_col_int64(sqlite3_stmt *st, int i);

/* Running a cached statement in one call (stmt.c); all expect s->mu held
 * and leave the statement reset.
 *
 * fmt binds the variable arguments to ?1, ?2, ..., one letter each, and
 * the arguments must have exactly these types (varargs do not convert):
 *   t  const char *  text; NULL binds ""
 *   n  const char *  text; NULL or "" binds NULL (store_bind_text_or_null)
 *   i  int           (a bool is promoted to int)
 *   I  int64_t
 *   r  double        NaN and infinities bind NULL (store_bind_real)
 *   d  double        as it is
 * Failures: -EIO (statement cache), or store_fail()'s errno. */

/* How one row becomes a struct: read fills *row from the current row
 * (clearing it first) and returns 0 or -ENOMEM; done (NULL when read
 * allocates nothing) frees what read allocated, also after a failed read. */
typedef struct store_rowtype {
    size_t size;
    int (*read)(sqlite3_stmt *st, void *row);
    void (*done)(void *row);
} store_rowtype;

#define STORE_ROW_MAX 4096   /* the largest row struct store_query_row reads */

/* Runs sql, which returns no row or whose rows are not needed;
 * *ret_changes (may be NULL) gets sqlite3_changes(). */
int store_exec(store *s, const char *sql, int *ret_changes, const char *fmt,
               ...);
int store_execv(store *s, const char *sql, int *ret_changes, const char *fmt,
                va_list ap);
/* Runs sql and reads its first row into *ret (a t->size struct, written
 * only on success); -ENOENT when there is no row. */
int store_query_row(store *s, const char *sql, const store_rowtype *t,
                    void *ret, const char *fmt, ...);
/* Runs sql and reads every row into a malloc'd array (*ret, *ret_n rows;
 * NULL when none). */
int store_query_rows(store *s, const char *sql, const store_rowtype *t,
                     void **ret, int *ret_n, const char *fmt, ...);
/* The first column of the first row as an integer; -ENOENT when there is
 * no row or the value is NULL. */
int store_query_int64(store *s, const char *sql, int64_t *ret,
                      const char *fmt, ...);

/* A row of one short text column (an id, a status), cut to 47 bytes. */
typedef char store_text48[48];
extern const store_rowtype store_text48_row;

#endif
