/* SPDX-License-Identifier: MIT */
/*
 * model_hf.c - loads a base model from a Hugging Face folder.
 *
 * The folder holds config.json (LlamaForCausalLM, MistralForCausalLM or
 * Qwen2ForCausalLM) and the weights as model.safetensors, or as shards
 * listed in model.safetensors.index.json ("weight_map": name -> file).
 * Tensor names are transformers': model.embed_tokens.weight,
 * model.layers.N.{input_layernorm, post_attention_layernorm}.weight,
 * model.layers.N.self_attn.{q,k,v,o}_proj.weight (+ q/k/v .bias for Qwen2),
 * model.layers.N.mlp.{gate,up,down}_proj.weight, model.norm.weight,
 * lm_head.weight (absent or ignored when tie_word_embeddings).
 *
 * Weights stay memory-mapped in their stored dtype (F32, F16, BF16): the
 * frozen base costs its file size in page cache, not an fp32 copy. Each
 * shard is validated by safetensors.c (eng_st_open), then mapped again at a
 * fixed place inside one reserved address range, so the model owns a
 * single mapping (m->map, m->map_len) however many shards there are, and
 * the validating reader is closed once the tensors point into the range.
 * Norms and biases are copied to fp32.
 *
 * Hugging Face rotates q/k with rotate_half, pairing dims (i, i + d/2):
 * ENG_ROPE_HALF. rope_scaling of type "linear" and "llama3" is supported
 * (eng_model_init_rope implements both as transformers does); other types
 * are refused rather than silently run with the wrong positions. Mistral's
 * sliding window only differs from full attention past sliding_window
 * tokens; the context length is capped there.
 */
#include "loader-impl.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_MAX_SHARDS 512
#define HF_MAX_JSON (64u << 20)

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

static int read_text(const char *path, char **ret, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    long n;
    char *buf;

    if (!fp) {
        eng_err(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? -ENOENT : -EIO;
    }
    if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 ||
        (unsigned long)n > HF_MAX_JSON || fseek(fp, 0, SEEK_SET)) {
        fclose(fp);
        eng_err(err, errlen, "%s: unreadable or too large", path);
        return -EIO;
    }
    buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(fp);
        return -ENOMEM;
    }
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        fclose(fp);
        eng_err(err, errlen, "%s: read error", path);
        return -EIO;
    }
    buf[n] = '\0';
    fclose(fp);
    *ret = buf;
    return 0;
}

