/* SPDX-License-Identifier: MIT */
/* The HTTP layer: one libcurl easy handle per request, the bearer key, a
 * body from memory or a file, answers collected in memory or parsed as
 * server-sent events, and the server's errors printed for people. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "tuna.h"

void http_resp_free(http_resp *r)
{
    free(r->body);
    cJSON_Delete(r->json);
    r->body = NULL;
    r->len = 0;
    r->json = NULL;
}

char *url_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (!e)
        return NULL;
    char *out = strdup(e);
    curl_free(e);
    return out;
}

static int append(http_resp *r, const char *p, size_t n)
{
    char *b = realloc(r->body, r->len + n + 1);
    if (!b)
        return -1;
    memcpy(b + r->len, p, n);
    r->len += n;
    b[r->len] = '\0';
    r->body = b;
    return 0;
}

/* ------------------------------------------------------------ transfer */

typedef struct {
    CURL *curl;
    http_resp *r;
    /* streams */
    bool stream;
    int mode;  /* 0 unknown yet, 1 events, 2 collect the body */
    sse_parser sse;
    sse_cb cb;
    void *ctx;
    int stopped; /* cb asked to stop */
} transfer;

static size_t on_data(char *p, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    size_t n = size * nmemb;
    if (t->stream && t->mode == 0) {
        long status = 0;
        const char *ct = NULL;
        curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(t->curl, CURLINFO_CONTENT_TYPE, &ct);
        t->mode = status >= 200 && status < 300 && ct &&
                          !strncasecmp(ct, "text/event-stream", 17)
                      ? 1
                      : 2;
    }
    if (t->stream && t->mode == 1) {
        int rc = sse_feed(&t->sse, p, n, t->cb, t->ctx);
        if (rc) {
            t->stopped = rc;
            return 0; /* aborts the transfer */
        }
        return n;
    }
    return append(t->r, p, n) < 0 ? 0 : n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *user)
{
    FILE *f = user;
    size_t n = fread(buf, 1, size * nmemb, f);
    if (n == 0 && ferror(f))
        return CURL_READFUNC_ABORT;
    return n;
}

static struct curl_slist *add_header(struct curl_slist *h, const char *fmt,
                                     ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct curl_slist *n = curl_slist_append(h, line);
    return n ? n : h;
}

static int perform(const tuna_opts *o, const char *method, const char *path,
                   const http_body *body, const char *last_event_id,
                   transfer *t)
{
    http_resp *r = t->r;
    memset(r, 0, sizeof *r);
    char errbuf[CURL_ERROR_SIZE] = "";
    FILE *file = NULL;
    struct curl_slist *h = NULL;
    int rc = HTTP_TRANSPORT;

    size_t ulen = strlen(o->url) + strlen(path) + 1;
    char *url = malloc(ulen);
    CURL *c = curl_easy_init();
    t->curl = c;
    if (!url || !c) {
        snprintf(r->error, sizeof r->error, "out of memory");
        goto out;
    }
    snprintf(url, ulen, "%s%s", o->url, path);

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tuna/" TUNA_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* An upload goes at once: no 100-continue round trip. */
    h = add_header(h, "Expect:");
    if (o->api_key && *o->api_key)
        h = add_header(h, "Authorization: Bearer %s", o->api_key);
    if (t->stream) {
        h = add_header(h, "Accept: text/event-stream");
        if (last_event_id && *last_event_id)
            h = add_header(h, "Last-Event-ID: %s", last_event_id);
        /* The server sends a keepalive every 15 s: a minute of silence
         * means the connection is gone. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    } else {
        h = add_header(h, "Accept: application/json");
    }

    if (body) {
        /* No content type: none, rather than curl's form encoding. */
        h = add_header(h, "Content-Type:%s%s", body->content_type ? " " : "",
                       body->content_type ? body->content_type : "");
        if (body->file) {
            file = fopen(body->file, "rb");
            struct stat st;
            if (!file || fstat(fileno(file), &st) < 0) {
                snprintf(r->error, sizeof r->error, "%s: %s", body->file,
                         strerror(errno));
                rc = HTTP_LOCAL;
                goto out;
            }
            if (!S_ISREG(st.st_mode)) {
                snprintf(r->error, sizeof r->error, "%s: not a file",
                         body->file);
                rc = HTTP_LOCAL;
                goto out;
            }
            curl_easy_setopt(c, CURLOPT_POST, 1L);
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, file);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)st.st_size);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data ? body->data
                                                               : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)body->len);
        }
    }
    if (strcmp(method, body ? "POST" : "GET"))
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);

    CURLcode e = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (t->stopped > 0) {
        rc = HTTP_OK; /* the callback had what it wanted */
        goto out;
    }
    if (t->stopped < 0) {
        snprintf(r->error, sizeof r->error, "out of memory");
        goto out;
    }
    if (e != CURLE_OK) {
        snprintf(r->error, sizeof r->error, "%s",
                 errbuf[0] ? errbuf : curl_easy_strerror(e));
        goto out;
    }
    if (r->body && r->len)
        r->json = cJSON_ParseWithLength(r->body, r->len);
    rc = r->status >= 200 && r->status < 300 ? HTTP_OK : HTTP_STATUS;
