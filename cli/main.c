/* SPDX-License-Identifier: MIT */
/* tuna: global options, the command table, option parsing. */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "tuna.h"

static const char usage_main[] =
    "usage: tuna [--url URL] [--api-key KEY] [--json] COMMAND ...\n"
    "\n"
    "The command-line client of tunad; it speaks the HTTP API of\n"
    "docs/api.md.\n"
    "\n"
    "commands:\n"
    "  datasets upload FILE         upload a JSONL dataset\n"
    "  datasets list|show|delete    list datasets, show or delete one\n"
    "  jobs create FILE|--dataset ID [settings] [--follow]\n"
    "                               start a finetuning job\n"
    "  jobs list|show|events ID     list jobs, show one, list its events\n"
    "  jobs follow ID               live progress until the job ends\n"
    "  jobs cancel|pause|resume|stop ID\n"
    "                               control a job\n"
    "  generate --model M \"prompt\"  complete a prompt, streamed\n"
    "  models list                  base, tuned and imported models\n"
    "  health                       is tunad up?\n"
    "\n"
    "options (every command takes them):\n"
    "  --url URL        tunad's address (TUNA_URL; default " TUNA_DEFAULT_URL
    ")\n"
    "  --api-key KEY    bearer key (TUNA_API_KEY)\n"
    "  --json           print the server's JSON, for scripts (an error's\n"
    "                   too, on stdout; the message still goes to stderr)\n"
    "  -h, --help       help (also after a command: tuna jobs create --help)\n"
    "  --version        print the version\n"
    "\n"
    "Exit status: 0 ok; 1 the server answered an error, could not be\n"
    "reached, or a followed job failed or was cancelled; 2 a usage error.\n";

enum { OPT_URL = 'U', OPT_KEY = 'K', OPT_JSON = 'j', OPT_HELP = 'h' };

static const struct option common_opts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"api-key", required_argument, NULL, OPT_KEY},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
};
#define N_COMMON (sizeof common_opts / sizeof common_opts[0])

int usage_error(const char *cmd, const char *fmt, ...)
{
    fprintf(stderr, "tuna %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see tuna %s --help)\n", cmd);
    return EXIT_USAGE;
}

static void set_url(tuna_opts *o, const char *url)
{
    snprintf(o->url, sizeof o->url, "%s", url);
    size_t n = strlen(o->url);
    while (n && o->url[n - 1] == '/')
        o->url[--n] = '\0';
}

/* The getopt_long loop of args_parse: the first positional argument's
 * index, or -1 after a usage error or --help (*help set). */
static int parse_opts(tuna_opts *o, int argc, char **argv, const char *cmd,
                      const struct option *extra, opt_fn fn, void *ctx,
                      const char *usage, bool *help)
{
    struct option all[64];
    size_t n = 0;
    for (size_t i = 0; i < N_COMMON; i++)
        all[n++] = common_opts[i];
    for (; extra && extra[0].name && n < 63; extra++)
        all[n++] = *extra;
    memset(&all[n], 0, sizeof all[n]);

    *help = false;
    optind = 0; /* glibc: start over */
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":h", all, NULL);
        if (c == -1)
            break;
        switch (c) {
        case OPT_URL:
            set_url(o, optarg);
            break;
        case OPT_KEY:
            o->api_key = optarg;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_HELP:
            fputs(usage, stdout);
            *help = true;
            return -1;
        case ':':
            usage_error(cmd, "%s needs a value", argv[optind - 1]);
            return -1;
        case '?':
            if (optopt && optopt < 256)
                usage_error(cmd, "unknown option -%c", optopt);
            else
                usage_error(cmd, "unknown option %s", argv[optind - 1]);
            return -1;
        default:
            if (!fn || fn(ctx, c, optarg) < 0)
                return -1;
        }
    }
    return optind;
}

int args_parse(tuna_opts *o, int argc, char **argv, const char *cmd,
               const struct option *extra, opt_fn fn, void *ctx, int n,
               const char *usage, int *rc)
{
    bool help;
    int first = parse_opts(o, argc, argv, cmd, extra, fn, ctx, usage, &help);
    if (first < 0) {
        *rc = help ? EXIT_OK : EXIT_USAGE;
        return -1;
    }
    int got = argc - first;
    if (n >= 0 && got != n) {
        if (got < n)
            *rc = usage_error(cmd, "missing argument");
        else
            *rc = usage_error(cmd, "unexpected argument '%s'",
                              argv[first + n]);
        return -1;
    }
    return first;
}

int args_simple(tuna_opts *o, int argc, char **argv, const char *cmd,
                int n, const char *usage, int *rc)
{
    return args_parse(o, argc, argv, cmd, NULL, NULL, NULL, n, usage, rc);
}

int dispatch_sub(tuna_opts *o, int argc, char **argv, const char *group,
                 const subcommand *subs, const char *usage)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    for (; subs->name; subs++)
        if (!strcmp(argv[1], subs->name))
            return subs->fn(o, argc - 1, argv + 1);
    fprintf(stderr, "tuna %s: unknown command '%s' (see tuna %s --help)\n",
            group, argv[1], group);
    return EXIT_USAGE;
}

typedef subcommand command;

static const command commands[] = {
    {"datasets", cmd_datasets}, {"jobs", cmd_jobs},
    {"generate", cmd_generate}, {"models", cmd_models},
    {"health", cmd_health},
};

int main(int argc, char **argv)
{
    tuna_opts o = {0};
    const char *env = getenv("TUNA_URL");
    set_url(&o, env && *env ? env : TUNA_DEFAULT_URL);
    env = getenv("TUNA_API_KEY");
    if (env && *env)
        o.api_key = env;

    /* Options before the command. */
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--version")) {
            printf("tuna %s\n", TUNA_VERSION);
            return EXIT_OK;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_main, stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "--url") || !strcmp(a, "--api-key")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tuna: %s needs a value\n", a);
                return EXIT_USAGE;
            }
            if (a[2] == 'u')
                set_url(&o, argv[++i]);
            else
                o.api_key = argv[++i];
        } else if (!strncmp(a, "--url=", 6)) {
            set_url(&o, a + 6);
        } else if (!strncmp(a, "--api-key=", 10)) {
            o.api_key = a + 10;
        } else {
            fprintf(stderr, "tuna: unknown option %s (see tuna --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const command *cmd = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (!strcmp(argv[i], commands[k].name))
            cmd = &commands[k];
    if (!cmd) {
        fprintf(stderr, "tuna: unknown command '%s' (see tuna --help)\n",
                argv[i]);
        return EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "tuna: libcurl failed to start\n");
        return EXIT_FAIL;
    }
    /* The command sees its own name as argv[0]. */
    int rc = cmd->fn(&o, argc - i, argv + i);
    fflush(stdout);
    curl_global_cleanup();
    return rc;
}
