/* SPDX-License-Identifier: MIT */
/*
 * oai_serve.c - the OpenAI-compatible serving routes: GET /v1/models (and
 * one model), POST /v1/completions, POST /v1/chat/completions.
 *
 * Both completion routes read the body into an api_completion (completion.c
 * does the rest): the shared sampling fields, then either "prompt" (a
 * string, an array of strings, an array of token ids or an array of such
 * arrays) or "messages" (rendered with the model's chat template, or Tuna's
 * default template when the model has none; the default template's end
 * marker <|end|> is then a stop string). Fields OpenAI defines that Tuna
 * does not implement are accepted only with their neutral value
 * (presence_penalty 0, echo false, ...) and refused otherwise, so a client
 * never silently gets something other than what it asked for.
 */
#include "api/oai_serve.h"

#include "api/constraint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define V1_MAX_CHOICES 16
#define V1_MAX_MESSAGES 1024

/* ------------------------------------------------------------------------ */
/* Fields                                                                    */

static const char *const common_keys[] = {
    "model", "max_tokens", "temperature", "top_p", "top_k", "n", "stop",
    "seed", "stream", "stream_options", "logprobs", "response_format",
    "presence_penalty", "frequency_penalty", "logit_bias", "user",
    "metadata", "store", "service_tier", NULL,
};
static const char *const chat_keys[] = {
    "messages", "max_completion_tokens", "top_logprobs", "tools",
    "tool_choice", "parallel_tool_calls", NULL,
};
static const char *const completion_keys[] = {
    "prompt", "echo", "best_of", "suffix", NULL,
};

static int unsupported(api_call *c, const char *field, const char *what)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "%s is not supported", what);
    api_error(c->res, 400, "unsupported", msg, -1, field);
    return -1;
}

/* Fields accepted only with their neutral value. */
static int check_neutral(api_call *c, const cJSON *o)
{
    const cJSON *v;
    double pen;
    bool b;
    const char *s;
    if (api_get_num(c, o, "presence_penalty", -2, 2, 0, &pen) < 0)
        return -1;
    if (pen != 0)
        return unsupported(c, "presence_penalty", "a non-zero presence_penalty");
    if (api_get_num(c, o, "frequency_penalty", -2, 2, 0, &pen) < 0)
        return -1;
    if (pen != 0)
        return unsupported(c, "frequency_penalty",
                           "a non-zero frequency_penalty");
    v = cJSON_GetObjectItemCaseSensitive(o, "logit_bias");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsObject(v) && !v->child))
        return unsupported(c, "logit_bias", "logit_bias");
    v = cJSON_GetObjectItemCaseSensitive(o, "tools");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && !v->child))
        return unsupported(c, "tools", "tool calling");
    v = cJSON_GetObjectItemCaseSensitive(o, "tool_choice");
    if (v && !cJSON_IsNull(v) &&
        !(cJSON_IsString(v) && (strcmp(v->valuestring, "none") == 0 ||
                                strcmp(v->valuestring, "auto") == 0)))
        return unsupported(c, "tool_choice", "tool calling");
    if (api_get_bool(c, o, "echo", false, &b) < 0)
        return -1;
    if (b)
        return unsupported(c, "echo", "echo");
    if (api_get_str(c, o, "suffix", 4096, NULL, &s) < 0)
        return -1;
    if (s && *s)
        return unsupported(c, "suffix", "suffix (insertion)");
    return 0;
}

/* response_format: "text" is the default; json_object and json_schema are
 * checked for shape, then handed to the constraint hook. */
