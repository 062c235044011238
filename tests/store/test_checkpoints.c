/* SPDX-License-Identifier: MIT */
/*
 * test_checkpoints.c - migration 0003: checkpoint rows, job controls (pause,
 * resume, stop, priority, notes, the paused status through cancel and
 * restart), and the webhook outbox its trigger fills (one delivery per job
 * and terminal state, whatever code path ends the job; attempts, backoff,
 * giving up).
 */
#include "store/store-impl.h"
#include "fixtures.h"

static store *open_db(const char *name)
{
    char path[300], err[256];
    store *s = NULL;
    test_path(path, sizeof(path), name);
    CHECK_OK(store_open(path, &s, err, sizeof(err)));
    return s;
}

static void add_job(store *s, const char *id, const char *url)
{
    char ds[48];
    snprintf(ds, sizeof(ds), "ds_%s", id + 4);
    store_dataset d = fixture_dataset(ds);
    CHECK_OK(store_dataset_insert(s, &d));
    store_job j = fixture_job(id, ds);
    if (url) {
        snprintf(j.webhook_url, sizeof(j.webhook_url), "%s", url);
        snprintf(j.webhook_secret, sizeof(j.webhook_secret), "s3cret");
    }
    CHECK_OK(store_job_insert(s, &j, NULL));
}

static void check_status(store *s, const char *id, const char *want)
{
    store_job j;
    CHECK_OK(store_job_get(s, id, &j));
    CHECK_EQ_STR(j.status, want);
    store_job_done(&j);
}

static void test_checkpoint_rows(void)
{
    store *s = open_db("ckpt.db");
    add_job(s, "job_c1", NULL);
    for (int step = 10; step <= 30; step += 10) {
        store_checkpoint c = {.step = step, .train_loss = 1.0 / step,
                              .val_loss = step == 20 ? 0.5 : NAN,
                              .val_accuracy = NAN};
        snprintf(c.job_id, sizeof(c.job_id), "job_c1");
        snprintf(c.path, sizeof(c.path), "jobs/job_c1/checkpoints/step-%d",
                 step);
        CHECK_OK(store_checkpoint_add(s, &c));
    }
    /* the same step again replaces its row */
    store_checkpoint c = {.step = 20, .train_loss = 2, .val_loss = 0.25,
                          .val_accuracy = 0.75};
    snprintf(c.job_id, sizeof(c.job_id), "job_c1");
    snprintf(c.path, sizeof(c.path), "again");
    CHECK_OK(store_checkpoint_add(s, &c));
    store_checkpoint *v = NULL;
    int n = 0;
    CHECK_OK(store_checkpoint_list(s, "job_c1", &v, &n));
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(v[0].step, 10);
    CHECK_EQ_INT(v[2].step, 30);
    CHECK_EQ_STR(v[1].path, "again");
    CHECK_NEAR(v[1].val_loss, 0.25);
    CHECK(isnan(v[0].val_loss));
    free(v);
    store_checkpoint g;
    CHECK_OK(store_checkpoint_get(s, "job_c1", 30, &g));
    CHECK_EQ_STR(g.path, "jobs/job_c1/checkpoints/step-30");
    CHECK_EQ_INT(store_checkpoint_get(s, "job_c1", 31, &g), -ENOENT);
    CHECK_OK(store_checkpoint_delete(s, "job_c1", 10));
    CHECK_EQ_INT(store_checkpoint_delete(s, "job_c1", 10), -ENOENT);
    CHECK_OK(store_checkpoint_delete_all(s, "job_c1"));
    CHECK_OK(store_checkpoint_list(s, "job_c1", &v, &n));
    CHECK_EQ_INT(n, 0);
    free(v);
    store_close(s);
}

