/* SPDX-License-Identifier: MIT */
/*
 * model_gguf.c - loads a base model from a GGUF file (versions 2 and 3).
 *
 * gguf_meta.c reads the header and metadata; this file reads what follows:
 *
 *   n_tensors x { string name; u32 n_dims; u64 ne[n_dims]; u32 ggml_type;
 *                 u64 offset }
 *   padding to general.alignment (default 32), then the data section; each
 *   tensor lies at data_start + offset, ne[0] being the innermost (column)
 *   count, so a matrix [rows, cols] has ne = {cols, rows}.
 *
 * The file is memory-mapped once and the model keeps the mapping: matrices
 * stay in their stored type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K) and the
 * kernels convert rows as they go; norms and biases are copied to fp32.
 *
 * Architectures llama, mistral and qwen2 read their hyper-parameters from
 * <arch>.* keys. RoPE: llama.cpp's converter (convert_hf_to_gguf.py,
 * LlamaModel.permute) reorders the q/k rows of llama and mistral models so
 * that each head's rotated pairs are adjacent, (2i, 2i+1), because its
 * "llama" kernel rotates interleaved pairs; qwen2 is stored as Hugging Face
 * has it and rotated NeoX-style, (i, i + d/2). The loader therefore keeps the
 * stored order and picks ENG_ROPE_INTERLEAVED for llama/mistral and
 * ENG_ROPE_HALF for qwen2, which gives the same logits as the Hugging Face
 * folder the file was converted from. Llama 3 RoPE scaling arrives as the
 * rope_freqs.weight tensor of per-frequency divisors, applied to the
 * model's table after eng_model_finish().
 */
#include "gguf_meta.h"
#include "loader-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GG_MAX_DIMS 4

typedef struct gg_tensor {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[GG_MAX_DIMS];
    uint32_t type;          /* ggml_type */
    const uint8_t *data;
    size_t nbytes;
} gg_tensor;

typedef struct gg_file {
    void *map;              /* the whole file, until a model takes it */
    size_t len;
    gguf_meta *meta;
    gg_tensor *t;
    uint64_t n;
} gg_file;

/* ggml_type numbers of the types we load (ggml.h). */
static int gg_dtype(uint32_t type, eng_dtype *ret)
{
    switch (type) {
    case 0: *ret = ENG_DT_F32; return 0;
    case 1: *ret = ENG_DT_F16; return 0;
    case 2: *ret = ENG_DT_Q4_0; return 0;
    case 8: *ret = ENG_DT_Q8_0; return 0;
    case 12: *ret = ENG_DT_Q4_K; return 0;
    case 14: *ret = ENG_DT_Q6_K; return 0;
    case 30: *ret = ENG_DT_BF16; return 0;
    default: return -EINVAL;
    }
}

/* ------------------------------------------------------------------------ */
/* Tensor infos                                                              */

typedef struct rd {
    const uint8_t *p, *end;
} rd;

static int rd_take(rd *r, void *dst, size_t n)
{
    if (n > (size_t)(r->end - r->p))
        return -EIO;
    memcpy(dst, r->p, n);
    r->p += n;
    return 0;
}

static int rd_str(rd *r, gguf_str *s)
{
    uint64_t len;

    if (rd_take(r, &len, 8) || len > (uint64_t)(r->end - r->p))
        return -EIO;
    s->ptr = (const char *)r->p;
    s->len = len;
    r->p += len;
    return 0;
}

static int read_info(rd *r, gg_tensor *t, uint64_t *ret_off)
{
    if (rd_str(r, &t->name) || rd_take(r, &t->n_dims, 4) || t->n_dims < 1 ||
        t->n_dims > GG_MAX_DIMS)
        return -EIO;
    for (uint32_t d = 0; d < GG_MAX_DIMS; d++) {
        uint64_t v = 1;

        if (d < t->n_dims && rd_take(r, &v, 8))
            return -EIO;
        if (v < 1 || v > INT32_MAX)
            return -EIO;
        t->ne[d] = (int64_t)v;
    }
    return rd_take(r, &t->type, 4) || rd_take(r, ret_off, 8) ? -EIO : 0;
}

/* Byte size of t in its type, or 0 when it is not a supported type or its
 * rows are not whole blocks. */
static size_t tensor_bytes(const gg_tensor *t)
{
    eng_dtype dt;
    size_t rows = 1;

    if (gg_dtype(t->type, &dt) || t->ne[0] % eng_ld_block_elems(dt))
        return 0;
    for (int d = 1; d < GG_MAX_DIMS; d++)
        rows *= (size_t)t->ne[d];
    if (rows > SIZE_MAX / (1u << 20))
        return 0;
    return rows * eng_dtype_row_bytes(dt, (int)t->ne[0]);
}

