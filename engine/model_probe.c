/* SPDX-License-Identifier: MIT */
/*
 * model_probe.c - what a model is, without loading it: eng_model_probe().
 *
 * A model registry lists every model in a folder, and listing must not map
 * and bind gigabytes of weights. The probe reads only what describes the
 * model: for a Hugging Face folder config.json (through the loader's own
 * parser, so a probe accepts exactly what a load accepts), the JSON header
 * of the safetensors file holding layer 0's q_proj (its dtype), and the
 * chat template in tokenizer_config.json or chat_template.jinja; for a GGUF
 * file its metadata and tensor infos (eng_ld_gguf_probe). A llama2.c
 * checkpoint is tiny and simply loaded. The parameter count follows from
 * the config and equals what eng_model_finish() counts.
 */
#include "loader-impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PROBE_MAX_JSON (64u << 20)

static int64_t params_of(const eng_config *c)
{
    int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim,
            kv = (int64_t)c->n_kv_heads * c->head_dim, h = c->hidden_dim;
    int64_t layer = 2 * d + q * d + 2 * kv * d + d * q + 3 * h * d;

    if (c->qkv_bias)
        layer += q + 2 * kv;
    return (int64_t)c->vocab_size * d * (c->tied_embeddings ? 1 : 2) + d +
           layer * c->n_layers;
}

/* Reads a whole small file (at most PROBE_MAX_JSON bytes) into a string. */
static int slurp(const char *path, char **ret)
{
    FILE *f = fopen(path, "rb");
    long n;
    char *buf;

    if (!f)
        return errno == ENOENT ? -ENOENT : -EIO;
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
        (unsigned long)n > PROBE_MAX_JSON || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return -EIO;
    }
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf)
        return -EIO;
    buf[n] = '\0';
    *ret = buf;
    return 0;
}

static cJSON *read_json(const char *dir, const char *name)
{
    char path[PATH_MAX], *text = NULL;
    cJSON *j;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path ||
        slurp(path, &text))
        return NULL;
    j = cJSON_Parse(text);
    free(text);
    return j;
}

/* dtype of tensor name in the safetensors header of dir/file. */
static void st_dtype(const char *dir, const char *file, const char *name,
                     char *dtype, size_t dlen)
{
    char path[PATH_MAX], *hdr = NULL;
    uint64_t n = 0;
    FILE *f;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path ||
        !(f = fopen(path, "rb")))
        return;
    if (fread(&n, 8, 1, f) == 1 && n > 0 && n <= PROBE_MAX_JSON &&
        (hdr = malloc(n + 1)) && fread(hdr, 1, n, f) == n) {
        hdr[n] = '\0';
        cJSON *j = cJSON_Parse(hdr);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, name);
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        if (cJSON_IsString(dt))
            snprintf(dtype, dlen, "%s", dt->valuestring);
        cJSON_Delete(j);
    }
    free(hdr);
    fclose(f);
}

static void hf_dtype(const char *dir, char *dtype, size_t dlen)
{
    static const char q0[] = "model.layers.0.self_attn.q_proj.weight";
    cJSON *idx = read_json(dir, "model.safetensors.index.json");
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(wm, q0);

    snprintf(dtype, dlen, "?");
    if (cJSON_IsString(file) && !strchr(file->valuestring, '/'))
        st_dtype(dir, file->valuestring, q0, dtype, dlen);
    else
        st_dtype(dir, "model.safetensors", q0, dtype, dlen);
    cJSON_Delete(idx);
}

/* The chat template of a Hugging Face folder (malloc'd), or NULL. */
static char *hf_chat_template(const char *dir)
{
    cJSON *tc = read_json(dir, "tokenizer_config.json");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
    char *out = NULL, path[PATH_MAX];

    if (cJSON_IsString(ct)) {
        out = strdup(ct->valuestring);
    } else if (cJSON_IsArray(ct)) {
        /* [{"name": "default", "template": ...}, ...] */
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(n) && !strcmp(n->valuestring, "default") &&
                cJSON_IsString(t))
                out = strdup(t->valuestring);
        }
    }
    cJSON_Delete(tc);
    if (!out && (size_t)snprintf(path, sizeof path, "%s/chat_template.jinja",
                                 dir) < sizeof path)
        slurp(path, &out);
    return out;
}

static void set_template(eng_model_info *info, char *tmpl)
{
    info->has_chat_template = tmpl != NULL;
    info->chat_family = eng_chat_template_family(tmpl);
    free(tmpl);
}

int eng_model_probe(const char *path, eng_model_info *ret, char *err,
                    size_t errlen)
{
    eng_model_info info;
    struct stat st;
    char *tmpl = NULL;
    int rc;

    memset(&info, 0, sizeof info);
    if (stat(path, &st)) {
        eng_err(err, errlen, "%s: %s", path, strerror(errno));
        return -ENOENT;
    }
    if (S_ISDIR(st.st_mode)) {
        if ((rc = eng_ld_hf_config(path, &info.cfg, err, errlen)))
            return rc;
        snprintf(info.format, sizeof info.format, "hf");
        hf_dtype(path, info.dtype, sizeof info.dtype);
        set_template(&info, hf_chat_template(path));
    } else {
        FILE *f = fopen(path, "rb");
        char magic[4] = { 0 };
        size_t n = f ? fread(magic, 1, 4, f) : 0;

        if (f)
            fclose(f);
        if (n == 4 && !memcmp(magic, "GGUF", 4)) {
            if ((rc = eng_ld_gguf_probe(path, &info.cfg, info.dtype,
                                        sizeof info.dtype, &tmpl, err,
                                        errlen)))
                return rc;
            snprintf(info.format, sizeof info.format, "gguf");
            set_template(&info, tmpl);
        } else {
            eng_model *m = NULL;

            if ((rc = eng_model_load_llama2c(path, &m, err, errlen)))
                return rc;
            info.cfg = *eng_model_config(m);
            info.n_params = eng_model_n_params(m);
            eng_model_unref(m);
            snprintf(info.format, sizeof info.format, "llama2c");
            snprintf(info.dtype, sizeof info.dtype, "F32");
        }
    }
    if (!info.n_params)
        info.n_params = params_of(&info.cfg);
    *ret = info;
    return 0;
}
