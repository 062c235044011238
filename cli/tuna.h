/* SPDX-License-Identifier: MIT */
/* tuna: the command-line client of tunad. It speaks only the public HTTP
 * API (docs/api.md) through libcurl:
 *
 *   main.c          global options, command dispatch, option parsing
 *   http.c          one request, one server-sent-events stream, errors
 *   sse.c           incremental text/event-stream parser
 *   output.c        formatting shared by the commands
 *   cmd_*.c         the commands
 *
 * Nothing here is global and mutable beyond the parsed options, which are
 * passed down as `const tuna_opts *`. */
#ifndef TUNA_CLI_H
#define TUNA_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#ifndef TUNA_VERSION
#define TUNA_VERSION "0.0.0"
#endif

#define TUNA_DEFAULT_URL "http://127.0.0.1:8080"

/* Exit statuses. */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,  /* the server said no, could not be reached, or the
                       followed job failed or was cancelled */
    EXIT_USAGE = 2, /* a bad command line */
};

/* Options every command takes. */
typedef struct {
    char url[2048];      /* TUNA_URL / --url, without a trailing slash */
    const char *api_key; /* TUNA_API_KEY / --api-key, or NULL */
    bool json;           /* --json: print the server's JSON */
} tuna_opts;

/* ------------------------------------------------------------ main.c */

/* Parses one command's options with getopt_long: the common ones
 * (--url, --api-key, --json, --help) into *o, the others (`extra`, ended
 * by a zero entry; val >= 256) passed to fn. Positional arguments are
 * moved to the end (GNU permutation); there must be `n` of them (n < 0:
 * any number, the command checks them). Returns the index in argv of the
 * first positional argument, or -1 with *rc set: EXIT_OK after --help
 * (`usage` printed), EXIT_USAGE after printing a usage error. */
struct option;
typedef int (*opt_fn)(void *ctx, int id, const char *arg);
int args_parse(tuna_opts *o, int argc, char **argv, const char *cmd,
               const struct option *extra, opt_fn fn, void *ctx, int n,
               const char *usage, int *rc);
/* A command's subcommand, chosen by argv[1]. */
typedef struct {
    const char *name;
    int (*fn)(tuna_opts *o, int argc, char **argv);
} subcommand;
int dispatch_sub(tuna_opts *o, int argc, char **argv, const char *group,
                 const subcommand *subs, const char *usage);
/* args_parse for a command with no options of its own. */
int args_simple(tuna_opts *o, int argc, char **argv, const char *cmd,
                int n, const char *usage, int *rc);
/* The usage error "tuna CMD: MSG (see tuna CMD --help)"; EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------ http.c */

/* A request body: bytes in memory, or a file streamed from disk. */
typedef struct {
    const char *content_type;
    const char *data;
    size_t len;
    const char *file; /* instead of data */
} http_body;

typedef struct {
    long status;    /* HTTP status; 0 when there was no answer */
    char *body;     /* the answer (of a stream: only an error answer) */
    size_t len;
    cJSON *json;    /* body parsed, when it is JSON */
    char error[512]; /* why there was no (complete) answer */
} http_resp;

enum {
    HTTP_OK = 0,         /* answered 2xx (a stream: it ended cleanly) */
    HTTP_STATUS = 1,     /* answered with an error status: resp has it */
    HTTP_TRANSPORT = -1, /* no answer, or the connection broke: resp.error */
    HTTP_LOCAL = -2,     /* nothing sent: resp.error (e.g. a file) */
};

void http_resp_free(http_resp *r);

/* One request; path is appended to the URL (it starts with '/'). */
int http_request(const tuna_opts *o, const char *method, const char *path,
                 const http_body *body, http_resp *r);

typedef struct {
    const char *event; /* "message" when the stream named none */
    const char *data;
    const char *id;    /* the last event id ("" when none yet) */
} sse_event;
/* Returns 0 to go on, non-zero to stop reading (returned by http_stream
 * as HTTP_OK). */
typedef int (*sse_cb)(void *ctx, const sse_event *ev);

