/* SPDX-License-Identifier: MIT */
/* tuna jobs create|list|show|events|cancel|pause|resume|stop (follow is in
 * cmd_follow.c) */
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tuna.h"

static const char usage_jobs[] =
    "usage: tuna jobs COMMAND [--json] ...\n"
    "\n"
    "  create FILE|--dataset ID [settings] [--follow]\n"
    "                       start a finetuning job (tuna jobs create --help)\n"
    "  list [--status S] [--limit N]\n"
    "                       newest first\n"
    "  show ID              status, progress, settings\n"
    "  events ID [--after N] [--limit N]\n"
    "                       lifecycle messages and per-step loss\n"
    "  follow ID            live progress until the job ends; exits 1 when\n"
    "                       it failed or was cancelled\n"
    "  cancel ID            cancel a queued, running or paused job\n"
    "  pause ID             pause (a running job saves a checkpoint)\n"
    "  resume ID            queue a paused job again\n"
    "  stop ID              stop now and keep the current weights\n";

static const char usage_create[] =
    "usage: tuna jobs create FILE [settings] [--follow]\n"
    "       tuna jobs create --dataset ID [settings] [--follow]\n"
    "\n"
    "Starts a finetuning job on a JSONL file (uploaded with the job) or on\n"
    "an uploaded dataset, and prints it.\n"
    "\n"
    "settings (defaults are the server's; see docs/api.md):\n"
    "  --base M                 base model (stories260K)\n"
    "  --epochs N               passes over the data, or auto\n"
    "  --learning-rate X        peak learning rate, or auto\n"
    "  --batch-size N           sequences per micro-batch, or auto\n"
    "  --lora-rank N            LoRA rank\n"
    "  --seed N                 data order, dropout and init\n"
    "  --suffix S               goes into the model name\n"
    "  --validation-split F     share held out for validation (0-0.5)\n"
    "  --param NAME=VALUE       any other hyperparameter (repeatable),\n"
    "                           e.g. --param lr_schedule=linear\n"
    "  --name NAME              the uploaded dataset's name (FILE only)\n"
    "  --dry-run                check and estimate time and memory only\n"
    "  --follow                 then follow it (tuna jobs follow)\n";

static const char usage_list[] =
    "usage: tuna jobs list [--status S] [--limit N] [--json]\n"
    "\n"
    "S: queued, running, paused, succeeded, failed or cancelled.\n";
static const char usage_show[] = "usage: tuna jobs show ID [--json]\n";
static const char usage_events[] =
    "usage: tuna jobs events ID [--after N] [--limit N] [--json]\n"
    "\n"
    "Every event of the job, oldest first (after event N; with --limit,\n"
    "one page of at most N).\n";

/* --------------------------------------------------------------- print */

void print_job(const cJSON *j)
{
    char created[32], started[32], finished[32];
    fmt_time(created, sizeof created, j, "created_at");
    fmt_time(started, sizeof started, j, "started_at");
    fmt_time(finished, sizeof finished, j, "finished_at");
    const int w = 10;
    print_kv(w, "id:", "%s", jstr(j, "id", "?"));
    const char *status = jstr(j, "status", "?");
    if (jhas_num(j, "queue_position"))
        print_kv(w, "status:", "%s (position %.0f in the queue)", status,
                 jnum(j, "queue_position", 0));
    else if (jstr(j, "requested", NULL))
        print_kv(w, "status:", "%s (%s requested)", status,
                 jstr(j, "requested", ""));
    else
        print_kv(w, "status:", "%s", status);
    print_kv(w, "base:", "%s", jstr(j, "base_model", "?"));
    print_kv(w, "dataset:", "%s", jstr(j, "dataset_id", "?"));
    print_kv(w, "model:", "%s", jstr(j, "model", "-"));
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "progress");
    if (cJSON_IsObject(p) && jnum(p, "total_steps", 0) > 0) {
        char line[256];
        int n = snprintf(line, sizeof line, "step %.0f/%.0f, epoch %.0f",
                         jnum(p, "step", 0), jnum(p, "total_steps", 0),
                         jnum(p, "epoch", 0));
        double loss = jnum(p, "train_loss", NAN);
        if (!isnan(loss))
            n += snprintf(line + n, sizeof line - (size_t)n,
                          ", train loss %.4f", loss);
        double vl = jnum(p, "validation_loss", NAN);
        if (!isnan(vl))
            n += snprintf(line + n, sizeof line - (size_t)n,
                          ", validation loss %.4f", vl);
        double tps = jnum(p, "tokens_per_second", NAN);
        if (!isnan(tps) && tps > 0)
            n += snprintf(line + n, sizeof line - (size_t)n, ", %.0f tok/s",
                          tps);
        double eta = jnum(p, "eta_seconds", NAN);
        if (!isnan(eta) && !strcmp(status, "running")) {
            char d[32];
            fmt_duration(d, sizeof d, eta);
            snprintf(line + n, sizeof line - (size_t)n, ", ETA %s", d);
        }
        print_kv(w, "progress:", "%s", line);
    }
    print_kv(w, "created:", "%s", created);
    print_kv(w, "started:", "%s", started);
    print_kv(w, "finished:", "%s", finished);
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(j, "hyperparameters");
    if (cJSON_IsObject(hp)) {
        /* name=value pairs, wrapped at 78 columns under the key */
        int col = printf("%-*s", w + 1, "settings:");
        bool first = true;
        const cJSON *v;
        cJSON_ArrayForEach(v, hp)
        {
            char *s = cJSON_PrintUnformatted(v);
            if (!s)
                continue;
            int len = (int)(strlen(v->string) + strlen(s) + 1);
            if (!first && col + 1 + len > 78)
                col = printf("\n%-*s", w + 1, "") - 1;
            else if (!first)
                col += printf(" ");
            col += printf("%s=%s", v->string, s);
            first = false;
            free(s);
        }
        putchar('\n');
    }
    if (jstr(j, "note", NULL))
        print_kv(w, "note:", "%s", jstr(j, "note", ""));
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsObject(err))
        print_kv(w, "error:", "%s (%s)", jstr(err, "message", "?"),
                 jstr(err, "code", "?"));
}

