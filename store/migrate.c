/* SPDX-License-Identifier: MIT */
/*
 * migrate.c - brings a database up to the newest schema this binary knows.
 *
 * PRAGMA user_version holds the number of the last migration applied (0 for
 * a new file). Each pending migration runs in its own BEGIN IMMEDIATE
 * transaction that also sets user_version, so a crash leaves the database at
 * a whole step, never between two. The version is read again inside the
 * transaction: two processes opening the same new file at once apply each
 * step once, whoever takes the write lock first.
 *
 * Foreign keys are switched off while migrating, as SQLite's documented
 * procedure for table rebuilds requires (ALTER TABLE cannot do everything);
 * PRAGMA foreign_key_check inside each transaction makes sure a step leaves
 * no dangling reference before it commits.
 *
 * A database newer than the binary is refused before anything is touched:
 * an older tunad must not write to a schema it does not understand.
 */
#include <errno.h>
#include <stdio.h>

#include "store/store-impl.h"

static int read_version(sqlite3 *db, int *ret)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *ret = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Rows from PRAGMA foreign_key_check: a step that leaves any is refused. */
static int fk_violations(sqlite3 *db, int *ret_n)
{
    sqlite3_stmt *st = NULL;
    int n = 0;
    int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st,
                                NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        n++;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    *ret_n = n;
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int check_table(const store_migration *m, int n, char *err,
                       size_t errlen)
{
    for (int i = 0; i < n; i++) {
        if (m[i].version != i + 1 || !m[i].sql || !m[i].name) {
            snprintf(err, errlen, "migration table entry %d is version %d, "
                     "expected %d", i, m[i].version, i + 1);
            return -EINVAL;
        }
    }
    return 0;
}

/* Runs one migration in its own transaction. */
static int apply_one(sqlite3 *db, const store_migration *m, char *err,
                     size_t errlen)
{
    char *msg = NULL;
    int cur = 0, bad = 0;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        goto fail;
    rc = read_version(db, &cur);
    if (rc != SQLITE_OK)
        goto fail;
    if (cur >= m->version)   /* another process got here first */
        return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK
               ? 0 : -EIO;
    rc = sqlite3_exec(db, m->sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        goto fail;
    /* PRAGMA takes no bound parameters; the number is the compiled-in
     * migration's own version, an int, never outside input. */
    char set[64];
    snprintf(set, sizeof(set), "PRAGMA user_version = %d", m->version);
    rc = sqlite3_exec(db, set, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        goto fail;
    rc = fk_violations(db, &bad);
    if (rc != SQLITE_OK)
        goto fail;
    if (bad) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        snprintf(err, errlen, "migration %04d_%s leaves %d foreign key "
                 "violation(s)", m->version, m->name, bad);
        return -EIO;
    }
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "migration %04d_%s failed: %s", m->version,
             m->name, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return (rc & 0xff) == SQLITE_BUSY ? -EAGAIN : -EIO;
}

int store_migrate(sqlite3 *db, const store_migration *migrations, int n,
                  int *ret_version, char *err, size_t errlen)
{
    int cur = 0, r;
    if (n < 1)
        return -EINVAL;
    r = check_table(migrations, n, err, errlen);
    if (r < 0)
        return r;
    int latest = migrations[n - 1].version;
    if (read_version(db, &cur) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the schema version: %s",
                 sqlite3_errmsg(db));
        return -EIO;
    }
    if (cur > latest) {
        snprintf(err, errlen, "database schema version %d is newer than this "
                 "tunad (knows %d); upgrade tunad", cur, latest);
        return -EPROTO;
    }
    if (cur == latest)
        goto out;
    sqlite3_exec(db, "PRAGMA foreign_keys = OFF", NULL, NULL, NULL);
    for (int i = cur; i < n && r == 0; i++)
        r = apply_one(db, &migrations[i], err, errlen);
    sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    if (r < 0)
        return r;
    if (read_version(db, &cur) != SQLITE_OK)
        return -EIO;
    if (cur > latest) {   /* a newer tunad migrated it meanwhile */
        snprintf(err, errlen, "database schema version %d is newer than this "
                 "tunad (knows %d); upgrade tunad", cur, latest);
        return -EPROTO;
    }
out:
    if (ret_version)
        *ret_version = cur;
    return 0;
}
