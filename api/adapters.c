/* SPDX-License-Identifier: MIT */
/*
 * adapters.c - imported PEFT adapters: POST /adapters, DELETE
 * /adapters/{name}, and their place in /models and /generate.
 *
 * POST /adapters?name=N[&base_model=B] takes a PEFT LoRA adapter
 * (adapter_config.json + adapter_model.safetensors) as a tar (any content
 * type but multipart) or as multipart/form-data with the parts
 * "adapter_config" and "adapter_model". The base is base_model, else the
 * adapter config's base_model_name_or_path when it (or its last path
 * component) names a registered model. Every tensor is checked against the
 * base (eng_adapter_import_peft: a 422 names the first one that does not
 * fit), then the adapter is stored, in the base's own row order, as
 *   <data_dir>/adapters/<N>/adapter_config.json, adapter_model.safetensors,
 *   tuna_adapter.json {"name","base_model","created_at","rank","alpha"}
 * written in a hidden staging folder and renamed into place, so a listed
 * adapter is always complete. It is then a model: listed by GET /models
 * (type "adapter") and served by /generate under its name.
 */
#include "api/models-impl.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void api_imported_dir(api_ctx *ctx, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/adapters/%s", ctx->data_dir, name);
}

static cJSON *read_json_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char buf[1 << 16];
    size_t n;
    if (!f)
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return cJSON_Parse(buf);
}

static cJSON *meta_of(api_ctx *ctx, const char *name)
{
    char dir[1024], path[1200];
    if (!api_model_name_valid(name))
        return NULL;
    api_imported_dir(ctx, name, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/tuna_adapter.json", dir);
    return read_json_file(path);
}

int api_imported_base(api_ctx *ctx, const char *name, char *base, size_t len)
{
    cJSON *j = meta_of(ctx, name);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "base_model");
    int rc = cJSON_IsString(b) ? 0 : -ENOENT;
    if (!rc)
        snprintf(base, len, "%s", b->valuestring);
    cJSON_Delete(j);
    return rc;
}

void api_imported_list(api_ctx *ctx, cJSON *arr)
{
    char dir[1024];
    DIR *d;
    struct dirent *de;
    snprintf(dir, sizeof(dir), "%s/adapters", ctx->data_dir);
    if (!(d = opendir(dir)))
        return;
    while ((de = readdir(d))) {
        cJSON *j = de->d_name[0] != '.' ? meta_of(ctx, de->d_name) : NULL;
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "base_model");
        if (!cJSON_IsString(b)) {
            cJSON_Delete(j);
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", de->d_name);
        cJSON_AddStringToObject(o, "object", "model");
        cJSON_AddStringToObject(o, "type", "adapter");
        cJSON_AddStringToObject(o, "base", b->valuestring);
        cJSON_AddNullToObject(o, "job");
        const char *keys[] = { "created_at", "rank", "alpha" };
        for (int i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
            if (cJSON_IsNumber(v))
                cJSON_AddNumberToObject(o, keys[i], v->valuedouble);
        }
        cJSON_AddItemToArray(arr, o);
        cJSON_Delete(j);
    }
    closedir(d);
}

/* ------------------------------------------------------------------------ */
/* Import                                                                    */

static const char *const want_files[] = { "adapter_config.json",
                                          "adapter_model.safetensors" };
static const char *const want_parts[] = { "adapter_config", "adapter_model" };

