/* SPDX-License-Identifier: MIT */
/* tuna jobs follow ID: reads the job's server-sent event stream
 * (GET /jobs/{id}/events?stream=true) to its end and shows the progress:
 * on a terminal one line redrawn with \r (step/total, a bar, loss,
 * tokens/s, ETA; as wide as the terminal), other events printed above it;
 * piped, one plain line per event. A broken connection is reopened with
 * Last-Event-ID, so nothing is missed or shown twice. The job's final
 * status decides the exit status. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "tuna.h"

static const char usage_follow[] =
    "usage: tuna jobs follow ID [--json]\n"
    "\n"
    "Shows the job's progress live until it ends: on a terminal a progress\n"
    "bar (step/total, loss, tokens/s, ETA), piped one line per event; with\n"
    "--json each event's JSON, one a line, then the final job. Exits 0 when\n"
    "the job succeeded, 1 when it failed or was cancelled.\n";

#define WINDOW 16       /* step samples the rate is measured over */
#define MAX_RETRIES 30  /* reconnects in a row without a new event */

typedef struct {
    const tuna_opts *o;
    const char *job_id;
    bool tty;
    int step, total, epoch;
    double loss, val_loss, tps;
    bool evaluated; /* the last step event had a validation loss */
    /* (arrival time, step) of recent step events; events arriving
     * together (a replayed history) collapse into one sample */
    struct {
        double t;
        int step;
    } win[WINDOW];
    int nwin;
    double created0; /* server time of the first step event seen */
    int step0;
    double created;  /* of the last one */
    double last_draw;
    bool bar_shown;  /* the cursor is at the end of the bar line */
    int events;      /* events received (all connections) */
    char last_id[64]; /* of the last event: Last-Event-ID on reconnect */
} follow;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int n = c ? atoi(c) : 0;
    return n > 0 ? n : 80;
}

/* Seconds left, or -1 when not known yet. */
static double eta(const follow *f)
{
    if (f->total <= 0)
        return -1;
    if (f->step >= f->total)
        return 0;
    int left = f->total - f->step;
    if (f->nwin >= 2) {
        double dt = f->win[f->nwin - 1].t - f->win[0].t;
        int ds = f->win[f->nwin - 1].step - f->win[0].step;
        if (dt >= 0.5 && ds > 0)
            return dt / ds * left;
    }
    /* Not enough live steps: the server's timestamps (whole seconds). */
    if (f->created - f->created0 >= 2 && f->step > f->step0)
        return (f->created - f->created0) / (f->step - f->step0) * left;
    return -1;
}

static void add_sample(follow *f)
{
    double t = now();
    if (f->nwin && t - f->win[f->nwin - 1].t < 0.02) {
        f->win[f->nwin - 1].step = f->step; /* same burst */
        return;
    }
    if (f->nwin == WINDOW) {
        memmove(f->win, f->win + 1, sizeof f->win[0] * (WINDOW - 1));
        f->nwin--;
    }
    f->win[f->nwin].t = t;
    f->win[f->nwin].step = f->step;
    f->nwin++;
}

/* The fields after the bar; `drop` leaves out the last ones when the
 * terminal is narrow. */
static int fields(const follow *f, char *buf, size_t n, int drop)
{
    int len = 0;
    len += snprintf(buf + len, n - (size_t)len, " %3d%%",
                    f->total > 0 ? (int)(100.0 * f->step / f->total) : 0);
    if (drop < 3 && !isnan(f->loss)) {
        len += snprintf(buf + len, n - (size_t)len, "  loss %.4f", f->loss);
        if (!isnan(f->val_loss) && (f->tty || f->evaluated))
            len += snprintf(buf + len, n - (size_t)len, " (val %.4f)",
                            f->val_loss);
    }
    if (drop < 1 && f->tps > 0)
        len += snprintf(buf + len, n - (size_t)len, "  %.0f tok/s", f->tps);
    if (drop < 2) {
        char d[32];
        fmt_duration(d, sizeof d, eta(f));
        len += snprintf(buf + len, n - (size_t)len, "  ETA %s", d);
    }
    return len;
}

/* "step 12/80 [#####.......]  15%  loss 1.2345  9977 tok/s  ETA 0:05",
 * cut to the terminal's width. */
