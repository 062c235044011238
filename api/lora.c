/* SPDX-License-Identifier: MIT */
/*
 * lora.c - POST /v1/load_lora_adapter and POST /v1/unload_lora_adapter,
 * in vLLM's shapes: {"lora_name","lora_path"} and {"lora_name"}.
 *
 * A loaded adapter is a model named lora_name on its base (the body's
 * "base_model", else its adapter_config.json's base_model_name_or_path or
 * tuna_adapter.json's base_model when that names a registered base),
 * served by every generation route. Loading reads the folder into the
 * registry's resident set (an LRU under --adapter-cache-bytes), so the
 * first request does not pay for it; unloading forgets the name and drops
 * the resident copy, whose memory is freed as soon as the requests still
 * using it end.
 *
 * Safety: lora_path is resolved (realpath) and must lie under the data dir,
 * the models dir or one of --lora-dirs; only admin keys (or keys off) may
 * call these routes.
 */
#include "api/models-impl.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static bool under(const char *path, const char *dir)
{
    char root[PATH_MAX];
    size_t n;
    if (!dir || !*dir || !realpath(dir, root))
        return false;
    n = strlen(root);
    if (n > 1 && root[n - 1] == '/')
        root[--n] = '\0';
    return strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static bool path_allowed(api_ctx *ctx, const char *real)
{
    if (under(real, ctx->data_dir) || under(real, ctx->models_dir))
        return true;
    if (!ctx->lora_dirs)
        return false;
    char *list = strdup(ctx->lora_dirs), *save = NULL;
    bool ok = false;
    for (char *d = list ? strtok_r(list, ":", &save) : NULL; d && !ok;
         d = strtok_r(NULL, ":", &save))
        ok = under(real, d);
    free(list);
    return ok;
}

static cJSON *read_json(const char *dir, const char *name)
{
    char path[PATH_MAX + 64], buf[1 << 16];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return cJSON_Parse(buf);
}

/* The base a folder says it was trained on, when that is a registered
 * base model. */
static bool folder_base(api_ctx *ctx, const char *dir, char *base, size_t len)
{
    static const char *const files[] = { "adapter_config.json",
                                         "tuna_adapter.json" };
    static const char *const keys[] = { "base_model_name_or_path",
                                        "base_model" };
    for (int i = 0; i < 2; i++) {
        cJSON *j = read_json(dir, files[i]);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        bool ok = false;
        if (cJSON_IsString(v) && *v->valuestring) {
            const char *name = strrchr(v->valuestring, '/');
            name = name && name[1] ? name + 1 : v->valuestring;
            api_model_entry e;
            if ((ok = api_registry_entry(ctx->models, name, &e) == 0))
                snprintf(base, len, "%s", name);
        }
        cJSON_Delete(j);
        if (ok)
            return true;
    }
    return false;
}

void api_h_v1_load_lora(api_call *c)
{
    const char *name = NULL, *path = NULL, *base_req = NULL;
    char real[PATH_MAX], base[128], err[256] = "", msg[600];
    api_model_entry e;
    if (api_get_str(c, c->json, "lora_name", 100, NULL, &name) < 0 ||
        api_get_str(c, c->json, "lora_path", 4000, NULL, &path) < 0 ||
        api_get_str(c, c->json, "base_model", 127, NULL, &base_req) < 0)
        return;
    if (!name || !api_model_name_valid(name)) {
        api_error(c->res, 400, "invalid_parameter", "lora_name is required: "
                  "1-100 of [A-Za-z0-9._-], not starting with '.'", -1,
                  "lora_name");
        return;
    }
    if (api_registry_entry(c->ctx->models, name, &e) == 0) {
        api_error(c->res, 400, "invalid_parameter", "lora_name is the name "
                  "of a base model", -1, "lora_name");
        return;
    }
    if (!path || !*path || !realpath(path, real)) {
        api_error(c->res, 400, "invalid_parameter", "lora_path must name an "
                  "existing adapter folder", -1, "lora_path");
        return;
    }
    if (!path_allowed(c->ctx, real)) {
        api_error(c->res, 403, "forbidden", "lora_path must lie under the "
                  "data dir, the models dir or a --lora-dirs folder", -1,
                  "lora_path");
        return;
    }
    if (base_req) {
        if (api_registry_entry(c->ctx->models, base_req, &e) < 0) {
            snprintf(msg, sizeof(msg), "unknown base model '%s'", base_req);
            api_error(c->res, 404, "model_not_found", msg, -1, "base_model");
            return;
        }
        snprintf(base, sizeof(base), "%s", base_req);
    } else if (!folder_base(c->ctx, real, base, sizeof(base))) {
        api_error(c->res, 400, "invalid_parameter", "the adapter's base model "
                  "is not known: give base_model", -1, "base_model");
        return;
    }
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    eng_adapter *a = NULL;
    int rc = api_registry_get_base_err(c->ctx->models, base, &m, &t, err,
                                       sizeof(err));
    if (rc == 0)
        rc = api_registry_get_adapter(c->ctx->models, m, real, &a, err,
                                      sizeof(err));
    if (rc < 0) {
        snprintf(msg, sizeof(msg), "cannot load the adapter on %s: %s", base,
                 err[0] ? err : strerror(-rc));
        api_error(c->res, rc == -ENOMEM ? 503 : 400,
                  rc == -ENOMEM ? "out_of_memory" : "invalid_adapter", msg,
                  -1, "lora_path");
    } else if ((rc = api_registry_lora_add(c->ctx->models, name, base,
                                           real)) < 0) {
        if (rc == -EEXIST) {
            snprintf(msg, sizeof(msg), "The lora adapter '%s' has already "
                     "been loaded", name);
            api_error(c->res, 400, "invalid_parameter", msg, -1, "lora_name");
        } else {
            api_reply_errno(c, rc, "could not register the adapter");
        }
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "object", "lora_adapter");
        cJSON_AddStringToObject(o, "lora_name", name);
        cJSON_AddStringToObject(o, "lora_path", real);
        cJSON_AddStringToObject(o, "base_model", base);
        cJSON_AddNumberToObject(o, "bytes", (double)eng_adapter_bytes(a));
        snprintf(msg, sizeof(msg), "Success: LoRA adapter '%s' added "
                 "successfully.", name);
        cJSON_AddStringToObject(o, "message", msg);
        api_reply_json(c, 200, o);
    }
    eng_adapter_unref(a);
    eng_tokenizer_unref(t);
    eng_model_unref(m);
}

void api_h_v1_unload_lora(api_call *c)
{
    const char *name = NULL;
    char msg[300];
    if (api_get_str(c, c->json, "lora_name", 100, NULL, &name) < 0)
        return;
    if (!name) {
        api_error(c->res, 400, "invalid_parameter", "lora_name is required",
                  -1, "lora_name");
        return;
    }
    if (api_registry_lora_remove(c->ctx->models, name) < 0) {
        snprintf(msg, sizeof(msg), "The lora adapter '%.100s' cannot be "
                 "found", name);
        api_error(c->res, 404, "model_not_found", msg, -1, "lora_name");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "lora_adapter");
    cJSON_AddStringToObject(o, "lora_name", name);
    snprintf(msg, sizeof(msg), "Success: LoRA adapter '%s' removed "
             "successfully.", name);
    cJSON_AddStringToObject(o, "message", msg);
    api_reply_json(c, 200, o);
}
