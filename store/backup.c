/* SPDX-License-Identifier: MIT */
/*
 * backup.c - a consistent copy of a live database (tunad backup DEST).
 *
 * SQLite's online backup API copies the pages inside one read transaction
 * of the source (sqlite3_backup_step with -1), so the copy is one snapshot;
 * thanks to WAL, writers on other handles carry on meanwhile. The copy goes
 * to a temporary file beside the destination, is checked with quick_check,
 * and only then renamed over it, so DEST is either the old file or a whole
 * new one, never a torn one.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "store/store-impl.h"

static int check_copy(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) ==
        SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        ok = t && t[0] == 'o' && t[1] == 'k' && t[2] == '\0';
    }
    sqlite3_finalize(st);
    return ok ? 0 : -EIO;
}

/* Copies s into the file tmp; sets s->errmsg on failure. */
static int copy_to(store *s, const char *tmp)
{
    sqlite3 *dst = NULL;
    sqlite3_backup *b = NULL;
    int r = 0;
    int rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE |
                             SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(s->errmsg, sizeof(s->errmsg), "backup: cannot create %.200s: %s",
                 tmp, dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
        r = -EIO;
        goto out;
    }
    sqlite3_busy_timeout(dst, STORE_BUSY_TIMEOUT_MS);
    b = sqlite3_backup_init(dst, "main", s->db, "main");
    if (!b) {
        snprintf(s->errmsg, sizeof(s->errmsg), "backup: %s",
                 sqlite3_errmsg(dst));
        r = -EIO;
        goto out;
    }
    /* BUSY/LOCKED: another connection holds a lock the copy needs; the
     * busy timeout has already waited, wait a little more. */
    for (int tries = 0; tries < 100; tries++) {
        rc = sqlite3_backup_step(b, -1);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            break;
        sqlite3_sleep(50);
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        snprintf(s->errmsg, sizeof(s->errmsg), "backup: %s",
                 sqlite3_errstr(rc));
        r = -EIO;
        goto out;
    }
    /* The copy carries the WAL flag of its source; as a stand-alone file
     * it is better off with a rollback journal (one file to move). */
    if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL)
        != SQLITE_OK || check_copy(dst) < 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "backup: the copy in %.200s "
                 "failed its check: %s", tmp, sqlite3_errmsg(dst));
        r = -EIO;
    }
out:
    if (sqlite3_close(dst) != SQLITE_OK && r == 0)
        r = -EIO;
    return r;
}

int store_backup(store *s, const char *dest_path)
{
    if (!dest_path || !*dest_path)
        return -EINVAL;
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", dest_path, (long)getpid())
        >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    store_lock(s);
    unlink(tmp);
    int r = copy_to(s, tmp);
    if (r == 0 && rename(tmp, dest_path) < 0) {
        r = -errno;
        snprintf(s->errmsg, sizeof(s->errmsg), "backup: rename to %.200s: %m",
                 dest_path);
    }
    if (r < 0)
        unlink(tmp);
    store_unlock(s);
    return r;
}
