/* SPDX-License-Identifier: MIT */
/*
 * test_claim_race.c - store_job_claim_next under contention: first 8
 * threads, each with its own handle on one file, race for 200 jobs; then 4
 * processes of 2 threads each race for 200 more. Every job must be claimed
 * exactly once (its claimer records a "claimed" event, which the check
 * counts), none left queued, and attempts must be 1 everywhere.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "fixtures.h"

#define N_JOBS 200
#define N_THREADS 8
#define N_PROCS 4
#define THREADS_PER_PROC 2

static char db_path[300];

typedef struct claimer {
    char name[32];
    int claimed;
} claimer;

static void *claim_loop(void *arg)
{
    claimer *c = arg;
    char err[256];
    store *h = NULL;
    CHECK_OK(store_open(db_path, &h, err, sizeof(err)));
    for (;;) {
        store_job j;
        int r = store_job_claim_next(h, c->name, &j);
        if (r == -ENOENT)
            break;
        CHECK_OK(r);
        CHECK_EQ_STR(j.status, "running");
        CHECK_EQ_STR(j.worker, c->name);
        CHECK_OK(store_event_add(h, j.id, "info", "claimed", c->name, NULL,
                                 NULL));
        store_job_done(&j);
        c->claimed++;
    }
    store_close(h);
    return NULL;
}

static void run_threads(claimer *c, int n, const char *prefix)
{
    pthread_t t[N_THREADS];
    CHECK(n <= N_THREADS);
    for (int i = 0; i < n; i++) {
        snprintf(c[i].name, sizeof(c[i].name), "%s-%d", prefix, i);
        c[i].claimed = 0;
        CHECK_OK(pthread_create(&t[i], NULL, claim_loop, &c[i]));
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

static void make_jobs(const char *round)
{
    char err[256];
    store *s = NULL;
    CHECK_OK(store_open(db_path, &s, err, sizeof(err)));
    store_dataset d = fixture_dataset("ds_race");
    int r = store_dataset_insert(s, &d);
    CHECK(r == 0 || r == -EEXIST);
    for (int i = 0; i < N_JOBS; i++) {
        char id[48];
        snprintf(id, sizeof(id), "job_%s_%03d", round, i);
        store_job j = fixture_job(id, "ds_race");
        CHECK_OK(store_job_insert(s, &j, NULL));
    }
    store_close(s);
}

/* Each job of the round: running, attempts 1, exactly one claimed event,
 * written by the worker the row names. */
static void verify_round(const char *round)
{
    char err[256];
    store *s = NULL;
    CHECK_OK(store_open(db_path, &s, err, sizeof(err)));
    for (int i = 0; i < N_JOBS; i++) {
        char id[48];
        snprintf(id, sizeof(id), "job_%s_%03d", round, i);
        store_job j;
        CHECK_OK(store_job_get(s, id, &j));
        CHECK_EQ_STR(j.status, "running");
        CHECK_EQ_INT(j.attempts, 1);
        store_event *ev = NULL;
        int n = 0;
        CHECK_OK(store_event_list(s, id, 0, 0, &ev, &n));
        CHECK_EQ_INT(n, 1);
        CHECK_EQ_STR(ev[0].message, j.worker);
        store_event_list_free(ev, n);
        store_job_done(&j);
    }
    store_job *q = NULL;
    int nq = 0;
    CHECK_OK(store_job_list(s, "queued", 0, &q, &nq));
    CHECK_EQ_INT(nq, 0);
    store_job_list_free(q, nq);
    store_close(s);
}

static void test_threads(void)
{
    make_jobs("t");
    claimer c[N_THREADS];
    run_threads(c, N_THREADS, "thread");
    int total = 0, busy = 0;
    for (int i = 0; i < N_THREADS; i++) {
        total += c[i].claimed;
        busy += c[i].claimed > 0;
    }
    CHECK_EQ_INT(total, N_JOBS);
    printf("threads: %d of %d claimers got jobs\n", busy, N_THREADS);
    verify_round("t");
}

static void test_processes(void)
{
    make_jobs("p");
    pid_t pid[N_PROCS];
    int pfd[N_PROCS][2];
    for (int p = 0; p < N_PROCS; p++) {
        CHECK_OK(pipe(pfd[p]));
        pid[p] = fork();
        CHECK(pid[p] >= 0);
        if (pid[p] == 0) {
            char prefix[16];
            snprintf(prefix, sizeof(prefix), "proc%d", p);
            claimer c[THREADS_PER_PROC];
            run_threads(c, THREADS_PER_PROC, prefix);
            int total = 0;
            for (int i = 0; i < THREADS_PER_PROC; i++)
                total += c[i].claimed;
            CHECK(write(pfd[p][1], &total, sizeof(total)) == sizeof(total));
            _exit(0);
        }
        close(pfd[p][1]);
    }
    int total = 0;
    for (int p = 0; p < N_PROCS; p++) {
        int status = 0, n = 0;
        CHECK(waitpid(pid[p], &status, 0) == pid[p]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(read(pfd[p][0], &n, sizeof(n)) == sizeof(n));
        close(pfd[p][0]);
        total += n;
    }
    CHECK_EQ_INT(total, N_JOBS);
    verify_round("p");
}

int main(void)
{
    test_dir_init();
    test_path(db_path, sizeof(db_path), "race.db");
    test_threads();
    test_processes();
    return test_done("test_claim_race");
}