static void test_controls(void)
{
    store *s = open_db("ctl.db");
    char st[16];
    store_job j;
    add_job(s, "job_a", NULL);
    add_job(s, "job_b", NULL);
    /* a queued job pauses at once; a queued job cannot be stopped */
    CHECK_OK(store_job_control(s, "job_a", "pause", st));
    CHECK_EQ_STR(st, "paused");
    CHECK_OK(store_job_control(s, "job_a", "pause", st));
    CHECK_EQ_STR(st, "paused");
    CHECK_EQ_INT(store_job_control(s, "job_b", "stop", st), -EBUSY);
    CHECK_EQ_INT(store_job_control(s, "job_x", "stop", st), -ENOENT);
    CHECK_EQ_INT(store_job_control(s, "job_b", "halt", st), -EINVAL);
    /* a paused job is never claimed; a paused dataset is in use */
    CHECK_OK(store_job_claim_next(s, "w", &j));
    CHECK_EQ_STR(j.id, "job_b");
    store_job_done(&j);
    CHECK_EQ_INT(store_job_claim_next(s, "w", &j), -ENOENT);
    CHECK_EQ_INT(store_dataset_delete(s, "ds_a"), -EBUSY);
    int n;
    CHECK_OK(store_job_count(s, "paused", &n));
    CHECK_EQ_INT(n, 1);
    /* running: pause is a request the worker carries out */
    CHECK_OK(store_job_control(s, "job_b", "pause", st));
    CHECK_EQ_STR(st, "running");
    CHECK_OK(store_job_get(s, "job_b", &j));
    CHECK_EQ_STR(j.control, "pause");
    store_job_done(&j);
    CHECK_OK(store_job_pause(s, "job_b"));
    CHECK_EQ_INT(store_job_pause(s, "job_b"), -EBUSY);
    CHECK_OK(store_job_get(s, "job_b", &j));
    CHECK_EQ_STR(j.status, "paused");
    CHECK_EQ_STR(j.control, "");
    store_job_done(&j);
    /* resume requeues; priority orders the queue */
    CHECK_OK(store_job_resume(s, "job_a"));
    CHECK_EQ_INT(store_job_resume(s, "job_a"), -EBUSY);
    CHECK_OK(store_job_resume(s, "job_b"));
    CHECK_OK(store_job_set_priority(s, "job_b", 5));
    int pos;
    CHECK_OK(store_job_queue_position(s, "job_a", &pos));
    CHECK_EQ_INT(pos, 1);
    CHECK_OK(store_job_claim_next(s, "w", &j));
    CHECK_EQ_STR(j.id, "job_b");
    CHECK_EQ_INT(j.priority, 5);
    store_job_done(&j);
    /* stop of a running job; finish clears the control; a note */
    CHECK_OK(store_job_control(s, "job_b", "stop", st));
    CHECK_OK(store_job_set_note(s, "job_b", "stopped at step 3"));
    CHECK_OK(store_job_finish(s, "job_b", "succeeded", NULL));
    CHECK_OK(store_job_get(s, "job_b", &j));
    CHECK_EQ_STR(j.control, "");
    CHECK_EQ_STR(j.note, "stopped at step 3");
    store_job_done(&j);
    CHECK_EQ_INT(store_job_set_priority(s, "job_b", 1), -EBUSY);
    CHECK_EQ_INT(store_job_control(s, "job_b", "pause", st), -EBUSY);
    /* a paused job stopped: queued again with the stop pending */
    CHECK_OK(store_job_control(s, "job_a", "pause", st));
    CHECK_OK(store_job_control(s, "job_a", "stop", st));
    CHECK_EQ_STR(st, "queued");
    CHECK_OK(store_job_get(s, "job_a", &j));
    CHECK_EQ_STR(j.control, "stop");
    store_job_done(&j);
    /* a paused job can be cancelled at once */
    add_job(s, "job_c", NULL);
    CHECK_OK(store_job_control(s, "job_c", "pause", st));
    CHECK_OK(store_job_cancel(s, "job_c", st));
    CHECK_EQ_STR(st, "cancelled");
    store_close(s);
}

/* A crash while a pause was asked parks the job instead of requeueing. */
static void test_requeue(void)
{
    store *s = open_db("requeue.db");
    store_job j;
    char st[16];
    int n;
    add_job(s, "job_p", NULL);
    add_job(s, "job_q", NULL);
    CHECK_OK(store_job_claim_next(s, "w1", &j));
    store_job_done(&j);
    CHECK_OK(store_job_claim_next(s, "w2", &j));
    store_job_done(&j);
    CHECK_OK(store_job_control(s, "job_p", "pause", st));
    CHECK_OK(store_job_requeue_running(s, &n));
    CHECK_EQ_INT(n, 1);
    check_status(s, "job_p", "paused");
    check_status(s, "job_q", "queued");
    store_close(s);
}