/* A request answered with text/event-stream: cb per event until the
 * server closes the stream. last_event_id (or NULL) is sent as
 * Last-Event-ID. *retry_ms gets the server's `retry:` (unchanged when it
 * sent none). An answer that is not a stream is left in r (HTTP_OK with
 * r->json for a 2xx JSON answer). */
int http_stream(const tuna_opts *o, const char *method, const char *path,
                const http_body *body, const char *last_event_id,
                sse_cb cb, void *ctx, long *retry_ms, http_resp *r);

/* http_request + error reporting: 0 with r->json set for a 2xx JSON
 * answer; otherwise prints why (the server's error, or that it cannot be
 * reached), frees r and returns -1. */
int api_call(const tuna_opts *o, const char *method, const char *path,
             const http_body *body, http_resp *r);
/* api_call of GET path followed by the query q (from query_add, freed
 * here; NULL: none). */
int api_get(const tuna_opts *o, const char *path, char *q, http_resp *r);
/* Prints what went wrong with a request that returned rc. With --json,
 * the server's error JSON also goes to stdout. */
void report_failure(const tuna_opts *o, int rc, const http_resp *r);
/* Percent-encodes s for a query string or path segment (malloc'd). */
char *url_escape(const char *s);

/* ------------------------------------------------------------- sse.c */

typedef struct {
    char *line;
    size_t line_len, line_cap;
    char *data;
    size_t data_len, data_cap;
    bool has_data;
    bool after_cr; /* the last byte was \r: a following \n ends nothing */
    char event[64];
    char id[64];   /* the last event id, kept across events (the spec) */
    long retry_ms; /* -1 until the stream sends retry: */
    bool oom;
} sse_parser;

void sse_init(sse_parser *p);
void sse_free(sse_parser *p);
/* Feeds bytes; calls cb per complete event. Returns cb's first non-zero
 * answer (reading should stop), -1 when out of memory, else 0. */
int sse_feed(sse_parser *p, const char *buf, size_t n, sse_cb cb, void *ctx);

/* ---------------------------------------------------------- output.c */

/* Prints the server's JSON (the raw body) with a newline, to stdout. */
void print_body(const http_resp *r);
/* Prints a cJSON value compactly with a newline. */
void print_json(const cJSON *v);
const char *jstr(const cJSON *o, const char *key, const char *dflt);
double jnum(const cJSON *o, const char *key, double dflt); /* NAN: null */
bool jhas_num(const cJSON *o, const char *key);
/* "2024-06-10 14:03:20" in local time, "-" for a null or missing time. */
void fmt_time(char *buf, size_t n, const cJSON *o, const char *key);
/* "1:05", "1:02:03", "--:--" for a negative or NaN value. */
void fmt_duration(char *buf, size_t n, double seconds);
/* "1.2 KiB", "3.4 MiB". */
void fmt_bytes(char *buf, size_t n, double bytes);
/* A JSON value from command-line text: a number when it is all number,
 * true/false, else a string (the server checks and names what is
 * wrong). */
cJSON *json_from_arg(const char *s);
/* Appends "&name=value" ("?" first) to a malloc'd string (*q may be
 * NULL); returns -1 when out of memory. */
int query_add(char **q, const char *name, const char *value);
/* Prints "key: value" with the key padded to width. */
void print_kv(int width, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------ commands */

int cmd_datasets(tuna_opts *o, int argc, char **argv);
int cmd_jobs(tuna_opts *o, int argc, char **argv);
int cmd_generate(tuna_opts *o, int argc, char **argv);
int cmd_models(tuna_opts *o, int argc, char **argv);
int cmd_health(tuna_opts *o, int argc, char **argv);

/* cmd_follow.c: follows a job's event stream to its end, with a progress
 * bar on a terminal and plain lines otherwise; EXIT_OK when it
 * succeeded. */
int follow_job(const tuna_opts *o, const char *job_id);
int cmd_jobs_follow(tuna_opts *o, int argc, char **argv);

/* cmd_jobs.c: prints one job as "key: value" lines. */
void print_job(const cJSON *job);

#endif
