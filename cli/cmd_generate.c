/* SPDX-License-Identifier: MIT */
/* tuna generate: POST /generate with "stream": true, the text written to
 * stdout piece by piece as the server-sent events arrive. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tuna.h"

static const char usage_generate[] =
    "usage: tuna generate [--model M] [options] \"prompt\"\n"
    "\n"
    "Completes the prompt with a base model, a tuned model (its name or job\n"
    "id) or a checkpoint, streaming the text as it is generated; a summary\n"
    "(tokens, finish reason) goes to stderr. With --json the whole answer\n"
    "is printed at the end as the server's JSON instead.\n"
    "\n"
    "options:\n"
    "  --model M            the model (default: the server's, stories260K)\n"
    "  --max-tokens N       at most N tokens (64)\n"
    "  --temperature T      0 = greedy (1.0)\n"
    "  --top-p P            nucleus sampling (1.0 = off)\n"
    "  --top-k K            (0 = off)\n"
    "  --seed S             the same seed repeats a generation exactly\n"
    "  --stop S             stop before S (repeatable, up to 8)\n";

enum { OPT_MODEL = 256, OPT_MAX, OPT_TEMP, OPT_TOPP, OPT_TOPK, OPT_SEED,
       OPT_STOP };

typedef struct {
    cJSON *req;   /* the request body being built */
    cJSON *stops;
} gen_args;

static int on_opt(void *ctx, int id, const char *arg)
{
    gen_args *a = ctx;
    static const char *const names[] = {
        [OPT_MAX - OPT_MODEL] = "max_tokens",
        [OPT_TEMP - OPT_MODEL] = "temperature",
        [OPT_TOPP - OPT_MODEL] = "top_p",
        [OPT_TOPK - OPT_MODEL] = "top_k",
        [OPT_SEED - OPT_MODEL] = "seed",
    };
    if (id == OPT_MODEL) {
        cJSON_DeleteItemFromObject(a->req, "model");
        cJSON_AddStringToObject(a->req, "model", arg);
    } else if (id == OPT_STOP) {
        cJSON_AddItemToArray(a->stops, cJSON_CreateString(arg));
    } else {
        const char *name = names[id - OPT_MODEL];
        cJSON_DeleteItemFromObject(a->req, name);
        cJSON_AddItemToObject(a->req, name, json_from_arg(arg));
    }
    return 0;
}

typedef struct {
    const tuna_opts *o;
    bool wrote;      /* some text went out */
    bool ends_nl;    /* ... and it ended with a newline */
    double tokens;
    const char *finish;
    char finish_buf[32];
    http_resp err;   /* an error event, as an answer to report */
    bool failed;
} gen_state;

static void write_text(gen_state *g, const char *t)
{
    size_t n = strlen(t);
    if (!n)
        return;
    fwrite(t, 1, n, stdout);
    fflush(stdout);
    g->wrote = true;
    g->ends_nl = t[n - 1] == '\n';
}

static int on_event(void *ctx, const sse_event *e)
{
    gen_state *g = ctx;
    if (!strcmp(e->data, "[DONE]"))
        return 1;
    cJSON *ev = cJSON_Parse(e->data);
    if (!ev)
        return 0;
    if (cJSON_GetObjectItemCaseSensitive(ev, "error")) {
        /* An error after the stream started: report it like an answer. */
        g->failed = true;
        g->err.json = ev;
        return 1;
    }
    write_text(g, jstr(ev, "text", ""));
    const char *fin = jstr(ev, "finish_reason", NULL);
    if (fin) {
        snprintf(g->finish_buf, sizeof g->finish_buf, "%s", fin);
        g->finish = g->finish_buf;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(ev, "usage");
        g->tokens = jnum(u, "completion_tokens", 0);
    }
    cJSON_Delete(ev);
    return 0;
}

int cmd_generate(tuna_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, OPT_MODEL},
        {"max-tokens", required_argument, NULL, OPT_MAX},
        {"temperature", required_argument, NULL, OPT_TEMP},
        {"top-p", required_argument, NULL, OPT_TOPP},
        {"top-k", required_argument, NULL, OPT_TOPK},
        {"seed", required_argument, NULL, OPT_SEED},
        {"stop", required_argument, NULL, OPT_STOP},
        {0}};
    gen_args a = {.req = cJSON_CreateObject(), .stops = cJSON_CreateArray()};
    if (!a.req || !a.stops)
        return EXIT_FAIL;
    int rc = EXIT_OK;
    int first = args_parse(o, argc, argv, "generate", opts, on_opt, &a, -1,
                           usage_generate, &rc);
    if (first < 0)
        goto out;
    if (first >= argc) {
        rc = usage_error("generate", "missing the prompt");
        goto out;
    }
    /* The prompt: the arguments joined by spaces (quotes optional). */
    size_t plen = 1;
    for (int i = first; i < argc; i++)
        plen += strlen(argv[i]) + 1;
    char *prompt = calloc(1, plen);
    if (!prompt) {
        rc = EXIT_FAIL;
        goto out;
    }
    for (int i = first; i < argc; i++) {
        if (i > first)
            strcat(prompt, " ");
        strcat(prompt, argv[i]);
    }
    cJSON_AddStringToObject(a.req, "prompt", prompt);
    free(prompt);
    if (cJSON_GetArraySize(a.stops)) {
        cJSON_AddItemToObject(a.req, "stop", a.stops);
        a.stops = NULL;
    }
    if (!o->json)
        cJSON_AddTrueToObject(a.req, "stream");
    char *json = cJSON_PrintUnformatted(a.req);
    if (!json) {
        rc = EXIT_FAIL;
        goto out;
    }
    http_body body = {.content_type = "application/json", .data = json,
                      .len = strlen(json)};
    http_resp r;
    if (o->json) {
        if (api_call(o, "POST", "/generate", &body, &r) < 0) {
            rc = EXIT_FAIL;
        } else {
            print_body(&r);
            http_resp_free(&r);
        }
        free(json);
        goto out;
    }
    gen_state g = {.o = o};
    int e = http_stream(o, "POST", "/generate", &body, NULL, on_event, &g,
                        NULL, &r);
    free(json);
    if (g.wrote && !g.ends_nl && isatty(STDOUT_FILENO))
        putchar('\n');
    fflush(stdout);
    if (g.failed) {
        report_failure(o, HTTP_STATUS, &g.err);
        http_resp_free(&g.err);
        rc = EXIT_FAIL;
    } else if (e == HTTP_OK && r.json) {
        /* A plain answer instead of a stream. */
        write_text(&g, jstr(r.json, "text", ""));
        if (isatty(STDOUT_FILENO))
            putchar('\n');
    } else if (e != HTTP_OK) {
        report_failure(o, e, &r);
        rc = EXIT_FAIL;
    } else if (g.finish) {
        fprintf(stderr, "(%.0f tokens, finish reason: %s)\n", g.tokens,
                g.finish);
    }
    http_resp_free(&r);
out:
    cJSON_Delete(a.req);
    cJSON_Delete(a.stops);
    return rc;
}
