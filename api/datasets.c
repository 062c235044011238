/* SPDX-License-Identifier: MIT */
/*
 * datasets.c - /datasets handlers and reading a request body as a dataset.
 *
 * The body may be in memory (req->body) or already streamed to a file by the
 * server (req->body_file); either way it is read through a FILE so the
 * parser never needs it whole. A multipart/form-data body has its part named
 * "file" copied to a temp file first (streaming), and that is parsed.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cJSON *api_dataset_json(const store_dataset *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", d->id);
    cJSON_AddStringToObject(o, "object", "dataset");
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "format", d->format);
    cJSON_AddNumberToObject(o, "rows", (double)d->rows);
    cJSON_AddNumberToObject(o, "tokens", (double)d->tokens);
    cJSON_AddNumberToObject(o, "bytes", (double)d->bytes);
    cJSON_AddStringToObject(o, "sha256", d->sha256);
    api_json_add_time(o, "created_at", d->created_at);
    return o;
}

static void reply_ds_error(api_call *c, const api_ds_error *e)
{
    api_error(c->res, e->status, e->code, e->message, e->line,
              e->field[0] ? e->field : NULL);
}

static FILE *open_body(api_call *c)
{
    const api_request *req = c->req;
    FILE *f = NULL;
    if (req->body && req->body_len > 0)
        f = fmemopen((void *)req->body, req->body_len, "rb");
    else if (!req->body && req->body_file)
        f = fopen(req->body_file, "rb");
    struct stat st;
    if (f && !req->body && (fstat(fileno(f), &st) < 0 || st.st_size == 0)) {
        fclose(f);
        f = NULL;
    }
    if (!f)
        api_error(c->res, 400, "missing_body",
                  "the request body is empty: send the dataset as JSONL, one "
                  "JSON object per line", -1, NULL);
    return f;
}

/* Copies the "file" part of a multipart body into a temp file (returned
 * rewound; its path is unlinked at once so nothing is left behind). */
static FILE *multipart_part(api_call *c, FILE *body, char *filename,
                            size_t fnlen)
{
    char boundary[128], tmp[1024], err[160];
    if (!api_header_param(c->req->content_type, "boundary", boundary,
                          sizeof(boundary))) {
        api_error(c->res, 400, "invalid_multipart",
                  "multipart/form-data needs a boundary parameter", -1, NULL);
        return NULL;
    }
    snprintf(tmp, sizeof(tmp), "%s/datasets", c->ctx->data_dir);
    api_mkdir_p(tmp);
    snprintf(tmp, sizeof(tmp), "%s/datasets/.part-XXXXXX", c->ctx->data_dir);
    int fd = mkstemp(tmp);
    FILE *out = fd >= 0 ? fdopen(fd, "w+b") : NULL;
    if (!out) {
        if (fd >= 0)
            close(fd);
        api_error(c->res, 507, "storage_error", "cannot create a temp file",
                  -1, NULL);
        return NULL;
    }
    unlink(tmp);
    int r = api_multipart_extract(body, boundary, "file", out, filename, fnlen,
                                  err, sizeof(err));
    if (r < 0 || fflush(out) != 0 || fseek(out, 0, SEEK_SET) != 0) {
        fclose(out);
        api_error(c->res, 400, "invalid_multipart", err, -1, "file");
        return NULL;
    }
    return out;
}

int api_dataset_from_request(api_call *c, const char *name,
                             store_dataset *ret)
{
    bool shared;
    if (api_shared_param(c, NULL, &shared) < 0)
        return -1;
    FILE *body = open_body(c);
    if (!body)
        return -1;
    FILE *in = body;
    char filename[256] = "";
    if (api_content_type_is(c->req->content_type, "multipart/form-data")) {
        in = multipart_part(c, body, filename, sizeof(filename));
        if (!in) {
            fclose(body);
            return -1;
        }
        if ((!name || !*name) && api_utf8_valid(filename, strlen(filename)))
            name = filename;
    }
    api_ds_error e = { 0 };
    int r = c->dry_run ? api_dataset_ingest_temp(c->ctx, in, name, ret, &e)
                       : api_dataset_ingest_owned(c->ctx, in, name,
                                                  api_owner_stamp(c), shared,
                                                  ret, &e);
    if (in != body)
        fclose(in);
    fclose(body);
    if (r < 0)
        reply_ds_error(c, &e);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Handlers                                                                  */

void api_h_datasets_create(api_call *c)
{
    if (api_content_type_is(c->req->content_type, "application/json")) {
        api_error(c->res, 415, "unsupported_media_type",
                  "send the dataset as JSONL (e.g. Content-Type: "
                  "application/jsonl or multipart/form-data), not "
                  "application/json", -1, NULL);
        return;
    }
    char name[256];
    store_dataset d;
    if (api_query_str(c, "name", sizeof(name) - 1, name, sizeof(name)) < 0 ||
        api_dataset_from_request(c, name, &d) < 0)
        return;
    char loc[128];
    snprintf(loc, sizeof(loc), "/datasets/%s", d.id);
    api_response_header(c->res, "Location", loc);
    api_reply_json(c, 201, api_dataset_json(&d));
}

void api_h_datasets_list(api_call *c)
{
    int64_t limit;
    if (api_query_int(c, "limit", 1, 1000, 100, &limit) < 0)
        return;
    store_dataset *ds = NULL;
    int n = 0;
    int r = store_dataset_list_for(c->ctx->db, api_owner(c), (int)limit, &ds,
                                   &n);
    if (r < 0) {
        api_reply_errno(c, r, "could not list datasets");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *arr = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, api_dataset_json(&ds[i]));
    free(ds);
    api_reply_json(c, 200, o);
}

static void not_found(api_call *c, const char *what)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "no %s with id '%s'", what, c->id);
    api_error(c->res, 404, "not_found", msg, -1, "id");
}

