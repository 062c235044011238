/* SPDX-License-Identifier: MIT */
/* tuna models list, tuna health */
#include <math.h>
#include <string.h>

#include "tuna.h"

static const char usage_models[] =
    "usage: tuna models list [--json]\n"
    "\n"
    "Base models, imported adapters, tuned models and checkpoints: every\n"
    "name tuna generate --model takes.\n";

static const char usage_health[] =
    "usage: tuna health [--json]\n"
    "\n"
    "Asks tunad whether it is up (GET /health): exit 0 when it is.\n";

static void fmt_params(char *buf, size_t n, double p)
{
    if (isnan(p) || p <= 0)
        snprintf(buf, n, "-");
    else if (p >= 1e9)
        snprintf(buf, n, "%.1fB", p / 1e9);
    else if (p >= 1e6)
        snprintf(buf, n, "%.1fM", p / 1e6);
    else
        snprintf(buf, n, "%.0fK", p / 1e3);
}

static int list(tuna_opts *o, int argc, char **argv)
{
    int rc;
    if (args_simple(o, argc, argv, "models list", 0, usage_models, &rc) < 0)
        return rc;
    http_resp r;
    if (api_call(o, "GET", "/models", NULL, &r) < 0)
        return EXIT_FAIL;
    if (o->json) {
        print_body(&r);
        http_resp_free(&r);
        return EXIT_OK;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    const cJSON *m;
    int w = 11; /* the ID column: as wide as the longest id */
    cJSON_ArrayForEach(m, data)
    {
        int n = (int)strlen(jstr(m, "id", "?"));
        if (n > w)
            w = n;
    }
    printf("%-*s %-10s %-9s %7s %7s  %s\n", w, "ID", "TYPE", "STATUS",
           "PARAMS", "CONTEXT", "BASE");
    cJSON_ArrayForEach(m, data)
    {
        char params[32], ctx[32] = "-";
        fmt_params(params, sizeof params, jnum(m, "parameters", NAN));
        if (jhas_num(m, "context_length"))
            snprintf(ctx, sizeof ctx, "%.0f", jnum(m, "context_length", 0));
        printf("%-*s %-10s %-9s %7s %7s  %s\n", w, jstr(m, "id", "?"),
               jstr(m, "type", "?"), jstr(m, "status", "-"), params, ctx,
               jstr(m, "base", "-"));
        if (jstr(m, "error", NULL))
            printf("    error: %s\n", jstr(m, "error", ""));
    }
    http_resp_free(&r);
    return EXIT_OK;
}

int cmd_models(tuna_opts *o, int argc, char **argv)
{
    static const subcommand subs[] = {{"list", list}, {NULL, NULL}};
    return dispatch_sub(o, argc, argv, "models", subs, usage_models);
}

int cmd_health(tuna_opts *o, int argc, char **argv)
{
    int rc;
    if (args_simple(o, argc, argv, "health", 0, usage_health, &rc) < 0)
        return rc;
    http_resp r;
    if (api_call(o, "GET", "/health", NULL, &r) < 0)
        return EXIT_FAIL;
    if (o->json) {
        print_body(&r);
    } else {
        printf("%s: tunad %s at %s", jstr(r.json, "status", "?"),
               jstr(r.json, "version", "?"), o->url);
        const cJSON *models = cJSON_GetObjectItemCaseSensitive(r.json,
                                                               "models");
        const cJSON *m;
        int i = 0;
        cJSON_ArrayForEach(m, models)
        {
            if (cJSON_IsString(m))
                printf("%s%s", i++ ? ", " : "; models: ", m->valuestring);
        }
        putchar('\n');
    }
    http_resp_free(&r);
    return EXIT_OK;
}
