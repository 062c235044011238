/* SPDX-License-Identifier: MIT */
/*
 * generate.c - POST /generate, GET /models, GET /health.
 *
 * /generate resolves "model" (a base model name, a job id or a job's model
 * name "ft:<base>:<suffix>:<job id>") to a shared base model plus, for a
 * job, its adapter from the registry's cache, then runs eng_generate once
 * per prompt, in order. A single prompt answers one flat object; an array
 * of prompts answers {"object":"list","results":[...]} in the same order.
 */
#include "api/models-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#ifndef TUNA_VERSION
#define TUNA_VERSION "0.0.0"
#endif

#define API_MAX_STOP 8
#define API_MAX_STOP_BYTES 64

/* ------------------------------------------------------------------------ */
/* Model names                                                               */

static int job_model(api_call *c, const char *name, const char *id,
                     store_job *j)
{
    int r = api_id_valid(id, "job_") ? store_job_get(c->ctx->db, id, j)
                                     : -ENOENT;
    if (r == 0 && strcmp(id, name) != 0 && strcmp(j->model, name) != 0) {
        store_job_done(j);
        r = -ENOENT;
    }
    char msg[200];
    if (r == -ENOENT) {
        snprintf(msg, sizeof(msg), "unknown model '%.128s'", name);
        api_error(c->res, 404, "model_not_found", msg, -1, "model");
        return -1;
    }
    if (r < 0) {
        api_reply_errno(c, r, "could not read the job");
        return -1;
    }
    if (strcmp(j->status, "succeeded") != 0) {
        snprintf(msg, sizeof(msg), "the job's model is not ready: the job is "
                 "%s", j->status);
        api_error(c->res, 409, "model_not_ready", msg, -1, "model");
        store_job_done(j);
        return -1;
    }
    return 0;
}

int api_model_resolve(api_call *c, const char *name, eng_model **ret_m,
                      eng_tokenizer **ret_t, eng_adapter **ret_a,
                      char *ret_name, size_t namelen)
{
    *ret_a = NULL;
    int rb = api_resolve_base_or_imported(c, name, ret_m, ret_t, ret_a);
    if (rb <= 0) {
        if (rb == 0)
            snprintf(ret_name, namelen, "%s", name);
        return rb;
    }
    const char *id = strncmp(name, "ft:", 3) == 0 ? strrchr(name, ':') + 1
                                                  : name;
    store_job j;
    if (job_model(c, name, id, &j) < 0)
        return -1;
    int ck = api_checkpoint_resolve(c, name, ret_m, ret_t, ret_a, ret_name,
                                    namelen);
    if (ck <= 0)
        return ck;
    char dir[1024], err[256] = "";
    int r = api_registry_get_base(c->ctx->models, j.base_model, ret_m, ret_t);
    if (r == 0) {
        api_job_adapter_dir(c->ctx->data_dir, j.id, dir, sizeof(dir));
        r = api_registry_get_adapter(c->ctx->models, *ret_m, dir, ret_a, err,
                                     sizeof(err));
        if (r < 0) {
            eng_model_unref(*ret_m);
            eng_tokenizer_unref(*ret_t);
        }
    }
    if (r < 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "the model of job %s cannot be loaded: %s",
                 j.id, err[0] ? err : strerror(-r));
        api_error(c->res, 503, "model_unavailable", msg, -1, "model");
    } else {
        snprintf(ret_name, namelen, "%s", j.model);
    }
    store_job_done(&j);
    return r < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Request                                                                   */

typedef struct gen_req {
    const char *model;
    const cJSON *prompts;    /* string or array of strings */
    eng_sample_params sp;
    const char *stop[API_MAX_STOP];
} gen_req;

static const char *const gen_keys[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed",
    "stop", "stream", NULL,
};

static int check_gen_keys(api_call *c)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, c->json) {
        bool ok = false;
        for (int i = 0; !ok && gen_keys[i]; i++)
            ok = strcmp(gen_keys[i], it->string) == 0;
        if (!ok) {
            char msg[128];
            snprintf(msg, sizeof(msg), "unknown field \"%.64s\"", it->string);
            api_error(c->res, 400, "invalid_parameter", msg, -1, it->string);
            return -1;
        }
    }
    return 0;
}