static void draw_bar(follow *f)
{
    int width = term_width() - 1; /* the last column would wrap */
    if (width > 200)
        width = 200;
    char head[64], tail[160], line[512];
    int hl = snprintf(head, sizeof head, "step %d/%d ", f->step, f->total);
    int tl = 0, inner = 0;
    for (int drop = 0; drop <= 4; drop++) {
        tl = fields(f, tail, sizeof tail, drop);
        inner = width - hl - tl - 2;
        if (inner >= 10 || drop == 4)
            break;
    }
    if (inner > 40)
        inner = 40;
    int len = snprintf(line, sizeof line, "%s", head);
    if (inner >= 5) {
        int fill = f->total > 0 ? (int)((double)inner * f->step / f->total)
                                : 0;
        if (fill > inner)
            fill = inner;
        line[len++] = '[';
        for (int i = 0; i < inner; i++)
            line[len++] = i < fill ? '#' : '.';
        line[len++] = ']';
        line[len] = '\0';
    }
    len += snprintf(line + len, sizeof line - (size_t)len, "%s", tail);
    if (len > width)
        len = width > 0 ? width : 0;
    /* \r, the line, then clear what a longer earlier line left. */
    printf("\r%.*s\033[K", len, line);
    fflush(stdout);
    f->bar_shown = true;
    f->last_draw = now();
}

/* Moves off the bar line so that a message can be printed. */
static void clear_bar(follow *f)
{
    if (f->bar_shown) {
        printf("\r\033[K");
        f->bar_shown = false;
    }
}

static void print_message(follow *f, const char *level, const char *msg)
{
    if (f->tty)
        clear_bar(f);
    if (level && strcmp(level, "info"))
        printf("%s: %s\n", level, msg);
    else
        printf("%s\n", msg);
    if (f->tty && f->total > 0)
        draw_bar(f);
    fflush(stdout);
}

static void on_step(follow *f, const cJSON *ev, const cJSON *d)
{
    f->step = (int)jnum(d, "step", f->step);
    f->total = (int)jnum(d, "total_steps", f->total);
    f->epoch = (int)jnum(d, "epoch", f->epoch);
    f->loss = jnum(d, "train_loss", f->loss);
    f->tps = jnum(d, "tokens_per_second", f->tps);
    bool evaluated = f->evaluated = jhas_num(d, "val_loss");
    if (evaluated)
        f->val_loss = jnum(d, "val_loss", NAN);
    double created = jnum(ev, "created_at", NAN);
    if (!isnan(created)) {
        if (f->created0 == 0) {
            f->created0 = created;
            f->step0 = f->step;
        }
        f->created = created;
    }
    add_sample(f);

    if (f->tty) {
        if (evaluated) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "step %d/%d: validation loss %.4f, accuracy %.3f",
                     f->step, f->total, f->val_loss,
                     jnum(d, "val_accuracy", NAN));
            print_message(f, NULL, msg); /* redraws the bar too */
        } else if (now() - f->last_draw >= 0.05 || f->step >= f->total) {
            draw_bar(f);
        }
        return;
    }
    char tail[160];
    fields(f, tail, sizeof tail, 0);
    printf("step %d/%d%s\n", f->step, f->total, tail);
    fflush(stdout);
}

static int on_event(void *ctx, const sse_event *e)
{
    follow *f = ctx;
    f->events++;
    cJSON *ev = cJSON_Parse(e->data);
    if (!ev)
        return 0; /* not ours to judge; skip it */
    snprintf(f->last_id, sizeof f->last_id, "%s", e->id);
    const char *type = jstr(ev, "type", e->event);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(ev, "data");
    if (f->o->json) {
        puts(e->data);
        fflush(stdout);
    } else if (!strcmp(type, "step") && cJSON_IsObject(d)) {
        on_step(f, ev, d);
    } else {
        print_message(f, jstr(ev, "level", NULL), jstr(ev, "message", ""));
    }
    cJSON_Delete(ev);
    return 0;
}

static bool terminal(const char *status)
{
    return !strcmp(status, "succeeded") || !strcmp(status, "failed") ||
           !strcmp(status, "cancelled");
}

