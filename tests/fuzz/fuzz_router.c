/* SPDX-License-Identifier: MIT */
/*
 * fuzz_router.c - HTTP routing and query strings: api_dispatch() over a
 * temporary data dir and store, with the request taken from the input.
 *
 * The input reads like an HTTP/1.1 request, so seeds are easy to write:
 *
 *     METHOD SP PATH[?QUERY] LF
 *     Name: value LF            (Content-Type, Accept, Authorization,
 *     ...                        Idempotency-Key, Last-Event-ID, Origin,
 *     LF                         X-Body-File: 1, X-Too-Large: 1)
 *     BODY
 *
 * (a trailing CR on a line is dropped). "X-Body-File: 1" hands the body to
 * the api as a streamed upload file instead of memory; "X-Too-Large: 1" sets
 * body_too_large as the server does past max_body_bytes.
 *
 * Checks: every answer keeps the response invariants of fz_check_response()
 * (status range, JSON body, error shape, no CR/LF in header values); and the
 * query string round-trips: the pairs api_query_next() decodes, percent-
 * encoded again and re-parsed, decode to the same pairs (systemd style).
 */
#include "tests/fuzz/fuzz_api.h"

#include "api/api-impl.h"

#include <ctype.h>
#include <stdbool.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* Query round-trip                                                          */

static size_t pct_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (o + 4 >= cap)
            break;
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return o;
}

#define QMAX 64
typedef struct qpair {
    char name[64];
    char value[1024];
} qpair;

static int query_pairs(const char *q, qpair *out, int max)
{
    size_t pos = 0;
    int n = 0;
    qpair tmp;
    while (n < max && api_query_next(q, &pos, tmp.name, sizeof(tmp.name),
                                     tmp.value, sizeof(tmp.value)))
        out[n++] = tmp;
    return n;
}

static void query_roundtrip(const char *q)
{
    static qpair a[QMAX], b[QMAX];
    int na = query_pairs(q, a, QMAX);
    size_t cap = (size_t)na * (3 * (sizeof(a[0].name) + sizeof(a[0].value)) +
                               2) + 1;
    char *re = malloc(cap), *p = re;
    if (!re)
        return;
    *p = '\0';
    for (int i = 0; i < na; i++) {
        if (i)
            *p++ = '&';
        p += pct_encode(a[i].name, p, cap - (size_t)(p - re));
        *p++ = '=';
        p += pct_encode(a[i].value, p, cap - (size_t)(p - re));
        *p = '\0';
    }
    int nb = query_pairs(re, b, QMAX);
    FZ_ASSERT(na == nb);
    for (int i = 0; i < na; i++) {
        FZ_ASSERT(strcmp(a[i].name, b[i].name) == 0);
        FZ_ASSERT(strcmp(a[i].value, b[i].value) == 0);
    }
    free(re);
}

/* ------------------------------------------------------------------------ */
/* Request from the input                                                    */

/* Next line of [*p, end): NUL-terminates it in place (dropping a CR). */
static char *next_line(char **p, char *end)
{
    if (*p >= end)
        return NULL;
    char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
    char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (e > s && e[-1] == '\r')
        e--;
    *e = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return 0;
    char *buf = malloc(size + 1), *p = buf, *end = buf + size;
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    api_request req = { 0 };
    char *line = next_line(&p, end);
    if (!line) {
        free(buf);
        return 0;
    }
    char *target = strchr(line, ' ');
    if (target)
        *target++ = '\0';
    req.method = line;
    req.path = target ? target : "/";
    char *q = target ? strchr(target, '?') : NULL;
    if (q) {
        *q++ = '\0';
        req.query = q;
    }
    bool body_file = false;
    while ((line = next_line(&p, end)) && *line) {
        char *v = strchr(line, ':');
        if (!v)
            continue;
        *v++ = '\0';
        while (*v == ' ')
            v++;
        if (!strcasecmp(line, "Content-Type"))
            req.content_type = v;
        else if (!strcasecmp(line, "Accept"))
            req.accept = v;
        else if (!strcasecmp(line, "Authorization"))
            req.authorization = v;
        else if (!strcasecmp(line, "Idempotency-Key"))
            req.idempotency_key = v;
        else if (!strcasecmp(line, "Last-Event-ID"))
            req.last_event_id = v;
        else if (!strcasecmp(line, "Origin"))
            req.origin = v;
        else if (!strcasecmp(line, "X-Body-File"))
            body_file = *v == '1';
        else if (!strcasecmp(line, "X-Too-Large"))
            req.body_too_large = *v == '1';
    }
    char path[512];
    size_t blen = (size_t)(end - p);
    if (body_file) {
        fz_write_file("body", p, blen, path, sizeof(path));
        req.body_file = path;
    } else if (blen) {
        req.body = p;
        req.body_len = blen;
    }

    if (req.query)
        query_roundtrip(req.query);

    api_ctx *ctx = fz_env_get();
    api_response res = { 0 };
    api_dispatch(ctx, &req, &res);
    fz_check_response(&res);
    api_response_done(&res);
    free(buf);
    return 0;
}
