/* SPDX-License-Identifier: MIT */
/*
 * test_migrate.c - the migration runner: a new database, every earlier
 * version of the real schema, an invented future migration applied over
 * data, a database newer than the binary, a failing migration, one that
 * leaves a dangling reference, and several handles opening a new file at
 * once.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include "store/store-impl.h"
#include "fixtures.h"

/* Raw inspection of a database file, outside the store. */
static int64_t pragma_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int64_t file_query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                 SQLITE_OK);
    int64_t v = pragma_int(db, sql);
    sqlite3_close(db);
    return v;
}

/* The job of fixture_job() with the columns of schema versions 1 and 2
 * (the API's insert names columns of later versions). */
static void insert_job_v1(store *s, const char *job, const char *ds)
{
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(sqlite3_prepare_v2(s->db,
                 "INSERT INTO jobs (id, status, base_model, dataset_id,"
                 " hyperparameters, suffix, model, created_at, owner)"
                 " VALUES (?1, 'queued', 'stories260K', ?2,"
                 " '{\"epochs\":3,\"learning_rate\":0.001}', 'zog',"
                 " 'stories260K:zog:' || ?1, 1700000100, 'key_alice')",
                 -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ds, -1, SQLITE_STATIC);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* Fills the v1 tables through the public API (the jobs row by hand for a
 * database at schema version 1 or 2). */
static void put_data(store *s, const char *tag)
{
    char ds[48], job[48];
    snprintf(ds, sizeof(ds), "ds_%s", tag);
    snprintf(job, sizeof(job), "job_%s", tag);
    store_dataset d = fixture_dataset(ds);
    CHECK_OK(store_dataset_insert(s, &d));
    store_job j = fixture_job(job, ds);
    if (store_schema_version(s) < 3)
        insert_job_v1(s, job, ds);
    else
        CHECK_OK(store_job_insert(s, &j, NULL));
    CHECK_OK(store_event_add(s, job, "info", "status", "queued", NULL, NULL));
    store_metric m = {.step = 3, .train_loss = 2.5, .val_loss = NAN,
                      .val_accuracy = NAN, .lr = 1e-3, .grad_norm = 0.5,
                      .tokens_per_second = 100, .created_at = 1};
    CHECK_OK(store_metric_add(s, job, &m));
}

static void check_data(store *s, const char *tag)
{
    char ds[48], job[48];
    snprintf(ds, sizeof(ds), "ds_%s", tag);
    snprintf(job, sizeof(job), "job_%s", tag);
    store_dataset want = fixture_dataset(ds), got;
    CHECK_OK(store_dataset_get(s, ds, &got));
    check_dataset_eq(&got, &want);
    store_job j;
    CHECK_OK(store_job_get(s, job, &j));
    CHECK_EQ_STR(j.status, "queued");
    CHECK_EQ_STR(j.hyperparameters, "{\"epochs\":3,\"learning_rate\":0.001}");
    store_job_done(&j);
    store_event *ev = NULL;
    int n = 0;
    CHECK_OK(store_event_list(s, job, 0, 0, &ev, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(ev[0].message, "queued");
    store_event_list_free(ev, n);
    store_metric *m = NULL;
    CHECK_OK(store_metric_list(s, job, &m, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_NEAR(m[0].train_loss, 2.5);
    free(m);
}

static void test_from_empty(void)
{
    char path[300], err[256];
    test_path(path, sizeof(path), "empty.db");
    store *s = NULL;
    CHECK_OK(store_open(path, &s, err, sizeof(err)));
    CHECK(store_schema_latest() >= 1);
    CHECK_EQ_INT(store_schema_latest(), store_migrations_n);
    CHECK_EQ_INT(store_schema_version(s), store_schema_latest());
    CHECK_EQ_INT(pragma_int(s->db, "PRAGMA user_version"),
                 store_schema_latest());
    CHECK_EQ_INT(pragma_int(s->db, "PRAGMA foreign_keys"), 1);
    CHECK_EQ_INT(pragma_int(s->db, "PRAGMA synchronous"), 2); /* FULL */
    CHECK_EQ_INT(pragma_int(s->db, "SELECT count(*) FROM sqlite_master WHERE"
                 " type = 'table' AND name IN ('datasets', 'jobs',"
                 " 'job_events', 'job_metrics')"), 4);
    CHECK_EQ_INT(pragma_int(s->db, "SELECT journal_mode = 'wal' FROM"
                 " pragma_journal_mode"), 1);
    put_data(s, "empty");
    store_close(s);
    /* Reopening applies nothing twice and keeps the rows. */
    CHECK_OK(store_open(path, &s, err, sizeof(err)));
    CHECK_EQ_INT(store_schema_version(s), store_schema_latest());
    check_data(s, "empty");
    store_close(s);
    CHECK_EQ_INT(file_query_int(path, "SELECT count(*) FROM"
                 " pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
}

/* A database at each earlier real version, with data, upgraded by a normal
 * open. The rows written through the v-k API must read back the same. */
static void test_from_every_earlier(void)
{
    char path[300], err[256];
    for (int k = 1; k < store_migrations_n; k++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "v%d", k);
        snprintf(path, sizeof(path), "%s/earlier-%d.db", test_dir, k);
        store *s = NULL;
        CHECK_OK(store_open_migrations(path, store_migrations, k, &s, err,
                                       sizeof(err)));
        CHECK_EQ_INT(store_schema_version(s), k);
        put_data(s, tag);
        store_close(s);
        CHECK_OK(store_open(path, &s, err, sizeof(err)));
        CHECK_EQ_INT(store_schema_version(s), store_schema_latest());
        check_data(s, tag);
        store_close(s);
    }
}

/* The real table plus one invented step. */
static store_migration fake[64];
static int fake_with(const char *name, const char *sql)
{
    int n = store_migrations_n;
    CHECK(n + 1 <= 64);
    memcpy(fake, store_migrations, (size_t)n * sizeof(fake[0]));
    fake[n] = (store_migration){n + 1, name, sql};
    return n + 1;
}

static void test_future_and_newer(void)
{
    char path[300], err[256];
    test_path(path, sizeof(path), "future.db");
    store *s = NULL;
    CHECK_OK(store_open(path, &s, err, sizeof(err)));
    put_data(s, "future");
    store_close(s);

    int n = fake_with("test_add_note",
        "ALTER TABLE datasets ADD COLUMN note TEXT NOT NULL DEFAULT 'kept';\n"
        "CREATE TABLE test_extra (x INTEGER);\n"
        "INSERT INTO test_extra VALUES (42);\n");
    CHECK_OK(store_open_migrations(path, fake, n, &s, err, sizeof(err)));
    CHECK_EQ_INT(store_schema_version(s), n);
    check_data(s, "future");           /* the old rows survived */
    put_data(s, "after");              /* and the API still works */
    check_data(s, "after");
    store_close(s);
    CHECK_EQ_INT(file_query_int(path, "PRAGMA user_version"), n);
    CHECK_EQ_INT(file_query_int(path, "SELECT x FROM test_extra"), 42);
    CHECK_EQ_INT(file_query_int(path, "SELECT count(*) FROM datasets"
                                      " WHERE note = 'kept'"), 2);

    /* This binary knows one version less: it must refuse, untouched. */
    s = NULL;
    err[0] = '\0';
    CHECK_EQ_INT(store_open(path, &s, err, sizeof(err)), -EPROTO);
    CHECK(s == NULL);
    char want[256];
    snprintf(want, sizeof(want), "database schema version %d is newer than "
             "this tunad (knows %d); upgrade tunad", n, store_schema_latest());
    CHECK_EQ_STR(err, want);
    CHECK_EQ_INT(file_query_int(path, "PRAGMA user_version"), n);
}

static void test_failing_migration(void)
{
    char path[300], err[256];
    test_path(path, sizeof(path), "broken.db");
    store *s = NULL;
    CHECK_OK(store_open(path, &s, err, sizeof(err)));
    put_data(s, "broken");
    store_close(s);

    int n = fake_with("test_broken",
        "CREATE TABLE half_done (x INTEGER);\n"
        "INSERT INTO no_such_table VALUES (1);\n");
    CHECK(store_open_migrations(path, fake, n, &s, err, sizeof(err)) < 0);
    CHECK(strstr(err, "test_broken") != NULL);
    CHECK(strstr(err, "no_such_table") != NULL);
    CHECK_EQ_INT(file_query_int(path, "PRAGMA user_version"),
                 store_schema_latest());
    CHECK_EQ_INT(file_query_int(path, "SELECT count(*) FROM sqlite_master"
                                      " WHERE name = 'half_done'"), 0);

    n = fake_with("test_dangling",
        "INSERT INTO job_events (job_id, created_at, level, type, message)"
        " VALUES ('job_nope', 0, 'info', 'status', 'orphan');\n");
    CHECK(store_open_migrations(path, fake, n, &s, err, sizeof(err)) < 0);
    CHECK(strstr(err, "foreign key") != NULL);
    CHECK_EQ_INT(file_query_int(path, "SELECT count(*) FROM job_events"
                                      " WHERE message = 'orphan'"), 0);

    CHECK_OK(store_open(path, &s, err, sizeof(err)));
    check_data(s, "broken");
    store_close(s);

    /* A table with a gap is a programming error, refused before use. */
    store_migration gap[2] = {store_migrations[0], {3, "gap", "SELECT 1"}};
    CHECK_EQ_INT(store_open_migrations(path, gap, 2, &s, err, sizeof(err)),
                 -EINVAL);
}

/* Several handles creating the same new database at once: each step is
 * applied exactly once (a second application of 0001 would fail on
 * CREATE TABLE), and all end at the latest version. */
#define N_OPENERS 6
static char race_path[300];
static void *opener(void *arg)
{
    char err[256];
    store *s = NULL;
    int r = store_open(race_path, &s, err, sizeof(err));
    if (r < 0)
        fprintf(stderr, "opener: %s\n", err);
    *(int *)arg = r == 0 ? store_schema_version(s) : r;
    store_close(s);
    return NULL;
}

static void test_concurrent_first_open(void)
{
    test_path(race_path, sizeof(race_path), "race-open.db");
    pthread_t t[N_OPENERS];
    int result[N_OPENERS];
    for (int i = 0; i < N_OPENERS; i++)
        CHECK_OK(pthread_create(&t[i], NULL, opener, &result[i]));
    for (int i = 0; i < N_OPENERS; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(result[i], store_schema_latest());
    }
}

int main(void)
{
    test_dir_init();
    test_from_empty();
    test_from_every_earlier();
    test_future_and_newer();
    test_failing_migration();
    test_concurrent_first_open();
    return test_done("test_migrate");
}
