/* SPDX-License-Identifier: MIT */
/*
 * http.c - libmicrohttpd glue.
 *
 * MHD runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a
 * handler that generates text or a stream that waits for training events
 * blocks only its own connection; the compute budget is held by the engine
 * thread settings, not by the number of connections.
 *
 * A request arrives in several calls of the access handler:
 *   1. headers only: the per-request state (created by the URI log callback,
 *      which also keeps the raw URI with its query string) decides where the
 *      body goes: uploads (POST /datasets, POST /jobs with a non-JSON body,
 *      /v1/files) are streamed to a temp file under <data_dir>/tmp, other
 *      bodies are kept in memory;
 *   2. zero or more body chunks: appended, counting bytes. Past
 *      max_body_bytes the body is dropped and the rest discarded, so the
 *      client, which is still sending, can read our 413 (a body larger still
 *      gets the 413 at once and the connection is closed);
 *   3. the last call: the api_request is dispatched and the api_response
 *      queued. Streamed responses (api_stream) become a content-reader
 *      callback that polls the stream.
 * MHD_OPTION_NOTIFY_COMPLETED frees the state and removes the temp file, the
 * one place where request memory is released.
 */
#include "server/http.h"

#include "server/log.h"
#include "server/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* How much of an oversized body is read (and dropped) before answering. */
#define DISCARD_CAP ((uint64_t)16 << 20)
/* How long a stream with nothing to send sleeps before polling again. */
#define STREAM_POLL_NS 20000000L

struct srv_http {
    struct MHD_Daemon *mhd;
    api_ctx *ctx;
    char *tmp_dir;
    atomic_bool stopping;
    srv_metrics *metrics;
    atomic_uint_fast64_t next_id;
};

typedef struct req_state {
    srv_http *http;
    char *raw_uri;
    bool started;
    bool to_file;
    bool too_large;
    bool answered;             /* a response is queued */
    char *mem;
    size_t mem_len, mem_cap;
    int fd;
    char *file;                /* temp file path, or NULL */
    uint64_t received;
    struct timespec t0;
    char request_id[72];
} req_state;

typedef struct stream_state {
    api_stream st;
    srv_http *http;
} stream_state;

/* ------------------------------------------------------------------------ */
/* Listening socket                                                          */

int srv_http_listen(const char *host, int port, int *ret_fd, int *ret_port,
                    bool *ret_ipv6, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    char service[16];
    int fd = -1, r, one = 1;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof service, "%d", port);
    r = getaddrinfo(host, service, &hints, &res);
    if (r != 0) {
        snprintf(err, errlen, "cannot resolve host '%s': %s", host,
                 gai_strerror(r));
        return -EINVAL;
    }
    r = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, 128) == 0) {
            *ret_ipv6 = ai->ai_family == AF_INET6;
            break;
        }
        r = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s%s", host, port,
                 strerror(-r),
                 r == -EADDRINUSE ? " (is another tunad running? pick "
                                    "another --port)" : "");
        return r;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        r = -errno;
        close(fd);
        snprintf(err, errlen, "getsockname: %s", strerror(-r));
        return r;
    }
    *ret_port = ss.ss_family == AF_INET6
                    ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *ret_fd = fd;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Request state                                                             */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    srv_http *h = cls;
    req_state *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->http = h;
    s->fd = -1;
    s->raw_uri = strdup(uri ? uri : "/");
    clock_gettime(CLOCK_MONOTONIC, &s->t0);
    return s;
}

static void drop_body(req_state *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->file) {
        unlink(s->file);
        free(s->file);
        s->file = NULL;
    }
    free(s->mem);
    s->mem = NULL;
    s->mem_len = s->mem_cap = 0;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_state *s = *req_cls;
    if (!s)
        return;
    drop_body(s);
    free(s->raw_uri);
    free(s);
    *req_cls = NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes a path in place. "%00" and malformed escapes stay as they
 * are, so the decoded path never holds a NUL that would cut it short. */
static void decode_path(char *p)
{
    char *o = p;
    for (char *i = p; *i; i++) {
        int hi, lo;
        if (*i == '%' && (hi = hexval(i[1])) >= 0 && (lo = hexval(i[2])) >= 0
            && (hi | lo)) {
            *o++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *o++ = *i;
        }
    }
    *o = 0;
}

static bool is_json_type(const char *ct)
{
    return ct && !strncasecmp(ct, "application/json", 16);
}

/* Uploads go to a file; everything else stays in memory. */
static bool is_upload(const char *method, const char *path, const char *ct)
{
    if (strcmp(method, "POST") && strcmp(method, "PUT"))
        return false;
    if (!strcmp(path, "/datasets") || !strcmp(path, "/v1/files"))
        return true;
    return !strcmp(path, "/jobs") && !is_json_type(ct);
}

