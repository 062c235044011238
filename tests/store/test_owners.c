/* SPDX-License-Identifier: MIT */
/*
 * test_owners.c - owner-aware lookups and lists (a member sees its own rows
 * and shared ones, an admin every row, another member's private row is
 * -ENOENT like a missing one), sharing later, per-owner totals for the
 * quotas, and job counts by status.
 */
#include "store/store.h"
#include "fixtures.h"

static store *s;

static store_dataset ds(const char *id, const char *owner, bool shared,
                        int64_t bytes)
{
    store_dataset d = fixture_dataset(id);
    snprintf(d.owner, sizeof(d.owner), "%s", owner);
    d.shared = shared;
    d.bytes = bytes;
    return d;
}

static void add_job(const char *id, const char *dsid, const char *owner,
                    bool shared)
{
    store_job j = fixture_job(id, dsid);
    snprintf(j.owner, sizeof(j.owner), "%s", owner);
    j.shared = shared;
    CHECK_OK(store_job_insert(s, &j, NULL));
}

static bool has_ds(const store_dataset *v, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].id, id))
            return true;
    return false;
}

static bool has_job(const store_job *v, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].id, id))
            return true;
    return false;
}

static void test_datasets(void)
{
    store_dataset a = ds("ds_a1", "key_alice", false, 100);
    store_dataset b = ds("ds_b1", "key_bob", false, 200);
    store_dataset t = ds("ds_t1", "key_bob", true, 300);
    CHECK_OK(store_dataset_insert(s, &a));
    CHECK_OK(store_dataset_insert(s, &b));
    CHECK_OK(store_dataset_insert(s, &t));

    store_dataset got;
    CHECK_OK(store_dataset_get_for(s, "ds_a1", "key_alice", &got));
    check_dataset_eq(&got, &a);
    CHECK_EQ_INT(store_dataset_get_for(s, "ds_b1", "key_alice", &got),
                 -ENOENT);
    CHECK_OK(store_dataset_get_for(s, "ds_t1", "key_alice", &got));
    CHECK_OK(store_dataset_get_for(s, "ds_b1", NULL, &got));
    CHECK_EQ_INT(store_dataset_get_for(s, "ds_zz", NULL, &got), -ENOENT);

    store_dataset *v = NULL;
    int n = 0;
    CHECK_OK(store_dataset_list_for(s, "key_alice", 100, &v, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(v[0].id, "ds_t1");   /* newest first */
    CHECK(has_ds(v, n, "ds_a1") && !has_ds(v, n, "ds_b1"));
    free(v);
    CHECK_OK(store_dataset_list_for(s, NULL, 100, &v, &n));
    CHECK_EQ_INT(n, 3);
    free(v);
    /* LIMIT counts visible rows: alice's 1 newest visible is ds_t1. */
    CHECK_OK(store_dataset_list_for(s, "key_alice", 1, &v, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(v[0].id, "ds_t1");
    free(v);

    /* Sharing later, and back. */
    CHECK_OK(store_dataset_set_shared(s, "ds_b1", true));
    CHECK_OK(store_dataset_get_for(s, "ds_b1", "key_alice", &got));
    CHECK(got.shared);
    CHECK_OK(store_dataset_set_shared(s, "ds_b1", false));
    CHECK_EQ_INT(store_dataset_get_for(s, "ds_b1", "key_alice", &got),
                 -ENOENT);
    CHECK_EQ_INT(store_dataset_set_shared(s, "ds_nope", true), -ENOENT);
}

static void test_jobs(void)
{
    add_job("job_a1", "ds_a1", "key_alice", false);
    add_job("job_b1", "ds_b1", "key_bob", false);
    add_job("job_t1", "ds_t1", "key_bob", true);

    store_job j;
    CHECK_OK(store_job_get_for(s, "job_a1", "key_alice", &j));
    CHECK_EQ_STR(j.owner, "key_alice");
    store_job_done(&j);
    CHECK_EQ_INT(store_job_get_for(s, "job_b1", "key_alice", &j), -ENOENT);
    CHECK_OK(store_job_get_for(s, "job_t1", "key_alice", &j));
    store_job_done(&j);
    CHECK_OK(store_job_get_for(s, "job_b1", NULL, &j));
    store_job_done(&j);

    store_job *v = NULL;
    int n = 0;
    CHECK_OK(store_job_list_for(s, "key_alice", NULL, 100, &v, &n));
    CHECK_EQ_INT(n, 2);
    CHECK(has_job(v, n, "job_a1") && has_job(v, n, "job_t1") &&
          !has_job(v, n, "job_b1"));
    store_job_list_free(v, n);
    CHECK_OK(store_job_list_for(s, "key_bob", "queued", 100, &v, &n));
    CHECK_EQ_INT(n, 2);
    store_job_list_free(v, n);
    CHECK_OK(store_job_list_for(s, NULL, "succeeded", 100, &v, &n));
    CHECK_EQ_INT(n, 0);
    store_job_list_free(v, n);

    CHECK_OK(store_job_set_shared(s, "job_b1", true));
    CHECK_OK(store_job_get_for(s, "job_b1", "key_alice", &j));
    store_job_done(&j);

    int inflight = -1;
    int64_t bytes = -1;
    CHECK_OK(store_owner_totals(s, "key_bob", &inflight, &bytes));
    CHECK_EQ_INT(inflight, 2);
    CHECK_EQ_INT(bytes, 500);
    CHECK_OK(store_job_cancel(s, "job_b1", NULL));
    CHECK_OK(store_owner_totals(s, "key_bob", &inflight, &bytes));
    CHECK_EQ_INT(inflight, 1);
    CHECK_OK(store_owner_totals(s, "key_nobody", &inflight, &bytes));
    CHECK_EQ_INT(inflight, 0);
    CHECK_EQ_INT(bytes, 0);

    store_job_counts c;
    CHECK_OK(store_job_status_counts(s, &c));
    int64_t queued = 0, cancelled = 0;
    for (int i = 0; i < c.n; i++) {
        if (!strcmp(c.status[i], "queued")) queued = c.count[i];
        if (!strcmp(c.status[i], "cancelled")) cancelled = c.count[i];
    }
    CHECK_EQ_INT(queued, 2);
    CHECK_EQ_INT(cancelled, 1);
}

int main(void)
{
    char err[256], db_path[300];
    test_dir_init();
    test_path(db_path, sizeof(db_path), "owners.db");
    CHECK_OK(store_open(db_path, &s, err, sizeof(err)));
    test_datasets();
    test_jobs();
    store_close(s);
    return test_done("test_owners");
}
