/* SPDX-License-Identifier: MIT */
/*
 * main.c - tunad: subcommands, start-up and shutdown of the daemon.
 *
 * `tunad serve` prepares the data dir (taking a lock on it so two daemons
 * never share one), binds the port before touching the database (a second
 * daemon started by mistake must not re-queue the first one's running
 * jobs), opens the store, queues again the jobs a crash left running,
 * loads the model registry, starts the training workers and the HTTP
 * server, and prints the one line tools wait for:
 *
 *     tunad listening on http://HOST:PORT
 *
 * SIGINT and SIGTERM are caught by a handler that writes the signal number
 * to a pipe the main thread waits on. (Blocking them and calling sigwait()
 * is not enough: OpenBLAS starts its threads before main() runs, with
 * nothing blocked, and a signal delivered to one of them would kill the
 * process outright.) Shutdown: stop accepting, abort the running training
 * steps (their jobs stay running and are re-queued at the next start), let
 * the requests in progress finish, join the workers, close the database,
 * exit 0. A second signal during shutdown ends the process at once.
 */
#include "api/api.h"
#include "server/admin.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/http.h"
#include "server/scheduler.h"
#include "server/log.h"
#include "server/webhooks.h"
#include "server/workers.h"
#include "server/engine_cli.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TUNA_VERSION
#define TUNA_VERSION "0.0.0"
#endif

typedef struct daemon_state {
    srv_config cfg;
    char db_path[PATH_MAX];
    char tmp_dir[PATH_MAX];
    int lock_fd;
    int listen_fd;
    int port;
    bool ipv6;
    store *db;
    api_registry *models;
    api_serve *serve;
    srv_sched *sched;
    api_ctx ctx;
    srv_pool *pool;
    srv_webhooks *webhooks;
    srv_http *http;
    api_runtime *runtime;
    srv_metrics *metrics;
    char *tls_cert_pem, *tls_key_pem;
} daemon_state;

/* ------------------------------------------------------------------------ */
/* Data dir                                                                  */

/* Removes the files a crash left behind in dir whose names start with one
 * of prefixes (NULL-terminated): uploads in flight in tmp/, and datasets/'s
 * temp files (.upload-*: a dataset being validated; .part-*: a multipart
 * body). None of them is ever named by a row. */
static void clean_prefixed(const char *dir, const char *const *prefixes)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    int n = 0;
    char path[PATH_MAX + 256];
    while ((e = readdir(d))) {
        bool match = false;
        for (int i = 0; prefixes[i] && !match; i++)
            match = !strncmp(e->d_name, prefixes[i], strlen(prefixes[i]));
        if (!match)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n += unlink(path) == 0;
    }
    closedir(d);
    if (n)
        srv_info("removed %d unfinished upload%s from %s", n,
                 n == 1 ? "" : "s", dir);
}

static void clean_tmp(const char *data_dir)
{
    static const char *const tmp[] = {"upload-", NULL};
    static const char *const ds[] = {".upload-", ".part-", NULL};
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tmp", data_dir);
    clean_prefixed(path, tmp);
    snprintf(path, sizeof path, "%s/datasets", data_dir);
    clean_prefixed(path, ds);
}

/* A dataset file is renamed into place before its row is inserted, and
 * unlinked after its row is deleted: a crash in between leaves a
 * datasets/ds_*.jsonl that no row names (never served, never counted).
 * Removes those at start-up, before any request runs. */
static void clean_orphan_datasets(daemon_state *d)
{
    char dir[PATH_MAX], path[PATH_MAX + 256], id[64];
    snprintf(dir, sizeof dir, "%s/datasets", d->cfg.data_dir);
    DIR *dh = opendir(dir);
    if (!dh)
        return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dh))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "ds_", 3) || len < 7 || len - 6 >= sizeof id ||
            strcmp(e->d_name + len - 6, ".jsonl"))
            continue;
        snprintf(id, sizeof id, "%.*s", (int)(len - 6), e->d_name);
        store_dataset ds;
        if (store_dataset_get(d->db, id, &ds) != -ENOENT)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n += unlink(path) == 0;
    }
    closedir(dh);
    if (n)
        srv_info("removed %d dataset file%s without a database row from %s",
                 n, n == 1 ? "" : "s", dir);
}

/* Creates the data dir and its folders, checks it is writable and takes
 * its lock. Prints the problem and returns < 0 when it is unusable. */
