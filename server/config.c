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

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
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
    c->limits.max_jobs_in_flight = 4;
    c->limits.max_storage_bytes = (int64_t)10 << 30;
    c->limits.rate_limit_rpm = 600;
    c->limits.max_streams = 64;
    c->adapter_cache_bytes = (size_t)1 << 30;
    c->train_yield_ms = 1000;
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
          "  keys       create, list and revoke API keys\n"
          "  backup     copy the database and data files while serving\n"
          "  config     check and print the effective configuration\n"
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
        "  --gen-threads N      threads of the generation scheduler "
        "(default: what training leaves, 1 to 4)\n"
        "  --train-yield-ms N   longest a training step waits while "
        "requests run (default 1000)\n"
        "  --weights MODE       where a --models-dir base's weights live: "
        "auto (copied into\n"
        "                       memory when they fit in half of it: faster "
        "decode), memory,\n"
        "                       or mmap (default auto)\n"
        "  --adapter-cache-bytes N  memory for resident LoRA adapters, "
        "least recently used evicted (default 1G)\n"
        "  --lora-dirs LIST     colon-separated folders "
        "/v1/load_lora_adapter may read (besides the data and models dirs)\n"
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
        "  --max-streams N      concurrent streamed responses (default 64)\n"
        "  --webhook-secret S   HMAC key of job webhooks without their own "
        "(default none)\n"
        "  --connection-timeout S  idle seconds before a connection closes "
        "(default 60)\n"
        "Per API key (0 = no limit):\n"
        "  --max-jobs-in-flight N  queued or running jobs (default 4)\n"
        "  --max-storage-bytes N   bytes of datasets (default 10G)\n"
        "  --rate-limit-rpm N      requests per minute (default 600)\n"
        "Security:\n"
        "  --tls-cert FILE      PEM certificate (chain): serve HTTPS\n"
        "  --tls-key FILE       its PEM private key\n"
        "  --allow-public       listen beyond loopback with no API key "
        "(also --insecure)\n"
        "  --config FILE        config file (default /etc/tuna/tunad.conf "
        "if present)\n"
        "  --log-format F       text or json (default text)\n"
        "  --verbose            debug logging\n"
        "  --help               this text\n"
        "\n"
        "\n"
        "Every option also reads from the config file (key = value, '-' or\n"
        "'_') and from TUNA_<NAME> (e.g. TUNA_DATA_DIR); flags win over the\n"
        "environment, which wins over the file. See docs/configuration.md.\n"
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

/* Every option with its default as text (tunad config check prints it;
 * srv_config_default() holds the values). Others may add rows: keep the
 * defaults here and there in step. */
const srv_option srv_config_options[] = {
    {"host", false, "127.0.0.1"},
    {"port", false, "8080"},
    {"data-dir", false, "./tuna-data"},
    {"models-dir", false, "(none)"},
    {"embedded-dir", false, "(the source tree's or installed stories260K)"},
    {"cors-origins", false, "*"},
    {"workers", false, "(sized to the machine)"},
    {"threads", false, "(cores)"},
    {"max-connections", false, "256"},
    {"connection-timeout", false, "60"},
    {"max-body-bytes", false, "64M"},
    {"max-rows", false, "100000"},
    {"max-seq-len", false, "2048"},
    {"max-gen-tokens", false, "2048"},
    {"max-concurrent-requests", false, "4"},
    {"max-queued-requests", false, "64"},
    {"request-timeout", false, "300"},
    {"max-streams", false, "64"},
    {"max-jobs-in-flight", false, "4"},
    {"max-storage-bytes", false, "10G"},
    {"rate-limit-rpm", false, "600"},
    {"log-format", false, "text"},
    {"tls-cert", false, "(none)"},
    {"tls-key", false, "(none)"},
    {"allow-public", true, "false"},
    {"verbose", true, "false"},
    {"webhook-secret", false, "(none)"},
    {"gen-threads", false, "(derived)"},
    {"train-yield-ms", false, "1000"},
    {"adapter-cache-bytes", false, "1G"},
    {"weights", false, "auto"},
    {"lora-dirs", false, "(none)"},
    {NULL, false, NULL},
};

static int option_index(const char *name)
{
    for (int i = 0; srv_config_options[i].name; i++)
        if (!strcmp(name, srv_config_options[i].name))
            return i;
    return -1;
}

static bool known_flag(const char *name)
{
    return option_index(name) >= 0;
}