static int read_json(const char *dir, const char *name, cJSON **ret,
                     char *err, size_t errlen)
{
    char path[PATH_MAX];
    char *text = NULL;
    int rc;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return -EINVAL;
    if ((rc = read_text(path, &text, err, errlen)))
        return rc;
    *ret = cJSON_Parse(text);
    free(text);
    if (!*ret) {
        eng_err(err, errlen, "%s: invalid JSON", path);
        return -EIO;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* config.json                                                               */

/* A positive int field; absent gives def (or an error when def < 0). */
static int cfg_int(const cJSON *j, const char *key, int def, int *ret,
                   char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

    if (!v || cJSON_IsNull(v)) {
        if (def < 0) {
            eng_err(err, errlen, "config.json: %s missing", key);
            return -EINVAL;
        }
        *ret = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 ||
        v->valuedouble > INT_MAX || v->valuedouble != (int)v->valuedouble) {
        eng_err(err, errlen, "config.json: %s is not a positive integer",
                key);
        return -EINVAL;
    }
    *ret = (int)v->valuedouble;
    return 0;
}

static double cfg_num(const cJSON *j, const char *key, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static bool cfg_bool(const cJSON *j, const char *key, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static const char *cfg_str(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int cfg_rope_scaling(const cJSON *j, eng_config *c, char *err,
                            size_t errlen)
{
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    const char *type;

    if (!rs || cJSON_IsNull(rs))
        return 0;
    type = cfg_str(rs, "rope_type");
    if (!type)
        type = cfg_str(rs, "type");
    if (!type || !strcmp(type, "default"))
        return 0;
    c->rope_factor = (float)cfg_num(rs, "factor", 1.0);
    if (!strcmp(type, "linear")) {
        c->rope_scaling = ENG_ROPE_SCALING_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        c->rope_scaling = ENG_ROPE_SCALING_LLAMA3;
        c->rope_low_freq_factor = (float)cfg_num(rs, "low_freq_factor", 1.0);
        c->rope_high_freq_factor = (float)cfg_num(rs, "high_freq_factor", 4.0);
        c->rope_orig_max_pos =
            (int)cfg_num(rs, "original_max_position_embeddings", 8192);
    } else {
        eng_err(err, errlen, "config.json: rope_scaling type \"%s\" is not "
                "supported (linear, llama3)", type);
        return -EINVAL;
    }
    return 0;
}

/* Which family: architectures[0], else model_type. */
static const char *cfg_arch(const cJSON *j)
{
    static const char *const known[][2] = {
        { "LlamaForCausalLM", "llama" },
        { "MistralForCausalLM", "mistral" },
        { "Qwen2ForCausalLM", "qwen2" },
    };
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const char *name = cJSON_IsArray(a) && cJSON_IsString(a->child)
                           ? a->child->valuestring : NULL;
    const char *type = cfg_str(j, "model_type");

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if ((name && !strcmp(name, known[i][0])) ||
            (!name && type && !strcmp(type, known[i][1])))
            return known[i][1];
    return NULL;
}

static int cfg_unsupported(const cJSON *j, char *err, size_t errlen)
{
    const char *act = cfg_str(j, "hidden_act");

    if (act && strcmp(act, "silu")) {
        eng_err(err, errlen, "config.json: hidden_act \"%s\" is not "
                "supported (silu)", act);
        return -EINVAL;
    }
    if (cfg_bool(j, "attention_bias", false) || cfg_bool(j, "mlp_bias", false)) {
        eng_err(err, errlen, "config.json: attention_bias/mlp_bias are "
                "not supported");
        return -EINVAL;
    }
    return 0;
}

static int hf_config(const cJSON *j, eng_config *c, char *err, size_t errlen)
{
    const char *arch = cfg_arch(j);
    int rc, window = 0;

    memset(c, 0, sizeof(*c));
    if (!arch) {
        eng_err(err, errlen, "config.json: architecture not supported "
                "(LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
        return -EINVAL;
    }
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    if ((rc = cfg_unsupported(j, err, errlen)) ||
        (rc = cfg_int(j, "hidden_size", -1, &c->dim, err, errlen)) ||
        (rc = cfg_int(j, "intermediate_size", -1, &c->hidden_dim, err, errlen)) ||
        (rc = cfg_int(j, "num_hidden_layers", -1, &c->n_layers, err, errlen)) ||
        (rc = cfg_int(j, "num_attention_heads", -1, &c->n_heads, err, errlen)) ||
        (rc = cfg_int(j, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err, errlen)) ||
        (rc = cfg_int(j, "head_dim", c->dim / c->n_heads, &c->head_dim, err, errlen)) ||
        (rc = cfg_int(j, "vocab_size", -1, &c->vocab_size, err, errlen)) ||
        (rc = cfg_int(j, "max_position_embeddings", 2048, &c->max_seq_len, err, errlen)) ||
        (rc = cfg_int(j, "sliding_window", 0, &window, err, errlen)))
        return rc;
    /* Qwen2 configs carry sliding_window but only use it when asked to. */
    if (!strcmp(arch, "qwen2") && !cfg_bool(j, "use_sliding_window", false))
        window = 0;
    if (window > 0 && window < c->max_seq_len)
        c->max_seq_len = window;
    c->norm_eps = (float)cfg_num(j, "rms_norm_eps", 1e-6);
    c->rope_theta = (float)cfg_num(j, "rope_theta", 10000.0);
    c->rope_style = ENG_ROPE_HALF;
    c->tied_embeddings = cfg_bool(j, "tie_word_embeddings", false);
    c->qkv_bias = !strcmp(arch, "qwen2");
    if ((rc = cfg_rope_scaling(j, c, err, errlen)))
        return rc;
    if ((rc = eng_ld_check_limits(c, err, errlen)))
        return rc;
    if (eng_config_check(c)) {
        eng_err(err, errlen, "config.json: inconsistent sizes (hidden %d, "
                "heads %d/%d, head_dim %d) or rope parameters", c->dim,
                c->n_heads, c->n_kv_heads, c->head_dim);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Shards                                                                    */

typedef struct hf_shards {
    int n;
    char *names[HF_MAX_SHARDS];
    eng_st_file *f[HF_MAX_SHARDS];
    size_t off[HF_MAX_SHARDS];  /* place of shard i in the region */
    void *region;
    size_t region_len;
} hf_shards;

static void shards_done(hf_shards *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->names[i]);
        eng_st_close(s->f[i]);
    }
    if (s->region)
        munmap(s->region, s->region_len);
}

/* Shard file names: the index's distinct weight_map values, in order of
 * first appearance, or just model.safetensors. */
static int shard_names(const char *dir, hf_shards *s, char *err, size_t errlen)
{
    cJSON *idx = NULL, *map, *e;
    int rc = read_json(dir, "model.safetensors.index.json", &idx, err, errlen);

    if (rc == -ENOENT) {
        s->names[0] = strdup("model.safetensors");
        s->n = 1;
        return s->names[0] ? 0 : -ENOMEM;
    }
    if (rc)
        return rc;
    map = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    rc = cJSON_IsObject(map) ? 0 : -EIO;
    cJSON_ArrayForEach(e, map) {
        int k = 0;

        if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
            rc = -EIO;
            break;
        }
        while (k < s->n && strcmp(s->names[k], e->valuestring))
            k++;
        if (k < s->n)
            continue;
        if (s->n == HF_MAX_SHARDS || !(s->names[s->n] = strdup(e->valuestring))) {
            rc = s->n == HF_MAX_SHARDS ? -EIO : -ENOMEM;
            break;
        }
        s->n++;
    }
    if (rc == -EIO || !s->n)
        eng_err(err, errlen, "model.safetensors.index.json: bad weight_map");
    cJSON_Delete(idx);
    return rc ? rc : s->n ? 0 : -EIO;
}

/* Validates every shard, then maps each at its place in one reserved
 * range and closes the validating reader's own mapping. The tensors'
 * data pointers are moved to the new mapping. */
static int map_shards(const char *dir, hf_shards *s, char *err, size_t errlen)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), total = 0;
    char path[PATH_MAX];
    int rc;

    for (int i = 0; i < s->n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, s->names[i]);
        if ((rc = eng_st_open(path, &s->f[i], err, errlen)))
            return rc;
        s->off[i] = total;
        total += (s->f[i]->map_len + page - 1) / page * page;
    }
    s->region = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->region == MAP_FAILED) {
        s->region = NULL;
        return -ENOMEM;
    }
    s->region_len = total;
    for (int i = 0; i < s->n; i++) {
        eng_st_file *f = s->f[i];
        uint8_t *dst = (uint8_t *)s->region + s->off[i];
        int fd;

        snprintf(path, sizeof path, "%s/%s", dir, s->names[i]);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || mmap(dst, f->map_len, PROT_READ, MAP_PRIVATE | MAP_FIXED,
                           fd, 0) == MAP_FAILED) {
            eng_err(err, errlen, "%s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -EIO;
        }
        close(fd);
        eng_advise_weights(dst, f->map_len);
        for (int t = 0; t < f->n; t++)
            f->t[t].data = dst + ((const uint8_t *)f->t[t].data -
                                  (const uint8_t *)f->map);
        munmap(f->map, f->map_len);
        f->map = NULL;
    }
    return 0;
}

static const eng_st_tensor *shards_find(const hf_shards *s, const char *name)
{
    for (int i = 0; i < s->n; i++) {
        const eng_st_tensor *t = eng_st_find(s->f[i], name);

        if (t)
            return t;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Weights                                                                   */

static void slot_name(const eng_ld_slot *s, char *buf, size_t len)
{
    static const char *const names[] = {
        [ENG_W_TOK_EMB] = "model.embed_tokens.weight",
        [ENG_W_FINAL_NORM] = "model.norm.weight",
        [ENG_W_LM_HEAD] = "lm_head.weight",
        [ENG_W_ATTN_NORM] = "input_layernorm.weight",
        [ENG_W_FFN_NORM] = "post_attention_layernorm.weight",
        [ENG_W_Q] = "self_attn.q_proj.weight",
        [ENG_W_K] = "self_attn.k_proj.weight",
        [ENG_W_V] = "self_attn.v_proj.weight",
        [ENG_W_O] = "self_attn.o_proj.weight",
        [ENG_W_GATE] = "mlp.gate_proj.weight",
        [ENG_W_UP] = "mlp.up_proj.weight",
        [ENG_W_DOWN] = "mlp.down_proj.weight",
        [ENG_W_BQ] = "self_attn.q_proj.bias",
        [ENG_W_BK] = "self_attn.k_proj.bias",
        [ENG_W_BV] = "self_attn.v_proj.bias",
    };

    if (s->layer < 0)
        snprintf(buf, len, "%s", names[s->kind]);
    else
        snprintf(buf, len, "model.layers.%d.%s", s->layer, names[s->kind]);
}

/* eng_ld_lookup_fn over the shards of a folder. */
static int lookup(const void *file, const eng_ld_slot *s, char *name,
                  size_t namelen, eng_ld_src *src, char *err, size_t errlen)
{
    const eng_st_tensor *t;

    slot_name(s, name, namelen);
    if (!(t = shards_find(file, name))) {
        eng_err(err, errlen, "safetensors: tensor %s missing%s", name,
                s->kind == ENG_W_LM_HEAD
                    ? " (and tie_word_embeddings is false)" : "");
        return -EINVAL;
    }
    if (!t->known || t->ndim > 4) {
        eng_err(err, errlen, "safetensors: tensor %s has dtype %s "
                "(F32, F16, BF16 supported)", name, t->dtype_name);
        return -EINVAL;
    }
    src->dtype = t->dtype;
    src->ndim = t->ndim;
    memcpy(src->dims, t->shape, (size_t)t->ndim * sizeof(src->dims[0]));
    src->data = t->data;
    return 0;
}

int eng_model_load_hf(const char *dir, eng_model **ret_model, char *err,
                      size_t errlen)
{
    hf_shards sh = { 0 };
    cJSON *cj = NULL;
    eng_model *m = NULL;
    eng_config cfg;
    int rc;

    if ((rc = read_json(dir, "config.json", &cj, err, errlen)) ||
        (rc = hf_config(cj, &cfg, err, errlen)) ||
        (rc = shard_names(dir, &sh, err, errlen)) ||
        (rc = map_shards(dir, &sh, err, errlen)) ||
        (rc = eng_model_alloc(&cfg, &m)))
        goto out;
    if ((rc = eng_ld_bind_all(m, lookup, &sh, err, errlen)) ||
        (rc = eng_ld_finish(m, err, errlen)))
        goto out;
    m->map = sh.region; /* the model owns every shard's mapping now */
    m->map_len = sh.region_len;
    sh.region = NULL;
    *ret_model = m;
    m = NULL;
out:
    eng_model_unref(m);
    shards_done(&sh);
    cJSON_Delete(cj);
    return rc;
}

int eng_ld_hf_config(const char *dir, eng_config *ret, char *err,
                     size_t errlen)
{
    cJSON *cj = NULL;
    int rc = read_json(dir, "config.json", &cj, err, errlen);

    if (!rc)
        rc = hf_config(cj, ret, err, errlen);
    cJSON_Delete(cj);
    return rc;
}
