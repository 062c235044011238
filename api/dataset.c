/* SPDX-License-Identifier: MIT */
/*
 * dataset.c - the JSONL dataset parser: validation, durable storage and
 * loading for training.
 *
 * A dataset is read line by line from a FILE (never held whole). Each
 * non-blank line must be one JSON object in one of four shapes:
 *     {"prompt","completion"}   {"input","output"}   -> format "completion"
 *     {"messages":[{"role","content"},...]}           -> format "chat"
 *     {"text"}                                        -> format "text"
 * and every line of a file must have the same shape. Other keys are ignored.
 * A UTF-8 BOM at the start and CRLF line ends are accepted; blank lines are
 * skipped but still counted, so error line numbers match an editor's.
 *
 * Storage: validated lines (without BOM, CR and blank lines) are written to
 * a temp file in <data_dir>/datasets/ while parsing, hashed with SHA-256,
 * fsynced, renamed to <id>.jsonl and the directory fsynced; only then is the
 * store row inserted, so a row always points at a complete file. The row's
 * path is relative to the data dir ("datasets/<id>.jsonl").
 */
#include "api/api-impl.h"
#include "api/sha256.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Cap handed to the tokenizer when counting a record's tokens. */
#define API_COUNT_MAX_TOKENS (1 << 16)
#define API_MAX_MESSAGES 1024

const char *api_format_name(api_format f)
{
    switch (f) {
    case API_FMT_PROMPT_COMPLETION:
    case API_FMT_INPUT_OUTPUT:
        return "completion";
    case API_FMT_CHAT:
        return "chat";
    case API_FMT_TEXT:
        return "text";
    default:
        return "unknown";
    }
}

static const char *shape_name(api_format f)
{
    switch (f) {
    case API_FMT_PROMPT_COMPLETION:
        return "{prompt, completion}";
    case API_FMT_INPUT_OUTPUT:
        return "{input, output}";
    case API_FMT_CHAT:
        return "{messages}";
    case API_FMT_TEXT:
        return "{text}";
    default:
        return "?";
    }
}

/* ------------------------------------------------------------------------ */
/* One record                                                                */

/* A string member: "missing", "must be a string", "must not be empty". */
static int need_string(const cJSON *obj, const char *key, bool allow_empty,
                       const char *fieldname, const char **ret, char *field,
                       size_t flen, char *msg, size_t mlen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    const char *why = NULL;
    if (!it)
        why = "is missing";
    else if (!cJSON_IsString(it))
        why = "must be a string";
    else if (!allow_empty && it->valuestring[0] == '\0')
        why = "must not be empty";
    if (why) {
        snprintf(field, flen, "%s", fieldname);
        snprintf(msg, mlen, "field \"%s\" %s", fieldname, why);
        return -EINVAL;
    }
    *ret = it->valuestring;
    return 0;
}

static int parse_message(const cJSON *m, int i, eng_message *out, char *field,
                         size_t flen, char *msg, size_t mlen)
{
    char name[64];
    if (!cJSON_IsObject(m)) {
        snprintf(field, flen, "messages[%d]", i);
        snprintf(msg, mlen, "messages[%d] must be an object with role and "
                 "content", i);
        return -EINVAL;
    }
    snprintf(name, sizeof(name), "messages[%d].role", i);
    if (need_string(m, "role", false, name, &out->role, field, flen, msg,
                    mlen) < 0)
        return -EINVAL;
    if (strcmp(out->role, "system") && strcmp(out->role, "user") &&
        strcmp(out->role, "assistant")) {
        snprintf(field, flen, "%s", name);
        snprintf(msg, mlen, "%s must be \"system\", \"user\" or \"assistant\"",
                 name);
        return -EINVAL;
    }
    snprintf(name, sizeof(name), "messages[%d].content", i);
    return need_string(m, "content", false, name, &out->content, field, flen,
                       msg, mlen);
}

