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

typedef struct srv_config {
    const char *host;          /* default 127.0.0.1 */
    int port;                  /* default 8080; 0 picks a free port */
    const char *data_dir;      /* default ./tuna-data */
    const char *models_dir;    /* extra base models, may be NULL */
    const char *embedded_dir;  /* the embedded stories260K folder */
    const char *cors_origins;  /* "*" or a comma-separated list */
    int workers;               /* training workers; 0 = sized to the machine */
    int threads;               /* compute threads in all; 0 = cores */
    const char *webhook_secret; /* job webhooks' default HMAC key, or NULL */
    int max_connections;       /* concurrent HTTP connections */
    int connection_timeout;    /* idle seconds before a connection closes */
    bool json_logs;
    bool verbose;
    api_limits limits;
    api_serve_limits serve;    /* generation admission */
    /* derived by srv_config_finish() */
    int train_threads;         /* engine threads of each training worker */
    int gen_threads;           /* engine threads of each /generate request */
} srv_config;

void srv_config_default(srv_config *c);

/* Parses `tunad serve` flags (argv[0] is "serve"). Returns 0, 1 when help
 * was printed (exit 0), or -EINVAL after printing the problem to stderr. */
int srv_config_parse_serve(srv_config *c, int argc, char **argv);

/* Fills the derived fields (worker count and thread split) from the cores
 * the process may use. */
void srv_config_finish(srv_config *c);

/* The embedded model folder to use when --embedded-dir is not given: the
 * source tree's, then the installed one. */
const char *srv_config_default_embedded_dir(void);

void srv_usage_main(FILE *f);
void srv_usage_serve(FILE *f);

#endif