static int parse_prompts(api_call *c, gen_req *g)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(c->json, "prompt");
    const char *why = NULL;
    if (!p)
        why = "prompt is required";
    else if (cJSON_IsArray(p)) {
        int n = cJSON_GetArraySize(p);
        const cJSON *e;
        if (n < 1 || n > c->ctx->limits.max_prompts)
            why = "prompt must be a string or a non-empty array of strings "
                  "(see limits.max_prompts)";
        cJSON_ArrayForEach(e, p) if (!cJSON_IsString(e)) why =
            "every prompt in the array must be a string";
    } else if (!cJSON_IsString(p)) {
        why = "prompt must be a string or an array of strings";
    }
    if (why) {
        api_error(c->res, 400, "invalid_parameter", why, -1, "prompt");
        return -1;
    }
    g->prompts = p;
    return 0;
}

static int parse_stop(api_call *c, gen_req *g)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c->json, "stop");
    if (!s || cJSON_IsNull(s))
        return 0;
    int n = 0;
    bool ok = true;
    if (cJSON_IsString(s)) {
        g->stop[n++] = s->valuestring;
    } else if (cJSON_IsArray(s) && cJSON_GetArraySize(s) <= API_MAX_STOP) {
        const cJSON *e;
        cJSON_ArrayForEach(e, s) {
            ok = ok && cJSON_IsString(e);
            if (ok)
                g->stop[n++] = e->valuestring;
        }
    } else {
        ok = false;
    }
    for (int i = 0; ok && i < n; i++)
        ok = g->stop[i][0] && strlen(g->stop[i]) <= API_MAX_STOP_BYTES;
    if (!ok) {
        api_error(c->res, 400, "invalid_parameter",
                  "stop must be a string or an array of at most 8 non-empty "
                  "strings of at most 64 bytes", -1, "stop");
        return -1;
    }
    g->sp.stop = g->stop;
    g->sp.n_stop = n;
    return 0;
}

static int parse_gen(api_call *c, gen_req *g)
{
    const cJSON *o = c->json;
    int64_t max_tokens, top_k, seed, rnd = 0;
    double temp, top_p;
    bool stream;
    getrandom(&rnd, sizeof(rnd), 0);
    rnd &= ((int64_t)1 << 53) - 1;
    eng_sample_params_default(&g->sp);
    if (check_gen_keys(c) < 0 ||
        api_get_str(c, o, "model", 255, api_default_base(c->ctx), &g->model) < 0 ||
        parse_prompts(c, g) < 0 ||
        api_get_int(c, o, "max_tokens", 1, c->ctx->limits.max_gen_tokens, 64,
                    &max_tokens) < 0 ||
        api_get_num(c, o, "temperature", 0, 2, 1.0, &temp) < 0 ||
        api_get_num(c, o, "top_p", 0, 1, 1.0, &top_p) < 0 ||
        api_get_int(c, o, "top_k", 0, 1 << 20, 0, &top_k) < 0 ||
        api_get_int(c, o, "seed", 0, ((int64_t)1 << 53) - 1, rnd, &seed) < 0 ||
        api_get_bool(c, o, "stream", false, &stream) < 0 || parse_stop(c, g) < 0)
        return -1;
    if (stream) {
        api_error(c->res, 400, "invalid_parameter",
                  "streaming is not supported yet", -1, "stream");
        return -1;
    }
    if (top_p <= 0) {
        api_error(c->res, 400, "invalid_parameter",
                  "top_p must be greater than 0 and at most 1", -1, "top_p");
        return -1;
    }
    g->sp.max_tokens = (int)max_tokens;
    g->sp.temperature = (float)temp;
    g->sp.top_p = (float)top_p;
    g->sp.top_k = (int)top_k;
    g->sp.seed = (uint64_t)seed;
    g->sp.n_threads = c->ctx->gen_threads > 0 ? c->ctx->gen_threads : 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Running                                                                   */

static cJSON *usage_json(int prompt, int completion)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + completion);
    return u;
}

