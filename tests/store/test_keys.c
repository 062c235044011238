/* SPDX-License-Identifier: MIT */
/*
 * test_keys.c - API keys (insert, lookups, revoke, name reuse), per-key
 * usage counters, and store_backup taken while another handle writes.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "store/store.h"
#include "fixtures.h"

static store *s;

static store_key make_key(const char *id, const char *name, const char *role,
                          char hexdigit)
{
    store_key k;
    memset(&k, 0, sizeof(k));
    snprintf(k.id, sizeof(k.id), "%s", id);
    snprintf(k.name, sizeof(k.name), "%s", name);
    snprintf(k.role, sizeof(k.role), "%s", role);
    memset(k.hash, hexdigit, 64);
    k.hash[64] = '\0';
    snprintf(k.prefix, sizeof(k.prefix), "tuna_%c%c%c", hexdigit, hexdigit,
             hexdigit);
    k.created_at = 1700000000;
    return k;
}

static void test_keys(void)
{
    store_key a = make_key("key_alice", "alice", "admin", 'a');
    store_key b = make_key("key_bob", "bob", "member", 'b');
    store_key got;
    int n = -1;
    CHECK_OK(store_key_count_active(s, &n));
    CHECK_EQ_INT(n, 0);
    CHECK_OK(store_key_insert(s, &a));
    CHECK_OK(store_key_insert(s, &b));
    CHECK_OK(store_key_count_active(s, &n));
    CHECK_EQ_INT(n, 2);

    CHECK_OK(store_key_get(s, "key_alice", &got));
    CHECK_EQ_STR(got.id, "key_alice");
    CHECK_EQ_STR(got.name, "alice");
    CHECK_EQ_STR(got.role, "admin");
    CHECK_EQ_STR(got.hash, a.hash);
    CHECK_EQ_STR(got.prefix, "tuna_aaa");
    CHECK_EQ_INT(got.created_at, 1700000000);
    CHECK_EQ_INT(got.revoked_at, 0);
    CHECK_OK(store_key_find_hash(s, b.hash, &got));
    CHECK_EQ_STR(got.id, "key_bob");
    CHECK_EQ_STR(got.role, "member");
    CHECK_OK(store_key_find_name(s, "bob", &got));
    CHECK_EQ_STR(got.id, "key_bob");
    store_key c = make_key("key_x", "x", "member", 'c');
    CHECK_EQ_INT(store_key_find_hash(s, c.hash, &got), -ENOENT);
    CHECK_EQ_INT(store_key_get(s, "key_x", &got), -ENOENT);

    /* Conflicts and bad input. */
    store_key dup = make_key("key_alice", "carol", "member", 'c');
    CHECK_EQ_INT(store_key_insert(s, &dup), -EEXIST);       /* id */
    dup = make_key("key_carol", "carol", "member", 'a');
    CHECK_EQ_INT(store_key_insert(s, &dup), -EEXIST);       /* hash */
    dup = make_key("key_carol", "alice", "member", 'c');
    CHECK_EQ_INT(store_key_insert(s, &dup), -EEXIST);       /* active name */
    dup = make_key("key_carol", "carol", "root", 'c');
    CHECK_EQ_INT(store_key_insert(s, &dup), -EINVAL);       /* role */
    dup = make_key("key_carol", "carol", "member", 'c');
    dup.hash[10] = 'Z';
    CHECK_EQ_INT(store_key_insert(s, &dup), -EINVAL);       /* not hex */
    dup.hash[10] = '\0';
    CHECK_EQ_INT(store_key_insert(s, &dup), -EINVAL);       /* too short */

    /* Revoke: kept, findable by hash with revoked_at, name reusable. */
    CHECK_OK(store_key_revoke(s, "key_bob"));
    CHECK_OK(store_key_find_hash(s, b.hash, &got));
    CHECK(got.revoked_at > 0);
    int64_t first = got.revoked_at;
    CHECK_OK(store_key_revoke(s, "key_bob"));
    CHECK_OK(store_key_get(s, "key_bob", &got));
    CHECK_EQ_INT(got.revoked_at, first);
    CHECK_EQ_INT(store_key_revoke(s, "key_nope"), -ENOENT);
    CHECK_EQ_INT(store_key_find_name(s, "bob", &got), -ENOENT);
    CHECK_OK(store_key_count_active(s, &n));
    CHECK_EQ_INT(n, 1);
    store_key b2 = make_key("key_bob2", "bob", "member", 'd');
    CHECK_OK(store_key_insert(s, &b2));

    store_key *list = NULL;
    CHECK_OK(store_key_list(s, false, &list, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(list[0].id, "key_alice");
    CHECK_EQ_STR(list[1].id, "key_bob2");
    free(list);
    CHECK_OK(store_key_list(s, true, &list, &n));
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(list[1].id, "key_bob");
    CHECK(list[1].revoked_at > 0);
    free(list);
}

static void test_usage(void)
{
    store_key_usage u;
    CHECK_OK(store_key_usage_get(s, "key_alice", &u));
    CHECK_EQ_STR(u.key_id, "key_alice");
    CHECK_EQ_INT(u.tokens_trained, 0);
    CHECK_EQ_INT(u.tokens_generated, 0);
    CHECK_NEAR(u.cpu_seconds, 0);
    CHECK_EQ_INT(u.updated_at, 0);
    CHECK_OK(store_key_usage_add(s, "key_alice", 1000, 0, 1.5));
    CHECK_OK(store_key_usage_add(s, "key_alice", 24, 64, 0.25));
    CHECK_OK(store_key_usage_add(s, "key_bob2", 0, 7, 0));
    CHECK_OK(store_key_usage_get(s, "key_alice", &u));
    CHECK_EQ_INT(u.tokens_trained, 1024);
    CHECK_EQ_INT(u.tokens_generated, 64);
    CHECK_NEAR(u.cpu_seconds, 1.75);
    CHECK(u.updated_at > 0);
    CHECK_EQ_INT(store_key_usage_add(s, "key_nope", 1, 1, 1), -ENOENT);
    CHECK_EQ_INT(store_key_usage_add(s, "key_alice", -1, 0, 0), -EINVAL);
    CHECK_EQ_INT(store_key_usage_add(s, "key_alice", 0, 0, NAN), -EINVAL);
    CHECK_EQ_INT(store_key_usage_get(s, "key_nope", &u), -ENOENT);

    store_key_usage *v = NULL;
    int n = 0;
    CHECK_OK(store_key_usage_list(s, &v, &n));
    CHECK_EQ_INT(n, 3);                    /* revoked bob included */
    CHECK_EQ_STR(v[0].key_id, "key_alice");
    CHECK_EQ_INT(v[0].tokens_trained, 1024);
    CHECK_EQ_STR(v[1].key_id, "key_bob");
    CHECK_EQ_INT(v[1].tokens_generated, 0);
    CHECK_EQ_STR(v[2].key_id, "key_bob2");
    CHECK_EQ_INT(v[2].tokens_generated, 7);
    free(v);
}

/* ------------------------------------------------------------------------ */
/* Backup under load                                                         */

static char db_path[300];
static atomic_int writer_stop;
static atomic_int writer_count;

static void *writer(void *arg)
{
    char err[256];
    store *h = NULL;
    CHECK_OK(store_open(db_path, &h, err, sizeof(err)));
    while (!atomic_load(&writer_stop)) {
        CHECK_OK(store_event_add(h, "job_bk", "info", "step", "tick", NULL,
                                 NULL));
        atomic_fetch_add(&writer_count, 1);
    }
    store_close(h);
    return NULL;
}

static int count_events(store *h)
{
    store_event *ev = NULL;
    int n = 0;
    CHECK_OK(store_event_list(h, "job_bk", 0, 0, &ev, &n));
    for (int i = 1; i < n; i++)
        CHECK(ev[i].seq > ev[i - 1].seq);
    store_event_list_free(ev, n);
    return n;
}

static void test_backup(void)
{
    store_dataset d = fixture_dataset("ds_bk");
    CHECK_OK(store_dataset_insert(s, &d));
    store_job j = fixture_job("job_bk", "ds_bk");
    CHECK_OK(store_job_insert(s, &j, NULL));
    for (int i = 0; i < 50; i++)
        CHECK_OK(store_event_add(s, "job_bk", "info", "step", "before",
                                 NULL, NULL));

    pthread_t t;
    CHECK_OK(pthread_create(&t, NULL, writer, NULL));
    while (atomic_load(&writer_count) < 20)
        usleep(1000);
    char dest[300], err[256];
    test_path(dest, sizeof(dest), "backup.db");
    CHECK_OK(store_backup(s, dest));
    CHECK_OK(store_backup(s, dest));       /* over an existing copy */
    atomic_store(&writer_stop, 1);
    pthread_join(t, NULL);

    store *b = NULL;
    CHECK_OK(store_open(dest, &b, err, sizeof(err)));
    CHECK_EQ_INT(store_schema_version(b), store_schema_latest());
    store_dataset got;
    CHECK_OK(store_dataset_get(b, "ds_bk", &got));
    check_dataset_eq(&got, &d);
    store_key k;
    CHECK_OK(store_key_get(b, "key_alice", &k));
    int n = count_events(b);
    CHECK(n >= 50 + 20);
    CHECK(n <= 50 + atomic_load(&writer_count));
    store_close(b);

    char bad[300];
    test_path(bad, sizeof(bad), "no/such/dir/backup.db");
    CHECK(store_backup(s, bad) < 0);
    char msg[256];
    store_last_error(s, msg, sizeof(msg));
    CHECK(strstr(msg, "backup") != NULL);
}

int main(void)
{
    char err[256];
    test_dir_init();
    test_path(db_path, sizeof(db_path), "keys.db");
    CHECK_OK(store_open(db_path, &s, err, sizeof(err)));
    test_keys();
    test_usage();
    test_backup();
    store_close(s);
    return test_done("test_keys");
}
