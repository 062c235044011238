/* SPDX-License-Identifier: MIT */
/*
 * openai_files.c - OpenAI's Files API over Tuna's datasets:
 * POST /v1/files, GET /v1/files, GET /v1/files/{id},
 * GET /v1/files/{id}/content, DELETE /v1/files/{id}.
 *
 * A file is a dataset: "file-<hex>" names dataset "ds_<hex>" (openai.c), an
 * upload is parsed and stored exactly as POST /datasets does (the same
 * validation, the same errors, here in OpenAI's shape), and every dataset,
 * however it was uploaded, is listed as a file. Only purpose "fine-tune"
 * exists here.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FILES_MAX_LIST 10000

static cJSON *file_json(const store_dataset *d)
{
    char id[64];
    api_oai_id(d->id, id, sizeof(id));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddNumberToObject(o, "bytes", (double)d->bytes);
    cJSON_AddNumberToObject(o, "created_at", (double)d->created_at);
    cJSON_AddStringToObject(o, "filename", d->name[0] ? d->name : id);
    cJSON_AddStringToObject(o, "purpose", "fine-tune");
    cJSON_AddStringToObject(o, "status", "processed");
    cJSON_AddNullToObject(o, "status_details");
    cJSON_AddNullToObject(o, "expires_at");
    return o;
}

/* ------------------------------------------------------------------------ */
/* Upload                                                                    */

/* The "purpose" part of the multipart body. -1 after a 400. */
static int check_purpose(api_call *c)
{
    char boundary[128], err[160], val[64] = "";
    const api_request *req = c->req;
    if (!api_content_type_is(req->content_type, "multipart/form-data") ||
        !api_header_param(req->content_type, "boundary", boundary,
                          sizeof(boundary))) {
        api_error(c->res, 400, "invalid_multipart",
                  "upload the file as multipart/form-data with the parts "
                  "\"file\" and \"purpose\"", -1, "file");
        return -1;
    }
    FILE *in = req->body ? fmemopen((void *)req->body, req->body_len, "rb")
                         : req->body_file ? fopen(req->body_file, "rb")
                                          : NULL;
    FILE *out = fmemopen(val, sizeof(val) - 1, "wb");
    int r = in && out ? api_multipart_extract(in, boundary, "purpose", out,
                                              NULL, 0, err, sizeof(err))
                      : -ENOMEM;
    long n = out && fflush(out) == 0 ? ftell(out) : -1;
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    val[n > 0 && n < (long)sizeof(val) ? n : 0] = '\0';
    if (r == -ENOMEM) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    if (r < 0 && !strstr(err, "no part")) {
        api_error(c->res, 400, "invalid_multipart", err, -1, "purpose");
        return -1;
    }
    if (r < 0 || strcmp(val, "fine-tune") != 0) {
        api_error(c->res, 400, "invalid_parameter",
                  r < 0 ? "purpose is required: this server takes "
                          "purpose \"fine-tune\""
                        : "purpose must be \"fine-tune\" (the only purpose "
                          "this server stores)", -1, "purpose");
        return -1;
    }
    return 0;
}

void api_h_oai_files_create(api_call *c)
{
    store_dataset d;
    if (check_purpose(c) < 0 || api_dataset_from_request(c, NULL, &d) < 0)
        return;
    api_reply_json(c, 200, file_json(&d));
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */

/* ?purpose=, ?order=, ?after=, ?limit= (as OpenAI: newest first, up to
 * 10,000 per page). */
void api_h_oai_files_list(api_call *c)
{
    char purpose[32] = "", order[8] = "desc", after[64] = "", native[64];
    int64_t limit;
    api_query_get(c->req->query, "purpose", purpose, sizeof(purpose));
    api_query_get(c->req->query, "order", order, sizeof(order));
    api_query_get(c->req->query, "after", after, sizeof(after));
    if (strcmp(order, "asc") && strcmp(order, "desc")) {
        api_error(c->res, 400, "invalid_parameter",
                  "order must be \"asc\" or \"desc\"", -1, "order");
        return;
    }
    if (api_oai_limit(c, FILES_MAX_LIST, FILES_MAX_LIST, &limit) < 0)
        return;
    if (!api_oai_id_to_native(after, native, sizeof(native)))
        snprintf(native, sizeof(native), "%s", after);
    store_dataset *ds = NULL;
    int n = 0;
    int r = store_dataset_list_for(c->ctx->db, api_owner(c), FILES_MAX_LIST,
                                   &ds, &n);
    if (r < 0) {
        api_reply_errno(c, r, "could not list files");
        return;
    }
    bool asc = !strcmp(order, "asc");
    bool skipping = native[0] != '\0';
    int taken = 0;
    bool more = false;
    cJSON *data = cJSON_CreateArray();
    for (int k = 0; k < n; k++) {
        const store_dataset *d = &ds[asc ? n - 1 - k : k];
        if (purpose[0] && strcmp(purpose, "fine-tune"))
            break;
        if (skipping) {
            skipping = strcmp(d->id, native) != 0;
            continue;
        }
        if (taken == limit) {
            more = true;
            break;
        }
        cJSON_AddItemToArray(data, file_json(d));
        taken++;
    }
    free(ds);
    api_reply_json(c, 200, api_oai_list(data, more));
}

static int get_file(api_call *c, store_dataset *d)
{
    int r = store_dataset_get(c->ctx->db, c->id, d);
    if (r == -ENOENT) {
        char id[64], msg[128];
        api_oai_id(c->id, id, sizeof(id));
        snprintf(msg, sizeof(msg), "No such File object: %s", id);
        api_error(c->res, 404, "not_found", msg, -1, "id");
    } else if (r < 0) {
        api_reply_errno(c, r, "could not read the file");
    }
    return r;
}

void api_h_oai_files_get(api_call *c)
{
    store_dataset d;
    if (get_file(c, &d) == 0)
        api_reply_json(c, 200, file_json(&d));
}

static ssize_t file_read(void *ctx, char *buf, size_t max)
{
    size_t n = fread(buf, 1, max, ctx);
    return n > 0 ? (ssize_t)n : -1;
}

static void file_free(void *ctx)
{
    if (ctx)
        fclose(ctx);
}

/* The stored JSONL, streamed from disk. */
void api_h_oai_files_content(api_call *c)
{
    store_dataset d;
    char path[1024];
    if (get_file(c, &d) < 0)
        return;
    api_dataset_path(c->ctx->data_dir, d.id, path, sizeof(path));
    FILE *f = fopen(path, "rb");
    if (!f) {
        api_error(c->res, 404, "not_found", "the file's content is gone", -1,
                  "id");
        return;
    }
    c->res->status = 200;
    c->res->content_type = "application/octet-stream";
    c->res->stream = (api_stream){ .read = file_read, .free = file_free,
                                   .ctx = f };
}

void api_h_oai_files_delete(api_call *c)
{
    char id[64];
    api_oai_id(c->id, id, sizeof(id));
    api_h_datasets_delete(c);           /* same checks, same 409 */
    if (c->res->status != 200)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddBoolToObject(o, "deleted", true);
    api_reply_json(c, 200, o);
}