static int parse_chat(const cJSON *obj, eng_record *rec, eng_message **ret_msgs,
                      char *field, size_t flen, char *msg, size_t mlen)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    snprintf(field, flen, "messages");
    if (n < 1 || n > API_MAX_MESSAGES) {
        snprintf(msg, mlen, "field \"messages\" must be a non-empty array "
                 "(at most %d messages)", API_MAX_MESSAGES);
        return -EINVAL;
    }
    eng_message *msgs = calloc((size_t)n, sizeof(*msgs));
    if (!msgs) {
        snprintf(msg, mlen, "out of memory");
        return -ENOMEM;
    }
    int i = 0, assistant = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        if (parse_message(m, i, &msgs[i], field, flen, msg, mlen) < 0) {
            free(msgs);
            return -EINVAL;
        }
        assistant += strcmp(msgs[i].role, "assistant") == 0;
        i++;
    }
    if (!assistant) {
        free(msgs);
        snprintf(msg, mlen, "\"messages\" needs at least one assistant "
                 "message to learn from");
        return -EINVAL;
    }
    rec->kind = ENG_REC_CHAT;
    rec->messages = msgs;
    rec->n_messages = n;
    *ret_msgs = msgs;
    return 0;
}

int api_record_parse(const cJSON *obj, api_format *ret_fmt, eng_record *rec,
                     eng_message **ret_msgs, char *field, size_t flen,
                     char *msg, size_t mlen)
{
    memset(rec, 0, sizeof(*rec));
    *ret_msgs = NULL;
    field[0] = '\0';
    if (!cJSON_IsObject(obj)) {
        snprintf(msg, mlen, "each line must be a JSON object");
        return -EINVAL;
    }
#define HAS(k) (cJSON_GetObjectItemCaseSensitive(obj, k) != NULL)
    bool pc = HAS("prompt") || HAS("completion");
    bool io = HAS("input") || HAS("output");
    bool chat = HAS("messages"), text = HAS("text");
#undef HAS
    int kinds = pc + io + chat + text;
    if (kinds != 1) {
        snprintf(msg, mlen, kinds ? "the object mixes the keys of several "
                 "formats; use exactly one of {prompt, completion}, {input, "
                 "output}, {messages} or {text}"
                 : "unknown format: expected {prompt, completion}, {input, "
                 "output}, {messages} or {text}");
        return -EINVAL;
    }
    if (chat) {
        *ret_fmt = API_FMT_CHAT;
        return parse_chat(obj, rec, ret_msgs, field, flen, msg, mlen);
    }
    if (text) {
        *ret_fmt = API_FMT_TEXT;
        rec->kind = ENG_REC_TEXT;
        return need_string(obj, "text", false, "text", &rec->text, field, flen,
                           msg, mlen);
    }
    *ret_fmt = pc ? API_FMT_PROMPT_COMPLETION : API_FMT_INPUT_OUTPUT;
    rec->kind = ENG_REC_COMPLETION;
    const char *kp = pc ? "prompt" : "input", *kc = pc ? "completion" : "output";
    if (need_string(obj, kp, true, kp, &rec->prompt, field, flen, msg, mlen) < 0)
        return -EINVAL;
    return need_string(obj, kc, false, kc, &rec->completion, field, flen, msg,
                       mlen);
}

/* ------------------------------------------------------------------------ */
/* Lines                                                                     */

/* Next line without its end (LF or CRLF) and without a leading BOM on line 1.
 * Returns its length, or -1 at the end of input. */