out:
    if (file)
        fclose(file);
    curl_slist_free_all(h);
    if (c)
        curl_easy_cleanup(c);
    free(url);
    return rc;
}

int http_request(const tuna_opts *o, const char *method, const char *path,
                 const http_body *body, http_resp *r)
{
    transfer t = {.r = r};
    return perform(o, method, path, body, NULL, &t);
}

int http_stream(const tuna_opts *o, const char *method, const char *path,
                const http_body *body, const char *last_event_id,
                sse_cb cb, void *ctx, long *retry_ms, http_resp *r)
{
    transfer t = {.r = r, .stream = true, .cb = cb, .ctx = ctx};
    sse_init(&t.sse);
    int rc = perform(o, method, path, body, last_event_id, &t);
    if (retry_ms && t.sse.retry_ms >= 0)
        *retry_ms = t.sse.retry_ms;
    sse_free(&t.sse);
    return rc;
}

/* -------------------------------------------------------------- errors */

void report_failure(const tuna_opts *o, int rc, const http_resp *r)
{
    if (rc == HTTP_LOCAL) {
        fprintf(stderr, "tuna: %s\n", r->error);
        return;
    }
    if (rc == HTTP_TRANSPORT) {
        fprintf(stderr, "tuna: cannot reach tunad at %s: %s\n", o->url,
                r->error[0] ? r->error : "no answer");
        if (r->status == 0)
            fprintf(stderr, "  (is tunad running? set TUNA_URL or --url)\n");
        return;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const char *msg = jstr(err, "message", NULL);
    if (!msg) {
        /* Not the API's error shape: say what came back. */
        fprintf(stderr, "tuna: HTTP %ld from %s", r->status, o->url);
        if (r->body && r->len)
            fprintf(stderr, ": %.*s", (int)(r->len > 300 ? 300 : r->len),
                    r->body);
        fputc('\n', stderr);
    } else {
        fprintf(stderr, "tuna: %s\n", msg);
        const char *code = jstr(err, "code", NULL);
        const char *field = jstr(err, "field", NULL);
        if (!field)
            field = jstr(err, "param", NULL); /* the OpenAI shape */
        char details[512] = "";
        int n = 0;
        if (r->status)
            n += snprintf(details + n, sizeof details - (size_t)n,
                          "HTTP %ld", r->status);
        if (code)
            n += snprintf(details + n, sizeof details - (size_t)n, "%s%s",
                          n ? " " : "", code);
        if (jhas_num(err, "line"))
            n += snprintf(details + n, sizeof details - (size_t)n,
                          "%sline %.0f", n ? ", " : "", jnum(err, "line", 0));
        if (field)
            snprintf(details + n, sizeof details - (size_t)n, "%sfield %s",
                     n ? ", " : "", field);
        if (details[0])
            fprintf(stderr, "  (%s)\n", details);
    }
    if (o->json && r->json)
        print_body(r);
}

int api_call(const tuna_opts *o, const char *method, const char *path,
             const http_body *body, http_resp *r)
{
    int rc = http_request(o, method, path, body, r);
    if (rc == HTTP_OK && !r->json) {
        rc = HTTP_STATUS; /* 2xx but not JSON: not tunad? */
    }
    if (rc != HTTP_OK) {
        report_failure(o, rc, r);
        http_resp_free(r);
        return -1;
    }
    return 0;
}

int api_get(const tuna_opts *o, const char *path, char *q, http_resp *r)
{
    size_t n = strlen(path) + (q ? strlen(q) : 0) + 1;
    char *full = malloc(n);
    if (!full) {
        free(q);
        return -1;
    }
    snprintf(full, n, "%s%s", path, q ? q : "");
    free(q);
    int rc = api_call(o, "GET", full, NULL, r);
    free(full);
    return rc;
}
