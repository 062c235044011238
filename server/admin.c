/* SPDX-License-Identifier: MIT */
/*
 * admin.c - the administration subcommands: `tunad keys`, `tunad backup`
 * and `tunad config check`.
 *
 * Each reads the same configuration as `tunad serve` (config file,
 * TUNA_* environment, then flags such as --data-dir), so it finds the data
 * dir the daemon uses, and works while the daemon runs: the database is in
 * WAL mode and every command opens its own handle.
 *
 * Backup: the database is copied first with SQLite's online backup API (one
 * consistent snapshot, written beside DEST and renamed into place), then
 * the data files: datasets/ and jobs/ (adapters, checkpoints). Datasets are
 * written to a dot-file and renamed into place, adapters and checkpoints
 * likewise, so skipping dot-files and *.tmp copies only finished files.
 * Last, every dataset row of the copied database is checked to have its
 * file in the copy (a dataset deleted between the two steps is reported).
 */
#include "server/admin.h"

#include "api/api.h"
#include "server/config.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Splits argv: the options in own[] (with a value unless listed in
 * switches[]) and positionals go to *ret_mine, the rest to a `serve`-style
 * argv for srv_config_parse_serve. Both arrays are malloc'd. */
typedef struct args {
    const char *name, *role;
    bool all;
    const char *pos[4];
    int n_pos;
} args;

static int split_args(int argc, char **argv, args *a, char ***ret_cfg,
                      int *ret_n)
{
    char **cfg = calloc((size_t)argc + 1, sizeof(*cfg));
    if (!cfg)
        return -ENOMEM;
    int n = 0;
    cfg[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--name") && i + 1 < argc)
            a->name = argv[++i];
        else if (!strncmp(s, "--name=", 7))
            a->name = s + 7;
        else if (!strcmp(s, "--role") && i + 1 < argc)
            a->role = argv[++i];
        else if (!strncmp(s, "--role=", 7))
            a->role = s + 7;
        else if (!strcmp(s, "--all"))
            a->all = true;
        else if (s[0] != '-' && a->n_pos < 4)
            a->pos[a->n_pos++] = s;
        else {
            cfg[n++] = argv[i];
            /* a config flag's value travels with it */
            if (!strchr(s, '=') && i + 1 < argc && argv[i + 1][0] != '-' &&
                strcmp(s, "--verbose") && strcmp(s, "--allow-public") &&
                strcmp(s, "--insecure"))
                cfg[n++] = argv[++i];
        }
    }
    *ret_cfg = cfg;
    *ret_n = n;
    return 0;
}

/* Loads the configuration and opens the store of its data dir (created
 * when missing, unless must_exist: a backup of a mistyped data dir is an
 * error, not a copy of a new empty database). */