static int parse_bool(const char *v, bool *ret)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") ||
        !strcmp(v, "1"))
        *ret = true;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") ||
             !strcmp(v, "0"))
        *ret = false;
    else
        return -EINVAL;
    return 0;
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
    else if (!strcmp(name, "gen-threads"))
        return parse_int(val, 1, 1024, &c->gen_threads_opt);
    else if (!strcmp(name, "train-yield-ms"))
        return parse_int(val, 1, 3600000, &c->train_yield_ms);
    else if (!strcmp(name, "lora-dirs"))
        c->lora_dirs = *val ? val : NULL;
    else if (!strcmp(name, "weights")) {
        if (!strcmp(val, "auto"))
            c->weights = API_WEIGHTS_AUTO;
        else if (!strcmp(val, "memory"))
            c->weights = API_WEIGHTS_MEMORY;
        else if (!strcmp(val, "mmap"))
            c->weights = API_WEIGHTS_MMAP;
        else
            return -EINVAL;
    }
    else if (!strcmp(name, "adapter-cache-bytes")) {
        if (parse_size(val, (unsigned long long)SIZE_MAX / 2, &u) < 0)
            return -EINVAL;
        c->adapter_cache_bytes = (size_t)u;
    }
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
    else if (!strcmp(name, "connection-timeout"))
        return parse_int(val, 1, 86400, &c->connection_timeout);
    else if (!strcmp(name, "max-streams"))
        return parse_int(val, 0, 100000, &c->limits.max_streams);
    else if (!strcmp(name, "max-jobs-in-flight"))
        return parse_int(val, 0, 100000, &c->limits.max_jobs_in_flight);
    else if (!strcmp(name, "rate-limit-rpm"))
        return parse_int(val, 0, 1000000, &c->limits.rate_limit_rpm);
    else if (!strcmp(name, "max-storage-bytes")) {
        if (parse_size(val, (unsigned long long)INT64_MAX / 2, &u) < 0)
            return -EINVAL;
        c->limits.max_storage_bytes = (int64_t)u;
    } else if (!strcmp(name, "tls-cert"))
        c->tls_cert = *val ? val : NULL;
    else if (!strcmp(name, "tls-key"))
        c->tls_key = *val ? val : NULL;
    else if (!strcmp(name, "allow-public"))
        return parse_bool(val, &c->allow_public);
    else if (!strcmp(name, "verbose"))
        return parse_bool(val, &c->verbose);
    else if (!strcmp(name, "log-format")) {
        if (strcmp(val, "json") && strcmp(val, "text"))
            return -EINVAL;
        c->json_logs = !strcmp(val, "json");
    } else
        return -ENOENT;
    return 0;
}

/* Sets option name from val and records where it came from; -EINVAL
 * (bad value) or -ENOENT (unknown option). */
static int apply(srv_config *c, const char *name, const char *val,
                 const char *origin)
{
    int i = option_index(name);
    if (i < 0)
        return -ENOENT;
    int r = set_flag(c, name, val);
    if (r == 0 && i < SRV_MAX_OPTIONS) {
        c->origin[i] = origin;
        c->text[i] = val;
    }
    return r;
}

void srv_config_env_name(const char *name, char *buf, size_t len)
{
    size_t n = snprintf(buf, len, "TUNA_");
    for (const char *p = name; *p && n + 1 < len; p++)
        buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

/* Reads `key = value` lines ('#' or ';' starts a comment line, or, after a
 * space, a comment at the end of a line; values may be "quoted"). Every
 * problem is printed with its file:line. */
static int load_file(srv_config *c, const char *path, bool must_exist)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!must_exist && errno == ENOENT)
            return 0;
        fprintf(stderr, "tunad: cannot read config file %s: %s\n", path,
                strerror(errno));
        return -EINVAL;
    }
    c->config_path = path;
    char line[4096];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        char *l = trim(line);
        if (!*l || *l == '#' || *l == ';')
            continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            fprintf(stderr, "tunad: %s:%d: expected 'key = value'\n", path, n);
            bad++;
            continue;
        }
        *eq = 0;
        char *key = trim(l), *val = trim(eq + 1), *q;
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = 0;
            val++;
        } else if (val[0] == '"' && (q = strchr(val + 1, '"')) &&
                   (*trim(q + 1) == '#' || *trim(q + 1) == ';')) {
            *q = 0;                      /* "quoted"  # comment */
            val++;
        } else if (val[0] != '"') {
            /* value  # comment: '#' or ';' after a space ends the value */
            for (char *p = val + 1; *p; p++)
                if ((*p == '#' || *p == ';') && isspace((unsigned char)p[-1])) {
                    *p = 0;
                    val = trim(val);
                    break;
                }
        }
        for (char *p = key; *p; p++)
            if (*p == '_')
                *p = '-';
        char origin[600];
        snprintf(origin, sizeof origin, "file %s:%d", path, n);
        char *v = strdup(val), *o = strdup(origin);
        int r = v && o ? apply(c, key, v, o) : -ENOMEM;
        if (r == -ENOENT)
            fprintf(stderr, "tunad: %s:%d: unknown option '%s'\n", path, n,
                    key);
        else if (r < 0)
            fprintf(stderr, "tunad: %s:%d: bad value '%s' for %s\n", path, n,
                    val, key);
        bad += r < 0;
    }
    fclose(f);
    return bad ? -EINVAL : 0;
}

