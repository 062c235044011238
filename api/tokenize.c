/* SPDX-License-Identifier: MIT */
/*
 * tokenize.c - POST /tokenize, POST /detokenize, POST /apply-template, in
 * the shapes of llama.cpp's server:
 *
 *   /tokenize {"model","content","add_special"?: false,
 *              "parse_special"?: true, "with_pieces"?: false}
 *       -> {"tokens": [ids]} (with_pieces: [{"id", "piece"}])
 *   /detokenize {"model","tokens": [ids]} -> {"content"}
 *   /apply-template {"model","messages","add_generation_prompt"?: true}
 *       -> {"prompt", "chat_template": "model"|"job"|"default"}
 *
 * "model" is any name /generate takes (default: the embedded model); a
 * job's model uses its base's tokenizer and the chat template stored with
 * the job (jobs/<id>/chat_template.jinja) when there is one.
 */
#include "api/models-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define API_MAX_TOKENS_IN (1 << 20)

/* Resolves "model"; -1 after an error reply. */
static int get_model(api_call *c, eng_model **m, eng_tokenizer **t,
                     char *name, size_t len)
{
    const char *model;
    eng_adapter *a = NULL;
    if (api_get_str(c, c->json, "model", 255, api_default_base(c->ctx),
                    &model) < 0 ||
        api_model_resolve(c, model, m, t, &a, name, len) < 0)
        return -1;
    eng_adapter_unref(a);
    return 0;
}

void api_h_tokenize(api_call *c)
{
    static const char *const keys[] = { "model", "content", "add_special",
                                        "parse_special", "with_pieces", NULL };
    const char *content;
    bool add_special, parse_special, with_pieces;
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    char name[256];
    if (api_check_keys(c, c->json, keys, NULL) < 0 ||
        api_get_str(c, c->json, "content", c->ctx->limits.max_body_bytes, NULL,
                    &content) < 0 ||
        api_get_bool(c, c->json, "add_special", false, &add_special) < 0 ||
        api_get_bool(c, c->json, "parse_special", true, &parse_special) < 0 ||
        api_get_bool(c, c->json, "with_pieces", false, &with_pieces) < 0)
        return;
    if (!content) {
        api_error(c->res, 400, "invalid_parameter", "content is required", -1,
                  "content");
        return;
    }
    if (get_model(c, &m, &t, name, sizeof(name)) < 0)
        return;
    size_t len = strlen(content);
    int n = 0, cap = (int)(len < API_MAX_TOKENS_IN ? len : API_MAX_TOKENS_IN) + 8;
    int32_t *ids = malloc((size_t)cap * sizeof(*ids));
    int r = ids ? eng_tokenizer_encode(t, content, len, add_special,
                                       parse_special, ids, cap, &n)
                : -ENOMEM;
    if (r == 0 && n > cap) {
        api_error(c->res, 422, "too_many_tokens", "the content has too many "
                  "tokens", -1, "content");
    } else if (r < 0) {
        api_reply_errno(c, r, "the content cannot be tokenized");
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
        for (int i = 0; i < n; i++) {
            if (!with_pieces) {
                cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
                continue;
            }
            const char *p;
            int k = eng_tokenizer_piece(t, i ? ids[i - 1] : -1, ids[i], &p);
            char *s = malloc(k > 0 ? (size_t)k + 1 : 1);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "id", ids[i]);
            if (s) {
                memcpy(s, p, k > 0 ? (size_t)k : 0);
                s[k > 0 ? k : 0] = '\0';
                /* a byte token may be half a character: send valid text */
                if (api_utf8_valid(s, strlen(s)))
                    cJSON_AddStringToObject(e, "piece", s);
                else {
                    cJSON *bytes = cJSON_AddArrayToObject(e, "piece");
                    for (int b = 0; b < k; b++)
                        cJSON_AddItemToArray(bytes, cJSON_CreateNumber(
                                                        (unsigned char)p[b]));
                }
                free(s);
            }
            cJSON_AddItemToArray(arr, e);
        }
        cJSON_AddStringToObject(o, "model", name);
        api_reply_json(c, 200, o);
    }
    free(ids);
    eng_model_unref(m);
    eng_tokenizer_unref(t);
}

