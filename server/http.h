/* SPDX-License-Identifier: MIT */
/*
 * http.h - the HTTP front: a libmicrohttpd daemon that collects each request
 * into an api_request, calls api_dispatch() and sends the api_response back.
 */
#ifndef TUNA_SRV_HTTP_H
#define TUNA_SRV_HTTP_H

#include "api/api.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct srv_http srv_http;

/* Creates a listening TCP socket on host:port (port 0: any free port).
 * *ret_port gets the bound port, *ret_ipv6 the address family. On failure
 * err says why (e.g. the port is taken) and a negative errno is returned. */
int srv_http_listen(const char *host, int port, int *ret_fd, int *ret_port,
                    bool *ret_ipv6, char *err, size_t errlen);

typedef struct srv_http_params {
    int listen_fd;             /* from srv_http_listen; the daemon owns it */
    bool ipv6;
    api_ctx *ctx;              /* borrowed until srv_http_stop() */
    const char *tmp_dir;       /* uploads are streamed to files here */
    int max_connections;
    int connection_timeout;    /* seconds */
    /* HTTPS: PEM certificate (chain) and private key, both or neither;
     * borrowed until srv_http_stop(). */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    struct srv_metrics *metrics;   /* may be NULL */
} srv_http_params;

/* Whether this libmicrohttpd can serve TLS (built with GnuTLS). */
bool srv_http_tls_supported(void);

/* Starts serving (one thread per connection). */
int srv_http_start(const srv_http_params *p, srv_http **ret, char *err,
                   size_t errlen);
/* Stops accepting connections and ends open streams; requests in progress
 * finish. */
void srv_http_quiesce(srv_http *h);
/* Closes every connection, joins the threads and frees h. NULL is fine. */
void srv_http_stop(srv_http *h);

#endif