static int body_open_file(req_state *s)
{
    size_t n = strlen(s->http->tmp_dir) + 32;
    s->file = malloc(n);
    if (!s->file)
        return -ENOMEM;
    snprintf(s->file, n, "%s/upload-XXXXXX", s->http->tmp_dir);
    s->fd = mkostemp(s->file, O_CLOEXEC);
    if (s->fd < 0) {
        int r = -errno;
        srv_error("cannot create upload file %s: %s", s->file, strerror(-r));
        free(s->file);
        s->file = NULL;
        return r;
    }
    return 0;
}

static int body_append(req_state *s, const char *data, size_t len)
{
    size_t max = s->http->ctx->limits.max_body_bytes;
    s->received += len;
    if (s->too_large)
        return 0;
    if (s->received > max) {
        s->too_large = true;
        drop_body(s);
        return 0;
    }
    if (s->to_file) {
        if (s->fd < 0 && body_open_file(s) < 0)
            return -EIO;
        while (len) {
            ssize_t w = write(s->fd, data, len);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                srv_error("writing upload %s: %s", s->file, strerror(errno));
                return -EIO;
            }
            data += w;
            len -= (size_t)w;
        }
        return 0;
    }
    if (s->mem_len + len + 1 > s->mem_cap) {
        size_t cap = s->mem_cap ? s->mem_cap : 4096;
        while (cap < s->mem_len + len + 1)
            cap *= 2;
        char *m = realloc(s->mem, cap);
        if (!m)
            return -ENOMEM;
        s->mem = m;
        s->mem_cap = cap;
    }
    memcpy(s->mem + s->mem_len, data, len);
    s->mem_len += len;
    s->mem[s->mem_len] = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                 */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_state *ss = cls;
    for (;;) {
        ssize_t n = ss->st.read(ss->st.ctx, buf, max);
        if (n > 0)
            return n;
        if (n < 0 || atomic_load(&ss->http->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        /* Thread per connection: waiting here holds only this client. */
        struct timespec ts = {0, STREAM_POLL_NS};
        nanosleep(&ts, NULL);
    }
}

static void stream_free(void *cls)
{
    stream_state *ss = cls;
    if (ss->st.free)
        ss->st.free(ss->st.ctx);
    free(ss);
}

static struct MHD_Response *make_response(srv_http *h, api_response *rs)
{
    struct MHD_Response *resp;
    if (rs->stream.read) {
        stream_state *ss = malloc(sizeof *ss);
        if (!ss)
            return NULL;
        ss->st = rs->stream;
        ss->http = h;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
                                                 stream_read, ss,
                                                 stream_free);
        if (!resp) {
            free(ss);
            return NULL;
        }
        memset(&rs->stream, 0, sizeof rs->stream);
    } else if (rs->body) {
        resp = MHD_create_response_from_buffer(rs->body_len, rs->body,
                                               MHD_RESPMEM_MUST_FREE);
        if (resp)
            rs->body = NULL;
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"",
                                               MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return NULL;
    if (rs->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                rs->content_type);
    for (int i = 0; i < rs->n_headers; i++)
        if (rs->header_names[i] && rs->header_values[i])
            MHD_add_response_header(resp, rs->header_names[i],
                                    rs->header_values[i]);
    return resp;
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* An incoming X-Request-Id is kept when it is 1-64 characters of
 * [A-Za-z0-9._:-]; otherwise (or without one) a new id is made: a random
 * per-process prefix and a counter, unique and cheap. */
static void request_id(srv_http *h, struct MHD_Connection *c, req_state *s)
{
    const char *in = header(c, "X-Request-Id");
    size_t n = in ? strlen(in) : 0;
    bool ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) {
        char ch = in[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
             ch == '-' || ch == ':';
    }
    if (ok) {
        snprintf(s->request_id, sizeof s->request_id, "%s", in);
        return;
    }
    uint64_t id = atomic_fetch_add(&h->next_id, 1);
    snprintf(s->request_id, sizeof s->request_id, "%016llx",
             (unsigned long long)id);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
           (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Dispatches the collected request and queues the answer. */
static enum MHD_Result answer(struct MHD_Connection *c, req_state *s,
                              const char *method)
{
    srv_http *h = s->http;
    char *path = strdup(s->raw_uri);
    if (!path)
        return MHD_NO;
    char *q = strchr(path, '?');
    if (q)
        *q++ = 0;
    char *frag = strchr(q ? q : path, '#');
    if (frag)
        *frag = 0;
    decode_path(path);

    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    api_request rq = {
        .method = method,
        .path = path,
        .query = q,
        .content_type = header(c, MHD_HTTP_HEADER_CONTENT_TYPE),
        .accept = header(c, MHD_HTTP_HEADER_ACCEPT),
        .authorization = header(c, MHD_HTTP_HEADER_AUTHORIZATION),
        .idempotency_key = header(c, "Idempotency-Key"),
        .last_event_id = header(c, "Last-Event-ID"),
        .origin = header(c, "Origin"),
        .body = s->too_large ? NULL : s->mem,
        .body_len = s->too_large ? 0 : s->mem_len,
        .body_file = s->too_large ? NULL : s->file,
        .body_too_large = s->too_large,
        .request_id = s->request_id,
        .if_none_match = header(c, MHD_HTTP_HEADER_IF_NONE_MATCH),
    };
    api_response rs;
    memset(&rs, 0, sizeof rs);
    api_dispatch(h->ctx, &rq, &rs);

    int status = rs.status >= 100 && rs.status <= 599 ? rs.status : 500;
    struct MHD_Response *resp = make_response(h, &rs);
    enum MHD_Result ok = MHD_NO;
    if (resp) {
        MHD_add_response_header(resp, "X-Request-Id", s->request_id);
        if (s->too_large)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
                                    "close");
        ok = MHD_queue_response(c, (unsigned)status, resp);
        MHD_destroy_response(resp);
    }
    s->answered = true;
    double ms = ms_since(&s->t0);
    srv_metrics_request(h->metrics, rs.route, method, status, ms / 1e3);
    srv_access acc = {
        .request_id = s->request_id, .method = method, .path = path,
        .route = rs.route, .status = status, .ms = ms, .key_id = rs.key_id,
        .note = s->too_large ? "body too large" : NULL,
    };
    srv_log_access(&acc);
    api_response_done(&rs);
    free(path);
    return ok;
}

static uint64_t content_length(struct MHD_Connection *c)
{
    const char *v = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    return errno || end == v ? 0 : (uint64_t)n;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *data_size, void **req_cls)
{
    req_state *s = *req_cls;
    if (!s)
        return MHD_NO; /* out of memory in on_uri */
    size_t max = s->http->ctx->limits.max_body_bytes;

    if (!s->started) {
        s->started = true;
        request_id(s->http, c, s);
        char *path = strdup(s->raw_uri);
        if (!path)
            return MHD_NO;
        path[strcspn(path, "?#")] = 0;
        decode_path(path);
        s->to_file = is_upload(method, path,
                               header(c, MHD_HTTP_HEADER_CONTENT_TYPE));
        free(path);
        uint64_t declared = content_length(c);
        if (declared > max) {
            s->too_large = true;
            /* Far too large to drain: answer now and close. */
            if (declared > max + DISCARD_CAP)
                return answer(c, s, method);
        }
        return MHD_YES;
    }
    if (*data_size) {
        size_t len = *data_size;
        *data_size = 0;
        if (s->answered)
            return MHD_YES;
        if (body_append(s, data, len) < 0)
            return MHD_NO;
        if (s->too_large && s->received > max + DISCARD_CAP)
            return answer(c, s, method);
        return MHD_YES;
    }
    if (s->answered)
        return MHD_YES;
    return answer(c, s, method);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    srv_logv(SRV_LOG_WARN, fmt, ap);
}

/* ------------------------------------------------------------------------ */
/* Daemon                                                                    */

int srv_http_start(const srv_http_params *p, srv_http **ret, char *err,
                   size_t errlen)
{
    srv_http *h = calloc(1, sizeof *h);
    if (!h || !(h->tmp_dir = strdup(p->tmp_dir))) {
        free(h);
        close(p->listen_fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h->ctx = p->ctx;
    h->metrics = p->metrics;
    atomic_init(&h->stopping, false);
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)time(NULL) << 20;
    atomic_init(&h->next_id, seed & 0xffffffffff000000ull);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (p->ipv6)
        flags |= MHD_USE_IPv6;
    bool tls = p->tls_cert_pem && p->tls_key_pem;
    /* The TLS options only when serving TLS (MHD warns about them
     * otherwise). */
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)p->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)p->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    if (tls)
        flags |= MHD_USE_TLS;
    else
        tls_options[0].option = MHD_OPTION_END;
    h->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_ARRAY, tls_options,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)p->listen_fd,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
        MHD_OPTION_END);
    if (!h->mhd) {
        close(p->listen_fd);
        free(h->tmp_dir);
        free(h);
        snprintf(err, errlen, tls ? "cannot start the HTTPS server (is the "
                 "certificate or key malformed, or do they not match?)"
                 : "cannot start the HTTP server");
        return -EIO;
    }
    *ret = h;
    return 0;
}

bool srv_http_tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

void srv_http_quiesce(srv_http *h)
{
    if (!h)
        return;
    atomic_store(&h->stopping, true);
    MHD_socket fd = MHD_quiesce_daemon(h->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

void srv_http_stop(srv_http *h)
{
    if (!h)
        return;
    atomic_store(&h->stopping, true);
    MHD_stop_daemon(h->mhd);
    free(h->tmp_dir);
    free(h);
}
