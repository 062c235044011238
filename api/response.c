/* SPDX-License-Identifier: MIT */
/*
 * response.c - api_response lifetime, headers, the uniform error body and
 * the one errno -> HTTP table.
 *
 * Every response body is JSON: api_error() builds
 * {"error":{"code","message"[,"line"][,"field"]}} and replaces whatever body
 * the response had, so a handler may bail out at any point.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void api_response_done(api_response *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    for (int i = 0; i < r->n_headers; i++)
        free(r->header_values[i]);
    r->n_headers = 0;
    if (r->stream.free)
        r->stream.free(r->stream.ctx);
    memset(&r->stream, 0, sizeof(r->stream));
}

void api_response_header(api_response *r, const char *name, const char *value)
{
    /* Replace an existing header of the same name, so CORS and error paths
     * can each set theirs without duplicates. */
    for (int i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->header_names[i], name) == 0) {
            char *v = strdup(value);
            if (!v)
                return;
            free(r->header_values[i]);
            r->header_values[i] = v;
            return;
        }
    }
    if (r->n_headers >= API_MAX_HEADERS)
        return;
    char *v = strdup(value);
    if (!v)
        return;
    r->header_names[r->n_headers] = name;
    r->header_values[r->n_headers] = v;
    r->n_headers++;
}

static void set_body(api_response *r, int status, char *body)
{
    free(r->body);
    r->status = status;
    r->content_type = "application/json";
    r->body = body;
    r->body_len = body ? strlen(body) : 0;
}

/* Last resort when even the error body cannot be allocated. */
static char *static_oom_body(void)
{
    return strdup("{\"error\":{\"code\":\"out_of_memory\","
                  "\"message\":\"out of memory\"}}");
}

void api_error(api_response *r, int status, const char *code,
               const char *message, long line, const char *field)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    char *txt = NULL;
    if (e) {
        cJSON_AddStringToObject(e, "code", code);
        cJSON_AddStringToObject(e, "message", message ? message : code);
        if (line >= 0)
            cJSON_AddNumberToObject(e, "line", (double)line);
        if (field && *field)
            cJSON_AddStringToObject(e, "field", field);
        txt = cJSON_PrintUnformatted(root);
    }
    cJSON_Delete(root);
    if (!txt) {
        txt = static_oom_body();
        status = 503;
    }
    set_body(r, status, txt);
}

void api_reply_json(api_call *c, int status, cJSON *obj)
{
    char *txt = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!txt) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return;
    }
    set_body(c->res, status, txt);
}

/* ------------------------------------------------------------------------ */
/* errno -> HTTP                                                             */

static const struct {
    int err;
    int status;
    const char *code;
} errno_table[] = {
    { ENOENT, 404, "not_found" },
    { EINVAL, 400, "invalid_request" },
    { EEXIST, 409, "conflict" },
    { EBUSY, 409, "conflict" },
    { ENOMEM, 503, "out_of_memory" },
    { EAGAIN, 503, "unavailable" },
    { ENOSPC, 507, "insufficient_storage" },
    { E2BIG, 413, "too_large" },
    { ECANCELED, 409, "cancelled" },
};

static int errno_index(int neg_errno)
{
    int e = neg_errno < 0 ? -neg_errno : neg_errno;
    for (size_t i = 0; i < sizeof(errno_table) / sizeof(errno_table[0]); i++)
        if (errno_table[i].err == e)
            return (int)i;
    return -1;
}

int api_errno_status(int neg_errno)
{
    int i = errno_index(neg_errno);
    return i < 0 ? 500 : errno_table[i].status;
}

void api_reply_errno(api_call *c, int neg_errno, const char *message)
{
    int i = errno_index(neg_errno);
    const char *code = i < 0 ? "internal_error" : errno_table[i].code;
    int status = i < 0 ? 500 : errno_table[i].status;
    if (!message || !*message)
        message = strerror(neg_errno < 0 ? -neg_errno : neg_errno);
    api_error(c->res, status, code, message, -1, NULL);
}

/* ------------------------------------------------------------------------ */
/* JSON members                                                              */

void api_json_add_time(cJSON *obj, const char *name, int64_t t)
{
    if (t > 0)
        cJSON_AddNumberToObject(obj, name, (double)t);
    else
        cJSON_AddNullToObject(obj, name);
}

void api_json_add_num_or_null(cJSON *obj, const char *name, double v,
                              bool is_null)
{
    if (is_null || !isfinite(v))
        cJSON_AddNullToObject(obj, name);
    else
        cJSON_AddNumberToObject(obj, name, v);
}
