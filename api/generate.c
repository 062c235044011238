/* SPDX-License-Identifier: MIT */
/*
 * generate.c - POST /generate, GET /models, GET /health.
 *
 * /generate resolves "model" (a base model name, a job id or a job's model
 * name "ft:<base>:<suffix>:<job id>") to a shared base model plus, for a
 * job, its adapter from the registry's cache, then generates every prompt
 * in order through the serving path (completion.c: admission, 429 beyond
 * the limits, api_serve_generate). A single prompt answers one flat
 * object; an array of prompts answers {"object":"list","results":[...]} in
 * the same order. With "stream": true the answer is server-sent events
 * {"index","text"} per piece, a last event per prompt with finish_reason
 * and usage, then "data: [DONE]". "logprobs"/"top_logprobs" add each
 * token's log-probability and the most likely alternatives.
 */
#include "api/models-impl.h"

#include "api/completion.h"
#include "api/constraint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#ifndef TUNA_VERSION
#define TUNA_VERSION "0.0.0"
#endif

/* ------------------------------------------------------------------------ */
/* Model names                                                               */

static int job_model(api_call *c, const char *name, const char *id,
                     store_job *j)
{
    int r = api_id_valid(id, "job_")
                ? store_job_get_for(c->ctx->db, id, api_owner(c), j)
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
    char lbase[128], ldir[1024], lerr[256] = "";
    if (c->ctx->models &&
        api_registry_lora_find(c->ctx->models, name, lbase, sizeof(lbase),
                               ldir, sizeof(ldir)) == 0) {
        /* a LoRA adapter loaded by name (/v1/load_lora_adapter) */
        int r = api_registry_get_base_err(c->ctx->models, lbase, ret_m, ret_t,
                                          lerr, sizeof(lerr));
        if (r == 0)
            r = api_adapter_on_base(c->ctx, ldir, ret_m, ret_t, ret_a, lerr,
                                    sizeof(lerr));
        if (r < 0) {
            char msg[400];
            snprintf(msg, sizeof(msg), "the adapter %s cannot be loaded: %s",
                     name, lerr[0] ? lerr : strerror(-r));
            api_error(c->res, 503, "model_unavailable", msg, -1, "model");
            return -1;
        }
        snprintf(ret_name, namelen, "%s", name);
        return 0;
    }
    int rb = api_resolve_base_or_imported(c, name, ret_m, ret_t, ret_a);
    if (rb <= 0) {
        if (rb == 0)
            snprintf(ret_name, namelen, "%s", name);
        return rb;
    }
    int ck = api_checkpoint_resolve(c, name, ret_m, ret_t, ret_a, ret_name,
                                    namelen);
    if (ck <= 0)
        return ck;
    const char *id = api_job_id_of(name);
    store_job j;
    if (job_model(c, name, id, &j) < 0)
        return -1;
    char dir[1024], err[256] = "";
    int r = api_registry_get_base(c->ctx->models, j.base_model, ret_m, ret_t);
    if (r == 0) {
        api_job_adapter_dir(c->ctx->data_dir, j.id, dir, sizeof(dir));
        r = api_adapter_on_base(c->ctx, dir, ret_m, ret_t, ret_a, err,
                                sizeof(err));
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

static const char *const gen_keys[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed",
    "stop", "stream", "logprobs", "top_logprobs", "output_type", NULL,
};

/* "prompt": a string or an array of 1..max_prompts strings. */
static int parse_prompts(api_call *c, api_completion *j)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j->json, "prompt");
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
    return 0;
}

static int set_prompts(api_call *c, api_completion *j)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j->json, "prompt");
    const cJSON *e;
    int k = 0;
    j->prompt_is_list = cJSON_IsArray(p);
    if (!j->prompt_is_list)
        return api_completion_prompts(c, j, 1) < 0 ||
                       api_completion_set_prompt(c, j, 0, p->valuestring,
                                                 strlen(p->valuestring), false)
                           < 0
                   ? -1
                   : 0;
    if (api_completion_prompts(c, j, cJSON_GetArraySize(p)) < 0)
        return -1;
    cJSON_ArrayForEach(e, p) {
        if (api_completion_set_prompt(c, j, k++, e->valuestring,
                                      strlen(e->valuestring), false) < 0)
            return -1;
    }
    return 0;
}

/* Lamini-style "output_type": {"answer": "str", "score": "int"}: the
 * output is constrained to that JSON object and returned parsed as
 * "output". Needs the model (its tokenizer). */
