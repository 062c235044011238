/* SPDX-License-Identifier: MIT */
/*
 * config.c - command-line flags of `tunad serve` and the thread budget.
 *
 * Thread budget: the machine's cores (or --threads) are split so that the
 * training workers and the HTTP side never oversubscribe them. One core is
 * kept for HTTP and /generate while anything trains; the rest is divided
 * among the workers. On 2 cores: 1 worker with 1 training thread, and
 * /generate gets 1 thread.
 */
#include "server/config.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TUNA_SOURCE_MODELS_DIR
#define TUNA_SOURCE_MODELS_DIR "models"
#endif
#ifndef TUNA_INSTALL_MODELS_DIR
#define TUNA_INSTALL_MODELS_DIR "/usr/local/share/tuna/models"
#endif
#define EMBEDDED_NAME "stories260K"

void srv_config_default(srv_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->data_dir = "./tuna-data";
    c->cors_origins = "*";
    c->max_connections = 256;
    c->connection_timeout = 60;
    api_limits_default(&c->limits);
    api_serve_limits_default(&c->serve);
}

const char *srv_config_default_embedded_dir(void)
{
    static const char *const candidates[] = {
        TUNA_SOURCE_MODELS_DIR "/" EMBEDDED_NAME,
        TUNA_INSTALL_MODELS_DIR "/" EMBEDDED_NAME,
    };
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++)
        if (access(candidates[i], R_OK | X_OK) == 0)
            return candidates[i];
    return candidates[0];
}

void srv_usage_main(FILE *f)
{
    fputs("usage: tunad <command> [options]\n"
          "\n"
          "Tuna: a finetuning service. Commands:\n"
          "  serve      run the HTTP daemon (see `tunad serve --help`)\n"
          "  train      train a LoRA adapter from the command line\n"
          "  generate   generate text from a model (and adapter)\n"
          "  help       this text\n"
          "\n"
          "  --version  print the version\n", f);
}

void srv_usage_serve(FILE *f)
{
    fputs(
        "usage: tunad serve [options]\n"
        "\n"
        "  --host H             address to listen on (default 127.0.0.1)\n"
        "  --port P             port (default 8080; 0 picks a free one)\n"
        "  --data-dir D         database, datasets and adapters "
        "(default ./tuna-data)\n"
        "  --models-dir M       folder of extra base models\n"
        "  --embedded-dir E     the embedded stories260K folder\n"
        "  --workers N          training workers (default: sized to the "
        "machine)\n"
        "  --threads N          compute threads in all (default: cores)\n"
        "  --max-body-bytes N   largest request body, k/M/G suffixes "
        "(default 64M)\n"
        "  --max-rows N         most rows in a dataset (default 100000)\n"
        "  --max-seq-len N      longest training sequence (default 2048)\n"
        "  --max-gen-tokens N   most tokens one /generate may ask "
        "(default 2048)\n"
        "  --max-concurrent-requests N  generation requests running "
        "at once (default 4)\n"
        "  --max-queued-requests N  more waiting for a slot; 429 "
        "beyond (default 64)\n"
        "  --request-timeout S  seconds one generation may take, "
        "queue included (default 300; 0 = none)\n"
        "  --max-connections N  concurrent HTTP connections (default 256)\n"
        "  --cors-origins LIST  \"*\" or comma-separated origins "
        "(default *)\n"
        "  --webhook-secret S   HMAC key of job webhooks without their own "
        "(default none)\n"
        "  --log-format F       text or json (default text)\n"
        "  --verbose            debug logging\n"
        "  --help               this text\n"
        "\n"
        "When ready it prints: tunad listening on http://HOST:PORT\n", f);
}

