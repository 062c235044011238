/* SPDX-License-Identifier: MIT */
/*
 * multipart.c - streaming multipart/form-data (RFC 7578) part extraction.
 *
 * The body is read through a fixed window: the delimiter is "\r\n--" +
 * boundary (a virtual "\r\n" is put in front of the body so the first
 * boundary looks like the others). While looking for the next delimiter,
 * every byte that cannot be its start is flushed to the output (for the
 * wanted part) or dropped, so memory stays bounded whatever the part size.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MP_WINDOW (128 * 1024)
#define MP_MAX_HEADERS (16 * 1024)

typedef struct mp {
    FILE *in;
    char *buf;
    size_t len;
    bool eof;
    char delim[128];
    size_t dlen;
} mp;

static void mp_fill(mp *m)
{
    if (m->eof || m->len >= MP_WINDOW)
        return;
    size_t n = fread(m->buf + m->len, 1, MP_WINDOW - m->len, m->in);
    m->len += n;
    if (n == 0)
        m->eof = true;
}

static void mp_consume(mp *m, size_t n)
{
    memmove(m->buf, m->buf + n, m->len - n);
    m->len -= n;
}

/* Streams bytes up to the next delimiter into out (NULL: drop them) and
 * consumes the delimiter. -1 when the input ends first. */
static int mp_through_delim(mp *m, FILE *out)
{
    for (;;) {
        char *p = memmem(m->buf, m->len, m->delim, m->dlen);
        size_t keep = m->dlen - 1;
        size_t emit = p ? (size_t)(p - m->buf)
                        : (m->len > keep ? m->len - keep : 0);
        if (out && emit && fwrite(m->buf, 1, emit, out) != emit)
            return -1;
        mp_consume(m, emit);
        if (p) {
            mp_consume(m, m->dlen);
            return 0;
        }
        if (m->eof)
            return -1;
        mp_fill(m);
    }
}

/* After a delimiter: "--" ends the body (1), else the line end (0). */
static int mp_after_delim(mp *m)
{
    while (m->len < 2 && !m->eof)
        mp_fill(m);
    if (m->len >= 2 && memcmp(m->buf, "--", 2) == 0)
        return 1;
    size_t i = 0;
    while (i < m->len && (m->buf[i] == ' ' || m->buf[i] == '\t'))
        i++;
    if (i + 2 > m->len || memcmp(m->buf + i, "\r\n", 2) != 0)
        return -1;
    mp_consume(m, i + 2);
    return 0;
}

/* Reads the part headers; fills name and filename from
 * Content-Disposition. */
static int mp_headers(mp *m, char *name, size_t nlen, char *filename,
                      size_t fnlen)
{
    char *end;
    while (!(end = memmem(m->buf, m->len, "\r\n\r\n", 4))) {
        if (m->eof || m->len >= MP_MAX_HEADERS)
            return -1;
        mp_fill(m);
    }
    size_t hlen = (size_t)(end - m->buf) + 4;
    char *h = strndup(m->buf, hlen);
    if (!h)
        return -1;
    name[0] = '\0';
    for (char *line = strtok(h, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        if (strncasecmp(line, "Content-Disposition:", 20) != 0)
            continue;
        api_header_param(line, "name", name, nlen);
        if (filename)
            api_header_param(line, "filename", filename, fnlen);
    }
    free(h);
    mp_consume(m, hlen);
    return 0;
}

int api_multipart_extract(FILE *in, const char *boundary, const char *part,
                          FILE *out, char *filename, size_t fnlen, char *err,
                          size_t errlen)
{
    mp m = { .in = in };
    m.dlen = (size_t)snprintf(m.delim, sizeof(m.delim), "\r\n--%s", boundary);
    if (m.dlen >= sizeof(m.delim) || !*boundary) {
        snprintf(err, errlen, "the multipart boundary is empty or too long");
        return -EINVAL;
    }
    if (!(m.buf = malloc(MP_WINDOW))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(m.buf, "\r\n", 2);
    m.len = 2;
    mp_fill(&m);
    int r = -EINVAL, found = 0;
    snprintf(err, errlen, "the multipart body is malformed");
    if (mp_through_delim(&m, NULL) < 0)
        goto out;
    for (;;) {
        int end = mp_after_delim(&m);
        if (end != 0) {
            if (end == 1 && found)
                r = 0;
            else if (end == 1)
                snprintf(err, errlen, "the multipart body has no part named "
                         "\"%s\"", part);
            break;
        }
        char name[128], fn[256] = "";
        if (mp_headers(&m, name, sizeof(name), fn, sizeof(fn)) < 0)
            break;
        bool want = !found && strcmp(name, part) == 0;
        if (mp_through_delim(&m, want ? out : NULL) < 0)
            break;
        if (want) {
            found = 1;
            if (filename)
                snprintf(filename, fnlen, "%s", fn);
        }
    }
out:
    free(m.buf);
    return r;
}
