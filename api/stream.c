/* SPDX-License-Identifier: MIT */
/*
 * stream.c - api_evstream: a byte pipe between a generation (the writer,
 * on a thread the server lent) and the server's connection thread (the
 * reader, through api_stream).
 *
 * One mutex and one condition variable guard a growable buffer. The reader
 * waits up to READ_WAIT_MS for bytes, so a token reaches the socket as soon
 * as it is written, and returns 0 ("nothing yet, call again") otherwise;
 * -1 after the writer closed and the buffer drained. The writer waits while
 * more than MAX_LAG bytes are unread, once a reader is attached. When the
 * reader frees its end (the response is destroyed: the client went away or
 * the server stops), the writer's next write fails with -EPIPE and
 * api_evstream_gone() says true, which the generation's abort hook polls.
 * Two references (writer, reader); the last unref frees.
 */
#include "api/serve.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LAG (64 * 1024)
#define READ_WAIT_MS 100

struct api_evstream {
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* CLOCK_MONOTONIC */
    char *buf;
    size_t off, len, cap;     /* unread bytes are buf[off, len) */
    bool attached, closed, gone;
    int refs;
};

api_evstream *api_evstream_new(void)
{
    api_evstream *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->refs = 2;
    return s;
}

void api_evstream_unref(api_evstream *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    int left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left > 0)
        return;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s);
}

static ssize_t ev_read(void *ctx, char *out, size_t max)
{
    api_evstream *s = ctx;
    struct timespec until;
    ssize_t n = 0;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += READ_WAIT_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (s->off == s->len && !s->closed)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
            break;
    if (s->off < s->len) {
        size_t k = s->len - s->off < max ? s->len - s->off : max;
        memcpy(out, s->buf + s->off, k);
        s->off += k;
        if (s->off == s->len)
            s->off = s->len = 0;
        n = (ssize_t)k;
        pthread_cond_broadcast(&s->cv); /* a writer may wait for room */
    } else if (s->closed) {
        n = -1;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void ev_free(void *ctx)
{
    api_evstream *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->gone = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    api_evstream_unref(s);
}

void api_evstream_attach(api_evstream *s, api_response *r)
{
    pthread_mutex_lock(&s->mu);
    s->attached = true;
    pthread_mutex_unlock(&s->mu);
    r->status = 200;
    r->content_type = "text/event-stream";
    r->stream.read = ev_read;
    r->stream.free = ev_free;
    r->stream.ctx = s;
    api_response_header(r, "Cache-Control", "no-cache");
    api_response_header(r, "X-Accel-Buffering", "no");
}

int api_evstream_write(api_evstream *s, const char *data, size_t len)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (s->attached && !s->gone && s->len - s->off > MAX_LAG)
        pthread_cond_wait(&s->cv, &s->mu);
    if (s->gone) {
        rc = -EPIPE;
        goto out;
    }
    if (s->off > 0) {
        memmove(s->buf, s->buf + s->off, s->len - s->off);
        s->len -= s->off;
        s->off = 0;
    }
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + len)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) {
            rc = -ENOMEM;
            goto out;
        }
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    pthread_cond_broadcast(&s->cv);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int api_evstream_printf(api_evstream *s, const char *fmt, ...)
{
    char small[512], *p = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= sizeof(small)) {
        if (!(p = malloc((size_t)n + 1)))
            return -ENOMEM;
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    int rc = api_evstream_write(s, p, (size_t)n);
    if (p != small)
        free(p);
    return rc;
}

void api_evstream_close(api_evstream *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

bool api_evstream_gone(api_evstream *s)
{
    pthread_mutex_lock(&s->mu);
    bool g = s->gone;
    pthread_mutex_unlock(&s->mu);
    return g;
}
