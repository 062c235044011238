/* SPDX-License-Identifier: MIT */
/*
 * events.c - a job's events as a Server-Sent Events stream:
 * GET /jobs/{id}/events?stream=true (or Accept: text/event-stream).
 *
 * Each stored event becomes one SSE message
 *
 *     id: <event seq>
 *     event: <type>              (status, step, message, checkpoint, ...)
 *     data: <the event object of the JSON list, on one line>
 *
 * The cursor is the event seq, which only grows (store/events.c), so a
 * client that reconnects with Last-Event-ID: <last id it saw> gets exactly
 * the events after it: nothing missed, nothing twice. Without the header,
 * ?after= sets the start (default 0: the whole history first).
 *
 * The stream is an api_stream polled by the server (server/http.c calls
 * read() and sleeps briefly while it returns 0). read() asks the store for
 * new events at most every SSE_POLL_S seconds; each store call takes the
 * handle's mutex only for its own query, so nothing is held while waiting.
 * With nothing to say for SSE_HEARTBEAT_S seconds it sends a comment line,
 * which keeps proxies from timing the connection out and lets the server
 * notice a client that went away (the write fails and the server calls
 * free()).
 *
 * The stream ends once the job has ended and its final status event was
 * sent. A job's status changes just before its status event is written, so
 * a job seen finished with no such event yet gets SSE_GRACE_S seconds for
 * it to appear (and a client that asks after the end with the last id gets
 * an empty stream that closes after that grace).
 */
#include "api/api-impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SSE_POLL_S 0.1
#define SSE_HEARTBEAT_S 15.0
#define SSE_GRACE_S 1.0
#define SSE_BATCH 100
/* Client reconnection delay suggested in the first message (ms). */
#define SSE_RETRY_MS 2000

typedef struct sse {
    store *db;                 /* borrowed: lives as long as the server */
    char job_id[64];
    int64_t cursor;            /* seq of the last event sent */
    char *buf;                 /* pending bytes: buf[off..len) */
    size_t len, off, cap;
    double last_poll, last_send, ended_at;
    bool done;
    bool sent_final;           /* the terminal status event went out */
} sse;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool status_is_final(const char *s)
{
    return s && (!strcmp(s, "succeeded") || !strcmp(s, "failed") ||
                 !strcmp(s, "cancelled"));
}

/* ------------------------------------------------------------------------ */
/* Event objects                                                             */

cJSON *api_event_json(const store_event *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)e->seq);
    cJSON_AddStringToObject(o, "object", "event");
    api_json_add_time(o, "created_at", e->created_at);
    cJSON_AddStringToObject(o, "level", e->level);
    cJSON_AddStringToObject(o, "type", e->type);
    cJSON_AddStringToObject(o, "message", e->message ? e->message : "");
    cJSON *d = e->data && *e->data ? cJSON_Parse(e->data) : NULL;
    if (d)
        cJSON_AddItemToObject(o, "data", d);
    else
        cJSON_AddNullToObject(o, "data");
    return o;
}

/* A status event that ends the job. */
static bool event_is_final(const store_event *e)
{
    if (strcmp(e->type, "status") != 0 || !e->data)
        return false;
    cJSON *d = cJSON_Parse(e->data);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "status");
    bool fin = cJSON_IsString(s) && status_is_final(s->valuestring);
    cJSON_Delete(d);
    return fin;
}

/* ------------------------------------------------------------------------ */
/* Buffer                                                                    */

static int sse_append(sse *s, const char *p, size_t n)
{
    if (s->off == s->len)
        s->off = s->len = 0;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b)
            return -ENOMEM;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