static int parse_output_type(api_call *c, api_completion *j)
{
    const cJSON *ot = cJSON_GetObjectItemCaseSensitive(j->json,
                                                       "output_type");
    char *text, *schema = NULL, err[256] = "";
    int rc;
    if (!ot || cJSON_IsNull(ot))
        return 0;
    if (!cJSON_IsObject(ot) || !ot->child) {
        api_error(c->res, 400, "invalid_parameter", "output_type must be a "
                  "non-empty object of field types, e.g. {\"answer\": "
                  "\"str\", \"score\": \"int\"}", -1, "output_type");
        return -1;
    }
    if (!(text = cJSON_PrintUnformatted(ot)))
        rc = -ENOMEM;
    else if ((rc = eng_json_shorthand_to_schema(text, &schema, err,
                                                sizeof(err))) == 0)
        rc = api_constraint_from_schema(schema, j->t, &j->constraint, err,
                                        sizeof(err));
    free(text);
    free(schema);
    if (rc == -ENOMEM) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    if (rc < 0) {
        api_error(c->res, 400, "invalid_parameter", err[0] ? err : "bad "
                  "output_type", -1, "output_type");
        return -1;
    }
    j->parse_output = true;
    return 0;
}

static int parse_gen(api_call *c, api_completion *j, const char **ret_model)
{
    const cJSON *o = j->json;
    int64_t max_tokens, top_k, seed, top, rnd = 0;
    double temp, top_p;
    getrandom(&rnd, sizeof(rnd), 0);
    rnd &= ((int64_t)1 << 53) - 1;
    if (api_check_keys(c, o, gen_keys, NULL) < 0 ||
        api_get_str(c, o, "model", 255, api_default_base(c->ctx), ret_model) < 0 ||
        parse_prompts(c, j) < 0 ||
        api_get_int(c, o, "max_tokens", 1, c->ctx->limits.max_gen_tokens, 64,
                    &max_tokens) < 0 ||
        api_get_num(c, o, "temperature", 0, 2, 1.0, &temp) < 0 ||
        api_get_num(c, o, "top_p", 0, 1, 1.0, &top_p) < 0 ||
        api_get_int(c, o, "top_k", 0, 1 << 20, 0, &top_k) < 0 ||
        api_get_int(c, o, "seed", 0, ((int64_t)1 << 53) - 1, rnd, &seed) < 0 ||
        api_get_bool(c, o, "stream", false, &j->stream) < 0 ||
        api_get_bool(c, o, "logprobs", false, &j->logprobs) < 0 ||
        api_get_int(c, o, "top_logprobs", 0, ENG_MAX_TOP_LOGPROBS, 0, &top) < 0 ||
        api_completion_parse_stop(c, j, API_GEN_MAX_STOP) < 0)
        return -1;
    if (top_p <= 0) {
        api_error(c->res, 400, "invalid_parameter",
                  "top_p must be greater than 0 and at most 1", -1, "top_p");
        return -1;
    }
    j->logprobs = j->logprobs || top > 0;
    j->top_logprobs = (int)top;
    j->seed = (uint64_t)seed;
    j->same_seed = true; /* every prompt of an array samples with seed */
    j->sp.max_tokens = (int)max_tokens;
    j->sp.temperature = (float)temp;
    j->sp.top_p = (float)top_p;
    j->sp.top_k = (int)top_k;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Answers: one object, a list, or a stream of {"index","text"} events       */

static const char *finish_name(eng_finish f)
{
    return f == ENG_FINISH_STOP ? "stop" : "length";
}

/* [{"token","id","logprob","top_logprobs":[{"token","id","logprob"}]}] for
 * tokens [from, n_toks) of a choice. */
static cJSON *native_logprobs(const api_completion *j, const api_choice *ch,
                              int from)
{
    char buf[4 * 64 + 8];
    const char *bytes;
    int nb;
    cJSON *arr = cJSON_CreateArray();
    for (int i = from; i < ch->n_toks; i++) {
        const api_tok *t = &ch->toks[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "token", api_token_text(
            j->t, t->prev, t->id, buf, sizeof(buf), &bytes, &nb));
        cJSON_AddNumberToObject(e, "id", t->id);
        cJSON_AddNumberToObject(e, "logprob", t->logprob);
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < t->n_top; k++) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddStringToObject(a, "token", api_token_text(
                j->t, t->prev, t->top[k].id, buf, sizeof(buf), &bytes, &nb));
            cJSON_AddNumberToObject(a, "id", t->top[k].id);
            cJSON_AddNumberToObject(a, "logprob", t->top[k].logprob);
            cJSON_AddItemToArray(top, a);
        }
        cJSON_AddItemToArray(arr, e);
    }
    return arr;
}

/* "output": the parsed JSON of a structured output (null when cut short).
 * While streaming the text is not kept, so the last event carries it only
 * when collected (see cb_text: streamed structured output is collected). */
static void add_output(cJSON *o, const api_choice *ch)
{
    cJSON *v = ch->text ? cJSON_ParseWithLength(ch->text, ch->len) : NULL;
    if (v && ch->finish == ENG_FINISH_STOP)
        cJSON_AddItemToObject(o, "output", v);
    else {
        cJSON_Delete(v);
        cJSON_AddNullToObject(o, "output");
    }
}