static ssize_t read_line(FILE *in, char **buf, size_t *cap, long *lineno)
{
    ssize_t n = getline(buf, cap, in);
    if (n < 0)
        return -1;
    char *s = *buf;
    (*lineno)++;
    if (*lineno == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        memmove(s, s + 3, (size_t)n - 2);
        n -= 3;
    }
    if (n > 0 && s[n - 1] == '\n')
        s[--n] = '\0';
    if (n > 0 && s[n - 1] == '\r')
        s[--n] = '\0';
    return n;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Parses one line into a JSON object (syntax and encoding only). */
static cJSON *parse_line(const char *s, size_t n, char *msg, size_t mlen)
{
    if (memchr(s, '\0', n)) {
        snprintf(msg, mlen, "the line contains a NUL byte");
        return NULL;
    }
    if (!api_utf8_valid(s, n)) {
        snprintf(msg, mlen, "the line is not valid UTF-8");
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, false);
    if (j && end) {
        while (end < s + n && (*end == ' ' || *end == '\t'))
            end++;
        if (end < s + n) {
            cJSON_Delete(j);
            snprintf(msg, mlen, "bad JSON: unexpected data after the object at "
                     "column %zu (one object per line)", (size_t)(end - s) + 1);
            return NULL;
        }
    }
    if (!j) {
        size_t col = end && end >= s ? (size_t)(end - s) + 1 : 1;
        snprintf(msg, mlen, "bad JSON near column %zu", col);
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(msg, mlen, "the line is valid JSON but not an object");
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------------------ */
/* Ingest                                                                    */

typedef struct ingest {
    api_ctx *ctx;
    api_ds_error *e;
    eng_tokenizer *tok;
    FILE *out;
    char tmp[1024];
    api_sha256 sha;
    int64_t rows, tokens, bytes;
    api_format fmt;
    long fmt_line;
    const char *owner;       /* API key id of the new row, "" none */
    bool shared;
} ingest;

static int fail(api_ds_error *e, int status, const char *code, long line,
                const char *field, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int fail(api_ds_error *e, int status, const char *code, long line,
                const char *field, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->code = code;
    e->line = line;
    snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -1;
}

static int count_tokens(ingest *g, const eng_record *rec)
{
    if (!g->tok)
        return 0;
    eng_example ex = { 0 };
    if (eng_example_from_record(g->tok, rec, API_COUNT_MAX_TOKENS, &ex) < 0)
        return -1;
    g->tokens += ex.n;
    eng_example_done(&ex);
    return 0;
}

static int ingest_line(ingest *g, const char *s, size_t n, long lineno)
{
    char msg[200], field[96];
    cJSON *j = parse_line(s, n, msg, sizeof(msg));
    if (!j)
        return fail(g->e, 400, "invalid_dataset", lineno, NULL, "line %ld: %s",
                    lineno, msg);
    api_format f;
    eng_record rec;
    eng_message *msgs = NULL;
    int r = api_record_parse(j, &f, &rec, &msgs, field, sizeof(field), msg,
                             sizeof(msg));
    if (r == 0 && g->fmt != API_FMT_NONE && f != g->fmt) {
        r = fail(g->e, 400, "invalid_dataset", lineno, NULL,
                 "line %ld: mixed formats: this line is %s but line %ld is %s",
                 lineno, shape_name(f), g->fmt_line, shape_name(g->fmt));
    } else if (r < 0) {
        r = fail(g->e, 400, "invalid_dataset", lineno, field, "line %ld: %s",
                 lineno, msg);
    } else if (count_tokens(g, &rec) < 0) {
        r = fail(g->e, 400, "invalid_dataset", lineno, NULL,
                 "line %ld: the text cannot be tokenized", lineno);
    }
    free(msgs);
    cJSON_Delete(j);
    if (r < 0)
        return -1;
    if (g->fmt == API_FMT_NONE) {
        g->fmt = f;
        g->fmt_line = lineno;
    }
    if (fwrite(s, 1, n, g->out) != n || fputc('\n', g->out) == EOF)
        return fail(g->e, 507, "storage_error", -1, NULL,
                    "could not write the dataset file: %s", strerror(errno));
    api_sha256_update(&g->sha, s, n);
    api_sha256_update(&g->sha, "\n", 1);
    g->bytes += (int64_t)n + 1;
    return 0;
}

static int ingest_lines(ingest *g, FILE *in)
{
    char *buf = NULL;
    size_t cap = 0;
    long lineno = 0;
    ssize_t n;
    int r = 0;
    while (r == 0 && (n = read_line(in, &buf, &cap, &lineno)) >= 0) {
        if (is_blank(buf, (size_t)n))
            continue;
        if (g->rows >= g->ctx->limits.max_rows) {
            r = fail(g->e, 400, "invalid_dataset", lineno, NULL,
                     "line %ld: too many rows (the limit is %lld)", lineno,
                     (long long)g->ctx->limits.max_rows);
            break;
        }
        r = ingest_line(g, buf, (size_t)n, lineno);
        g->rows++;
    }
    free(buf);
    if (r == 0 && ferror(in))
        r = fail(g->e, 400, "invalid_dataset", -1, NULL,
                 "could not read the request body");
    if (r == 0 && g->rows == 0)
        r = fail(g->e, 422, "empty_dataset", -1, NULL,
                 "the dataset has no rows: send one JSON object per line");
    return r;
}

static int open_temp(ingest *g)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/datasets", g->ctx->data_dir);
    int r = api_mkdir_p(dir);
    if (r < 0)
        return fail(g->e, 507, "storage_error", -1, NULL,
                    "cannot create %s: %s", dir, strerror(-r));
    snprintf(g->tmp, sizeof(g->tmp), "%s/datasets/.upload-XXXXXX",
             g->ctx->data_dir);
    int fd = mkstemp(g->tmp);
    if (fd < 0 || !(g->out = fdopen(fd, "wb"))) {
        if (fd >= 0)
            close(fd);
        g->tmp[0] = '\0';
        return fail(g->e, 507, "storage_error", -1, NULL,
                    "cannot create a file under %s: %s", dir, strerror(errno));
    }
    return 0;
}

/* Flushes and closes the temp file (fsync'd first when it is kept for
 * good); 0 or -errno. */
static int close_out(ingest *g, bool sync)
{
    int r = fflush(g->out) == 0 && (!sync || fsync(fileno(g->out)) == 0)
                ? 0 : -errno;
    if (fclose(g->out) != 0 && r == 0)
        r = -errno;
    g->out = NULL;
    return r;
}

/* What the parse counted and the file's sha256, into a dataset row. */
static void put_stats(ingest *g, const char *name, store_dataset *d)
{
    snprintf(d->name, sizeof(d->name), "%s", name ? name : "");
    snprintf(d->format, sizeof(d->format), "%s", api_format_name(g->fmt));
    d->rows = g->rows;
    d->tokens = g->tokens;
    d->bytes = g->bytes;
    api_sha256_final_hex(&g->sha, d->sha256);
    d->created_at = api_now();
}

/* fsync, rename to datasets/<id>.jsonl, fsync the dir, insert the row. */
static int commit(ingest *g, const char *name, store_dataset *d)
{
    memset(d, 0, sizeof(*d));
    char final[1024], dir[1024];
    int r = close_out(g, true);
    if (r == 0)
        r = api_id_new("ds_", d->id, sizeof(d->id));
    api_dataset_path(g->ctx->data_dir, d->id, final, sizeof(final));
    snprintf(dir, sizeof(dir), "%s/datasets", g->ctx->data_dir);
    if (r == 0 && rename(g->tmp, final) < 0)
        r = -errno;
    if (r < 0)
        return fail(g->e, 507, "storage_error", -1, NULL,
                    "could not store the dataset: %s", strerror(-r));
    g->tmp[0] = '\0';
    api_fsync_dir(dir);
    put_stats(g, name, d);
    snprintf(d->path, sizeof(d->path), "datasets/%s.jsonl", d->id);
    snprintf(d->owner, sizeof(d->owner), "%s", g->owner ? g->owner : "");
    d->shared = g->shared;
    r = store_dataset_insert(g->ctx->db, d);
    if (r < 0) {
        unlink(final);
        return fail(g->e, api_errno_status(r) >= 500 ? 503 : 409,
                    "storage_error", -1, NULL,
                    "could not record the dataset: %s", strerror(-r));
    }
    return 0;
}

/* Keeps the validated temp file instead of storing it (dry runs): *d gets
 * the stats, no id, and the file's path, which the caller unlinks. */
static int keep_temp(ingest *g, const char *name, store_dataset *d)
{
    memset(d, 0, sizeof(*d));
    int r = close_out(g, false);
    if (r < 0)
        return fail(g->e, 507, "storage_error", -1, NULL,
                    "could not write the dataset file: %s", strerror(-r));
    put_stats(g, name, d);
    snprintf(d->path, sizeof(d->path), "%s", g->tmp);
    g->tmp[0] = '\0';
    return 0;
}

static int ingest_run(api_ctx *ctx, FILE *in, const char *name, bool temp,
                      store_dataset *ret, api_ds_error *e, const char *owner,
                      bool shared)
{
    ingest g = { .ctx = ctx, .e = e, .owner = owner, .shared = shared };
    eng_model *m = NULL;
    api_sha256_init(&g.sha);
    if (ctx->models)
        api_registry_get_base(ctx->models, api_default_base(ctx), &m, &g.tok);
    int r = open_temp(&g);
    if (r == 0)
        r = ingest_lines(&g, in);
    if (r == 0)
        r = temp ? keep_temp(&g, name, ret) : commit(&g, name, ret);
    if (g.out)
        fclose(g.out);
    if (g.tmp[0])
        unlink(g.tmp);
    eng_tokenizer_unref(g.tok);
    eng_model_unref(m);
    return r;
}

int api_dataset_ingest(api_ctx *ctx, FILE *in, const char *name,
                       store_dataset *ret, api_ds_error *e)
{
    return api_dataset_ingest_owned(ctx, in, name, "", false, ret, e);
}

int api_dataset_ingest_owned(api_ctx *ctx, FILE *in, const char *name,
                             const char *owner, bool shared,
                             store_dataset *ret, api_ds_error *e)
{
    return ingest_run(ctx, in, name, false, ret, e, owner, shared);
}

int api_dataset_ingest_temp(api_ctx *ctx, FILE *in, const char *name,
                            store_dataset *ret, api_ds_error *e)
{
    return ingest_run(ctx, in, name, true, ret, e, "", false);
}

void api_dataset_path(const char *data_dir, const char *id, char *buf,
                      size_t len)
{
    snprintf(buf, len, "%s/datasets/%s.jsonl", data_dir, id);
}

/* ------------------------------------------------------------------------ */
/* Loading for training                                                      */

static int load_line(const char *s, size_t n, long lineno,
                     const eng_tokenizer *t, int max_len, eng_example *ex,
                     char *err, size_t errlen)
{
    char msg[200], field[96];
    cJSON *j = parse_line(s, n, msg, sizeof(msg));
    if (!j) {
        snprintf(err, errlen, "line %ld: %s", lineno, msg);
        return -EINVAL;
    }
    api_format f;
    eng_record rec;
    eng_message *msgs = NULL;
    int r = api_record_parse(j, &f, &rec, &msgs, field, sizeof(field), msg,
                             sizeof(msg));
    if (r < 0)
        snprintf(err, errlen, "line %ld: %s", lineno, msg);
    else if ((r = eng_example_from_record(t, &rec, max_len, ex)) < 0)
        snprintf(err, errlen, "line %ld: cannot tokenize (%s)", lineno,
                 strerror(-r));
    free(msgs);
    cJSON_Delete(j);
    return r;
}

int api_dataset_load_examples(const char *path, const eng_tokenizer *t,
                              int max_len, eng_example **ret, int *ret_n,
                              int *ret_truncated, char *err, size_t errlen)
{
    FILE *in = fopen(path, "rb");
    if (!in) {
        int r = -errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return r;
    }
    eng_example *ex = NULL;
    int n = 0, cap = 0, truncated = 0, r = 0;
    char *buf = NULL;
    size_t bcap = 0;
    long lineno = 0;
    ssize_t len;
    while ((len = read_line(in, &buf, &bcap, &lineno)) >= 0) {
        if (is_blank(buf, (size_t)len))
            continue;
        if (n == cap) {
            int nc = cap ? cap * 2 : 64;
            eng_example *grown = realloc(ex, (size_t)nc * sizeof(*ex));
            if (!grown) {
                r = -ENOMEM;
                snprintf(err, errlen, "out of memory");
                break;
            }
            ex = grown;
            cap = nc;
        }
        memset(&ex[n], 0, sizeof(ex[n]));
        r = load_line(buf, (size_t)len, lineno, t, max_len, &ex[n], err,
                      errlen);
        if (r < 0)
            break;
        truncated += ex[n].truncated;
        n++;
    }
    free(buf);
    if (r == 0 && ferror(in)) {
        r = -EIO;
        snprintf(err, errlen, "cannot read %s", path);
    }
    fclose(in);
    if (r < 0) {
        api_examples_free(ex, n);
        return r;
    }
    *ret = ex;
    *ret_n = n;
    if (ret_truncated)
        *ret_truncated = truncated;
    return 0;
}

void api_examples_free(eng_example *ex, int n)
{
    for (int i = 0; ex && i < n; i++)
        eng_example_done(&ex[i]);
    free(ex);
}
