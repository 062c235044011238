/* SPDX-License-Identifier: MIT */
/*
 * webhooks.h - the thread that delivers job webhooks (see webhooks.c).
 */
#ifndef TUNA_SRV_WEBHOOKS_H
#define TUNA_SRV_WEBHOOKS_H

#include "api/api.h"

#include <stddef.h>
#include <stdint.h>

typedef struct srv_webhooks srv_webhooks;

typedef struct srv_webhooks_params {
    const char *db_path;       /* the thread opens its own store handle */
    const char *secret;        /* server-wide HMAC key, may be NULL */
    api_ctx *api;              /* renders job objects (borrowed) */
} srv_webhooks_params;

/* Opens the handle and starts the thread. */
int srv_webhooks_start(const srv_webhooks_params *p, srv_webhooks **ret,
                       char *err, size_t errlen);
/* Wakes the thread to look for due deliveries (a job just ended). */
void srv_webhooks_notify(void *w);
/* Stops the thread (an attempt in flight is abandoned and retried at the
 * next start) and frees everything. NULL is fine. */
void srv_webhooks_free(srv_webhooks *w);

/* The Tuna-Signature value for body at time t: "t=<t>,v1=<hex HMAC-SHA256
 * of "<t>.<body>" keyed with secret>". */
int srv_webhook_sign(const char *secret, int64_t t, const char *body,
                     char *ret_header, size_t len);

#endif
