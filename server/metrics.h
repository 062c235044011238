/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - the server's own Prometheus families: HTTP requests by route
 * pattern, method and status, latency histograms by route, and process
 * memory. Thread-safe; one instance per daemon.
 */
#ifndef TUNA_SRV_METRICS_H
#define TUNA_SRV_METRICS_H

#include <stdio.h>

typedef struct srv_metrics srv_metrics;

int srv_metrics_new(srv_metrics **ret);
void srv_metrics_free(srv_metrics *m);   /* NULL is fine */
/* Counts one answered request. route is the matched pattern (a static
 * string) or NULL (no route: counted as "unmatched"). */
void srv_metrics_request(srv_metrics *m, const char *route,
                         const char *method, int status, double seconds);
/* Writes the families in Prometheus text format (api_ctx.metrics). */
void srv_metrics_write(void *m, FILE *out);

#endif