/* The request body's two files into dir; -1 after an error reply. */
static int unpack(api_call *c, const char *body, size_t len, const char *dir)
{
    char err[256] = "";
    int found = 0;
    const char *ct = c->req->content_type;
    if (ct && api_content_type_is(ct, "multipart/form-data")) {
        char boundary[256];
        if (!api_header_param(ct, "boundary", boundary, sizeof(boundary))) {
            api_error(c->res, 400, "invalid_multipart",
                      "multipart body without a boundary", -1, NULL);
            return -1;
        }
        for (int i = 0; i < 2; i++) {
            char path[1200], fn[256];
            FILE *in = fmemopen((void *)body, len, "rb");
            snprintf(path, sizeof(path), "%s/%s", dir, want_files[i]);
            FILE *out = in ? fopen(path, "wb") : NULL;
            int r = out ? api_multipart_extract(in, boundary, want_parts[i],
                                                out, fn, sizeof(fn), err,
                                                sizeof(err))
                        : -ENOMEM;
            if (in)
                fclose(in);
            if (out)
                fclose(out);
            if (r == 0)
                found++;
            else
                unlink(path);
        }
    } else {
        found = api_tar_extract(body, len, want_files, 2, dir, err,
                                sizeof(err));
        if (found < 0) {
            api_error(c->res, 400, "invalid_adapter", err, -1, NULL);
            return -1;
        }
    }
    for (int i = 0; i < 2; i++) {
        char path[1200];
        snprintf(path, sizeof(path), "%s/%s", dir, want_files[i]);
        if (access(path, R_OK) < 0) {
            char msg[256];
            snprintf(msg, sizeof(msg), "the upload has no %s (send a tar of "
                     "adapter_config.json and adapter_model.safetensors, or "
                     "multipart parts adapter_config and adapter_model)",
                     want_files[i]);
            api_error(c->res, 400, "invalid_adapter", msg, -1, NULL);
            return -1;
        }
    }
    (void)found;
    return 0;
}

/* The base model's name: ?base_model=, else the config's
 * base_model_name_or_path if registered. -1 after an error reply. */
static int pick_base(api_call *c, const char *dir, char *base, size_t len)
{
    char path[1200];
    eng_model *m;
    eng_tokenizer *t;
    if (api_query_get(c->req->query, "base_model", base, len))
        return 0;
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    cJSON *j = read_json_file(path);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j,
                                                      "base_model_name_or_path");
    int rc = -1;
    if (cJSON_IsString(b)) {
        const char *s = b->valuestring, *last = strrchr(s, '/');
        api_model_entry e;
        if (api_registry_entry(c->ctx->models, s, &e) == 0)
            rc = snprintf(base, len, "%s", s) > 0 ? 0 : -1;
        else if (last && api_registry_entry(c->ctx->models, last + 1, &e) == 0)
            rc = snprintf(base, len, "%s", last + 1) > 0 ? 0 : -1;
    }
    cJSON_Delete(j);
    (void)m;
    (void)t;
    if (rc < 0)
        api_error(c->res, 400, "invalid_parameter", "name the base model with "
                  "?base_model= (the adapter's base_model_name_or_path is not "
                  "a registered model)", -1, "base_model");
    return rc;
}

static int write_meta(const char *dir, const char *name, const char *base,
                      const eng_adapter *a, int64_t now, int rank, double alpha)
{
    (void)a;
    char path[1200];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "base_model", base);
    cJSON_AddNumberToObject(o, "created_at", (double)now);
    cJSON_AddNumberToObject(o, "rank", rank);
    cJSON_AddNumberToObject(o, "alpha", alpha);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    snprintf(path, sizeof(path), "%s/tuna_adapter.json", dir);
    FILE *f = s ? fopen(path, "wb") : NULL;
    int rc = f && fputs(s, f) >= 0 ? 0 : -EIO;
    if (f && fclose(f) != 0)
        rc = -EIO;
    free(s);
    return rc;
}

/* rank and alpha from the stored adapter_config.json */
static void config_numbers(const char *dir, int *rank, double *alpha)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    cJSON *j = read_json_file(path);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    *rank = cJSON_IsNumber(r) ? r->valueint : 0;
    *alpha = cJSON_IsNumber(al) ? al->valuedouble : 0;
    cJSON_Delete(j);
}