static int open_data(int argc, char **argv, args *a, srv_config *c,
                     store **ret, bool must_exist)
{
    char **cfg = NULL;
    int n = 0;
    if (split_args(argc, argv, a, &cfg, &n) < 0)
        return -ENOMEM;
    srv_config_default(c);
    int r = srv_config_parse_serve(c, n, cfg);
    free(cfg);
    if (r)
        return -EINVAL;
    char path[PATH_MAX], err[512] = "";
    snprintf(path, sizeof path, "%s/tuna.db", c->data_dir);
    if (must_exist && access(path, F_OK) < 0) {
        fprintf(stderr, "tunad: no database in %s (%s): is --data-dir "
                "right?\n", c->data_dir, strerror(errno));
        return -ENOENT;
    }
    if (access(path, F_OK) < 0 && mkdir(c->data_dir, 0755) < 0 &&
        errno != EEXIST) {
        fprintf(stderr, "tunad: cannot create data dir %s: %s\n",
                c->data_dir, strerror(errno));
        return -EIO;
    }
    r = store_open(path, ret, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "tunad: cannot open the database %s: %s\n", path,
                *err ? err : strerror(-r));
        return r;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* keys                                                                      */

static void usage_keys(FILE *f)
{
    fputs("usage: tunad keys create --name NAME [--role admin|member] "
          "[--data-dir D]\n"
          "       tunad keys list [--all] [--data-dir D]\n"
          "       tunad keys revoke ID|NAME [--data-dir D]\n"
          "\n"
          "create prints the new key once; only its sha256 is stored. With\n"
          "any active key, every route but /health needs\n"
          "'Authorization: Bearer <key>'. The first key should be an admin.\n",
          f);
}

static int keys_create(store *s, const args *a)
{
    const char *role = a->role ? a->role : "member";
    char secret[64];
    store_key k;
    if (!a->name) {
        fprintf(stderr, "tunad keys create: --name is required\n");
        return 2;
    }
    int r = api_key_new(a->name, role, secret, &k);
    if (r == -EINVAL) {
        fprintf(stderr, "tunad keys create: the name must be 1-64 of "
                "[A-Za-z0-9._@-] and the role admin or member\n");
        return 2;
    }
    if (r == 0)
        r = store_key_insert(s, &k);
    if (r == -EEXIST) {
        fprintf(stderr, "tunad keys create: an active key is already named "
                "'%s' (revoke it first)\n", a->name);
        return 1;
    }
    if (r < 0) {
        fprintf(stderr, "tunad keys create: %s\n", strerror(-r));
        return 1;
    }
    printf("%s\n", secret);
    fprintf(stderr, "created %s key %s (%s); the key above is shown only "
            "once\n", k.role, k.id, k.name);
    return 0;
}

static int keys_list(store *s, const args *a)
{
    store_key *v = NULL;
    int n = 0, r = store_key_list(s, a->all, &v, &n);
    if (r < 0) {
        fprintf(stderr, "tunad keys list: %s\n", strerror(-r));
        return 1;
    }
    printf("%-28s %-20s %-7s %-13s %-20s %s\n", "ID", "NAME", "ROLE",
           "PREFIX", "CREATED", "REVOKED");
    for (int i = 0; i < n; i++) {
        char cr[32], rv[32] = "-";
        time_t t = (time_t)v[i].created_at;
        strftime(cr, sizeof cr, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
        if (v[i].revoked_at) {
            t = (time_t)v[i].revoked_at;
            strftime(rv, sizeof rv, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
        }
        printf("%-28s %-20s %-7s %-13s %-20s %s\n", v[i].id, v[i].name,
               v[i].role, v[i].prefix, cr, rv);
    }
    free(v);
    return 0;
}

static int keys_revoke(store *s, const args *a)
{
    if (a->n_pos != 2) {
        fprintf(stderr, "tunad keys revoke: give one key id or name\n");
        return 2;
    }
    const char *what = a->pos[1];
    store_key k;
    int r = store_key_get(s, what, &k);
    if (r == -ENOENT)
        r = store_key_find_name(s, what, &k);
    if (r == 0)
        r = store_key_revoke(s, k.id);
    if (r == -ENOENT) {
        fprintf(stderr, "tunad keys revoke: no key '%s'\n", what);
        return 1;
    }
    if (r < 0) {
        fprintf(stderr, "tunad keys revoke: %s\n", strerror(-r));
        return 1;
    }
    fprintf(stderr, "revoked %s (%s)\n", k.id, k.name);
    return 0;
}

int srv_cmd_keys(int argc, char **argv)
{
    /* argv[0] is "keys" */
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage_keys(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    args a = {0};
    srv_config c;
    store *s = NULL;
    if (open_data(argc, argv, &a, &c, &s, false) < 0)
        return 1;
    int rc;
    const char *sub = a.n_pos ? a.pos[0] : "";
    if (!strcmp(sub, "create"))
        rc = keys_create(s, &a);
    else if (!strcmp(sub, "list"))
        rc = keys_list(s, &a);
    else if (!strcmp(sub, "revoke"))
        rc = keys_revoke(s, &a);
    else {
        usage_keys(stderr);
        rc = 2;
    }
    store_close(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* backup                                                                    */

typedef struct copy_stats {
    long files;
    long long bytes;
    int errors;
} copy_stats;

static int copy_file(const char *from, const char *to, copy_stats *st)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT ? 0 : -errno;  /* deleted meanwhile: fine */
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = -errno;
        close(in);
        return e;
    }
    char buf[1 << 16];
    ssize_t n;
    int r = 0;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                r = -errno;
                break;
            }
            off += w;
        }
        if (r < 0)
            break;
        st->bytes += n;
    }
    if (n < 0)
        r = -errno;
    if (r == 0 && fsync(out) < 0)
        r = -errno;
    close(in);
    if (close(out) < 0 && r == 0)
        r = -errno;
    st->files += r == 0;
    return r;
}

static bool skip_name(const char *n)
{
    size_t l = strlen(n);
    /* ".tmp.": the engine's temp files (<name>.tmp.XXXXXX) */
    return n[0] == '.' || (l > 4 && !strcmp(n + l - 4, ".tmp")) ||
           strstr(n, ".tmp-") != NULL || strstr(n, ".tmp.") != NULL;
}

/* Copies the finished files of the tree at from into to. */
static void copy_tree(const char *from, const char *to, copy_stats *st)
{
    DIR *d = opendir(from);
    if (!d)
        return;
    if (mkdir(to, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "tunad backup: cannot create %s: %s\n", to,
                strerror(errno));
        st->errors++;
        closedir(d);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (skip_name(e->d_name))
            continue;
        char a[PATH_MAX], b[PATH_MAX];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        struct stat sb;
        if (lstat(a, &sb) < 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            copy_tree(a, b, st);
        } else if (S_ISREG(sb.st_mode)) {
            int r = copy_file(a, b, st);
            if (r < 0) {
                fprintf(stderr, "tunad backup: %s: %s\n", a, strerror(-r));
                st->errors++;
            }
        }
    }
    closedir(d);
}

/* Every dataset row of the copy has its file. */
static int verify(const char *dest, int *ret_ds, int *ret_jobs)
{
    char path[PATH_MAX], err[256];
    snprintf(path, sizeof path, "%s/tuna.db", dest);
    store *s = NULL;
    int r = store_open(path, &s, err, sizeof err);
    if (r < 0)
        return r;
    store_dataset *v = NULL;
    store_job *j = NULL;
    int n = 0, nj = 0, missing = 0;
    if ((r = store_dataset_list(s, 0, &v, &n)) == 0) {
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", dest, v[i].path);
            if (access(path, R_OK) < 0) {
                fprintf(stderr, "tunad backup: dataset %s has no file in the "
                        "copy (deleted meanwhile?)\n", v[i].id);
                missing++;
            }
        }
        free(v);
    }
    if (r == 0 && (r = store_job_list(s, NULL, 0, &j, &nj)) == 0)
        store_job_list_free(j, nj);
    store_close(s);
    *ret_ds = n;
    *ret_jobs = nj;
    return r < 0 ? r : missing;
}

