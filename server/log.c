/* SPDX-License-Identifier: MIT */
/*
 * log.c - timestamped log lines on stderr. Each line is formatted into a
 * stack buffer and written with a single write(2), which keeps lines from
 * different threads whole without a lock.
 */
#include "server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static srv_log_level log_level = SRV_LOG_INFO;
static bool log_json;

void srv_log_set_level(srv_log_level level) { log_level = level; }
void srv_log_set_json(bool json) { log_json = json; }

static const char *level_name(srv_log_level l)
{
    switch (l) {
    case SRV_LOG_DEBUG: return "debug";
    case SRV_LOG_INFO: return "info";
    case SRV_LOG_WARN: return "warn";
    default: return "error";
    }
}

/* Appends msg to buf as the inside of a JSON string. */
static size_t json_escape(char *buf, size_t cap, const char *msg)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (n + 7 >= cap)
            break;
        if (*p == '"' || *p == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)*p;
        } else if (*p < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", *p);
        } else {
            buf[n++] = (char)*p;
        }
    }
    buf[n] = 0;
    return n;
}

static void timestamp(char *ts, size_t len)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t t = strftime(ts, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + t, len - t, ".%03ldZ", now.tv_nsec / 1000000L);
}

/* Copies s with control characters as '?' (text lines stay one line). */
static void clean(char *buf, size_t len, const char *s)
{
    snprintf(buf, len, "%s", s ? s : "");
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/* Writes line (snprintf said n of cap) in one write(2), cut to one line
 * when it did not fit. */
static void emit(char *line, size_t cap, int n)
{
    if (n < 0)
        return;
    if ((size_t)n >= cap) {
        n = (int)cap - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void srv_log_access(const srv_access *a)
{
    srv_log_level level = a->status >= 500 ? SRV_LOG_WARN : SRV_LOG_INFO;
    if (level < log_level)
        return;
    char ts[40], path[1024], line[4400];
    timestamp(ts, sizeof ts);
    clean(path, sizeof path, a->path);
    int n;
    if (log_json) {
        char epath[2100], eid[200], msg[1200], emeth[120];
        json_escape(emeth, sizeof emeth, a->method);
        snprintf(msg, sizeof msg, "%s %s %d", a->method, path, a->status);
        char emsg[2500];
        json_escape(emsg, sizeof emsg, msg);
        json_escape(epath, sizeof epath, path);
        json_escape(eid, sizeof eid, a->request_id ? a->request_id : "");
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\","
                     "\"type\":\"access\",\"request_id\":\"%s\","
                     "\"method\":\"%s\",\"path\":\"%s\",\"route\":%s%s%s,"
                     "\"status\":%d,\"duration_ms\":%.3f,\"key\":%s%s%s%s%s%s}\n",
                     ts, level_name(level), emsg, eid, emeth, epath,
                     a->route ? "\"" : "", a->route ? a->route : "null",
                     a->route ? "\"" : "", a->status, a->ms,
                     a->key_id && *a->key_id ? "\"" : "",
                     a->key_id && *a->key_id ? a->key_id : "null",
                     a->key_id && *a->key_id ? "\"" : "",
                     a->note ? ",\"note\":\"" : "", a->note ? a->note : "",
                     a->note ? "\"" : "");
    } else {
        n = snprintf(line, sizeof line, "%s %-5s %s %s %d %.1fms rid=%s%s%s%s%s\n",
                     ts, level_name(level), a->method, path, a->status, a->ms,
                     a->request_id ? a->request_id : "-",
                     a->key_id && *a->key_id ? " key=" : "",
                     a->key_id && *a->key_id ? a->key_id : "",
                     a->note ? " " : "", a->note ? a->note : "");
    }
    emit(line, sizeof line, n);
}

void srv_log(srv_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    srv_logv(level, fmt, ap);
    va_end(ap);
}

void srv_logv(srv_log_level level, const char *fmt, va_list ap)
{
    if (level < log_level)
        return;
    char msg[2048], line[4400], ts[40];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* Messages from libraries may end in a newline of their own. */
    size_t ml = strlen(msg);
    while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == '\r'))
        msg[--ml] = 0;
    /* Request paths and engine messages are outside input: one event is one
     * line, whatever they hold. */
    for (size_t i = 0; i < ml; i++)
        if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
            msg[i] = '?';

    timestamp(ts, sizeof ts);

    int n;
    if (log_json) {
        char esc[4200];
        json_escape(esc, sizeof esc, msg);
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n",
                     ts, level_name(level), esc);
    } else {
        n = snprintf(line, sizeof line, "%s %-5s %s\n", ts, level_name(level),
                     msg);
    }
    emit(line, sizeof line, n);
}