/* Parses a count with an optional k/M/G (binary) suffix. */
static int parse_size(const char *s, unsigned long long max,
                      unsigned long long *ret)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 0: break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return -EINVAL;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || (shift && v > (max >> shift)) || (v << shift) > max)
        return -EINVAL;
    *ret = v << shift;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *ret)
{
    unsigned long long v;
    if (parse_size(s, (unsigned long long)hi, &v) < 0 || v < (unsigned)lo)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

static const char *const value_flags[] = {
    "max-concurrent-requests", "max-queued-requests", "request-timeout",
    "host", "port", "data-dir", "models-dir", "embedded-dir", "cors-origins",
    "workers", "threads", "max-connections", "max-body-bytes", "max-rows",
    "max-seq-len", "max-gen-tokens", "log-format", "webhook-secret",
};

static bool known_flag(const char *name)
{
    for (size_t i = 0; i < sizeof value_flags / sizeof *value_flags; i++)
        if (!strcmp(name, value_flags[i]))
            return true;
    return false;
}

/* Sets one flag from its value; -EINVAL when the value is bad, -ENOENT when
 * the flag is unknown. */
static int set_flag(srv_config *c, const char *name, const char *val)
{
    unsigned long long u;
    int i;
    if (!strcmp(name, "host")) c->host = val;
    else if (!strcmp(name, "port")) return parse_int(val, 0, 65535, &c->port);
    else if (!strcmp(name, "data-dir")) c->data_dir = val;
    else if (!strcmp(name, "models-dir")) c->models_dir = val;
    else if (!strcmp(name, "embedded-dir")) c->embedded_dir = val;
    else if (!strcmp(name, "cors-origins")) c->cors_origins = val;
    else if (!strcmp(name, "webhook-secret")) c->webhook_secret = val;
    else if (!strcmp(name, "workers"))
        return parse_int(val, 1, 256, &c->workers);
    else if (!strcmp(name, "threads"))
        return parse_int(val, 1, 1024, &c->threads);
    else if (!strcmp(name, "max-connections"))
        return parse_int(val, 1, 100000, &c->max_connections);
    else if (!strcmp(name, "max-body-bytes")) {
        if (parse_size(val, (unsigned long long)SIZE_MAX / 2, &u) < 0 || !u)
            return -EINVAL;
        c->limits.max_body_bytes = (size_t)u;
    } else if (!strcmp(name, "max-rows")) {
        if (parse_int(val, 1, INT_MAX, &i) < 0)
            return -EINVAL;
        c->limits.max_rows = i;
    } else if (!strcmp(name, "max-seq-len"))
        return parse_int(val, 8, 1 << 20, &c->limits.max_seq_len);
    else if (!strcmp(name, "max-gen-tokens"))
        return parse_int(val, 1, 1 << 20, &c->limits.max_gen_tokens);
    else if (!strcmp(name, "max-concurrent-requests"))
        return parse_int(val, 1, 4096, &c->serve.max_concurrent);
    else if (!strcmp(name, "max-queued-requests"))
        return parse_int(val, 0, 1 << 20, &c->serve.max_queued);
    else if (!strcmp(name, "request-timeout"))
        return parse_int(val, 0, 1 << 24, &c->serve.request_timeout_s);
    else if (!strcmp(name, "log-format")) {
        if (strcmp(val, "json") && strcmp(val, "text"))
            return -EINVAL;
        c->json_logs = !strcmp(val, "json");
    } else
        return -ENOENT;
    return 0;
}

int srv_config_parse_serve(srv_config *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            srv_usage_serve(stdout);
            return 1;
        }
        if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            c->verbose = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "tunad serve: unexpected argument '%s'\n", a);
            return -EINVAL;
        }
        char name[64];
        const char *val;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name)
            len = sizeof name - 1;
        memcpy(name, a + 2, len);
        name[len] = 0;
        if (!known_flag(name)) {
            fprintf(stderr, "tunad serve: unknown option --%s (see --help)\n",
                    name);
            return -EINVAL;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "tunad serve: --%s needs a value\n", name);
            return -EINVAL;
        }
        int r = set_flag(c, name, val);
        if (r == -ENOENT) {
            fprintf(stderr, "tunad serve: unknown option --%s (see --help)\n",
                    name);
            return -EINVAL;
        }
        if (r < 0) {
            fprintf(stderr, "tunad serve: bad value '%s' for --%s\n", val,
                    name);
            return -EINVAL;
        }
    }
    if (!*c->host || !*c->data_dir) {
        fprintf(stderr, "tunad serve: --host and --data-dir may not be "
                        "empty\n");
        return -EINVAL;
    }
    return 0;
}

static int machine_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void srv_config_finish(srv_config *c)
{
    int threads = c->threads > 0 ? c->threads : machine_cores();
    if (c->workers <= 0) {
        c->workers = threads / 4;
        if (c->workers < 1) c->workers = 1;
        if (c->workers > 4) c->workers = 4;
    }
    /* One core stays with HTTP and /generate whenever there are two. */
    int for_training = threads > 1 ? threads - 1 : 1;
    c->train_threads = for_training / c->workers;
    if (c->train_threads < 1)
        c->train_threads = 1;
    c->gen_threads = threads - c->workers * c->train_threads;
    if (c->gen_threads < 1)
        c->gen_threads = 1;
    if (c->gen_threads > 4)
        c->gen_threads = 4;
    c->threads = threads;
    if (!c->embedded_dir)
        c->embedded_dir = srv_config_default_embedded_dir();
}
