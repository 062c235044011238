/* SPDX-License-Identifier: MIT */
/*
 * log.h - the daemon's only logger. Lines go to stderr as
 * "2024-05-01T12:00:00.123Z level message"; a JSON format can be added behind
 * srv_log_set_json() without touching callers. Thread-safe (one write(2) per
 * line, so lines never interleave).
 */
#ifndef TUNA_SRV_LOG_H
#define TUNA_SRV_LOG_H

#include <stdarg.h>
#include <stdbool.h>

typedef enum {
    SRV_LOG_DEBUG = 0,
    SRV_LOG_INFO = 1,
    SRV_LOG_WARN = 2,
    SRV_LOG_ERROR = 3,
} srv_log_level;

/* Lines below level are dropped (default SRV_LOG_INFO). Call from main()
 * before any thread starts. */
void srv_log_set_level(srv_log_level level);
/* One JSON object per line instead of plain text. */
void srv_log_set_json(bool json);

void srv_log(srv_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void srv_logv(srv_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* One access line per answered request. In JSON each field is a member
 * (request_id, method, path, route, status, duration_ms, key); in text
 * they follow the message. Strings may be NULL. */
typedef struct srv_access {
    const char *request_id;
    const char *method;
    const char *path;
    const char *route;
    int status;
    double ms;
    const char *key_id;
    const char *note;          /* e.g. "body too large", or NULL */
} srv_access;

void srv_log_access(const srv_access *a);

#define srv_debug(...) srv_log(SRV_LOG_DEBUG, __VA_ARGS__)
#define srv_info(...) srv_log(SRV_LOG_INFO, __VA_ARGS__)
#define srv_warn(...) srv_log(SRV_LOG_WARN, __VA_ARGS__)
#define srv_error(...) srv_log(SRV_LOG_ERROR, __VA_ARGS__)

#endif