static void print_preflight(const cJSON *p)
{
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(p, "examples");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(p, "tokens");
    char secs[32], ram[32];
    fmt_duration(secs, sizeof secs, jnum(p, "estimated_seconds", NAN));
    fmt_bytes(ram, sizeof ram, jnum(p, "estimated_ram_bytes", 0));
    printf("dry run: nothing was stored or queued\n");
    print_kv(10, "base:", "%s", jstr(p, "base_model", "?"));
    print_kv(10, "examples:", "%.0f (%.0f train, %.0f validation)",
             jnum(ex, "total", 0), jnum(ex, "train", 0),
             jnum(ex, "validation", 0));
    print_kv(10, "tokens:", "%.0f trained", jnum(tok, "trained", 0));
    print_kv(10, "steps:", "%.0f (%.0f epochs of %.0f)",
             jnum(p, "total_steps", 0), jnum(p, "epochs", 0),
             jnum(p, "steps_per_epoch", 0));
    print_kv(10, "time:", "about %s", secs);
    print_kv(10, "memory:", "about %s", ram);
}

/* -------------------------------------------------------------- create */

enum {
    OPT_DATASET = 256, OPT_BASE, OPT_SUFFIX, OPT_SPLIT, OPT_NAME, OPT_PARAM,
    OPT_DRY, OPT_FOLLOW, OPT_EPOCHS, OPT_LR, OPT_BATCH, OPT_RANK, OPT_SEED,
    OPT_STATUS, OPT_LIMIT, OPT_AFTER,
};

#define MAX_SETTINGS 64

typedef struct {
    const char *name;
    const char *value;
    bool hyper; /* inside "hyperparameters" in the JSON form */
} setting;

typedef struct {
    const char *dataset;
    const char *name;
    bool dry_run, follow;
    setting set[MAX_SETTINGS];
    int n;
    /* list, events */
    const char *status, *limit, *after;
} job_args;

static int add_setting(job_args *a, const char *name, const char *value,
                       bool hyper)
{
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->set[i].name, name)) {
            a->set[i].value = value; /* the last one wins */
            return 0;
        }
    if (a->n == MAX_SETTINGS) {
        fprintf(stderr, "tuna jobs create: too many settings\n");
        return -1;
    }
    a->set[a->n++] = (setting){name, value, hyper};
    return 0;
}

