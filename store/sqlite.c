/* SPDX-License-Identifier: MIT */
/*
 * sqlite.c - the store handle: opening and configuring the SQLite
 * connection, the per-handle prepared-statement cache, transactions, and the
 * mapping from SQLite result codes to negative errno values.
 *
 * A handle owns one connection opened with SQLITE_OPEN_NOMUTEX; the handle's
 * own mutex serialises its users instead (see store-impl.h). The connection
 * is put in WAL mode (readers never block the writer), synchronous=FULL (a
 * committed row survives a power cut, not just a crash), foreign keys on and
 * a busy timeout, so handles in other threads or processes wait for each
 * other rather than fail.
 *
 * Statements are prepared on first use with SQLITE_PREPARE_PERSISTENT and
 * kept until store_close; SQLite re-prepares them itself after a schema
 * change. Values are always bound, never formatted into SQL.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store-impl.h"

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

static int errno_of(int rc)
{
    switch (rc) {
    case SQLITE_BUSY: case SQLITE_LOCKED:
    case SQLITE_BUSY_SNAPSHOT: case SQLITE_BUSY_RECOVERY:
        return -EAGAIN;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_CONSTRAINT_UNIQUE: case SQLITE_CONSTRAINT_PRIMARYKEY:
        return -EEXIST;
    case SQLITE_CONSTRAINT_FOREIGNKEY: return -ENOENT;
    case SQLITE_CONSTRAINT_CHECK: case SQLITE_CONSTRAINT_NOTNULL:
    case SQLITE_TOOBIG: case SQLITE_RANGE: case SQLITE_MISMATCH:
        return -EINVAL;
    case SQLITE_READONLY: case SQLITE_PERM: case SQLITE_AUTH:
        return -EACCES;
    default:
        if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
            return -EAGAIN;
        return -EIO;
    }
}

int store_fail(store *s, int rc)
{
    snprintf(s->errmsg, sizeof(s->errmsg), "sqlite: %s (%s)",
             sqlite3_errmsg(s->db), sqlite3_errstr(rc));
    return errno_of(rc);
}

void store_last_error(store *s, char *buf, size_t len)
{
    if (!len)
        return;
    store_lock(s);
    snprintf(buf, len, "%s", s->errmsg);
    store_unlock(s);
}

/* ------------------------------------------------------------------------ */
/* Locking, statements, transactions                                         */

void store_lock(store *s) { pthread_mutex_lock(&s->mu); }
void store_unlock(store *s) { pthread_mutex_unlock(&s->mu); }

sqlite3_stmt *store_stmt(store *s, const char *sql)
{
    for (int i = 0; i < s->n_stmts; i++) {
        if (s->stmt_sql[i] == sql) {
            sqlite3_reset(s->stmt[i]);
            sqlite3_clear_bindings(s->stmt[i]);
            return s->stmt[i];
        }
    }
    if (s->n_stmts == STORE_MAX_STMTS) {
        snprintf(s->errmsg, sizeof(s->errmsg),
                 "store: statement cache full (raise STORE_MAX_STMTS)");
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &st, NULL);
    if (rc != SQLITE_OK) {
        store_fail(s, rc);
        return NULL;
    }
    s->stmt_sql[s->n_stmts] = sql;
    s->stmt[s->n_stmts++] = st;
    return st;
}

static int exec_cached(store *s, const char *sql)
{
    sqlite3_stmt *st = store_stmt(s, sql);
    if (!st)
        return -EIO;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_fail(s, rc);
}

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

int store_begin(store *s) { return exec_cached(s, SQL_BEGIN); }
int store_commit(store *s) { return exec_cached(s, SQL_COMMIT); }

void store_rollback(store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        exec_cached(s, SQL_ROLLBACK);
}

int store_end(store *s, int r)
{
    if (r == 0)
        r = store_commit(s);
    if (r < 0)
        store_rollback(s);
    return r;
}

int64_t store_now(void) { return (int64_t)time(NULL); }

/* ------------------------------------------------------------------------ */
/* Binding and reading                                                       */

int store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_STATIC);
}

int store_bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (!v || !*v)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

int store_bind_real(sqlite3_stmt *st, int i, double v)
{
    if (isnan(v) || isinf(v))
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_double(st, i, v);
}

void store_col_text(sqlite3_stmt *st, int i, char *buf, size_t len)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(buf, len, "%s", t ? (const char *)t : "");
}

int store_col_dup(sqlite3_stmt *st, int i, char **ret)
{
    *ret = NULL;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return 0;
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return -ENOMEM;
    *ret = strdup((const char *)t);
    return *ret ? 0 : -ENOMEM;
}

double store_col_real(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NAN;
    return sqlite3_column_double(st, i);
}

int64_t store_col_int64(sqlite3_stmt *st, int i)
{
    return sqlite3_column_int64(st, i);
}

/* ------------------------------------------------------------------------ */
/* Open and close                                                            */

static int configure(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    /* Fixed statements without values, so plain exec is enough here. */
    static const char *const pragmas[] = {
        "PRAGMA synchronous = FULL",
        "PRAGMA foreign_keys = ON",
    };
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st,
                                NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0)
                                                 : NULL;
    bool ok = mode && (!strcmp((const char *)mode, "wal") ||
                       (!strcmp((const char *)mode, "memory") &&
                        !strcmp(path, ":memory:")));
    if (!ok) {
        snprintf(err, errlen, "%s: cannot use WAL journal mode (%s)", path,
                 mode ? (const char *)mode : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -EIO;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < sizeof(pragmas) / sizeof(pragmas[0]); i++) {
        rc = sqlite3_exec(db, pragmas[i], NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "%s: %s: %s", path, pragmas[i],
                     sqlite3_errmsg(db));
            return errno_of(rc);
        }
    }
    return 0;
}

int store_open_migrations(const char *path, const store_migration *migrations,
                          int n, store **ret, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (!path || !*path || !ret || !migrations || n < 1) {
        snprintf(err, errlen, "store_open: bad arguments");
        return -EINVAL;
    }
    store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    int r;
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE |
                             SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open database: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        r = errno_of(rc);
        goto out;
    }
    r = configure(s->db, path, err, errlen);
    if (r < 0)
        goto out;
    r = store_migrate(s->db, migrations, n, &s->version, err, errlen);
    if (r < 0)
        goto out;
    *ret = s;
    return 0;
out:
    store_close(s);
    return r;
}

int store_open(const char *path, store **ret, char *err, size_t errlen)
{
    return store_open_migrations(path, store_migrations, store_migrations_n,
                                 ret, err, errlen);
}

void store_close(store *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_stmts; i++)
        sqlite3_finalize(s->stmt[i]);
    /* Closing the last connection checkpoints the WAL into the main file. */
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int store_schema_version(store *s)
{
    store_lock(s);
    int v = s->version;
    store_unlock(s);
    return v;
}

int store_schema_latest(void)
{
    return store_migrations[store_migrations_n - 1].version;
}