static void native_event(api_completion *j, int i, const char *text,
                         size_t len, bool last)
{
    api_choice *ch = &j->choices[i];
    cJSON *o = cJSON_CreateObject();
    char *s = strndup(text, len);
    cJSON_AddNumberToObject(o, "index", i);
    cJSON_AddStringToObject(o, "text", s ? s : "");
    free(s);
    if (j->logprobs)
        cJSON_AddItemToObject(o, "logprobs",
                              native_logprobs(j, ch, ch->toks_sent));
    if (last) {
        if (j->parse_output)
            add_output(o, ch);
        cJSON_AddStringToObject(o, "finish_reason", finish_name(ch->finish));
        cJSON_AddItemToObject(o, "usage", api_usage_json(
            ch->prompt_tokens, ch->completion_tokens));
    }
    api_completion_event(j, o);
}

static void native_chunk(api_completion *j, int i, const char *text,
                         size_t len)
{
    native_event(j, i, text, len, false);
}

static void native_finish(api_completion *j, int i)
{
    native_event(j, i, "", 0, true);
}

static void native_end(api_completion *j)
{
    api_completion_event_raw(j, "[DONE]");
}

static cJSON *native_result(const api_completion *j, int i)
{
    const api_choice *ch = &j->choices[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", ch->text ? ch->text : "");
    cJSON_AddStringToObject(o, "finish_reason", finish_name(ch->finish));
    cJSON_AddItemToObject(o, "usage", api_usage_json(ch->prompt_tokens,
                                                     ch->completion_tokens));
    if (j->logprobs)
        cJSON_AddItemToObject(o, "logprobs", native_logprobs(j, ch, 0));
    if (j->parse_output)
        add_output(o, ch);
    return o;
}

static cJSON *native_response(api_completion *j)
{
    if (!j->prompt_is_list) {
        cJSON *o = native_result(j, 0);
        cJSON_AddStringToObject(o, "object", "generation");
        cJSON_AddStringToObject(o, "model", j->model_name);
        return o;
    }
    cJSON *list = cJSON_CreateObject();
    cJSON_AddStringToObject(list, "object", "list");
    cJSON_AddStringToObject(list, "model", j->model_name);
    cJSON *arr = cJSON_AddArrayToObject(list, "results");
    for (int i = 0; i < j->n_prompts; i++) {
        cJSON *o = native_result(j, i);
        cJSON_AddNumberToObject(o, "index", i);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddItemToObject(list, "usage", api_completion_usage(j));
    return list;
}

static const api_gen_format native_format = {
    .chunk = native_chunk, .finish = native_finish, .end = native_end,
    .response = native_response,
};

void api_h_generate(api_call *c)
{
    const char *model = NULL;
    api_completion *j = api_completion_new(c, API_GEN_NATIVE, &native_format);
    if (!j)
        return;
    if (parse_gen(c, j, &model) < 0 || api_completion_model(c, j, model) < 0 ||
        parse_output_type(c, j) < 0 || set_prompts(c, j) < 0) {
        api_completion_free(j);
        return;
    }
    api_completion_run(c, j);
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
    int r = store_job_list_for(c->ctx->db, api_owner(c), "succeeded", 1000,
                               &jobs, &nj);
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
    if (c->ctx->models) {
        cJSON *loras = api_registry_lora_json(c->ctx->models), *l;
        while (loras && (l = cJSON_DetachItemFromArray(loras, 0)))
            cJSON_AddItemToArray(arr, l);
        cJSON_Delete(loras);
    }
    for (int i = 0; i < nj; i++)
        cJSON_AddItemToArray(arr, tuned_json(&jobs[i]));
    api_checkpoint_models(c, arr);
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
    cJSON *mem = cJSON_AddObjectToObject(o, "memory");
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long rss_kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %lld kB", &rss_kb) == 1)
            break;
    if (f)
        fclose(f);
    cJSON_AddNumberToObject(mem, "rss_bytes", rss_kb >= 0 ? rss_kb * 1024.0
                                                          : -1);
    if (c->ctx->models) {
        size_t bytes, budget;
        int n;
        api_registry_adapter_stats(c->ctx->models, &bytes, &budget, &n);
        cJSON_AddNumberToObject(mem, "adapters_resident", n);
        cJSON_AddNumberToObject(mem, "adapter_bytes", (double)bytes);
        cJSON_AddNumberToObject(mem, "adapter_budget_bytes", (double)budget);
    }
    cJSON *models = cJSON_AddArrayToObject(o, "models");
    const char **names = NULL;
    int n = 0;
    if (c->ctx->models && api_registry_list(c->ctx->models, &names, &n) == 0) {
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(models, cJSON_CreateString(names[i]));
        free(names);
    }
    api_reply_json(c, 200, o);
}