static int sse_appendf(sse *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int sse_appendf(sse *s, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -EINVAL;
    return sse_append(s, tmp, (size_t)n);
}

/* One SSE message. The type is a stored word (no newlines); the data is
 * unformatted JSON, whose strings escape their newlines. */
static int sse_add_event(sse *s, const store_event *e)
{
    cJSON *o = api_event_json(e);
    char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!txt)
        return -ENOMEM;
    int r = sse_appendf(s, "id: %lld\nevent: %s\ndata: ", (long long)e->seq,
                        e->type[0] && !strpbrk(e->type, "\r\n") ? e->type
                                                                : "message");
    if (r == 0)
        r = sse_append(s, txt, strlen(txt));
    if (r == 0)
        r = sse_append(s, "\n\n", 2);
    free(txt);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Polling                                                                   */

/* Reads new events into the buffer; decides when the stream is over. */
static void sse_poll(sse *s, double now)
{
    store_job j;
    int r = store_job_get(s->db, s->job_id, &j);
    if (r == -ENOENT) {            /* the job was deleted */
        s->done = true;
        return;
    }
    if (r < 0)
        return;                    /* try again at the next poll */
    /* Read the status before the events: an event written after this read
     * is picked up by the next poll, so the end is never declared early. */
    bool ended = status_is_final(j.status);
    store_job_done(&j);

    store_event *ev = NULL;
    int n = 0;
    if (store_event_list(s->db, s->job_id, s->cursor, SSE_BATCH, &ev, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        if (sse_add_event(s, &ev[i]) < 0)
            break;
        s->cursor = ev[i].seq;
        if (event_is_final(&ev[i]))
            s->sent_final = true;
    }
    store_event_list_free(ev, n);
    if (!ended || n == SSE_BATCH)
        return;
    if (s->ended_at == 0)
        s->ended_at = now;
    if (s->sent_final || now - s->ended_at >= SSE_GRACE_S)
        s->done = true;
}

static ssize_t sse_read(void *ctx, char *buf, size_t max)
{
    sse *s = ctx;
    double now = mono_s();
    if (s->off == s->len && !s->done && now - s->last_poll >= SSE_POLL_S) {
        s->last_poll = now;
        sse_poll(s, now);
        if (s->off == s->len && !s->done &&
            now - s->last_send >= SSE_HEARTBEAT_S)
            sse_append(s, ": keepalive\n\n", 13);
    }
    if (s->off < s->len) {
        size_t n = s->len - s->off < max ? s->len - s->off : max;
        memcpy(buf, s->buf + s->off, n);
        s->off += n;
        s->last_send = now;
        return (ssize_t)n;
    }
    return s->done ? -1 : 0;
}

static void sse_free(void *ctx)
{
    sse *s = ctx;
    if (!s)
        return;
    free(s->buf);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Handler side                                                              */

int api_events_want_stream(api_call *c, bool *ret)
{
    bool accept = c->req->accept && strstr(c->req->accept,
                                           "text/event-stream");
    return api_query_bool(c, "stream", accept, ret);
}

/* Last-Event-ID, else ?after=, else 0. -1 after a 400. */
static int start_cursor(api_call *c, int64_t *ret)
{
    const char *h = c->req->last_event_id;
    if (!h || !*h)
        return api_query_int(c, "after", 0, INT64_MAX / 2, 0, ret);
    char *end;
    errno = 0;
    long long v = strtoll(h, &end, 10);
    if (errno || end == h || *end || v < 0) {
        api_error(c->res, 400, "invalid_header",
                  "Last-Event-ID must be the id of an event (an integer >= 0)",
                  -1, "Last-Event-ID");
        return -1;
    }
    *ret = v;
    return 0;
}

void api_events_stream(api_call *c)
{
    int64_t cursor;
    if (start_cursor(c, &cursor) < 0)
        return;
    store_job j;
    int r = store_job_get(c->ctx->db, c->id, &j);
    if (r < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "no job with id '%s'", c->id);
        if (r == -ENOENT)
            api_error(c->res, 404, "not_found", msg, -1, "id");
        else
            api_reply_errno(c, r, "could not read the job");
        return;
    }
    store_job_done(&j);
    sse *s = calloc(1, sizeof(*s));
    if (!s || sse_appendf(s, "retry: %d\n\n", SSE_RETRY_MS) < 0) {
        sse_free(s);
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return;
    }
    s->db = c->ctx->db;
    snprintf(s->job_id, sizeof(s->job_id), "%s", c->id);
    s->cursor = cursor;
    s->last_send = mono_s();
    api_response *res = c->res;
    res->status = 200;
    res->content_type = "text/event-stream";
    res->stream = (api_stream){ .read = sse_read, .free = sse_free, .ctx = s };
    api_response_header(res, "Cache-Control", "no-cache");
    api_response_header(res, "X-Accel-Buffering", "no");
}
