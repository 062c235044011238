/* SPDX-License-Identifier: MIT */
/*
 * models.c - GET /models and POST /models/rescan.
 *
 * The list is built from the registry's snapshot (what each model's config
 * or metadata says: nothing is loaded to list it), then the imported
 * adapters (data_dir/adapters), then the succeeded jobs' models.
 */
#include "api/models-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static cJSON *base_json(const api_model_entry *e)
{
    const eng_model_info *in = &e->info;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", e->name);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddStringToObject(o, "type", "base");
    cJSON_AddNullToObject(o, "base");
    cJSON_AddNullToObject(o, "job");
    cJSON_AddStringToObject(o, "status", !e->ok ? "error"
                                         : e->loaded ? "loaded" : "available");
    if (!e->ok) {
        cJSON_AddStringToObject(o, "error", e->error);
        if (!in->format[0])
            return o;
    }
    cJSON_AddStringToObject(o, "format", in->format);
    cJSON_AddStringToObject(o, "architecture", in->cfg.arch);
    cJSON_AddNumberToObject(o, "parameters", (double)in->n_params);
    cJSON_AddNumberToObject(o, "context_length", in->cfg.max_seq_len);
    cJSON_AddNumberToObject(o, "vocab_size", in->cfg.vocab_size < 0
                                                 ? -in->cfg.vocab_size
                                                 : in->cfg.vocab_size);
    cJSON_AddStringToObject(o, "dtype", in->dtype);
    cJSON_AddBoolToObject(o, "chat_template", in->has_chat_template);
    if (in->has_chat_template)
        cJSON_AddStringToObject(o, "chat_template_family",
                                eng_chat_family_name(in->chat_family));
    else
        cJSON_AddNullToObject(o, "chat_template_family");
    return o;
}

cJSON *api_base_model_json(api_ctx *ctx, const char *name)
{
    api_model_entry e;
    if (api_registry_entry(ctx->models, name, &e) < 0) {
        memset(&e, 0, sizeof(e));
        snprintf(e.name, sizeof(e.name), "%s", name);
        snprintf(e.error, sizeof(e.error), "removed");
    }
    return base_json(&e);
}

int api_adapter_on_base(api_ctx *ctx, const char *dir, eng_model **m,
                        eng_tokenizer **t, eng_adapter **ret_a, char *err,
                        size_t errlen)
{
    int r = api_registry_get_adapter(ctx->models, *m, dir, ret_a, err, errlen);
    if (r < 0) {
        eng_model_unref(*m);
        eng_tokenizer_unref(*t);
        *m = NULL;
        *t = NULL;
    }
    return r;
}

int api_resolve_base_or_imported(api_call *c, const char *name,
                                 eng_model **ret_m, eng_tokenizer **ret_t,
                                 eng_adapter **ret_a)
{
    char err[300] = "", base[128], dir[1024], msg[512];
    const char *what = name;
    int r = api_registry_get_base_err(c->ctx->models, name, ret_m, ret_t, err,
                                      sizeof(err));
    if (r == -ENOENT && api_imported_base(c->ctx, name, base, sizeof(base)) == 0) {
        what = base;
        r = api_registry_get_base_err(c->ctx->models, base, ret_m, ret_t, err,
                                      sizeof(err));
        if (r == 0) {
            api_imported_dir(c->ctx, name, dir, sizeof(dir));
            r = api_adapter_on_base(c->ctx, dir, ret_m, ret_t, ret_a, err,
                                    sizeof(err));
            if (r < 0)
                what = name;
        } else if (r == -ENOENT) {
            snprintf(err, sizeof(err), "its base model is gone");
            what = name;
            r = -EINVAL;
        }
    }
    if (r == -ENOENT)
        return 1;
    if (r < 0) {
        snprintf(msg, sizeof(msg), "model '%.128s' cannot be loaded: %s",
                 what, err[0] ? err : strerror(-r));
        api_error(c->res, 503, "model_unavailable", msg, -1, "model");
        return -1;
    }
    return 0;
}

void api_h_models_rescan(api_call *c)
{
    int added = 0, removed = 0, n = 0;
    api_model_entry *e = NULL;
    int r = c->ctx->models ? api_registry_rescan(c->ctx->models, &added,
                                                 &removed)
                           : -ENOENT;
    if (r < 0) {
        api_reply_errno(c, r == -ENOENT ? -EIO : r,
                        "could not read the models folder");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "added", added);
    cJSON_AddNumberToObject(o, "removed", removed);
    cJSON *arr = cJSON_AddArrayToObject(o, "models");
    if (api_registry_snapshot(c->ctx->models, &e, &n) == 0) {
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, base_json(&e[i]));
        free(e);
    }
    api_reply_json(c, 200, o);
}
