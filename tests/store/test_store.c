/* SPDX-License-Identifier: MIT */
/*
 * test_store.c - every function of store.h against a real database file:
 * round trips of every field, the job state machine (claim order, progress,
 * finish, cancel, requeue after a crash, queue position), idempotency keys,
 * dataset deletion rules, the event cursor and per-step metrics.
 */
#include <pthread.h>

#include "store/store.h"
#include "fixtures.h"

static store *s;

static void insert_dataset(const char *id)
{
    store_dataset d = fixture_dataset(id);
    CHECK_OK(store_dataset_insert(s, &d));
}

static void insert_job(const char *id, const char *ds, int priority)
{
    store_job j = fixture_job(id, ds);
    j.priority = priority;
    CHECK_OK(store_job_insert(s, &j, NULL));
}

static void expect_status(const char *id, const char *status)
{
    store_job j;
    CHECK_OK(store_job_get(s, id, &j));
    CHECK_EQ_STR(j.status, status);
    store_job_done(&j);
}

/* ------------------------------------------------------------------------ */

static void test_datasets(void)
{
    store_dataset d = fixture_dataset("ds_a"), got;
    CHECK_OK(store_dataset_insert(s, &d));
    CHECK_OK(store_dataset_get(s, "ds_a", &got));
    check_dataset_eq(&got, &d);
    CHECK_EQ_INT(store_dataset_insert(s, &d), -EEXIST);
    CHECK_EQ_INT(store_dataset_get(s, "ds_missing", &got), -ENOENT);

    store_dataset bad = fixture_dataset("ds_bad");
    snprintf(bad.format, sizeof(bad.format), "yaml");
    CHECK_EQ_INT(store_dataset_insert(s, &bad), -EINVAL);
    bad = fixture_dataset("");
    CHECK_EQ_INT(store_dataset_insert(s, &bad), -EINVAL);

    /* created_at 0: the store stamps the current time. */
    store_dataset b = fixture_dataset("ds_b");
    b.created_at = 0;
    b.shared = false;
    b.owner[0] = '\0';
    CHECK_OK(store_dataset_insert(s, &b));
    CHECK_OK(store_dataset_get(s, "ds_b", &got));
    CHECK(got.created_at > 1700000000);
    CHECK_EQ_INT(got.shared, 0);
    CHECK_EQ_STR(got.owner, "");
    insert_dataset("ds_c");

    store_dataset *list = NULL;
    int n = 0;
    CHECK_OK(store_dataset_list(s, 0, &list, &n));
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(list[0].id, "ds_c");   /* newest first */
    CHECK_EQ_STR(list[1].id, "ds_b");
    CHECK_EQ_STR(list[2].id, "ds_a");
    check_dataset_eq(&list[2], &d);
    free(list);
    CHECK_OK(store_dataset_list(s, 2, &list, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(list[1].id, "ds_b");
    free(list);
}

static void test_job_round_trip(void)
{
    store_job j = fixture_job("job_rt", "ds_a"), got;
    snprintf(j.val_dataset_id, sizeof(j.val_dataset_id), "ds_b");
    j.priority = -3;
    j.shared = true;
    snprintf(j.idempotency_key, sizeof(j.idempotency_key), "retry-1");
    j.attempts = 9;                       /* ignored on insert */
    j.cancel_requested = true;            /* ignored on insert */
    CHECK_OK(store_job_insert(s, &j, NULL));
    CHECK_OK(store_job_get(s, "job_rt", &got));
    CHECK_EQ_STR(got.id, "job_rt");
    CHECK_EQ_STR(got.status, "queued");
    CHECK_EQ_STR(got.base_model, "stories260K");
    CHECK_EQ_STR(got.dataset_id, "ds_a");
    CHECK_EQ_STR(got.val_dataset_id, "ds_b");
    CHECK_EQ_STR(got.hyperparameters, j.hyperparameters);
    CHECK_EQ_STR(got.suffix, "zog");
    CHECK_EQ_STR(got.model, "stories260K:zog:job_rt");
    CHECK_EQ_INT(got.created_at, 1700000100);
    CHECK_EQ_INT(got.started_at, 0);
    CHECK_EQ_INT(got.finished_at, 0);
    CHECK_EQ_INT(got.step, 0);
    CHECK_EQ_INT(got.total_steps, 0);
    CHECK_EQ_INT(got.epoch, 0);
    CHECK(isnan(got.train_loss));
    CHECK(isnan(got.val_loss));
    CHECK_NEAR(got.tokens_per_second, 0);
    CHECK_NEAR(got.eta_seconds, -1);
    CHECK(got.error == NULL);
    CHECK_EQ_INT(got.priority, -3);
    CHECK_EQ_INT(got.cancel_requested, 0);
    CHECK_EQ_STR(got.worker, "");
    CHECK_EQ_INT(got.attempts, 0);
    CHECK_EQ_STR(got.owner, "key_alice");
    CHECK_EQ_INT(got.shared, 1);
    CHECK_EQ_STR(got.idempotency_key, "retry-1");
    store_job_done(&got);
    store_job_done(&got);                 /* idempotent */
    CHECK_EQ_INT(store_job_get(s, "job_nope", &got), -ENOENT);

    /* NULL hyperparameters store as "{}". */
    store_job e = fixture_job("job_empty_hp", "ds_a");
    e.hyperparameters = NULL;
    CHECK_OK(store_job_insert(s, &e, NULL));
    CHECK_OK(store_job_get(s, "job_empty_hp", &got));
    CHECK_EQ_STR(got.hyperparameters, "{}");
    store_job_done(&got);
    CHECK_OK(store_job_finish(s, "job_empty_hp", "cancelled", NULL));
}

static void test_job_insert_errors(void)
{
    char existing[48] = "untouched";
    store_job j = fixture_job("job_rt", "ds_a");
    CHECK_EQ_INT(store_job_insert(s, &j, existing), -EEXIST); /* same id */
    CHECK_EQ_STR(existing, "untouched");
    j = fixture_job("job_x", "ds_missing");
    CHECK_EQ_INT(store_job_insert(s, &j, NULL), -ENOENT);
    j = fixture_job("job_x", "ds_a");
    snprintf(j.val_dataset_id, sizeof(j.val_dataset_id), "ds_missing");
    CHECK_EQ_INT(store_job_insert(s, &j, NULL), -ENOENT);
    j = fixture_job("", "ds_a");
    CHECK_EQ_INT(store_job_insert(s, &j, NULL), -EINVAL);
    CHECK_EQ_INT(store_job_get(s, "job_x", &(store_job){0}), -ENOENT);

    /* Idempotency: per owner. */
    j = fixture_job("job_retry", "ds_a");
    snprintf(j.idempotency_key, sizeof(j.idempotency_key), "retry-1");
    CHECK_EQ_INT(store_job_insert(s, &j, existing), -EEXIST);
    CHECK_EQ_STR(existing, "job_rt");
    CHECK_EQ_INT(store_job_get(s, "job_retry", &(store_job){0}), -ENOENT);
    snprintf(j.owner, sizeof(j.owner), "key_bob");
    CHECK_OK(store_job_insert(s, &j, existing));
    CHECK_OK(store_job_finish(s, "job_retry", "cancelled", NULL));
    /* Jobs without a key never collide. */
    j = fixture_job("job_nokey1", "ds_a");
    CHECK_OK(store_job_insert(s, &j, NULL));
    j = fixture_job("job_nokey2", "ds_a");
    CHECK_OK(store_job_insert(s, &j, NULL));
    CHECK_OK(store_job_finish(s, "job_nokey1", "cancelled", NULL));
    CHECK_OK(store_job_finish(s, "job_nokey2", "cancelled", NULL));
    CHECK_OK(store_job_finish(s, "job_rt", "cancelled", NULL));

    char msg[256];
    store_last_error(s, msg, sizeof(msg));
    CHECK(msg[0] != '\0');               /* from the duplicate id above */
}

static void test_claim_order_and_position(void)
{
    store_job j;
    CHECK_EQ_INT(store_job_claim_next(s, "w0", &j), -ENOENT);
    insert_job("job_q1", "ds_a", 0);
    insert_job("job_q2", "ds_a", 0);
    insert_job("job_q3", "ds_a", 5);
    insert_job("job_q4", "ds_a", 0);
    insert_job("job_q5", "ds_a", 5);
    const char *order[] = {"job_q3", "job_q5", "job_q1", "job_q2", "job_q4"};
    for (int i = 0; i < 5; i++) {
        int pos = -1;
        CHECK_OK(store_job_queue_position(s, order[i], &pos));
        CHECK_EQ_INT(pos, i);
    }
    int pos = 77;
    CHECK_EQ_INT(store_job_queue_position(s, "job_nope", &pos), -ENOENT);
    CHECK_EQ_INT(store_job_queue_position(s, "job_rt", &pos), -ENOENT);
    CHECK_EQ_INT(pos, 77);

    for (int i = 0; i < 5; i++) {
        CHECK_OK(store_job_claim_next(s, "worker-7", &j));
        CHECK_EQ_STR(j.id, order[i]);
        CHECK_EQ_STR(j.status, "running");
        CHECK_EQ_STR(j.worker, "worker-7");
        CHECK_EQ_INT(j.attempts, 1);
        CHECK(j.started_at > 0);
        CHECK(j.hyperparameters != NULL);
        store_job_done(&j);
        if (i + 1 < 5) {
            CHECK_OK(store_job_queue_position(s, order[i + 1], &pos));
            CHECK_EQ_INT(pos, 0);
        }
        CHECK_EQ_INT(store_job_queue_position(s, order[i], &pos), -ENOENT);
    }
    CHECK_EQ_INT(store_job_claim_next(s, "w0", &j), -ENOENT);
    expect_status("job_q1", "running");
}

static void test_progress_and_finish(void)
{
    store_job j;
    CHECK_OK(store_job_set_progress(s, "job_q1", 40, 120, 1, 1.93, NAN, 512.5,
                                    33.0));
    CHECK_OK(store_job_get(s, "job_q1", &j));
    CHECK_EQ_INT(j.step, 40);
    CHECK_EQ_INT(j.total_steps, 120);
    CHECK_EQ_INT(j.epoch, 1);
    CHECK_NEAR(j.train_loss, 1.93);
    CHECK(isnan(j.val_loss));
    CHECK_NEAR(j.tokens_per_second, 512.5);
    CHECK_NEAR(j.eta_seconds, 33.0);
    store_job_done(&j);
    /* A loss given as NaN keeps the last measured one. */
    CHECK_OK(store_job_set_progress(s, "job_q1", 41, 120, 1, NAN, 2.25, 500,
                                    32));
    CHECK_OK(store_job_get(s, "job_q1", &j));
    CHECK_EQ_INT(j.step, 41);
    CHECK_NEAR(j.train_loss, 1.93);
    CHECK_NEAR(j.val_loss, 2.25);
    store_job_done(&j);
    CHECK_EQ_INT(store_job_set_progress(s, "job_nope", 1, 1, 0, 1, 1, 1, 1),
                 -ENOENT);
    CHECK_EQ_INT(store_job_set_progress(s, "job_rt", 1, 1, 0, 1, 1, 1, 1),
                 -EBUSY);

    CHECK_EQ_INT(store_job_finish(s, "job_q1", "running", NULL), -EINVAL);
    CHECK_EQ_INT(store_job_finish(s, "job_q1", "queued", NULL), -EINVAL);
    CHECK_OK(store_job_finish(s, "job_q1", "succeeded", NULL));
    CHECK_OK(store_job_get(s, "job_q1", &j));
    CHECK_EQ_STR(j.status, "succeeded");
    CHECK(j.finished_at >= j.started_at && j.finished_at > 0);
    CHECK(j.error == NULL);
    CHECK_EQ_INT(j.step, 41);             /* progress kept */
    store_job_done(&j);
    CHECK_EQ_INT(store_job_finish(s, "job_q1", "failed", NULL), -EBUSY);
    CHECK_EQ_INT(store_job_set_progress(s, "job_q1", 1, 1, 0, 1, 1, 1, 1),
                 -EBUSY);
    CHECK_EQ_INT(store_job_finish(s, "job_nope", "failed", NULL), -ENOENT);

    const char *err = "{\"code\":\"oom\",\"message\":\"out of memory\"}";
    CHECK_OK(store_job_finish(s, "job_q2", "failed", err));
    CHECK_OK(store_job_get(s, "job_q2", &j));
    CHECK_EQ_STR(j.status, "failed");
    CHECK_EQ_STR(j.error, err);
    store_job_done(&j);
}

static void test_cancel(void)
{
    char st[16] = "";
    store_job j;
    insert_job("job_c1", "ds_a", 0);
    CHECK_OK(store_job_cancel(s, "job_c1", st));
    CHECK_EQ_STR(st, "cancelled");
    CHECK_OK(store_job_get(s, "job_c1", &j));
    CHECK_EQ_STR(j.status, "cancelled");
    CHECK(j.finished_at > 0);
    CHECK_EQ_INT(j.started_at, 0);
    store_job_done(&j);
    CHECK_EQ_INT(store_job_claim_next(s, "w", &j), -ENOENT); /* never runs */

    /* running: only flagged; the worker ends it */
    CHECK_OK(store_job_cancel(s, "job_q3", st));
    CHECK_EQ_STR(st, "running");
    CHECK_OK(store_job_get(s, "job_q3", &j));
    CHECK_EQ_STR(j.status, "running");
    CHECK_EQ_INT(j.cancel_requested, 1);
    store_job_done(&j);
    CHECK_OK(store_job_cancel(s, "job_q3", NULL));   /* asking twice: fine */
    CHECK_OK(store_job_finish(s, "job_q3", "cancelled", NULL));

    snprintf(st, sizeof(st), "unchanged");
    CHECK_EQ_INT(store_job_cancel(s, "job_q3", st), -EBUSY);
    CHECK_EQ_STR(st, "unchanged");
    CHECK_EQ_INT(store_job_cancel(s, "job_q1", st), -EBUSY);   /* succeeded */
    CHECK_EQ_INT(store_job_cancel(s, "job_q2", st), -EBUSY);   /* failed */
    CHECK_EQ_INT(store_job_cancel(s, "job_nope", st), -ENOENT);
}

static void test_requeue_running(void)
{
    /* job_q4, job_q5 are running; flag q5 for cancel, then "crash". */
    CHECK_OK(store_job_cancel(s, "job_q5", NULL));
    int n = -1;
    CHECK_OK(store_job_requeue_running(s, &n));
    CHECK_EQ_INT(n, 1);
    store_job j;
    CHECK_OK(store_job_get(s, "job_q4", &j));
    CHECK_EQ_STR(j.status, "queued");
    CHECK_EQ_STR(j.worker, "");
    CHECK_EQ_INT(j.started_at, 0);
    CHECK_EQ_INT(j.attempts, 1);
    store_job_done(&j);
    expect_status("job_q5", "cancelled");
    CHECK_OK(store_job_requeue_running(s, &n));
    CHECK_EQ_INT(n, 0);

    CHECK_OK(store_job_claim_next(s, "w-after-restart", &j));
    CHECK_EQ_STR(j.id, "job_q4");
    CHECK_EQ_INT(j.attempts, 2);
    store_job_done(&j);
}

static void test_job_list(void)
{
    store_job *v = NULL;
    int n = 0;
    CHECK_OK(store_job_list(s, NULL, 0, &v, &n));
    /* job_rt, empty_hp, retry, nokey1, nokey2, q1..q5, c1 */
    CHECK_EQ_INT(n, 11);
    CHECK_EQ_STR(v[0].id, "job_c1");             /* newest first */
    CHECK_EQ_STR(v[n - 1].id, "job_rt");
    store_job_list_free(v, n);
    CHECK_OK(store_job_list(s, "running", 0, &v, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(v[0].id, "job_q4");
    CHECK(v[0].hyperparameters != NULL);
    store_job_list_free(v, n);
    CHECK_OK(store_job_list(s, "cancelled", 2, &v, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(v[0].id, "job_c1");
    CHECK_EQ_STR(v[1].id, "job_q5");
    store_job_list_free(v, n);
    CHECK_OK(store_job_list(s, "queued", 10, &v, &n));
    CHECK_EQ_INT(n, 0);
    store_job_list_free(v, n);
    CHECK_EQ_INT(store_job_list(s, "bogus", 10, &v, &n), -EINVAL);
}

static void test_dataset_delete(void)
{
    insert_dataset("ds_del");
    insert_dataset("ds_val");
    store_job j = fixture_job("job_del", "ds_del");
    snprintf(j.val_dataset_id, sizeof(j.val_dataset_id), "ds_val");
    CHECK_OK(store_job_insert(s, &j, NULL));
    CHECK_EQ_INT(store_dataset_delete(s, "ds_del"), -EBUSY);   /* queued */
    CHECK_EQ_INT(store_dataset_delete(s, "ds_val"), -EBUSY);
    store_job c;
    CHECK_OK(store_job_claim_next(s, "w", &c));
    CHECK_EQ_STR(c.id, "job_del");
    store_job_done(&c);
    CHECK_EQ_INT(store_dataset_delete(s, "ds_del"), -EBUSY);   /* running */
    CHECK_EQ_INT(store_dataset_delete(s, "ds_val"), -EBUSY);
    CHECK_OK(store_job_finish(s, "job_del", "failed", "{}"));
    CHECK_OK(store_dataset_delete(s, "ds_val"));
    CHECK_OK(store_dataset_delete(s, "ds_del"));
    store_dataset d;
    CHECK_EQ_INT(store_dataset_get(s, "ds_del", &d), -ENOENT);
    CHECK_EQ_INT(store_dataset_delete(s, "ds_del"), -ENOENT);
    /* The finished job still names what it trained on. */
    CHECK_OK(store_job_get(s, "job_del", &c));
    CHECK_EQ_STR(c.dataset_id, "ds_del");
    CHECK_EQ_STR(c.val_dataset_id, "ds_val");
    store_job_done(&c);
    /* A dataset no job ever used goes at once. */
    CHECK_OK(store_dataset_delete(s, "ds_c"));
}

static void test_events(void)
{
    int64_t seq[6];
    CHECK_OK(store_event_add(s, "job_q1", "info", "status", "queued", NULL,
                             &seq[0]));
    CHECK_OK(store_event_add(s, "job_q2", "info", "status", "other job",
                             NULL, &seq[1]));
    CHECK_OK(store_event_add(s, "job_q1", "info", "step", "step 1",
                             "{\"step\":1,\"loss\":2.5}", &seq[2]));
    CHECK_OK(store_event_add(s, "job_q1", "warn", "message", "slow", NULL,
                             &seq[3]));
    CHECK_OK(store_event_add(s, "job_q1", "error", "status", "failed", NULL,
                             &seq[4]));
    for (int i = 1; i < 5; i++)
        CHECK(seq[i] > seq[i - 1]);
    CHECK_EQ_INT(store_event_add(s, "job_nope", "info", "status", "x", NULL,
                                 &seq[5]), -ENOENT);
    CHECK_EQ_INT(store_event_add(s, "job_q1", "debug", "status", "x", NULL,
                                 &seq[5]), -EINVAL);

    store_event *ev = NULL;
    int n = 0;
    CHECK_OK(store_event_list(s, "job_q1", 0, 0, &ev, &n));
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(ev[0].seq, seq[0]);
    CHECK_EQ_STR(ev[0].job_id, "job_q1");
    CHECK_EQ_STR(ev[0].level, "info");
    CHECK_EQ_STR(ev[0].type, "status");
    CHECK_EQ_STR(ev[0].message, "queued");
    CHECK(ev[0].data == NULL);
    CHECK(ev[0].created_at > 0);
    CHECK_EQ_INT(ev[1].seq, seq[2]);
    CHECK_EQ_STR(ev[1].data, "{\"step\":1,\"loss\":2.5}");
    CHECK_EQ_STR(ev[2].level, "warn");
    store_event_list_free(ev, n);

    /* The cursor: strictly after, oldest first, limited. */
    CHECK_OK(store_event_list(s, "job_q1", seq[0], 2, &ev, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ev[0].seq, seq[2]);
    CHECK_EQ_INT(ev[1].seq, seq[3]);
    int64_t cursor = ev[1].seq;
    store_event_list_free(ev, n);
    CHECK_OK(store_event_list(s, "job_q1", cursor, 100, &ev, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ev[0].seq, seq[4]);
    store_event_list_free(ev, n);
    CHECK_OK(store_event_list(s, "job_q1", seq[4], 100, &ev, &n));
    CHECK_EQ_INT(n, 0);
    store_event_list_free(ev, n);
    CHECK_OK(store_event_list(s, "job_nope", 0, 100, &ev, &n));
    CHECK_EQ_INT(n, 0);
    store_event_list_free(ev, n);
}

static void test_metrics(void)
{
    store_metric m = {.step = 10, .train_loss = 2.0, .val_loss = NAN,
                      .val_accuracy = NAN, .lr = 1e-3, .grad_norm = 0.75,
                      .tokens_per_second = 1234.5, .created_at = 100};
    CHECK_OK(store_metric_add(s, "job_q1", &m));
    m = (store_metric){.step = 5, .train_loss = 3.0, .val_loss = NAN,
                       .val_accuracy = NAN, .lr = 5e-4, .grad_norm = 1.5,
                       .tokens_per_second = NAN, .created_at = 90};
    CHECK_OK(store_metric_add(s, "job_q1", &m));
    /* The validation pass of step 10 merges into its row. */
    m = (store_metric){.step = 10, .train_loss = NAN, .val_loss = 2.4,
                       .val_accuracy = 0.625, .lr = NAN, .grad_norm = NAN,
                       .tokens_per_second = NAN, .created_at = 101};
    CHECK_OK(store_metric_add(s, "job_q1", &m));
    CHECK_OK(store_metric_add(s, "job_q2", &m));
    m.step = -1;
    CHECK_EQ_INT(store_metric_add(s, "job_q1", &m), -EINVAL);
    m.step = 1;
    CHECK_EQ_INT(store_metric_add(s, "job_nope", &m), -ENOENT);

    store_metric *v = NULL;
    int n = 0;
    CHECK_OK(store_metric_list(s, "job_q1", &v, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(v[0].step, 5);
    CHECK_NEAR(v[0].train_loss, 3.0);
    CHECK(isnan(v[0].val_loss));
    CHECK(isnan(v[0].tokens_per_second));
    CHECK_NEAR(v[0].lr, 5e-4);
    CHECK_EQ_INT(v[0].created_at, 90);
    CHECK_EQ_INT(v[1].step, 10);
    CHECK_NEAR(v[1].train_loss, 2.0);
    CHECK_NEAR(v[1].val_loss, 2.4);
    CHECK_NEAR(v[1].val_accuracy, 0.625);
    CHECK_NEAR(v[1].lr, 1e-3);
    CHECK_NEAR(v[1].grad_norm, 0.75);
    CHECK_NEAR(v[1].tokens_per_second, 1234.5);
    CHECK_EQ_INT(v[1].created_at, 101);
    free(v);

    /* A step replayed after a resume replaces the measured values. */
    m = (store_metric){.step = 5, .train_loss = 2.9, .val_loss = NAN,
                       .val_accuracy = NAN, .lr = 5e-4, .grad_norm = 1.25,
                       .tokens_per_second = 999, .created_at = 200};
    CHECK_OK(store_metric_add(s, "job_q1", &m));
    CHECK_OK(store_metric_list(s, "job_q1", &v, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_NEAR(v[0].train_loss, 2.9);
    CHECK_NEAR(v[0].tokens_per_second, 999);
    free(v);
    CHECK_OK(store_metric_list(s, "job_nope", &v, &n));
    CHECK_EQ_INT(n, 0);
    free(v);
}

/* One handle shared by several threads: calls serialise, none is lost. */
#define N_SHARED 4
#define EVENTS_EACH 100
static void *event_writer(void *arg)
{
    int64_t *seqs = arg;
    for (int i = 0; i < EVENTS_EACH; i++)
        CHECK_OK(store_event_add(s, "job_q4", "info", "step", "tick", NULL,
                                 &seqs[i]));
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_shared_handle(void)
{
    static int64_t seqs[N_SHARED * EVENTS_EACH];
    pthread_t t[N_SHARED];
    for (int i = 0; i < N_SHARED; i++)
        CHECK_OK(pthread_create(&t[i], NULL, event_writer,
                                &seqs[i * EVENTS_EACH]));
    for (int i = 0; i < N_SHARED; i++)
        pthread_join(t[i], NULL);
    qsort(seqs, N_SHARED * EVENTS_EACH, sizeof(seqs[0]), cmp_i64);
    for (int i = 1; i < N_SHARED * EVENTS_EACH; i++)
        CHECK(seqs[i] > seqs[i - 1]);
    store_event *ev = NULL;
    int n = 0;
    CHECK_OK(store_event_list(s, "job_q4", 0, 0, &ev, &n));
    CHECK_EQ_INT(n, N_SHARED * EVENTS_EACH);
    store_event_list_free(ev, n);
}

int main(void)
{
    char path[300], err[256];
    test_dir_init();
    test_path(path, sizeof(path), "store.db");
    CHECK_OK(store_open(path, &s, err, sizeof(err)));
    test_datasets();
    test_job_round_trip();
    test_job_insert_errors();
    test_claim_order_and_position();
    test_progress_and_finish();
    test_cancel();
    test_requeue_running();
    test_job_list();
    test_dataset_delete();
    test_events();
    test_metrics();
    test_shared_handle();
    store_close(s);
    /* Everything above is durable: a fresh handle sees it. */
    CHECK_OK(store_open(path, &s, err, sizeof(err)));
    expect_status("job_del", "failed");
    store_close(s);
    return test_done("test_store");
}