static int on_opt(void *ctx, int id, const char *arg)
{
    job_args *a = ctx;
    switch (id) {
    case OPT_DATASET: a->dataset = arg; return 0;
    case OPT_NAME: a->name = arg; return 0;
    case OPT_DRY: a->dry_run = true; return 0;
    case OPT_FOLLOW: a->follow = true; return 0;
    case OPT_STATUS: a->status = arg; return 0;
    case OPT_LIMIT: a->limit = arg; return 0;
    case OPT_AFTER: a->after = arg; return 0;
    case OPT_BASE: return add_setting(a, "base_model", arg, false);
    case OPT_SUFFIX: return add_setting(a, "suffix", arg, false);
    case OPT_SPLIT: return add_setting(a, "validation_split", arg, false);
    case OPT_EPOCHS: return add_setting(a, "epochs", arg, true);
    case OPT_LR: return add_setting(a, "learning_rate", arg, true);
    case OPT_BATCH: return add_setting(a, "batch_size", arg, true);
    case OPT_RANK: return add_setting(a, "lora_rank", arg, true);
    case OPT_SEED: return add_setting(a, "seed", arg, true);
    case OPT_PARAM: {
        /* NAME=VALUE; the name stays in argv, cut at '=' in place. */
        char *eq = strchr(arg, '=');
        if (!eq || eq == arg) {
            usage_error("jobs create", "--param takes NAME=VALUE, not '%s'",
                        arg);
            return -1;
        }
        *eq = '\0';
        return add_setting(a, arg, eq + 1, true);
    }
    }
    return 0;
}

/* The JSON form: {"dataset_id", settings..., "hyperparameters": {...}}. */
static char *create_json(const job_args *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *hp = cJSON_AddObjectToObject(o, "hyperparameters");
    cJSON_AddStringToObject(o, "dataset_id", a->dataset);
    for (int i = 0; i < a->n; i++) {
        const setting *s = &a->set[i];
        cJSON *v = strcmp(s->name, "base_model") && strcmp(s->name, "suffix")
                       ? json_from_arg(s->value)
                       : cJSON_CreateString(s->value);
        cJSON_AddItemToObject(s->hyper ? hp : o, s->name, v);
    }
    if (a->dry_run)
        cJSON_AddTrueToObject(o, "dry_run");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int create(tuna_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"dataset", required_argument, NULL, OPT_DATASET},
        {"base", required_argument, NULL, OPT_BASE},
        {"base-model", required_argument, NULL, OPT_BASE},
        {"epochs", required_argument, NULL, OPT_EPOCHS},
        {"learning-rate", required_argument, NULL, OPT_LR},
        {"lr", required_argument, NULL, OPT_LR},
        {"batch-size", required_argument, NULL, OPT_BATCH},
        {"lora-rank", required_argument, NULL, OPT_RANK},
        {"seed", required_argument, NULL, OPT_SEED},
        {"suffix", required_argument, NULL, OPT_SUFFIX},
        {"validation-split", required_argument, NULL, OPT_SPLIT},
        {"param", required_argument, NULL, OPT_PARAM},
        {"name", required_argument, NULL, OPT_NAME},
        {"dry-run", no_argument, NULL, OPT_DRY},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {0}};
    job_args a = {0};
    int rc;
    int first = args_parse(o, argc, argv, "jobs create", opts, on_opt, &a,
                           -1, usage_create, &rc);
    if (first < 0)
        return rc;
    int npos = argc - first;
    if (a.dataset && npos)
        return usage_error("jobs create", "give a FILE or --dataset, not both");
    if (!a.dataset && npos != 1)
        return usage_error("jobs create", npos ? "one FILE at a time"
                                               : "missing FILE or --dataset ID");
    if (a.dataset && a.name)
        return usage_error("jobs create", "--name names an uploaded FILE");

    http_resp r;
    int e;
    if (a.dataset) {
        char *json = create_json(&a);
        if (!json)
            return EXIT_FAIL;
        http_body body = {.content_type = "application/json", .data = json,
                          .len = strlen(json)};
        e = api_call(o, "POST", "/jobs", &body, &r);
        free(json);
    } else {
        const char *file = argv[first];
        char *q = NULL;
        char *copy = strdup(file);
        int qe = !copy ? -1
                       : query_add(&q, "name", a.name ? a.name
                                                      : basename(copy));
        free(copy);
        for (int i = 0; i < a.n && qe == 0; i++)
            qe = query_add(&q, a.set[i].name, a.set[i].value);
        if (qe == 0 && a.dry_run)
            qe = query_add(&q, "dry_run", "true");
        if (qe < 0) {
            free(q);
            return EXIT_FAIL;
        }
        size_t plen = strlen(q) + 8;
        char *path = malloc(plen);
        if (!path) {
            free(q);
            return EXIT_FAIL;
        }
        snprintf(path, plen, "/jobs%s", q);
        free(q);
        http_body body = {.content_type = "application/jsonl", .file = file};
        e = api_call(o, "POST", path, &body, &r);
        free(path);
    }
    if (e < 0)
        return EXIT_FAIL;
    if (o->json)
        print_body(&r);
    else if (a.dry_run)
        print_preflight(r.json);
    else
        print_job(r.json);
    rc = EXIT_OK;
    if (a.follow && !a.dry_run) {
        const char *id = jstr(r.json, "id", NULL);
        if (!id) {
            fprintf(stderr, "tuna: the answer has no job id\n");
            rc = EXIT_FAIL;
        } else {
            if (!o->json)
                putchar('\n');
            fflush(stdout);
            rc = follow_job(o, id);
        }
    }
    http_resp_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- list */

