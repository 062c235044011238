/* SPDX-License-Identifier: MIT */
/*
 * config.h - tunad's settings, parsed once in main() from the command line
 * (a config file and environment variables can later fill the same struct
 * before the flags). Read-only once the daemon runs.
 */
#ifndef TUNA_SRV_CONFIG_H
#define TUNA_SRV_CONFIG_H

#include "api/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SRV_MAX_OPTIONS 96

typedef struct srv_config {
    const char *host;          /* default 127.0.0.1 */
    int port;                  /* default 8080; 0 picks a free port */
    const char *data_dir;      /* default ./tuna-data */
    const char *models_dir;    /* extra base models, may be NULL */
    const char *embedded_dir;  /* the embedded stories260K folder */
    const char *cors_origins;  /* "*" or a comma-separated list */
    const char *webhook_secret; /* job webhooks' default HMAC key, or NULL */
    int workers;               /* training workers; 0 = sized to the machine */
    int threads;               /* compute threads in all; 0 = cores */
    int max_connections;       /* concurrent HTTP connections */
    int connection_timeout;    /* idle seconds before a connection closes */
    bool json_logs;
    bool verbose;
    const char *tls_cert;      /* PEM files: serve HTTPS (both or neither) */
    const char *tls_key;
    bool allow_public;         /* listen beyond loopback with no API key */
    const char *config_path;   /* the config file read, or NULL */
    /* Where each option's value came from (srv_config_options order):
     * NULL = built-in default, else "file F:N", "env NAME" or "flag";
     * and the text it was given. */
    const char *origin[SRV_MAX_OPTIONS];
    const char *text[SRV_MAX_OPTIONS];
    api_limits limits;
    api_serve_limits serve;    /* generation admission */
    int gen_threads_opt;       /* --gen-threads; 0 = derived */
    size_t adapter_cache_bytes; /* resident adapters' budget (LRU) */
    const char *lora_dirs;     /* extra folders load_lora_adapter may read */
    int train_yield_ms;        /* longest a training step waits for requests */
    int weights;               /* API_WEIGHTS_*: where loaded bases live */
    /* derived by srv_config_finish() */
    int train_threads;         /* engine threads of each training worker */
    int gen_threads;           /* engine threads of each /generate request */
} srv_config;

void srv_config_default(srv_config *c);

/* Parses `tunad serve` settings (argv[0] is "serve"): the config file
 * (--config F, else $TUNA_CONFIG, else /etc/tuna/tunad.conf if it exists),
 * then TUNA_* environment variables, then the flags; later ones win.
 * Returns 0, 1 when help was printed (exit 0), or -EINVAL after printing
 * the problem to stderr. */
int srv_config_parse_serve(srv_config *c, int argc, char **argv);

/* The options, in table order: name (flag without "--", config key with
 * '_' or '-'), whether it is a switch, its default as text, and the
 * environment variable ("TUNA_" + upper-case name). NULL name ends it. */
typedef struct srv_option {
    const char *name;
    bool is_bool;
    const char *def;
} srv_option;
extern const srv_option srv_config_options[];
/* The option's environment variable name into buf. */
void srv_config_env_name(const char *name, char *buf, size_t len);
/* Prints every option as "name = value  # origin" (tunad config check);
 * a secret's value shows as "(set)". */
void srv_config_print(const srv_config *c, FILE *f);
/* Checks what parsing cannot (files readable, TLS pair); prints each
 * problem to f. Returns the number of problems. */
int srv_config_validate(const srv_config *c, FILE *f);

/* Fills the derived fields (worker count and thread split) from the cores
 * the process may use. */
void srv_config_finish(srv_config *c);

/* The embedded model folder to use when --embedded-dir is not given: the
 * source tree's, then the installed one. */
const char *srv_config_default_embedded_dir(void);

void srv_usage_main(FILE *f);
void srv_usage_serve(FILE *f);

#endif