static int parse_response_format(api_call *c, api_completion *j)
{
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(j->json,
                                                       "response_format");
    const char *type = NULL;
    if (!rf || cJSON_IsNull(rf))
        return 0;
    if (!cJSON_IsObject(rf) ||
        api_get_str(c, rf, "type", 64, NULL, &type) < 0 || !type) {
        if (c->res->status == 0)
            api_error(c->res, 400, "invalid_parameter", "response_format must "
                      "be an object with a \"type\"", -1, "response_format");
        return -1;
    }
    if (strcmp(type, "text") == 0)
        return 0;
    if (strcmp(type, "json_schema") == 0) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (!cJSON_IsObject(js) || !cJSON_IsString(name) ||
            (schema && !cJSON_IsObject(schema) && !cJSON_IsBool(schema))) {
            api_error(c->res, 400, "invalid_parameter", "response_format."
                      "json_schema must be an object with a \"name\" and "
                      "an optional \"schema\" object", -1,
                      "response_format.json_schema");
            return -1;
        }
    } else if (strcmp(type, "json_object") != 0) {
        api_error(c->res, 400, "invalid_parameter", "response_format.type "
                  "must be \"text\", \"json_object\" or \"json_schema\"", -1,
                  "response_format.type");
        return -1;
    }
    api_constraint *k = NULL;
    char err[256] = "";
    int rc = api_constraint_new(rf, j->t, &k, err, sizeof(err));
    if (rc == 0) {
        j->constraint = k;
        return 0;
    }
    if (rc == -ENOMEM) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    api_error(c->res, 400, rc == -ENOTSUP ? "unsupported" : "invalid_parameter",
              err[0] ? err : "this response_format cannot be enforced", -1,
              "response_format");
    return -1;
}

static int parse_logprobs(api_call *c, api_completion *j, bool chat)
{
    const cJSON *o = j->json;
    int64_t top = 0;
    if (chat) {
        bool lp;
        if (api_get_bool(c, o, "logprobs", false, &lp) < 0 ||
            api_get_int(c, o, "top_logprobs", 0, ENG_MAX_TOP_LOGPROBS, 0,
                        &top) < 0)
            return -1;
        if (top > 0 && !lp) {
            api_error(c->res, 400, "invalid_parameter", "top_logprobs needs "
                      "\"logprobs\": true", -1, "top_logprobs");
            return -1;
        }
        j->logprobs = lp;
    } else {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "logprobs");
        if (api_get_int(c, o, "logprobs", 0, ENG_MAX_TOP_LOGPROBS, 0, &top) < 0)
            return -1;
        j->logprobs = v && !cJSON_IsNull(v);
    }
    j->top_logprobs = (int)top;
    return 0;
}

/* The sampling fields both routes share. */
static int parse_common(api_call *c, api_completion *j, bool chat)
{
    const cJSON *o = j->json;
    int64_t max_tokens, n, top_k, seed, rnd = 0, lim = c->ctx->limits.max_gen_tokens;
    double temp, top_p;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
    getrandom(&rnd, sizeof(rnd), 0);
    rnd &= ((int64_t)1 << 53) - 1;
    if (api_check_keys(c, o, common_keys,
                       chat ? chat_keys : completion_keys) < 0 ||
        check_neutral(c, o) < 0 ||
        api_get_int(c, o, "max_tokens", 1, lim, lim, &max_tokens) < 0 ||
        (chat && api_get_int(c, o, "max_completion_tokens", 1, lim, max_tokens,
                             &max_tokens) < 0) ||
        api_get_num(c, o, "temperature", 0, 2, 1.0, &temp) < 0 ||
        api_get_num(c, o, "top_p", 0, 1, 1.0, &top_p) < 0 ||
        api_get_int(c, o, "top_k", 0, 1 << 20, 0, &top_k) < 0 ||
        api_get_int(c, o, "n", 1, V1_MAX_CHOICES, 1, &n) < 0 ||
        api_get_int(c, o, "seed", -((int64_t)1 << 53), ((int64_t)1 << 53) - 1,
                    rnd, &seed) < 0 ||
        api_get_bool(c, o, "stream", false, &j->stream) < 0 ||
        parse_logprobs(c, j, chat) < 0 ||
        api_completion_parse_stop(c, j, API_GEN_MAX_STOP) < 0)
        return -1;
    if (so && !cJSON_IsNull(so) &&
        (!cJSON_IsObject(so) ||
         api_get_bool(c, so, "include_usage", false, &j->include_usage) < 0)) {
        if (c->res->status == 0)
            api_error(c->res, 400, "invalid_parameter", "stream_options must "
                      "be an object", -1, "stream_options");
        return -1;
    }
    if (top_p <= 0) {
        api_error(c->res, 400, "invalid_parameter",
                  "top_p must be greater than 0 and at most 1", -1, "top_p");
        return -1;
    }
    if (!chat) {
        int64_t best_of;
        if (api_get_int(c, o, "best_of", 1, V1_MAX_CHOICES, n, &best_of) < 0)
            return -1;
        if (best_of != n)
            return unsupported(c, "best_of", "best_of other than n");
    }
    j->include_usage = j->include_usage && j->stream;
    j->n_choices = (int)n;
    j->seed = (uint64_t)seed;
    j->sp.max_tokens = (int)max_tokens;
    j->sp.temperature = (float)temp;
    j->sp.top_p = (float)top_p;
    j->sp.top_k = (int)top_k;
    return 0;
}

