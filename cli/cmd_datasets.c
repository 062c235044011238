/* SPDX-License-Identifier: MIT */
/* tuna datasets upload|list|show|delete */
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tuna.h"

static const char usage_datasets[] =
    "usage: tuna datasets COMMAND [--json] ...\n"
    "\n"
    "  upload FILE [--name NAME]   upload a JSONL dataset (POST /datasets);\n"
    "                              a bad line is reported with its number\n"
    "  list [--limit N]            newest first\n"
    "  show ID                     one dataset\n"
    "  delete ID                   delete it (refused while a job uses it)\n";

static const char usage_upload[] =
    "usage: tuna datasets upload FILE [--name NAME] [--json]\n"
    "\n"
    "Uploads a JSONL file (one {prompt, completion}, {input, output},\n"
    "{messages} or {text} object a line) and prints the dataset. The name\n"
    "defaults to the file's name. A bad file is refused whole, with the\n"
    "line number and field the server names.\n";

static const char usage_list[] =
    "usage: tuna datasets list [--limit N] [--json]\n";
static const char usage_show[] = "usage: tuna datasets show ID [--json]\n";
static const char usage_delete[] =
    "usage: tuna datasets delete ID [--json]\n";

static void print_dataset(const cJSON *d)
{
    char created[32], size[32];
    fmt_time(created, sizeof created, d, "created_at");
    fmt_bytes(size, sizeof size, jnum(d, "bytes", 0));
    print_kv(8, "id:", "%s", jstr(d, "id", "?"));
    print_kv(8, "name:", "%s", jstr(d, "name", ""));
    print_kv(8, "format:", "%s", jstr(d, "format", "?"));
    print_kv(8, "rows:", "%.0f", jnum(d, "rows", 0));
    print_kv(8, "tokens:", "%.0f", jnum(d, "tokens", 0));
    print_kv(8, "size:", "%s", size);
    print_kv(8, "sha256:", "%s", jstr(d, "sha256", "?"));
    print_kv(8, "created:", "%s", created);
}

enum { OPT_NAME = 256, OPT_LIMIT };

typedef struct {
    const char *name;
    const char *limit;
} ds_args;

static int on_opt(void *ctx, int id, const char *arg)
{
    ds_args *a = ctx;
    if (id == OPT_NAME)
        a->name = arg;
    else if (id == OPT_LIMIT)
        a->limit = arg;
    return 0;
}

static int upload(tuna_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, OPT_NAME}, {0}};
    ds_args a = {0};
    int rc;
    int first = args_parse(o, argc, argv, "datasets upload", opts, on_opt,
                           &a, -1, usage_upload, &rc);
    if (first < 0)
        return rc;
    if (argc - first != 1)
        return usage_error("datasets upload", argc - first < 1
                                                  ? "missing FILE"
                                                  : "one FILE at a time");
    const char *file = argv[first];
    char *copy = strdup(file);
    if (!copy)
        return EXIT_FAIL;
    char *q = NULL;
    int e = query_add(&q, "name", a.name ? a.name : basename(copy));
    free(copy);
    if (e < 0)
        return EXIT_FAIL;
    char path[4096];
    snprintf(path, sizeof path, "/datasets%s", q);
    free(q);

    http_body body = {.content_type = "application/jsonl", .file = file};
    http_resp r;
    if (api_call(o, "POST", path, &body, &r) < 0)
        return EXIT_FAIL;
    if (o->json)
        print_body(&r);
    else
        print_dataset(r.json);
    http_resp_free(&r);
    return EXIT_OK;
}

static int list(tuna_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"limit", required_argument, NULL, OPT_LIMIT}, {0}};
    ds_args a = {0};
    int rc;
    if (args_parse(o, argc, argv, "datasets list", opts, on_opt, &a, 0,
                   usage_list, &rc) < 0)
        return rc;
    char *q = NULL;
    if (a.limit && query_add(&q, "limit", a.limit) < 0)
        return EXIT_FAIL;
    http_resp r;
    if (api_get(o, "/datasets", q, &r) < 0)
        return EXIT_FAIL;
    if (o->json) {
        print_body(&r);
    } else {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
        printf("%-27s %-10s %8s %9s %10s  %-19s  %s\n", "ID", "FORMAT",
               "ROWS", "TOKENS", "SIZE", "CREATED", "NAME");
        const cJSON *d;
        cJSON_ArrayForEach(d, data)
        {
            char created[32], size[32];
            fmt_time(created, sizeof created, d, "created_at");
            fmt_bytes(size, sizeof size, jnum(d, "bytes", 0));
            printf("%-27s %-10s %8.0f %9.0f %10s  %-19s  %s\n",
                   jstr(d, "id", "?"), jstr(d, "format", "?"),
                   jnum(d, "rows", 0), jnum(d, "tokens", 0), size, created,
                   jstr(d, "name", ""));
        }
        if (!cJSON_GetArraySize(data))
            printf("(no datasets)\n");
    }
    http_resp_free(&r);
    return EXIT_OK;
}

/* show and delete: one id. */
static int one(tuna_opts *o, int argc, char **argv, const char *cmd,
               const char *method, const char *usage)
{
    int rc;
    int first = args_simple(o, argc, argv, cmd, 1, usage, &rc);
    if (first < 0)
        return rc;
    char *id = url_escape(argv[first]);
    if (!id)
        return EXIT_FAIL;
    char path[1024];
    snprintf(path, sizeof path, "/datasets/%s", id);
    free(id);
    http_resp r;
    if (api_call(o, method, path, NULL, &r) < 0)
        return EXIT_FAIL;
    if (o->json)
        print_body(&r);
    else if (!strcmp(method, "DELETE"))
        printf("deleted %s\n", jstr(r.json, "id", argv[first]));
    else
        print_dataset(r.json);
    http_resp_free(&r);
    return EXIT_OK;
}

static int show(tuna_opts *o, int argc, char **argv)
{
    return one(o, argc, argv, "datasets show", "GET", usage_show);
}

static int delete(tuna_opts *o, int argc, char **argv)
{
    return one(o, argc, argv, "datasets delete", "DELETE", usage_delete);
}

int cmd_datasets(tuna_opts *o, int argc, char **argv)
{
    static const subcommand subs[] = {
        {"upload", upload}, {"list", list}, {"show", show},
        {"delete", delete}, {NULL, NULL}};
    return dispatch_sub(o, argc, argv, "datasets", subs, usage_datasets);
}