static int list(tuna_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"status", required_argument, NULL, OPT_STATUS},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {0}};
    job_args a = {0};
    int rc;
    if (args_parse(o, argc, argv, "jobs list", opts, on_opt, &a, 0,
                   usage_list, &rc) < 0)
        return rc;
    char *q = NULL;
    if ((a.status && query_add(&q, "status", a.status) < 0) ||
        (a.limit && query_add(&q, "limit", a.limit) < 0)) {
        free(q);
        return EXIT_FAIL;
    }
    http_resp r;
    if (api_get(o, "/jobs", q, &r) < 0)
        return EXIT_FAIL;
    if (o->json) {
        print_body(&r);
        http_resp_free(&r);
        return EXIT_OK;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    printf("%-28s %-9s %-11s %-8s %-19s  %s\n", "ID", "STATUS", "STEP",
           "LOSS", "CREATED", "MODEL");
    const cJSON *j;
    cJSON_ArrayForEach(j, data)
    {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "progress");
        char step[32] = "-", loss[32] = "-", created[32];
        if (jnum(p, "total_steps", 0) > 0)
            snprintf(step, sizeof step, "%.0f/%.0f", jnum(p, "step", 0),
                     jnum(p, "total_steps", 0));
        double l = jnum(p, "train_loss", NAN);
        if (!isnan(l))
            snprintf(loss, sizeof loss, "%.4f", l);
        fmt_time(created, sizeof created, j, "created_at");
        printf("%-28s %-9s %-11s %-8s %-19s  %s\n", jstr(j, "id", "?"),
               jstr(j, "status", "?"), step, loss, created,
               jstr(j, "model", "-"));
    }
    if (!cJSON_GetArraySize(data))
        printf("(no jobs)\n");
    http_resp_free(&r);
    return EXIT_OK;
}

/* ---------------------------------------------------------- show, ctl */

static int job_path(char *buf, size_t n, const char *id, const char *tail)
{
    char *e = url_escape(id);
    if (!e)
        return -1;
    snprintf(buf, n, "/jobs/%s%s", e, tail);
    free(e);
    return 0;
}

static int show(tuna_opts *o, int argc, char **argv)
{
    int rc;
    int first = args_simple(o, argc, argv, "jobs show", 1, usage_show, &rc);
    if (first < 0)
        return rc;
    char path[1024];
    if (job_path(path, sizeof path, argv[first], "") < 0)
        return EXIT_FAIL;
    http_resp r;
    if (api_call(o, "GET", path, NULL, &r) < 0)
        return EXIT_FAIL;
    if (o->json)
        print_body(&r);
    else
        print_job(r.json);
    http_resp_free(&r);
    return EXIT_OK;
}

/* POST /jobs/{id}/<action> with no body. */
static int control(tuna_opts *o, int argc, char **argv, const char *action)
{
    char cmd[64], usage[128];
    snprintf(cmd, sizeof cmd, "jobs %s", action);
    snprintf(usage, sizeof usage, "usage: tuna jobs %s ID [--json]\n",
             action);
    int rc;
    int first = args_simple(o, argc, argv, cmd, 1, usage, &rc);
    if (first < 0)
        return rc;
    char path[1024], tail[64];
    snprintf(tail, sizeof tail, "/%s", action);
    if (job_path(path, sizeof path, argv[first], tail) < 0)
        return EXIT_FAIL;
    http_body none = {0};
    http_resp r;
    if (api_call(o, "POST", path, &none, &r) < 0)
        return EXIT_FAIL;
    if (o->json) {
        print_body(&r);
    } else {
        const char *req = jstr(r.json, "requested", NULL);
        const char *status = jstr(r.json, "status", "?");
        if (req)
            printf("%s: %s (%s requested)\n", jstr(r.json, "id", "?"), status,
                   req);
        else if (!strcmp(action, "cancel") && !strcmp(status, "running"))
            printf("%s: running (cancel requested)\n",
                   jstr(r.json, "id", "?"));
        else
            printf("%s: %s\n", jstr(r.json, "id", "?"), status);
    }
    http_resp_free(&r);
    return EXIT_OK;
}