static int prepare_data_dir(daemon_state *d)
{
    const char *dd = d->cfg.data_dir;
    static const char *const subdirs[] = {"", "/datasets", "/jobs", "/tmp"};
    char path[PATH_MAX];
    int e;
    for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
        snprintf(path, sizeof path, "%s%s", dd, subdirs[i]);
        if ((e = api_mkdir_p(path)) < 0) {
            fprintf(stderr, "tunad: data dir %s is unusable: cannot create "
                    "%s: %s\n", dd, path, strerror(-e));
            return e;
        }
    }
    snprintf(path, sizeof path, "%s/tunad.lock", dd);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->lock_fd < 0) {
        e = -errno;
        fprintf(stderr, "tunad: data dir %s is unusable: cannot write %s: "
                "%s\n", dd, path, strerror(-e));
        return e;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = pread(d->lock_fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        fprintf(stderr, "tunad: data dir %s is in use by another tunad%s%s%s"
                "\n", dd, *pid ? " (pid " : "", pid, *pid ? ")" : "");
        return -EBUSY;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(d->lock_fd, 0) < 0 || pwrite(d->lock_fd, pid, (size_t)n, 0)
        != n) {
        e = -errno;
        fprintf(stderr, "tunad: data dir %s is unusable: %s\n", dd,
                strerror(-e));
        return e;
    }
    snprintf(d->db_path, sizeof d->db_path, "%s/tuna.db", dd);
    snprintf(d->tmp_dir, sizeof d->tmp_dir, "%s/tmp", dd);
    clean_tmp(dd);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Start-up and shutdown                                                     */

static int open_store(daemon_state *d)
{
    char err[512] = "";
    int e = store_open(d->db_path, &d->db, err, sizeof err);
    if (e < 0) {
        fprintf(stderr, "tunad: cannot open the database %s: %s\n",
                d->db_path, *err ? err : strerror(-e));
        return e;
    }
    int n = 0;
    e = store_job_requeue_running(d->db, &n);
    if (e < 0) {
        fprintf(stderr, "tunad: cannot re-queue interrupted jobs: %s\n",
                strerror(-e));
        return e;
    }
    srv_info("database %s (schema %d); %d interrupted job%s queued again",
             d->db_path, store_schema_version(d->db), n, n == 1 ? "" : "s");
    clean_orphan_datasets(d);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Security at start-up                                                      */

static bool is_loopback(const char *host)
{
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "::1") ||
           !strcmp(host, "localhost") || !strncmp(host, "127.", 4);
}

/* With no active API key everyone who reaches the port has full access:
 * unless --allow-public, only loopback is served. Reads the key count with
 * a short-lived handle (the data dir lock is held, so no other daemon is
 * using it). */
static int guard_public(daemon_state *d)
{
    srv_config *c = &d->cfg;
    store *s = NULL;
    char err[512] = "";
    int n = 0, e = store_open(d->db_path, &s, err, sizeof err);
    if (e == 0)
        e = store_key_count_active(s, &n);
    store_close(s);
    if (e < 0) {
        fprintf(stderr, "tunad: cannot open the database %s: %s\n",
                d->db_path, *err ? err : strerror(-e));
        return e;
    }
    if (n > 0) {
        srv_info("%d active API key%s: every route but /health needs "
                 "'Authorization: Bearer <key>'", n, n == 1 ? "" : "s");
        return 0;
    }
    if (is_loopback(c->host)) {
        srv_warn("no API keys: authentication is off, serving loopback "
                 "only (create one with `tunad keys create --name admin "
                 "--role admin`)");
    } else if (c->allow_public) {
        srv_warn("no API keys and --allow-public: anyone who reaches %s has "
                 "full access", c->host);
    } else {
        srv_warn("no API keys: authentication is off, so listening on "
                 "127.0.0.1 instead of %s (create a key with `tunad keys "
                 "create --name admin --role admin`, or pass --allow-public)",
                 c->host);
        c->host = "127.0.0.1";
    }
    return 0;
}

static char *read_pem(const char *what, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    if (f) {
        buf = malloc(1 << 20);
        len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
        if (buf)
            buf[len] = 0;
        fclose(f);
    }
    if (!buf || !len || !strstr(buf, "-----BEGIN ")) {
        fprintf(stderr, "tunad: cannot read the TLS %s %s: %s\n", what, path,
                !f ? strerror(errno) : "not a PEM file");
        free(buf);
        return NULL;
    }
    return buf;
}

static int load_tls(daemon_state *d)
{
    const srv_config *c = &d->cfg;
    if (!c->tls_cert && !c->tls_key)
        return 0;
    if (!c->tls_cert || !c->tls_key) {
        fprintf(stderr, "tunad: --tls-cert and --tls-key go together\n");
        return -EINVAL;
    }
    if (!srv_http_tls_supported()) {
        fprintf(stderr, "tunad: this libmicrohttpd was built without TLS; "
                "serve HTTPS through a reverse proxy (deploy/nginx.conf)\n");
        return -ENOTSUP;
    }
    d->tls_cert_pem = read_pem("certificate", c->tls_cert);
    d->tls_key_pem = d->tls_cert_pem ? read_pem("key", c->tls_key) : NULL;
    return d->tls_key_pem ? 0 : -EINVAL;
}

/* Logs the settings and prints the line tools wait for. */
static void announce(const daemon_state *d)
{
    const srv_config *c = &d->cfg;
    srv_info("serving %s on port %d: %d worker%s x %d training thread%s, "
             "%d generation thread%s, max body %zu bytes", c->data_dir,
             d->port, c->workers, c->workers == 1 ? "" : "s",
             c->train_threads, c->train_threads == 1 ? "" : "s",
             c->gen_threads, c->gen_threads == 1 ? "" : "s",
             c->limits.max_body_bytes);
    if (c->workers * c->train_threads > c->threads)
        srv_warn("%d workers x %d threads oversubscribe the %d cores",
                 c->workers, c->train_threads, c->threads);
    bool v6 = strchr(c->host, ':') != NULL;
    printf("tunad listening on %s://%s%s%s:%d\n",
           d->tls_cert_pem ? "https" : "http", v6 ? "[" : "", c->host,
           v6 ? "]" : "", d->port);
    fflush(stdout);
}

/* Lends api/ a thread for one streamed generation (api_ctx.spawn): api/
 * owns no threads. Detached; it ends when the generation has written its
 * stream (api_serve_stop waits for every generation at shutdown). */
typedef struct spawn_call {
    void (*fn)(void *);
    void *arg;
} spawn_call;

static void *spawn_main(void *p)
{
    spawn_call sc = *(spawn_call *)p;
    free(p);
    sc.fn(sc.arg);
    return NULL;
}

static int spawn_thread(void *user, void (*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_t t;
    spawn_call *sc = malloc(sizeof *sc);
    (void)user;
    if (!sc)
        return -ENOMEM;
    sc->fn = fn;
    sc->arg = arg;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int r = pthread_create(&t, &a, spawn_main, sc);
    pthread_attr_destroy(&a);
    if (r != 0) {
        free(sc);
        return -r;
    }
    return 0;
}

static int start(daemon_state *d)
{
    srv_config *c = &d->cfg;
    char err[512] = "";
    int e;

    if ((e = prepare_data_dir(d)) < 0 || (e = load_tls(d)) < 0 ||
        (e = guard_public(d)) < 0)
        return e;
    if (api_runtime_new(&d->runtime) < 0 || srv_metrics_new(&d->metrics) < 0) {
        fprintf(stderr, "tunad: out of memory\n");
        return -ENOMEM;
    }
    e = srv_http_listen(c->host, c->port, &d->listen_fd, &d->port, &d->ipv6,
                        err, sizeof err);
    if (e < 0) {
        fprintf(stderr, "tunad: %s\n", err);
        return e;
    }
    if ((e = open_store(d)) < 0)
        return e;
    e = api_registry_new(c->embedded_dir, c->models_dir, &d->models, err,
                         sizeof err);
    if (e < 0) {
        fprintf(stderr, "tunad: cannot load models (embedded dir %s%s%s): "
                "%s\n", c->embedded_dir, c->models_dir ? ", models dir " : "",
                c->models_dir ? c->models_dir : "",
                *err ? err : strerror(-e));
        return e;
    }
    api_registry_set_adapter_budget(d->models, c->adapter_cache_bytes);
    api_registry_set_weights(d->models, c->weights);
    srv_sched_params sp = {
        .threads = c->gen_threads, .yield_max_ms = c->train_yield_ms,
    };
    if ((e = srv_sched_start(&sp, &d->sched)) < 0) {
        fprintf(stderr, "tunad: cannot start the generation scheduler: %s\n",
                strerror(-e));
        return e;
    }
    srv_pool_params pp = {
        .db_path = d->db_path, .data_dir = c->data_dir, .models = d->models,
        .workers = c->workers, .train_threads = c->train_threads,
        .yield = srv_sched_yield, .yield_user = d->sched,
    };
    if ((e = srv_pool_start(&pp, &d->pool, err, sizeof err)) < 0) {
        fprintf(stderr, "tunad: cannot start the workers: %s\n",
                *err ? err : strerror(-e));
        return e;
    }
    if ((e = api_serve_new(&c->serve, &d->serve)) < 0) {
        fprintf(stderr, "tunad: out of memory\n");
        return e;
    }
    d->ctx = (api_ctx){
        .db = d->db, .models = d->models, .data_dir = c->data_dir,
        .limits = c->limits, .cors_origins = c->cors_origins,
        .notify_jobs = srv_pool_notify, .notify_user = d->pool,
        .serve = d->serve, .spawn = spawn_thread,
        .gen_threads = c->gen_threads, .train_threads = c->train_threads,
        .runtime = d->runtime, .metrics = srv_metrics_write,
        .metrics_user = d->metrics,
        .submit = srv_sched_submit, .submit_user = d->sched,
        .lora_dirs = c->lora_dirs, .models_dir = c->models_dir,
    };
    srv_webhooks_params wp = {
        .db_path = d->db_path, .secret = c->webhook_secret, .api = &d->ctx,
    };
    if ((e = srv_webhooks_start(&wp, &d->webhooks, err, sizeof err)) < 0) {
        fprintf(stderr, "tunad: cannot start the webhook thread: %s\n",
                *err ? err : strerror(-e));
        return e;
    }
    srv_http_params hp = {
        .listen_fd = d->listen_fd, .ipv6 = d->ipv6, .ctx = &d->ctx,
        .tmp_dir = d->tmp_dir, .max_connections = c->max_connections,
        .connection_timeout = c->connection_timeout,
        .tls_cert_pem = d->tls_cert_pem, .tls_key_pem = d->tls_key_pem,
        .metrics = d->metrics,
    };
    d->listen_fd = -1; /* the HTTP server owns it now, even on failure */
    if ((e = srv_http_start(&hp, &d->http, err, sizeof err)) < 0) {
        fprintf(stderr, "tunad: %s\n", err);
        return e;
    }
    announce(d);
    return 0;
}

static void stop(daemon_state *d)
{
    srv_http_quiesce(d->http);
    api_serve_stop(d->serve); /* generations end within a token */
    srv_pool_stop(d->pool);
    srv_http_stop(d->http);
    srv_webhooks_free(d->webhooks);
    srv_pool_free(d->pool);
    srv_sched_free(d->sched); /* after the workers: they yield to it */
    api_serve_free(d->serve);
    api_registry_free(d->models);
    store_close(d->db);
    if (d->listen_fd >= 0)
        close(d->listen_fd);
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    api_runtime_free(d->runtime);
    srv_metrics_free(d->metrics);
    free(d->tls_cert_pem);
    free(d->tls_key_pem);
}

/* The write end of the signal pipe: the one piece of state a signal
 * handler can reach. */
static int signal_fd = -1;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(signal_fd, &b, 1);
    (void)w;
    errno = saved;
}

/* Routes SIGINT and SIGTERM to *ret_fd, a pipe to read them from. */
static int catch_signals(int *ret_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    signal_fd = p[1];
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    *ret_fd = p[0];
    return 0;
}

static int wait_signal(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    unsigned char b = 0;
    for (;;) {
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            return SIGTERM;
        if (read(fd, &b, 1) == 1)
            return b;
    }
}

static int cmd_serve(int argc, char **argv)
{
    daemon_state d = {.lock_fd = -1, .listen_fd = -1};
    srv_config_default(&d.cfg);
    int r = srv_config_parse_serve(&d.cfg, argc, argv);
    if (r)
        return r > 0 ? 0 : 2;
    srv_config_finish(&d.cfg);
    srv_log_set_json(d.cfg.json_logs);
    srv_log_set_level(d.cfg.verbose ? SRV_LOG_DEBUG : SRV_LOG_INFO);

    int sig_fd = -1;
    if (catch_signals(&sig_fd) < 0) {
        fprintf(stderr, "tunad: cannot set up signals: %s\n",
                strerror(errno));
        return 1;
    }
    if (start(&d) < 0) {
        stop(&d);
        return 1;
    }
    int sig = wait_signal(sig_fd);
    srv_info("%s: shutting down", strsignal(sig));
    /* A second signal ends the process at once. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    stop(&d);
    srv_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd || !strcmp(cmd, "help") || !strcmp(cmd, "--help") ||
        !strcmp(cmd, "-h")) {
        srv_usage_main(cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("tunad %s\n", TUNA_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "keys"))
        return srv_cmd_keys(argc - 1, argv + 1);
    if (!strcmp(cmd, "backup"))
        return srv_cmd_backup(argc - 1, argv + 1);
    if (!strcmp(cmd, "config"))
        return srv_cmd_config(argc - 1, argv + 1);
    if (!strcmp(cmd, "train") || !strcmp(cmd, "generate"))
        return srv_engine_cli(argc, argv);
    fprintf(stderr, "tunad: unknown command '%s' (see tunad --help)\n", cmd);
    return 2;
}