void api_h_detokenize(api_call *c)
{
    static const char *const keys[] = { "model", "tokens", NULL };
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(c->json, "tokens");
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    char name[256];
    if (api_check_keys(c, c->json, keys, NULL) < 0)
        return;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > API_MAX_TOKENS_IN) {
        api_error(c->res, 400, "invalid_parameter",
                  "tokens must be an array of token ids", -1, "tokens");
        return;
    }
    if (get_model(c, &m, &t, name, sizeof(name)) < 0)
        return;
    int n = cJSON_GetArraySize(arr), i = 0, vocab = eng_tokenizer_vocab_size(t);
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof(*ids));
    const cJSON *e;
    bool ok = ids != NULL;
    cJSON_ArrayForEach(e, arr) {
        if (!ok)
            break;
        ok = cJSON_IsNumber(e) && e->valuedouble >= 0 &&
             e->valuedouble < vocab && e->valuedouble == (int)e->valuedouble;
        if (ok)
            ids[i++] = (int32_t)e->valuedouble;
    }
    char *text = NULL;
    if (!ids) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
    } else if (!ok) {
        char msg[128];
        snprintf(msg, sizeof(msg), "tokens[%d] is not a token id of this "
                 "model (0 to %d)", i, vocab - 1);
        api_error(c->res, 400, "invalid_parameter", msg, -1, "tokens");
    } else if (eng_tokenizer_decode(t, ids, n, &text) < 0) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
    } else {
        cJSON *o = cJSON_CreateObject();
        /* cJSON escapes control bytes; invalid UTF-8 from a cut byte
         * sequence is replaced rather than sent raw */
        if (!api_utf8_valid(text, strlen(text)))
            for (char *p = text; *p; p++)
                if ((unsigned char)*p >= 0x80)
                    *p = '?';
        cJSON_AddStringToObject(o, "content", text);
        cJSON_AddStringToObject(o, "model", name);
        api_reply_json(c, 200, o);
    }
    free(text);
    free(ids);
    eng_model_unref(m);
    eng_tokenizer_unref(t);
}

/* ------------------------------------------------------------------------ */
/* Chat templates                                                            */

char *api_model_chat_template(api_call *c, const char *name,
                              const eng_tokenizer *t, const char **ret_from)
{
    const char *id = api_job_id_of(name);
    *ret_from = "model";
    if (api_id_valid(id, "job_")) {
        char path[1200], dir[1024];
        api_job_dir(c->ctx->data_dir, id, dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            char *buf = malloc(1 << 20);
            size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
            fclose(f);
            if (buf) {
                buf[n] = '\0';
                *ret_from = "job";
                return buf;
            }
        }
    }
    const char *tm = eng_tokenizer_chat_template(t);
    return tm ? strdup(tm) : NULL;
}

/* messages -> eng_message array (borrowed strings); -1 after a reply. */
static int parse_messages(api_call *c, const cJSON *arr, eng_message **ret,
                          int *ret_n)
{
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1, i = 0;
    const cJSON *e;
    if (n < 0 || n > 10000) {
        api_error(c->res, 400, "invalid_parameter",
                  "messages must be an array of {\"role\",\"content\"}", -1,
                  "messages");
        return -1;
    }
    eng_message *m = calloc((size_t)(n ? n : 1), sizeof(*m));
    if (!m) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    cJSON_ArrayForEach(e, arr) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(e, "content");
        const char *why = NULL;
        if (!cJSON_IsObject(e))
            why = "must be an object";
        else if (!cJSON_IsString(r) || (strcmp(r->valuestring, "system") &&
                                        strcmp(r->valuestring, "user") &&
                                        strcmp(r->valuestring, "assistant") &&
                                        strcmp(r->valuestring, "tool")))
            why = "role must be \"system\", \"user\", \"assistant\" or "
                  "\"tool\"";
        else if (ct && !cJSON_IsString(ct) && !cJSON_IsNull(ct))
            why = "content must be a string";
        if (why) {
            char msg[200], field[48];
            snprintf(msg, sizeof(msg), "messages[%d]: %s", i, why);
            snprintf(field, sizeof(field), "messages[%d]", i);
            api_error(c->res, 400, "invalid_parameter", msg, -1, field);
            free(m);
            return -1;
        }
        m[i].role = r->valuestring;
        m[i].content = cJSON_IsString(ct) ? ct->valuestring : "";
        i++;
    }
    *ret = m;
    *ret_n = n;
    return 0;
}

static const char *token_text(const eng_tokenizer *t, int32_t id, char *buf,
                              size_t cap)
{
    const char *p;
    int k = id >= 0 ? eng_tokenizer_piece(t, -1, id, &p) : 0;
    if (k <= 0 || (size_t)k >= cap)
        return NULL;
    memcpy(buf, p, (size_t)k);
    buf[k] = '\0';
    return buf;
}