int srv_cmd_backup(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: tunad backup DEST [--data-dir D]\n\n"
             "Copies the database (SQLite online backup: one consistent\n"
             "snapshot) and the data files (datasets, adapters, checkpoints)\n"
             "into the folder DEST, while the daemon keeps serving.");
        return 0;
    }
    args a = {0};
    srv_config c;
    store *s = NULL;
    if (open_data(argc, argv, &a, &c, &s, true) < 0)
        return 1;
    if (a.n_pos != 1) {
        fprintf(stderr, "usage: tunad backup DEST [--data-dir D]\n");
        store_close(s);
        return 2;
    }
    const char *dest = a.pos[0];
    char path[PATH_MAX], from[PATH_MAX];
    if (mkdir(dest, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "tunad backup: cannot create %s: %s\n", dest,
                strerror(errno));
        store_close(s);
        return 1;
    }
    snprintf(path, sizeof path, "%s/tuna.db", dest);
    int r = store_backup(s, path);
    if (r < 0) {
        char msg[256];
        store_last_error(s, msg, sizeof msg);
        fprintf(stderr, "tunad backup: %s\n", *msg ? msg : strerror(-r));
        store_close(s);
        return 1;
    }
    store_close(s);
    copy_stats st = {0};
    static const char *const trees[] = {"datasets", "jobs"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/%s", c.data_dir, trees[i]);
        snprintf(path, sizeof path, "%s/%s", dest, trees[i]);
        copy_tree(from, path, &st);
    }
    int nds = 0, njobs = 0;
    int missing = verify(dest, &nds, &njobs);
    if (missing < 0) {
        fprintf(stderr, "tunad backup: the copy does not open: %s\n",
                strerror(-missing));
        return 1;
    }
    printf("backup of %s in %s: database (%d datasets, %d jobs), %ld files, "
           "%lld bytes%s\n", c.data_dir, dest, nds, njobs, st.files, st.bytes,
           st.errors || missing ? " (with problems, see above)" : "");
    return st.errors ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* config check                                                              */

int srv_cmd_config(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "check")) {
        fprintf(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
                "usage: tunad config check [--config FILE] [serve flags]\n\n"
                "Reads the config file, TUNA_* variables and flags as `tunad "
                "serve`\nwould, prints each option's value and where it came "
                "from, and\nexits non-zero on any error.\n");
        return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    srv_config c;
    srv_config_default(&c);
    int r = srv_config_parse_serve(&c, argc - 1, argv + 1);
    if (r) {
        fprintf(stderr, "tunad config check: errors above\n");
        return r > 0 ? 0 : 1;
    }
    srv_config_finish(&c);
    srv_config_print(&c, stdout);
    int bad = srv_config_validate(&c, stderr);
    if (bad) {
        fprintf(stderr, "tunad config check: %d error%s\n", bad,
                bad == 1 ? "" : "s");
        return 1;
    }
    fprintf(stderr, "configuration ok\n");
    return 0;
}