/* One prompt -> result object, or NULL after an error reply. */
static cJSON *run_one(api_call *c, eng_model *m, eng_tokenizer *t,
                      eng_adapter *a, const char *prompt, const gen_req *g)
{
    int32_t one[1];
    int n = 0, ctxlen = eng_model_config(m)->max_seq_len;
    eng_tokenizer_encode(t, prompt, strlen(prompt), true, false, one, 1, &n);
    if (n >= ctxlen) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the prompt has %d tokens; the model's "
                 "context is %d", n, ctxlen);
        api_error(c->res, 422, "prompt_too_long", msg, -1, "prompt");
        return NULL;
    }
    eng_sample_params sp = g->sp;
    if (sp.max_tokens > ctxlen - n)
        sp.max_tokens = ctxlen - n;
    eng_generation gen = { 0 };
    char err[256] = "";
    int r = eng_generate(m, a, t, prompt, &sp, NULL, NULL, NULL, &gen, err,
                         sizeof(err));
    if (r < 0) {
        if (r == -EINVAL)
            api_error(c->res, 422, "generation_failed", err, -1, "prompt");
        else
            api_reply_errno(c, r, err);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", gen.text ? gen.text : "");
    cJSON_AddStringToObject(o, "finish_reason",
                            gen.finish == ENG_FINISH_STOP ? "stop" : "length");
    cJSON_AddItemToObject(o, "usage", usage_json(gen.prompt_tokens,
                                                 gen.completion_tokens));
    eng_generation_done(&gen);
    return o;
}

static cJSON *run_all(api_call *c, eng_model *m, eng_tokenizer *t,
                      eng_adapter *a, const gen_req *g, const char *name)
{
    if (cJSON_IsString(g->prompts)) {
        cJSON *o = run_one(c, m, t, a, g->prompts->valuestring, g);
        if (o) {
            cJSON_AddStringToObject(o, "object", "generation");
            cJSON_AddStringToObject(o, "model", name);
        }
        return o;
    }
    cJSON *list = cJSON_CreateObject();
    cJSON_AddStringToObject(list, "object", "list");
    cJSON_AddStringToObject(list, "model", name);
    cJSON *arr = cJSON_AddArrayToObject(list, "results");
    int pt = 0, ct = 0, i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, g->prompts) {
        cJSON *o = run_one(c, m, t, a, p->valuestring, g);
        if (!o) {
            cJSON_Delete(list);
            return NULL;
        }
        cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
        pt += cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens")->valueint;
        ct += cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valueint;
        cJSON_AddNumberToObject(o, "index", i++);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddItemToObject(list, "usage", usage_json(pt, ct));
    return list;
}

void api_h_generate(api_call *c)
{
    gen_req g = { 0 };
    if (parse_gen(c, &g) < 0)
        return;
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    eng_adapter *a = NULL;
    char name[256];
    if (api_model_resolve(c, g.model, &m, &t, &a, name, sizeof(name)) < 0)
        return;
    cJSON *o = run_all(c, m, t, a, &g, name);
    if (o)
        api_reply_json(c, 200, o);
    eng_adapter_unref(a);
    eng_tokenizer_unref(t);
    eng_model_unref(m);
}

/* ------------------------------------------------------------------------ */
/* Models and health                                                         */

static cJSON *base_json(api_ctx *ctx, const char *name)
{
    return api_base_model_json(ctx, name);
}

static cJSON *tuned_json(const store_job *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->model);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddStringToObject(o, "type", "finetuned");
    cJSON_AddStringToObject(o, "base", j->base_model);
    cJSON_AddStringToObject(o, "job", j->id);
    api_json_add_time(o, "created_at", j->finished_at);
    return o;
}

void api_h_models_list(api_call *c)
{
    const char **names = NULL;
    int n = 0, nj = 0;
    store_job *jobs = NULL;
    if (c->ctx->models && api_registry_list(c->ctx->models, &names, &n) < 0) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return;
    }
    int r = store_job_list(c->ctx->db, "succeeded", 1000, &jobs, &nj);
    if (r < 0) {
        free(names);
        api_reply_errno(c, r, "could not list the jobs");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *arr = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, base_json(c->ctx, names[i]));
    api_imported_list(c->ctx, arr);
    for (int i = 0; i < nj; i++)
        cJSON_AddItemToArray(arr, tuned_json(&jobs[i]));
    free(names);
    store_job_list_free(jobs, nj);
    api_reply_json(c, 200, o);
}

void api_h_health(api_call *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", TUNA_VERSION);
    cJSON_AddNumberToObject(o, "schema_version",
                            c->ctx->db ? store_schema_version(c->ctx->db) : 0);
    cJSON *models = cJSON_AddArrayToObject(o, "models");
    api_checkpoint_models(c, arr);
    const char **names = NULL;
    int n = 0;
    if (c->ctx->models && api_registry_list(c->ctx->models, &names, &n) == 0) {
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(models, cJSON_CreateString(names[i]));
        free(names);
    }
    api_reply_json(c, 200, o);
}