/* Validates and stores the unpacked adapter in tmp as name. */
static void import_into(api_call *c, const char *name, const char *tmp)
{
    char base[128], err[400] = "", root[1024], stage[1100], dir[1024];
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    eng_adapter *a = NULL;
    int r, rank;
    double alpha;
    if (pick_base(c, tmp, base, sizeof(base)) < 0)
        return;
    r = api_registry_get_base_err(c->ctx->models, base, &m, &t, err,
                                  sizeof(err));
    if (r == -ENOENT) {
        char msg[200];
        snprintf(msg, sizeof(msg), "unknown base model '%.128s'", base);
        api_error(c->res, 404, "model_not_found", msg, -1, "base_model");
        return;
    }
    if (r < 0) {
        api_error(c->res, 503, "model_unavailable", err, -1, "base_model");
        return;
    }
    r = eng_adapter_import_peft(m, tmp, &a, err, sizeof(err));
    if (r < 0) {
        api_error(c->res, r == -ENOMEM ? 503 : 422,
                  r == -ENOMEM ? "out_of_memory" : "adapter_mismatch",
                  err[0] ? err : strerror(-r), -1, NULL);
        goto out;
    }
    snprintf(root, sizeof(root), "%s/adapters", c->ctx->data_dir);
    mkdir(root, 0755);
    snprintf(stage, sizeof(stage), "%s/.import-XXXXXX", root);
    api_imported_dir(c->ctx, name, dir, sizeof(dir));
    int64_t now = api_now();
    if (!mkdtemp(stage) ||
        eng_adapter_save(a, stage, base, err, sizeof(err)) < 0) {
        api_error(c->res, 500, "internal_error", "cannot store the adapter",
                  -1, NULL);
        goto out;
    }
    config_numbers(stage, &rank, &alpha);
    if (write_meta(stage, name, base, a, now, rank, alpha) < 0 ||
        rename(stage, dir) < 0) {
        bool taken = errno == EEXIST || errno == ENOTEMPTY;
        api_rmdir_files(stage);
        if (taken)
            api_error(c->res, 409, "name_taken", "an adapter with this name "
                      "exists", -1, "name");
        else
            api_error(c->res, 500, "internal_error",
                      "cannot store the adapter", -1, NULL);
        goto out;
    }
    api_fsync_dir(root);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", name);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddStringToObject(o, "type", "adapter");
    cJSON_AddStringToObject(o, "base", base);
    cJSON_AddNumberToObject(o, "rank", rank);
    cJSON_AddNumberToObject(o, "alpha", alpha);
    cJSON_AddNumberToObject(o, "created_at", (double)now);
    api_reply_json(c, 201, o);
out:
    eng_adapter_unref(a);
    eng_tokenizer_unref(t);
    eng_model_unref(m);
}

void api_h_adapters_import(api_call *c)
{
    char name[128], tmp[1100], base[128], msg[200];
    api_model_entry e;
    if (!api_query_get(c->req->query, "name", name, sizeof(name)) ||
        !api_model_name_valid(name)) {
        api_error(c->res, 400, "invalid_parameter", "?name= is required: 1 to "
                  "100 letters, digits, '.', '_' or '-', not starting with "
                  "'.'", -1, "name");
        return;
    }
    if (api_registry_entry(c->ctx->models, name, &e) == 0 ||
        api_imported_base(c->ctx, name, base, sizeof(base)) == 0) {
        snprintf(msg, sizeof(msg), "a model named '%s' exists", name);
        api_error(c->res, 409, "name_taken", msg, -1, "name");
        return;
    }
    char *owned = NULL;
    const char *body;
    size_t len;
    if (api_body_load(c, &owned, &body, &len) < 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s/tmp", c->ctx->data_dir);
    mkdir(tmp, 0755);
    snprintf(tmp, sizeof(tmp), "%s/tmp/import-XXXXXX", c->ctx->data_dir);
    if (!mkdtemp(tmp)) {
        free(owned);
        api_reply_errno(c, -errno, "cannot unpack the upload");
        return;
    }
    if (unpack(c, body, len, tmp) == 0)
        import_into(c, name, tmp);
    api_rmdir_files(tmp);
    free(owned);
}

void api_h_adapters_delete(api_call *c)
{
    char base[128], dir[1024], msg[200];
    if (api_imported_base(c->ctx, c->id, base, sizeof(base)) < 0) {
        snprintf(msg, sizeof(msg), "no imported adapter named '%.64s'", c->id);
        api_error(c->res, 404, "model_not_found", msg, -1, "id");
        return;
    }
    api_imported_dir(c->ctx, c->id, dir, sizeof(dir));
    api_registry_forget_adapter(c->ctx->models, dir);
    api_rmdir_files(dir);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddBoolToObject(o, "deleted", 1);
    api_reply_json(c, 200, o);
}