static int load_env(srv_config *c)
{
    int bad = 0;
    for (int i = 0; srv_config_options[i].name; i++) {
        char env[96];
        srv_config_env_name(srv_config_options[i].name, env, sizeof env);
        const char *v = getenv(env);
        if (!v)
            continue;
        char *o = malloc(strlen(env) + 5);
        if (o)
            sprintf(o, "env %s", env);
        if (!o || apply(c, srv_config_options[i].name, v, o) < 0) {
            fprintf(stderr, "tunad: bad value '%s' in %s\n", v, env);
            bad++;
        }
    }
    return bad ? -EINVAL : 0;
}

/* --config F (or --config=F) from the command line, else NULL. */
static const char *config_flag(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], "--config=", 9))
            return argv[i] + 9;
    }
    return NULL;
}

#define DEFAULT_CONFIG_FILE "/etc/tuna/tunad.conf"

int srv_config_parse_serve(srv_config *c, int argc, char **argv)
{
    const char *file = config_flag(argc, argv);
    bool must = file != NULL;
    if (!file && (file = getenv("TUNA_CONFIG")) && *file)
        must = true;
    if (!file || !*file)
        file = DEFAULT_CONFIG_FILE;
    if (load_file(c, file, must) < 0 || load_env(c) < 0)
        return -EINVAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            srv_usage_serve(stdout);
            return 1;
        }
        if (!strcmp(a, "-v"))
            a = "--verbose";
        if (!strcmp(a, "--insecure"))
            a = "--allow-public";
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
        if (!strcmp(name, "config")) {
            i += !eq;
            continue;
        }
        int oi = option_index(name);
        if (oi < 0 || !known_flag(name)) {
            fprintf(stderr, "tunad serve: unknown option --%s (see --help)\n",
                    name);
            return -EINVAL;
        }
        if (eq) {
            val = eq + 1;
        } else if (srv_config_options[oi].is_bool) {
            val = "true";
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "tunad serve: --%s needs a value\n", name);
            return -EINVAL;
        }
        if (apply(c, name, val, "flag") < 0) {
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

/* Options whose values config check must not print. */
static bool is_secret(const char *name)
{
    return !strcmp(name, "webhook-secret");
}

void srv_config_print(const srv_config *c, FILE *f)
{
    if (c->config_path)
        fprintf(f, "# config file: %s\n", c->config_path);
    else
        fprintf(f, "# config file: none (%s absent)\n", DEFAULT_CONFIG_FILE);
    for (int i = 0; srv_config_options[i].name && i < SRV_MAX_OPTIONS; i++) {
        const srv_option *o = &srv_config_options[i];
        char key[64], val[1100];
        snprintf(key, sizeof key, "%s", o->name);
        for (char *p = key; *p; p++)
            if (*p == '-')
                *p = '_';
        if (!strcmp(o->name, "workers"))
            snprintf(val, sizeof val, "%d", c->workers);
        else if (!strcmp(o->name, "threads"))
            snprintf(val, sizeof val, "%d", c->threads);
        else if (!strcmp(o->name, "embedded-dir"))
            snprintf(val, sizeof val, "%s", c->embedded_dir);
        else if (is_secret(o->name) && c->text[i])
            snprintf(val, sizeof val, "%s", "(set)");
        else
            snprintf(val, sizeof val, "%s", c->text[i] ? c->text[i] : o->def);
        fprintf(f, "%-20s = %-24s # %s\n", key, val,
                c->origin[i] ? c->origin[i] : "default");
    }
}

static int check_readable(const char *what, const char *path, FILE *f)
{
    if (!path || access(path, R_OK) == 0)
        return 0;
    fprintf(f, "error: %s %s is not readable: %s\n", what, path,
            strerror(errno));
    return 1;
}

int srv_config_validate(const srv_config *c, FILE *f)
{
    int bad = 0;
    if (!c->tls_cert != !c->tls_key) {
        fprintf(f, "error: tls_cert and tls_key go together\n");
        bad++;
    }
    bad += check_readable("tls_cert", c->tls_cert, f);
    bad += check_readable("tls_key", c->tls_key, f);
    bad += check_readable("models_dir", c->models_dir, f);
    bad += check_readable("embedded_dir", c->embedded_dir, f);
    return bad;
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
    if (c->gen_threads_opt > 0)
        c->gen_threads = c->gen_threads_opt;
    c->threads = threads;
    if (!c->embedded_dir)
        c->embedded_dir = srv_config_default_embedded_dir();
}
