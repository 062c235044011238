/* SPDX-License-Identifier: MIT */
/* An incremental text/event-stream parser, as the HTML standard describes
 * it: lines end in \n, \r\n or \r; "field: value" (one optional space after
 * the colon); lines starting with ':' are comments; a blank line dispatches
 * the event when it has data. The id persists from event to event. */
#include <stdlib.h>
#include <string.h>

#include "tuna.h"

void sse_init(sse_parser *p)
{
    memset(p, 0, sizeof *p);
    p->retry_ms = -1;
}

void sse_free(sse_parser *p)
{
    free(p->line);
    free(p->data);
    sse_init(p);
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

static int dispatch(sse_parser *p, sse_cb cb, void *ctx)
{
    int rc = 0;
    if (p->has_data) {
        if (p->data_len && p->data[p->data_len - 1] == '\n')
            p->data_len--;
        p->data[p->data_len] = '\0';
        sse_event ev = {
            .event = p->event[0] ? p->event : "message",
            .data = p->data,
            .id = p->id,
        };
        rc = cb(ctx, &ev);
    }
    p->data_len = 0;
    p->has_data = false;
    p->event[0] = '\0';
    return rc;
}

static void copy_field(char *dst, size_t n, const char *v, size_t len)
{
    if (len >= n)
        len = n - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* One complete line (without its end). */
static int line(sse_parser *p, sse_cb cb, void *ctx)
{
    const char *l = p->line;
    size_t n = p->line_len;
    if (n == 0)
        return dispatch(p, cb, ctx);
    if (l[0] == ':')
        return 0;
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = n - (size_t)(v - l);
    if (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (name_len == 4 && !memcmp(l, "data", 4)) {
        if (grow(&p->data, &p->data_cap, p->data_len + vlen + 2) < 0)
            return -1;
        memcpy(p->data + p->data_len, v, vlen);
        p->data_len += vlen;
        p->data[p->data_len++] = '\n';
        p->has_data = true;
    } else if (name_len == 5 && !memcmp(l, "event", 5)) {
        copy_field(p->event, sizeof p->event, v, vlen);
    } else if (name_len == 2 && !memcmp(l, "id", 2)) {
        if (!memchr(v, '\0', vlen))
            copy_field(p->id, sizeof p->id, v, vlen);
    } else if (name_len == 5 && !memcmp(l, "retry", 5)) {
        long ms = 0;
        size_t i;
        for (i = 0; i < vlen && v[i] >= '0' && v[i] <= '9' && ms < 1000000;
             i++)
            ms = ms * 10 + (v[i] - '0');
        if (vlen && i == vlen)
            p->retry_ms = ms;
    }
    return 0;
}

int sse_feed(sse_parser *p, const char *buf, size_t n, sse_cb cb, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == '\n' && p->after_cr) {
            p->after_cr = false;
            continue;
        }
        p->after_cr = c == '\r';
        if (c == '\n' || c == '\r') {
            int rc = line(p, cb, ctx);
            p->line_len = 0;
            if (rc)
                return rc;
            continue;
        }
        if (grow(&p->line, &p->line_cap, p->line_len + 1) < 0)
            return -1;
        p->line[p->line_len++] = c;
    }
    return 0;
}