static void test_webhooks(void)
{
    store *s = open_db("hooks.db");
    store_job j;
    store_webhook w, *v;
    char st[16];
    int n;
    int64_t t;
    add_job(s, "job_w1", "http://127.0.0.1:1/hook");
    add_job(s, "job_w2", "http://127.0.0.1:1/other");
    add_job(s, "job_w3", NULL);
    CHECK_EQ_INT(store_webhook_next_due(s, INT64_MAX, &w), -ENOENT);
    CHECK_EQ_INT(store_webhook_next_time(s, &t), -ENOENT);
    /* ended through three paths: finish, cancel of a queued job, and the
     * start-up sweep of a cancel requested before a crash */
    CHECK_OK(store_job_claim_next(s, "w", &j));
    store_job_done(&j);
    CHECK_OK(store_job_finish(s, "job_w1", "succeeded", NULL));
    CHECK_EQ_INT(store_job_finish(s, "job_w1", "failed", NULL), -EBUSY);
    CHECK_OK(store_job_cancel(s, "job_w2", st));
    CHECK_OK(store_job_cancel(s, "job_w3", st));
    CHECK_OK(store_webhook_list(s, "job_w1", &v, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(v[0].event, "succeeded");
    CHECK_EQ_STR(v[0].url, "http://127.0.0.1:1/hook");
    CHECK_EQ_STR(v[0].state, "pending");
    CHECK(v[0].body == NULL);
    store_webhook_list_free(v, n);
    CHECK_OK(store_webhook_list(s, "job_w3", &v, &n));
    CHECK_EQ_INT(n, 0);
    store_webhook_list_free(v, n);

    CHECK_OK(store_webhook_next_time(s, &t));
    CHECK_OK(store_webhook_next_due(s, t, &w));
    CHECK_EQ_STR(w.job_id, "job_w1");
    CHECK_OK(store_webhook_set_body(s, w.seq, "{\"a\":1}"));
    CHECK_OK(store_webhook_set_body(s, w.seq, "{\"b\":2}")); /* kept */
    /* a failed attempt: pending again later; then delivered */
    CHECK_OK(store_webhook_attempted(s, w.seq, false, 500, "HTTP 500",
                                     t + 100));
    store_webhook_done(&w);
    CHECK_OK(store_webhook_next_due(s, t, &w));
    CHECK_EQ_STR(w.job_id, "job_w2");
    CHECK_OK(store_webhook_attempted(s, w.seq, false, 0, "refused", 0));
    CHECK_EQ_INT(store_webhook_attempted(s, w.seq, true, 200, NULL, 0),
                 -ENOENT);
    store_webhook_done(&w);
    CHECK_EQ_INT(store_webhook_next_due(s, t, &w), -ENOENT);
    CHECK_OK(store_webhook_next_due(s, t + 100, &w));
    CHECK_EQ_STR(w.body, "{\"a\":1}");
    CHECK_EQ_INT(w.attempts, 1);
    CHECK_OK(store_webhook_attempted(s, w.seq, true, 200, NULL, 0));
    store_webhook_done(&w);
    CHECK_OK(store_webhook_list(s, "job_w1", &v, &n));
    CHECK_EQ_STR(v[0].state, "delivered");
    CHECK_EQ_INT(v[0].attempts, 2);
    CHECK_EQ_INT(v[0].last_status, 200);
    CHECK(v[0].delivered_at > 0);
    store_webhook_list_free(v, n);
    CHECK_OK(store_webhook_list(s, "job_w2", &v, &n));
    CHECK_EQ_STR(v[0].state, "failed");
    CHECK_EQ_STR(v[0].last_error, "refused");
    store_webhook_list_free(v, n);
    CHECK_EQ_INT(store_webhook_next_time(s, &t), -ENOENT);
    store_close(s);
}

int main(void)
{
    test_dir_init();
    test_checkpoint_rows();
    test_controls();
    test_requeue();
    test_webhooks();
    return test_done("test_checkpoints");
}