static int read_infos(gg_file *f, char *err, size_t errlen)
{
    const gguf_meta *meta = f->meta;
    rd r = { meta->base + meta->tensor_info_offset, meta->base + meta->size };
    uint64_t *offs = NULL;
    int rc = -EIO;

    /* Each info takes at least 32 bytes: bounds the allocation. */
    if (meta->n_tensors > meta->size / 32 || meta->alignment == 0) {
        eng_err(err, errlen, "GGUF: bad tensor count or alignment");
        return -EIO;
    }
    f->n = meta->n_tensors;
    f->t = calloc(f->n ? f->n : 1, sizeof(*f->t));
    offs = calloc(f->n ? f->n : 1, sizeof(*offs));
    if (!f->t || !offs) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < f->n; i++) {
        if (read_info(&r, &f->t[i], &offs[i])) {
            eng_err(err, errlen, "GGUF: tensor info %llu is corrupt",
                    (unsigned long long)i);
            goto out;
        }
    }
    size_t data = (size_t)(r.p - meta->base);

    data = (data + meta->alignment - 1) / meta->alignment * meta->alignment;
    for (uint64_t i = 0; i < f->n; i++) {
        gg_tensor *t = &f->t[i];

        t->nbytes = tensor_bytes(t);
        if (!t->nbytes)
            continue; /* unsupported type: an error only if the model uses it */
        if (offs[i] % meta->alignment || data > meta->size ||
            offs[i] > meta->size - data ||
            t->nbytes > meta->size - data - offs[i]) {
            eng_err(err, errlen, "GGUF: tensor %.*s lies outside the file",
                    (int)t->name.len, t->name.ptr);
            goto out;
        }
        t->data = meta->base + data + offs[i];
    }
    rc = 0;
out:
    free(offs);
    return rc;
}