void api_h_apply_template(api_call *c)
{
    static const char *const keys[] = { "model", "messages",
                                        "add_generation_prompt", NULL };
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(c->json, "messages");
    eng_message *msgs = NULL;
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    int n = 0;
    bool gen;
    char name[256], why[256] = "", bos[128], eos[128];
    if (api_check_keys(c, c->json, keys, NULL) < 0 ||
        api_get_bool(c, c->json, "add_generation_prompt", true, &gen) < 0 ||
        parse_messages(c, arr, &msgs, &n) < 0)
        return;
    if (get_model(c, &m, &t, name, sizeof(name)) < 0) {
        free(msgs);
        return;
    }
    const char *from;
    char *tmpl = api_model_chat_template(c, name, t, &from), *out = NULL;
    int r = -EINVAL;
    if (tmpl) {
        eng_chat_params p;
        eng_chat_params_default(&p);
        p.add_generation_prompt = gen;
        p.bos_token = token_text(t, eng_tokenizer_bos(t), bos, sizeof(bos));
        p.eos_token = token_text(t, eng_tokenizer_eos(t), eos, sizeof(eos));
        char *mj = cJSON_PrintUnformatted(arr);
        p.messages_json = mj;
        r = eng_chat_template_render(tmpl, msgs, n, &p, &out, why, sizeof(why));
        free(mj);
    } else {
        snprintf(why, sizeof(why), "the model has no chat template");
    }
    if (r < 0) {
        from = "default";
        r = eng_chat_render_default(msgs, n, gen, &out);
    }
    if (r < 0) {
        api_reply_errno(c, r, "the conversation cannot be rendered");
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", out);
        cJSON_AddStringToObject(o, "chat_template", from);
        if (!strcmp(from, "default"))
            cJSON_AddStringToObject(o, "note", why);
        cJSON_AddStringToObject(o, "model", name);
        api_reply_json(c, 200, o);
    }
    free(out);
    free(tmpl);
    free(msgs);
    eng_model_unref(m);
    eng_tokenizer_unref(t);
}

/* ------------------------------------------------------------------------ */
/* Jobs                                                                      */

void api_job_chat_template_save(api_call *c, const char *job_id,
                                const eng_tokenizer *t, const char *ds_format)
{
    const char *tmpl = eng_tokenizer_chat_template(t);
    bool chat = ds_format && strcmp(ds_format, "chat") == 0;
    char dir[1024], path[1200], why[256] = "", msg[512], bos[128], eos[128];
    eng_message probe[] = { { "user", "Hi" }, { "assistant", "Hello" } };
    char *out = NULL;
    int r = -EINVAL;
    if (tmpl) {
        eng_chat_params p;
        eng_chat_params_default(&p);
        p.bos_token = token_text(t, eng_tokenizer_bos(t), bos, sizeof(bos));
        p.eos_token = token_text(t, eng_tokenizer_eos(t), eos, sizeof(eos));
        r = eng_chat_template_render(tmpl, probe, 2, &p, &out, why,
                                     sizeof(why));
        free(out);
    }
    if (r == 0) {
        /* stored with the job: apply-template on the job's model uses it */
        snprintf(dir, sizeof(dir), "%s/jobs", c->ctx->data_dir);
        api_mkdir_p(dir);
        api_job_dir(c->ctx->data_dir, job_id, dir, sizeof(dir));
        api_mkdir_p(dir);
        /* written beside it and renamed: a crash never leaves a cut
         * template for apply-template or an export to pick up */
        char tmp[1300];
        snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
        snprintf(tmp, sizeof(tmp), "%s/.chat_template.jinja.tmp", dir);
        FILE *f = fopen(tmp, "wb");
        if (!f || fputs(tmpl, f) < 0 || fflush(f) != 0 ||
            fsync(fileno(f)) != 0)
            r = -EIO;
        if (f && fclose(f) != 0)
            r = -EIO;
        if (r == 0 && rename(tmp, path) != 0)
            r = -EIO;
        if (r != 0)
            unlink(tmp);
    }
    if (!chat)
        return;
    if (r == 0)
        snprintf(msg, sizeof(msg), "chat records are rendered with the base "
                 "model's own chat template (%s), stored with the job as "
                 "chat_template.jinja",
                 eng_chat_family_name(eng_chat_template_family(tmpl)));
    else if (tmpl)
        snprintf(msg, sizeof(msg), "the base model's chat template cannot be "
                 "used (%s); chat records are rendered with Tuna's default "
                 "template (docs/chat-template.md)", why[0] ? why : "error");
    else
        snprintf(msg, sizeof(msg), "the base model has no chat template; chat "
                 "records are rendered with Tuna's default template "
                 "(docs/chat-template.md)");
    store_event_add(c->ctx->db, job_id, r == 0 ? "info" : "warn", "message",
                    msg, NULL, NULL);
}