static int parse_model(api_call *c, api_completion *j)
{
    const char *model;
    if (api_get_str(c, j->json, "model", 255, NULL, &model) < 0)
        return -1;
    if (!model || !*model) {
        api_error(c->res, 400, "invalid_parameter", "model is required", -1,
                  "model");
        return -1;
    }
    return api_completion_model(c, j, model);
}

/* ------------------------------------------------------------------------ */
/* POST /v1/completions                                                      */

static bool is_token_array(const cJSON *a)
{
    return cJSON_IsArray(a) && a->child && cJSON_IsNumber(a->child);
}

static int completion_prompts(api_call *c, api_completion *j)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j->json, "prompt");
    const cJSON *e;
    int n = 0, k = 0;
    if (cJSON_IsString(p) || is_token_array(p)) {
        n = 1;
    } else if (cJSON_IsArray(p)) {
        cJSON_ArrayForEach(e, p) {
            if (!cJSON_IsString(e) && !is_token_array(e)) {
                api_error(c->res, 400, "invalid_parameter", "prompt must be a "
                          "string, an array of strings, an array of token "
                          "ids or an array of such arrays", -1, "prompt");
                return -1;
            }
            n++;
        }
    }
    if (n < 1 || n * j->n_choices > c->ctx->limits.max_prompts) {
        char msg[200];
        snprintf(msg, sizeof(msg), "prompt is required: a string or 1 to %d "
                 "prompts (prompts times n at most %d)",
                 c->ctx->limits.max_prompts, c->ctx->limits.max_prompts);
        api_error(c->res, 400, "invalid_parameter", msg, -1, "prompt");
        return -1;
    }
    if (api_completion_prompts(c, j, n) < 0)
        return -1;
    j->prompt_is_list = n > 1;
    if (n == 1 && !cJSON_IsString(p) && !is_token_array(p))
        p = p->child;
    if (n == 1)
        return cJSON_IsString(p)
                   ? api_completion_set_prompt(c, j, 0, p->valuestring,
                                               strlen(p->valuestring), false)
                   : api_completion_set_prompt_ids(c, j, 0, p);
    cJSON_ArrayForEach(e, p) {
        int r = cJSON_IsString(e)
                    ? api_completion_set_prompt(c, j, k, e->valuestring,
                                                strlen(e->valuestring), false)
                    : api_completion_set_prompt_ids(c, j, k, e);
        if (r < 0)
            return -1;
        k++;
    }
    return 0;
}

void api_h_v1_completions(api_call *c)
{
    api_completion *j = api_completion_new(c, API_GEN_COMPLETION,
                                           &api_fmt_completion);
    if (!j)
        return;
    if (parse_common(c, j, false) < 0 || parse_model(c, j) < 0 ||
        parse_response_format(c, j) < 0 || completion_prompts(c, j) < 0 ||
        api_id_new("cmpl-", j->id, sizeof(j->id)) < 0) {
        if (c->res->status == 0)
            api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        api_completion_free(j);
        return;
    }
    api_completion_run(c, j);
}