static const gg_tensor *find(const gg_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n; i++)
        if (gguf_str_eq(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Config                                                                    */

/* <arch>.<key> as an int; absent is an error unless def >= 0. */
static int arch_int(const gguf_meta *meta, const char *arch, const char *key,
                    int64_t def, int *ret, char *err, size_t errlen)
{
    char full[128];
    int64_t v;
    int rc;

    snprintf(full, sizeof full, "%s.%s", arch, key);
    rc = gguf_meta_get_i64(meta, full, &v);
    if (rc == -ENOENT && def >= 0) {
        v = def;
    } else if (rc || v <= 0 || v > INT32_MAX) {
        eng_err(err, errlen, "GGUF: %s %s", full,
                rc == -ENOENT ? "missing" : "invalid");
        return -EINVAL;
    }
    *ret = (int)v;
    return 0;
}

static double arch_f64(const gguf_meta *meta, const char *arch,
                       const char *key, double def)
{
    char full[128];
    double v;

    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_meta_get_f64(meta, full, &v) ? def : v;
}

static int rope_scaling(const gguf_meta *meta, const char *arch,
                        eng_config *c, char *err, size_t errlen)
{
    char full[128];
    gguf_str s;

    snprintf(full, sizeof full, "%s.rope.scaling.type", arch);
    if (gguf_meta_get_str(meta, full, &s) || gguf_str_eq(s, "none"))
        return 0;
    if (!gguf_str_eq(s, "linear")) {
        eng_err(err, errlen, "GGUF: rope scaling \"%.*s\" is not supported",
                (int)s.len, s.ptr);
        return -EINVAL;
    }
    c->rope_scaling = ENG_ROPE_SCALING_LINEAR;
    c->rope_factor = (float)arch_f64(meta, arch, "rope.scaling.factor", 1.0);
    return 0;
}

/* general.architecture into arch[32], if it is one we run. */
static int gguf_arch(const gguf_meta *meta, char *arch, char *err,
                     size_t errlen)
{
    gguf_str s;

    if (!gguf_meta_get_str(meta, "general.type", &s) &&
        gguf_str_eq(s, "adapter")) {
        eng_err(err, errlen, "GGUF: this file is an adapter, not a model");
        return -EINVAL;
    }
    if (gguf_meta_get_str(meta, "general.architecture", &s) || s.len >= 32) {
        eng_err(err, errlen, "GGUF: general.architecture missing");
        return -EINVAL;
    }
    memcpy(arch, s.ptr, s.len);
    arch[s.len] = '\0';
    if (strcmp(arch, "llama") && strcmp(arch, "mistral") &&
        strcmp(arch, "qwen2")) {
        eng_err(err, errlen, "GGUF: architecture \"%s\" is not supported "
                "(llama, mistral, qwen2)", arch);
        return -EINVAL;
    }
    return 0;
}

static int gguf_config(const gg_file *f, eng_config *c, char *err,
                       size_t errlen)
{
    const gguf_meta *meta = f->meta;
    const gg_tensor *emb;
    char arch[32];
    int rot = 0, rc;

    memset(c, 0, sizeof(*c));
    if ((rc = gguf_arch(meta, arch, err, errlen)))
        return rc;
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    if ((rc = arch_int(meta, arch, "embedding_length", -1, &c->dim, err, errlen)) ||
        (rc = arch_int(meta, arch, "feed_forward_length", -1, &c->hidden_dim, err, errlen)) ||
        (rc = arch_int(meta, arch, "block_count", -1, &c->n_layers, err, errlen)) ||
        (rc = arch_int(meta, arch, "attention.head_count", -1, &c->n_heads, err, errlen)) ||
        (rc = arch_int(meta, arch, "attention.head_count_kv", c->n_heads, &c->n_kv_heads, err, errlen)) ||
        (rc = arch_int(meta, arch, "attention.key_length", c->dim / c->n_heads, &c->head_dim, err, errlen)) ||
        (rc = arch_int(meta, arch, "rope.dimension_count", c->head_dim, &rot, err, errlen)) ||
        (rc = arch_int(meta, arch, "context_length", 2048, &c->max_seq_len, err, errlen)))
        return rc;
    if (rot != c->head_dim) {
        eng_err(err, errlen, "GGUF: partial rotary (%d of %d dims) is not "
                "supported", rot, c->head_dim);
        return -EINVAL;
    }
    if (!(emb = find(f, "token_embd.weight")) || emb->n_dims != 2) {
        eng_err(err, errlen, "GGUF: token_embd.weight missing");
        return -EINVAL;
    }
    c->vocab_size = (int)emb->ne[1];
    c->norm_eps = (float)arch_f64(meta, arch,
                                  "attention.layer_norm_rms_epsilon", 1e-5);
    c->rope_theta = (float)arch_f64(meta, arch, "rope.freq_base", 10000.0);
    c->rope_style = strcmp(arch, "qwen2") ? ENG_ROPE_INTERLEAVED
                                          : ENG_ROPE_HALF;
    c->tied_embeddings = find(f, "output.weight") == NULL;
    c->qkv_bias = find(f, "blk.0.attn_q.bias") != NULL;
    if ((rc = rope_scaling(meta, arch, c, err, errlen)))
        return rc;
    if ((rc = eng_ld_check_limits(c, err, errlen)))
        return rc;
    if (eng_config_check(c)) {
        eng_err(err, errlen, "GGUF: inconsistent hyper-parameters "
                "(dim %d, heads %d/%d, head_dim %d)", c->dim, c->n_heads,
                c->n_kv_heads, c->head_dim);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Weights                                                                   */

static void slot_name(const eng_ld_slot *s, char *buf, size_t len)
{
    static const char *const names[] = {
        [ENG_W_TOK_EMB] = "token_embd.weight",
        [ENG_W_FINAL_NORM] = "output_norm.weight",
        [ENG_W_LM_HEAD] = "output.weight",
        [ENG_W_ATTN_NORM] = "attn_norm.weight",
        [ENG_W_FFN_NORM] = "ffn_norm.weight",
        [ENG_W_Q] = "attn_q.weight", [ENG_W_K] = "attn_k.weight",
        [ENG_W_V] = "attn_v.weight", [ENG_W_O] = "attn_output.weight",
        [ENG_W_GATE] = "ffn_gate.weight", [ENG_W_UP] = "ffn_up.weight",
        [ENG_W_DOWN] = "ffn_down.weight",
        [ENG_W_BQ] = "attn_q.bias", [ENG_W_BK] = "attn_k.bias",
        [ENG_W_BV] = "attn_v.bias",
    };

    if (s->layer < 0)
        snprintf(buf, len, "%s", names[s->kind]);
    else
        snprintf(buf, len, "blk.%d.%s", s->layer, names[s->kind]);
}

/* eng_ld_lookup_fn over a gg_file: dims reversed into PyTorch order. */
static int lookup(const void *file, const eng_ld_slot *s, char *name,
                  size_t namelen, eng_ld_src *src, char *err, size_t errlen)
{
    const gg_tensor *t;

    slot_name(s, name, namelen);
    if (!(t = find(file, name))) {
        eng_err(err, errlen, "GGUF: tensor %s missing", name);
        return -EINVAL;
    }
    if (!t->data) {
        eng_err(err, errlen, "GGUF: tensor %s has unsupported ggml "
                "type %u", name, t->type);
        return -EINVAL;
    }
    gg_dtype(t->type, &src->dtype);
    src->ndim = (int)t->n_dims;
    for (uint32_t d = 0; d < t->n_dims; d++)
        src->dims[d] = t->ne[t->n_dims - 1 - d];
    src->data = t->data;
    return 0;
}

/* Llama 3 scaling: inv_freq[i] /= rope_freqs[i] (llama.cpp's freq_factors). */
static int apply_rope_freqs(eng_model *m, const gg_file *f, char *err,
                            size_t errlen)
{
    const gg_tensor *t = find(f, "rope_freqs.weight");
    int half = m->cfg.head_dim / 2;

    if (!t)
        return 0;
    if (t->type != 0 || t->n_dims != 1 || t->ne[0] != half || !t->data) {
        eng_err(err, errlen, "GGUF: rope_freqs.weight must be F32 [%d]",
                half);
        return -EINVAL;
    }
    for (int i = 0; i < half; i++) {
        float ff;

        memcpy(&ff, t->data + 4 * (size_t)i, 4);
        if (!(ff > 0)) {
            eng_err(err, errlen, "GGUF: rope_freqs.weight[%d] = %g", i, ff);
            return -EINVAL;
        }
        m->rope_inv_freq[i] /= ff;
    }
    return 0;
}

static int map_file(const char *path, void **ret_map, size_t *ret_len,
                    char *err, size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    void *map;

    if (fd < 0) {
        eng_err(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? -ENOENT : -EIO;
    }
    if (fstat(fd, &st) || st.st_size < 24) {
        eng_err(err, errlen, "%s: not a GGUF file", path);
        rc = -EIO;
        goto out;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        eng_err(err, errlen, "%s: mmap: %s", path, strerror(errno));
        rc = errno == ENOMEM ? -ENOMEM : -EIO;
        goto out;
    }
    *ret_map = map;
    *ret_len = (size_t)st.st_size;
    eng_advise_weights(map, *ret_len);
out:
    close(fd);
    return rc;
}

/* Maps path and reads its metadata, tensor infos and config into f and c.
 * gg_close() releases what it got, on failure too. */
static int gg_open(const char *path, gg_file *f, eng_config *c, char *err,
                   size_t errlen)
{
    int rc;

    if ((rc = map_file(path, &f->map, &f->len, err, errlen)) ||
        (rc = gguf_meta_parse(f->map, f->len, &f->meta, err, errlen)) ||
        (rc = read_infos(f, err, errlen)))
        return rc;
    return gguf_config(f, c, err, errlen);
}

static void gg_close(gg_file *f)
{
    if (f->map)
        munmap(f->map, f->len);
    free(f->t);
    gguf_meta_free(f->meta);
}

int eng_model_load_gguf(const char *path, eng_model **ret_model, char *err,
                        size_t errlen)
{
    gg_file f = { 0 };
    eng_model *m = NULL;
    eng_config cfg;
    int rc;

    if ((rc = gg_open(path, &f, &cfg, err, errlen)) ||
        (rc = eng_model_alloc(&cfg, &m)))
        goto out;
    m->map = f.map; /* the model owns the mapping from here on */
    m->map_len = f.len;
    f.map = NULL;
    if ((rc = eng_ld_bind_all(m, lookup, &f, err, errlen)) ||
        (rc = eng_ld_finish(m, err, errlen)) ||
        (rc = apply_rope_freqs(m, &f, err, errlen)))
        goto out;
    *ret_model = m;
    m = NULL;
out:
    eng_model_unref(m);
    gg_close(&f);
    return rc;
}

int eng_ld_gguf_probe(const char *path, eng_config *ret, char *dtype,
                      size_t dlen, char **ret_chat_template, char *err,
                      size_t errlen)
{
    static const struct { uint32_t type; const char *name; } names[] = {
        {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {8, "Q8_0"},
        {10, "Q2_K"}, {11, "Q3_K"}, {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"},
        {30, "BF16"},
    };
    gg_file f = { 0 };
    const gg_tensor *q;
    gguf_str s;
    int rc;

    *ret_chat_template = NULL;
    if ((rc = gg_open(path, &f, ret, err, errlen)))
        goto out;
    snprintf(dtype, dlen, "?");
    if ((q = find(&f, "blk.0.attn_q.weight")))
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (names[i].type == q->type)
                snprintf(dtype, dlen, "%s", names[i].name);
    if (!gguf_meta_get_str(f.meta, "tokenizer.chat_template", &s) &&
        !(*ret_chat_template = gguf_str_dup(s)))
        rc = -ENOMEM;
out:
    gg_close(&f);
    return rc;
}