/* The job's final word; EXIT_OK only when it succeeded. */
static int finish(follow *f, http_resp *r)
{
    const cJSON *j = r->json;
    const char *status = jstr(j, "status", "?");
    if (f->o->json) {
        print_body(r);
        return strcmp(status, "succeeded") ? EXIT_FAIL : EXIT_OK;
    }
    if (f->tty && f->total > 0) {
        if (!f->bar_shown)
            draw_bar(f); /* the final state */
        putchar('\n');
        f->bar_shown = false;
    }
    const char *id = jstr(j, "id", f->job_id);
    double took = jnum(j, "finished_at", NAN) - jnum(j, "started_at", NAN);
    char d[32];
    fmt_duration(d, sizeof d, took);
    int rc = EXIT_FAIL;
    if (!strcmp(status, "succeeded")) {
        printf("%s succeeded", id);
        if (!isnan(took))
            printf(" in %s", d);
        printf(": model %s\n", jstr(j, "model", "?"));
        rc = EXIT_OK;
    } else if (!strcmp(status, "failed")) {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
        printf("%s failed: %s", id, jstr(err, "message", "unknown error"));
        if (jstr(err, "code", NULL))
            printf(" (%s)", jstr(err, "code", ""));
        putchar('\n');
    } else {
        printf("%s %s\n", id, status);
    }
    if (jstr(j, "note", NULL))
        printf("note: %s\n", jstr(j, "note", ""));
    fflush(stdout);
    return rc;
}

int follow_job(const tuna_opts *o, const char *job_id)
{
    follow f = {
        .o = o,
        .job_id = job_id,
        .tty = !o->json && isatty(STDOUT_FILENO),
        .loss = NAN,
        .val_loss = NAN,
    };
    char *eid = url_escape(job_id);
    if (!eid)
        return EXIT_FAIL;
    char stream_path[1024], job_path[1024];
    snprintf(stream_path, sizeof stream_path, "/jobs/%s/events?stream=true",
             eid);
    snprintf(job_path, sizeof job_path, "/jobs/%s", eid);
    free(eid);

    long retry_ms = 2000;
    int failures = 0;
    bool connected = false; /* ever answered */
    for (;;) {
        http_resp r;
        int before = f.events;
        int rc = http_stream(o, "GET", stream_path, NULL, f.last_id,
                             on_event, &f, &retry_ms, &r);
        if (rc == HTTP_STATUS || (rc == HTTP_OK && r.json)) {
            /* refused (unknown job, bad key, ...) */
            if (f.tty)
                clear_bar(&f);
            report_failure(o, HTTP_STATUS, &r);
            http_resp_free(&r);
            return EXIT_FAIL;
        }
        http_resp_free(&r);
        if (rc == HTTP_TRANSPORT && !connected && r.status == 0) {
            report_failure(o, rc, &r);
            return EXIT_FAIL;
        }
        connected = true;

        /* The server closes the stream after the job's last event: then
         * the job's final state. A broken connection may have lost
         * events, so it is always reopened where it broke. */
        if (rc == HTTP_OK) {
            http_resp j;
            int jr = http_request(o, "GET", job_path, NULL, &j);
            if (jr == HTTP_OK && j.json &&
                terminal(jstr(j.json, "status", ""))) {
                int code = finish(&f, &j);
                http_resp_free(&j);
                return code;
            }
            if (jr == HTTP_STATUS) {
                if (f.tty)
                    clear_bar(&f);
                report_failure(o, jr, &j);
                http_resp_free(&j);
                return EXIT_FAIL;
            }
            http_resp_free(&j);
        }

        if (f.events > before)
            failures = 0;
        if (++failures > MAX_RETRIES) {
            if (f.tty)
                clear_bar(&f);
            fprintf(stderr, "tuna: lost the event stream of %s: %s\n",
                    job_id, rc == HTTP_TRANSPORT ? r.error : "closed");
            return EXIT_FAIL;
        }
        if (f.tty)
            clear_bar(&f);
        fprintf(stderr, "tuna: %s; reconnecting%s%s\n",
                rc == HTTP_TRANSPORT ? r.error : "the stream closed",
                f.last_id[0] ? " after event " : "", f.last_id);
        struct timespec ts = {retry_ms / 1000, retry_ms % 1000 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int cmd_jobs_follow(tuna_opts *o, int argc, char **argv)
{
    int rc;
    int first = args_simple(o, argc, argv, "jobs follow", 1, usage_follow,
                            &rc);
    if (first < 0)
        return rc;
    return follow_job(o, argv[first]);
}