/* ------------------------------------------------------------------------ */
/* POST /v1/chat/completions                                                 */

/* A message's content as one string: a string, or the text parts of an
 * array joined (stored back into the body so the job owns it). */
static const char *message_content(api_call *c, cJSON *m, int i)
{
    cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    char field[64];
    snprintf(field, sizeof(field), "messages[%d].content", i);
    if (!content || cJSON_IsNull(content))
        return "";
    if (cJSON_IsString(content))
        return content->valuestring;
    size_t len = 0;
    const cJSON *part;
    bool ok = cJSON_IsArray(content);
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        ok = ok && cJSON_IsString(type) && !strcmp(type->valuestring, "text") &&
             cJSON_IsString(text);
        if (ok)
            len += strlen(text->valuestring);
    }
    if (!ok) {
        api_error(c->res, 400, "invalid_parameter", "content must be a string "
                  "or an array of {\"type\":\"text\",\"text\":...} parts", -1,
                  field);
        return NULL;
    }
    char *buf = malloc(len + 1);
    if (!buf) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return NULL;
    }
    len = 0;
    cJSON_ArrayForEach(part, content) {
        const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")
                            ->valuestring;
        memcpy(buf + len, t, strlen(t));
        len += strlen(t);
    }
    buf[len] = '\0';
    cJSON *s = cJSON_CreateString(buf);
    free(buf);
    if (!s || !cJSON_ReplaceItemInObjectCaseSensitive(m, "content", s)) {
        cJSON_Delete(s);
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return NULL;
    }
    return s->valuestring;
}

static int parse_messages(api_call *c, api_completion *j, eng_message *msgs,
                          int *ret_n)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(j->json, "messages");
    int n = cJSON_GetArraySize(arr), i = 0;
    cJSON *m;
    if (!cJSON_IsArray(arr) || n < 1 || n > V1_MAX_MESSAGES) {
        api_error(c->res, 400, "invalid_parameter", "messages must be a "
                  "non-empty array of at most 1024 messages", -1, "messages");
        return -1;
    }
    cJSON_ArrayForEach(m, arr) {
        char field[64];
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const char *r = cJSON_IsString(role) ? role->valuestring : "";
        snprintf(field, sizeof(field), "messages[%d].role", i);
        if (!cJSON_IsObject(m) ||
            (strcmp(r, "system") && strcmp(r, "developer") &&
             strcmp(r, "user") && strcmp(r, "assistant"))) {
            api_error(c->res, 400, "invalid_parameter", "each message needs a "
                      "role of \"system\", \"developer\", \"user\" or "
                      "\"assistant\"", -1, field);
            return -1;
        }
        msgs[i].role = strcmp(r, "developer") == 0 ? "system" : r;
        if (!(msgs[i].content = message_content(c, m, i)))
            return -1;
        i++;
    }
    *ret_n = n;
    return 0;
}

static int chat_prompt(api_call *c, api_completion *j)
{
    eng_message *msgs = calloc(V1_MAX_MESSAGES, sizeof(*msgs));
    char *text = NULL, err[256] = "";
    eng_chat_source src = ENG_CHAT_SRC_DEFAULT;
    int n = 0, rc = -1;
    if (!msgs) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    if (parse_messages(c, j, msgs, &n) < 0 ||
        api_completion_prompts(c, j, 1) < 0)
        goto out;
    if (eng_chat_render(j->t, msgs, n, true, &text, &src, err,
                        sizeof(err)) < 0) {
        api_error(c->res, 400, "invalid_parameter", err[0] ? err : "the "
                  "messages cannot be rendered", -1, "messages");
        goto out;
    }
    if (src == ENG_CHAT_SRC_DEFAULT && j->sp.n_stop < API_GEN_MAX_STOP + 1) {
        j->stop[j->sp.n_stop++] = "<|end|>"; /* the default template's end */
        j->sp.stop = j->stop;
    }
    rc = api_completion_set_prompt(c, j, 0, text, strlen(text),
                                   src == ENG_CHAT_SRC_MODEL);
out:
    free(text);
    free(msgs);
    return rc;
}

