/* SPDX-License-Identifier: MIT */
/*
 * openai.c - what the OpenAI-compatible routes share: ids, the error shape,
 * cursor pages (files and fine-tuning: openai_files.c, openai_jobs.c;
 * serving: oai_serve.c).
 *
 * Ids. OpenAI's ids are a prefix and an opaque string; Tuna's are a prefix
 * and 24 hex digits. The two map one to one by swapping the prefix:
 * "file-<hex>" is dataset "ds_<hex>", "ftjob-<hex>" is job "job_<hex>",
 * "ftevent-<seq>" is event <seq>. The router turns either form of an {id}
 * into the native one before a handler runs, so every route (native or
 * /v1) accepts both, and both families of routes read and write the same
 * store rows.
 *
 * Errors. Handlers (and the shared native code they call) answer with
 * Tuna's error body; for /v1 paths the router then rewrites it into
 * OpenAI's {"error":{"message","type","param","code"}}, mapping Tuna's
 * field names to the OpenAI request's parameter names. A 409 also gets
 * "x-should-retry: false", so the SDKs do not retry a conflict that will
 * not go away.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *oai, *native;
} prefixes[] = {
    { "file-", "ds_" },
    { "ftjob-", "job_" },
};

bool api_oai_id_to_native(const char *id, char *buf, size_t len)
{
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pl = strlen(prefixes[i].oai);
        if (strncmp(id, prefixes[i].oai, pl) == 0) {
            int n = snprintf(buf, len, "%s%s", prefixes[i].native, id + pl);
            return n > 0 && (size_t)n < len;
        }
    }
    return false;
}

void api_oai_id(const char *native_id, char *buf, size_t len)
{
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pl = strlen(prefixes[i].native);
        if (strncmp(native_id, prefixes[i].native, pl) == 0) {
            snprintf(buf, len, "%s%s", prefixes[i].oai, native_id + pl);
            return;
        }
    }
    snprintf(buf, len, "%s", native_id);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

/* Tuna field -> OpenAI parameter (NULL: none). */
static const struct {
    const char *field, *param;
} params[] = {
    { "base_model", "model" },
    { "dataset_id", "training_file" },
    { "validation_dataset_id", "validation_file" },
    { "epochs", "hyperparameters.n_epochs" },
    { "batch_size", "hyperparameters.batch_size" },
    { "learning_rate", "hyperparameters.learning_rate_multiplier" },
    { "id", NULL },
};

static const char *error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

void api_oai_error_convert(const api_request *req, api_response *r)
{
    (void)req;
    if (r->status < 400 || !r->body || r->stream.read)
        return;
    cJSON *root = cJSON_ParseWithLength(r->body, r->body_len);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(e, "field");
    const cJSON *line = cJSON_GetObjectItemCaseSensitive(e, "line");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
    if (!cJSON_IsString(code) || !cJSON_IsString(msg) || type) {
        cJSON_Delete(root);       /* not Tuna's shape (or converted already) */
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *oe = cJSON_AddObjectToObject(out, "error");
    cJSON_AddStringToObject(oe, "message", msg->valuestring);
    cJSON_AddStringToObject(oe, "type", error_type(r->status));
    const char *param = cJSON_IsString(field) ? field->valuestring : NULL;
    for (size_t i = 0; param && i < sizeof(params) / sizeof(params[0]); i++)
        if (!strcmp(param, params[i].field))
            param = params[i].param;
    if (param)
        cJSON_AddStringToObject(oe, "param", param);
    else
        cJSON_AddNullToObject(oe, "param");
    cJSON_AddStringToObject(oe, "code", code->valuestring);
    if (cJSON_IsNumber(line))
        cJSON_AddNumberToObject(oe, "line", line->valuedouble);
    char *txt = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    cJSON_Delete(root);
    if (!txt)
        return;
    free(r->body);
    r->body = txt;
    r->body_len = strlen(txt);
    if (r->status == 409)
        api_response_header(r, "x-should-retry", "false");
}

/* ------------------------------------------------------------------------ */
/* Pages                                                                     */

int api_oai_limit(api_call *c, int64_t max, int64_t def, int64_t *ret)
{
    return api_query_int(c, "limit", 1, max, def, ret);
}

cJSON *api_oai_list(cJSON *data, bool has_more)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToObject(o, "data", data);
    cJSON_AddBoolToObject(o, "has_more", has_more);
    int n = cJSON_GetArraySize(data);
    const cJSON *first = cJSON_GetArrayItem(data, 0);
    const cJSON *last = cJSON_GetArrayItem(data, n - 1);
    const cJSON *fid = cJSON_GetObjectItemCaseSensitive(first, "id");
    const cJSON *lid = cJSON_GetObjectItemCaseSensitive(last, "id");
    if (cJSON_IsString(fid))
        cJSON_AddStringToObject(o, "first_id", fid->valuestring);
    else
        cJSON_AddNullToObject(o, "first_id");
    if (cJSON_IsString(lid))
        cJSON_AddStringToObject(o, "last_id", lid->valuestring);
    else
        cJSON_AddNullToObject(o, "last_id");
    return o;
}