void api_h_datasets_get(api_call *c)
{
    store_dataset d;
    int r = store_dataset_get(c->ctx->db, c->id, &d);
    if (r == -ENOENT)
        not_found(c, "dataset");
    else if (r < 0)
        api_reply_errno(c, r, "could not read the dataset");
    else
        api_reply_json(c, 200, api_dataset_json(&d));
}

void api_h_datasets_delete(api_call *c)
{
    store_dataset d;
    int r = store_dataset_get(c->ctx->db, c->id, &d);
    if (r == 0)
        r = store_dataset_delete(c->ctx->db, c->id);
    if (r == -ENOENT) {
        not_found(c, "dataset");
        return;
    }
    if (r == -EBUSY) {
        api_error(c->res, 409, "dataset_in_use",
                  "a queued or running job uses this dataset; cancel it or "
                  "wait for it to finish", -1, "id");
        return;
    }
    if (r < 0) {
        api_reply_errno(c, r, "could not delete the dataset");
        return;
    }
    char path[1024];
    api_dataset_path(c->ctx->data_dir, c->id, path, sizeof(path));
    unlink(path);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "object", "dataset");
    cJSON_AddBoolToObject(o, "deleted", true);
    api_reply_json(c, 200, o);
}

/* ------------------------------------------------------------------------ */
/* training_data records                                                     */

static int check_records(api_call *c, const cJSON *arr)
{
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (n < 1 || n > c->ctx->limits.max_rows) {
        char msg[160];
        snprintf(msg, sizeof(msg), "training_data must be a non-empty array of "
                 "at most %lld records", (long long)c->ctx->limits.max_rows);
        api_error(c->res, 400, "invalid_parameter", msg, -1, "training_data");
        return -1;
    }
    api_format first = API_FMT_NONE;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char field[96], msg[200], full[128], fmsg[300];
        api_format f;
        eng_record rec;
        eng_message *msgs = NULL;
        int r = api_record_parse(it, &f, &rec, &msgs, field, sizeof(field), msg,
                                 sizeof(msg));
        free(msgs);
        if (r == 0 && first != API_FMT_NONE && f != first) {
            r = -EINVAL;
            field[0] = '\0';
            snprintf(msg, sizeof(msg), "mixed formats: this record is %s but "
                     "training_data[0] is %s", api_format_name(f),
                     api_format_name(first));
        }
        if (r < 0) {
            snprintf(full, sizeof(full), "training_data[%d]%s%s", i,
                     field[0] ? "." : "", field);
            snprintf(fmsg, sizeof(fmsg), "training_data[%d]: %s", i, msg);
            api_error(c->res, 400, "invalid_parameter", fmsg, -1, full);
            return -1;
        }
        if (first == API_FMT_NONE)
            first = f;
        i++;
    }
    return 0;
}

int api_dataset_from_records(api_call *c, const cJSON *arr,
                             store_dataset *ret)
{
    bool shared;
    if (api_shared_param(c, NULL, &shared) < 0 || check_records(c, arr) < 0)
        return -1;
    char *buf = NULL;
    size_t len = 0;
    FILE *ms = open_memstream(&buf, &len);
    const cJSON *it;
    bool ok = ms != NULL;
    cJSON_ArrayForEach(it, arr) {
        char *line = ok ? cJSON_PrintUnformatted(it) : NULL;
        ok = line && fprintf(ms, "%s\n", line) > 0;
        free(line);
    }
    if (ms && fclose(ms) != 0)
        ok = false;
    FILE *in = ok ? fmemopen(buf, len, "rb") : NULL;
    if (!in) {
        free(buf);
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    api_ds_error e = { 0 };
    int r = c->dry_run
                ? api_dataset_ingest_temp(c->ctx, in, "training_data", ret, &e)
                : api_dataset_ingest_owned(c->ctx, in, "training_data",
                                           api_owner_stamp(c), shared, ret,
                                           &e);
    fclose(in);
    free(buf);
    if (r < 0)
        reply_ds_error(c, &e);
    return r;
}