void api_h_v1_chat(api_call *c)
{
    api_completion *j = api_completion_new(c, API_GEN_CHAT, &api_fmt_chat);
    if (!j)
        return;
    if (parse_common(c, j, true) < 0 || parse_model(c, j) < 0 ||
        parse_response_format(c, j) < 0 || chat_prompt(c, j) < 0 ||
        api_id_new("chatcmpl-", j->id, sizeof(j->id)) < 0) {
        if (c->res->status == 0)
            api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        api_completion_free(j);
        return;
    }
    if (j->n_choices > c->ctx->limits.max_prompts) {
        api_error(c->res, 400, "invalid_parameter", "n is larger than the "
                  "server's limit on prompts per request", -1, "n");
        api_completion_free(j);
        return;
    }
    api_completion_run(c, j);
}

/* ------------------------------------------------------------------------ */
/* GET /v1/models                                                            */

/* OpenAI's model object for one entry of the native /models list (base
 * models, imported adapters, finetuned models, checkpoints): id, object,
 * created, owned_by, and for everything but a base model its parent (the
 * base model it runs on) and root. The native type stays as "type". */
static cJSON *v1_model(const cJSON *native)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(native, "id");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(native, "type");
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(native, "base");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(native,
                                                            "created_at");
    bool is_base = cJSON_IsString(type) && !strcmp(type->valuestring, "base");
    if (!cJSON_IsString(id))
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id->valuestring);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", cJSON_IsNumber(created)
                                              ? created->valuedouble
                                              : 0);
    cJSON_AddStringToObject(o, "owned_by", is_base ? "tuna" : "user");
    if (cJSON_IsString(type))
        cJSON_AddStringToObject(o, "type", type->valuestring);
    if (!is_base && cJSON_IsString(base)) {
        cJSON_AddStringToObject(o, "parent", base->valuestring);
        cJSON_AddStringToObject(o, "root", base->valuestring);
    } else {
        cJSON_AddNullToObject(o, "parent");
        cJSON_AddStringToObject(o, "root", id->valuestring);
    }
    return o;
}

/* The native /models answer converted; NULL after an error reply. */
static cJSON *v1_model_list(api_call *c)
{
    api_response native = { 0 };
    api_call nc = *c;
    nc.res = &native;
    nc.json = NULL;
    api_h_models_list(&nc);
    if (native.status != 200) {
        *c->res = native; /* hand the error over */
        return NULL;
    }
    cJSON *in = cJSON_ParseWithLength(native.body, native.body_len);
    api_response_done(&native);
    cJSON *out = cJSON_CreateArray();
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(in, "data")) {
        cJSON *m = v1_model(e);
        if (m)
            cJSON_AddItemToArray(out, m);
    }
    cJSON_Delete(in);
    return out;
}

void api_h_v1_models(api_call *c)
{
    cJSON *data = v1_model_list(c);
    if (!data)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToObject(o, "data", data);
    api_reply_json(c, 200, o);
}

/* GET /v1/models/{id}: the id is read from the path, since a model name
 * ("ft:<base>:<suffix>:<job id>:step-<n>") can be longer than c->id. */
void api_h_v1_model_get(api_call *c)
{
    const char *want = c->req->path + strlen("/v1/models/");
    size_t wl = strcspn(want, "/");
    cJSON *data = v1_model_list(c);
    if (!data)
        return;
    cJSON *e;
    cJSON_ArrayForEach(e, data) {
        const char *id = cJSON_GetObjectItemCaseSensitive(e, "id")->valuestring;
        if (strlen(id) == wl && !strncmp(id, want, wl)) {
            api_reply_json(c, 200, cJSON_DetachItemViaPointer(data, e));
            cJSON_Delete(data);
            return;
        }
    }
    cJSON_Delete(data);
    char msg[200];
    snprintf(msg, sizeof(msg), "The model '%.*s' does not exist",
             (int)(wl < 128 ? wl : 128), want);
    api_error(c->res, 404, "model_not_found", msg, -1, "model");
}
