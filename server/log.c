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

    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t t = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + t, sizeof ts - t, ".%03ldZ", now.tv_nsec / 1000000L);

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
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