static int cancel(tuna_opts *o, int argc, char **argv)
{
    return control(o, argc, argv, "cancel");
}
static int pause_job(tuna_opts *o, int argc, char **argv)
{
    return control(o, argc, argv, "pause");
}
static int resume(tuna_opts *o, int argc, char **argv)
{
    return control(o, argc, argv, "resume");
}
static int stop(tuna_opts *o, int argc, char **argv)
{
    return control(o, argc, argv, "stop");
}

/* -------------------------------------------------------------- events */

static void print_event(const cJSON *ev)
{
    char t[32];
    fmt_time(t, sizeof t, ev, "created_at");
    printf("%6.0f  %s  %-5s  %-7s  %s\n", jnum(ev, "id", 0), t,
           jstr(ev, "level", "?"), jstr(ev, "type", "?"),
           jstr(ev, "message", ""));
}

static int events(tuna_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"after", required_argument, NULL, OPT_AFTER},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {0}};
    job_args a = {0};
    int rc;
    int first = args_parse(o, argc, argv, "jobs events", opts, on_opt, &a,
                           -1, usage_events, &rc);
    if (first < 0)
        return rc;
    if (argc - first != 1)
        return usage_error("jobs events", argc - first ? "one ID at a time"
                                                       : "missing ID");
    /* One page with --limit; else every page, merged. */
    cJSON *all = cJSON_CreateArray();
    char after[64];
    snprintf(after, sizeof after, "%s", a.after ? a.after : "0");
    double last_id = NAN;
    for (;;) {
        char *q = NULL, tail[256], path[1024];
        if (query_add(&q, "after", after) < 0 ||
            query_add(&q, "limit", a.limit ? a.limit : "1000") < 0) {
            free(q);
            cJSON_Delete(all);
            return EXIT_FAIL;
        }
        snprintf(tail, sizeof tail, "/events%s", q);
        free(q);
        if (job_path(path, sizeof path, argv[first], tail) < 0) {
            cJSON_Delete(all);
            return EXIT_FAIL;
        }
        http_resp r;
        if (api_call(o, "GET", path, NULL, &r) < 0) {
            cJSON_Delete(all);
            return EXIT_FAIL;
        }
        if (a.limit && o->json) {
            print_body(&r);
            http_resp_free(&r);
            cJSON_Delete(all);
            return EXIT_OK;
        }
        cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
        int n = cJSON_GetArraySize(data);
        while (cJSON_GetArraySize(data)) {
            cJSON *ev = cJSON_DetachItemFromArray(data, 0);
            last_id = jnum(ev, "id", last_id);
            cJSON_AddItemToArray(all, ev);
        }
        bool more = cJSON_IsTrue(
            cJSON_GetObjectItemCaseSensitive(r.json, "has_more"));
        http_resp_free(&r);
        if (a.limit || !more || n == 0)
            break;
        snprintf(after, sizeof after, "%.0f", last_id);
    }
    if (o->json) {
        cJSON *page = cJSON_CreateObject();
        cJSON_AddStringToObject(page, "object", "list");
        cJSON_AddItemToObject(page, "data", all);
        cJSON_AddFalseToObject(page, "has_more");
        if (isnan(last_id))
            cJSON_AddNullToObject(page, "last_id");
        else
            cJSON_AddNumberToObject(page, "last_id", last_id);
        print_json(page);
        cJSON_Delete(page);
        return EXIT_OK;
    }
    const cJSON *ev;
    cJSON_ArrayForEach(ev, all) print_event(ev);
    if (!cJSON_GetArraySize(all))
        printf("(no events)\n");
    cJSON_Delete(all);
    return EXIT_OK;
}

int cmd_jobs(tuna_opts *o, int argc, char **argv)
{
    static const subcommand subs[] = {
        {"create", create}, {"list", list},          {"show", show},
        {"events", events}, {"follow", cmd_jobs_follow},
        {"cancel", cancel}, {"pause", pause_job},    {"resume", resume},
        {"stop", stop},     {NULL, NULL}};
    return dispatch_sub(o, argc, argv, "jobs", subs, usage_jobs);
}
