/* SPDX-License-Identifier: MIT */
/*
 * export.c - adapters and models out of Tuna (PEFT, GGUF LoRA, merged
 * Hugging Face folder) and PEFT adapters in.
 *
 * Row orders. Hugging Face checkpoints rotate q/k with rotate_half, pairing
 * dims (i, i + hd/2) of each head; llama.cpp's converter permutes the q/k
 * rows of llama/mistral models (LlamaModel.permute) so that pairs are
 * adjacent, (2i, 2i+1). Tuna computes with the rows as the file stores
 * them, so an adapter trained on a GGUF llama (or a llama2.c checkpoint,
 * Meta's order) has its q/k lora_B rows in the permuted order. Outputs for
 * the Hugging Face world are therefore unpermuted when the base uses
 * interleaved RoPE, and GGUF adapters permuted when it does not (and the
 * architecture is llama-like), exactly what convert_lora_to_gguf.py does to
 * lora_B through LoraTorchTensor.permute. A (the input side) never changes.
 * Within head h of size hd, with i < hd/2 and j in {0, 1}:
 *   Hugging Face row h*hd + j*hd/2 + i  <->  permuted row h*hd + 2i + j.
 *
 * GGUF LoRA layout (llama-adapter.cpp): for a base weight of ggml shape
 * ne = [in, out], lora_a has ne = [in, rank] (PyTorch A [rank, in]) and
 * lora_b ne = [rank, out] (PyTorch B [out, rank]); llama.cpp scales by
 * alpha / rank with rank = lora_b ne[0].
 *
 * The merged export streams: each output tensor is built one row at a time
 * (dequantized base row + scale * B[r,:] A) and written, so memory stays at
 * one row plus the adapter whatever the model size.
 */
#include "model.h"
#include "err.h"
#include "safetensors.h"
#include "train_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const hf_module[ENG_T_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
    "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};
static const char *const gguf_module[ENG_T_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
    "ffn_down",
};

/* ------------------------------------------------------------------------ */
/* Row orders                                                                */

/* Heads of target t whose rows are permuted, or 0 when t is not q/k. */
static int permuted_heads(const eng_config *c, int t)
{
    return t == ENG_T_Q ? c->n_heads : t == ENG_T_K ? c->n_kv_heads : 0;
}

/* The stored row that holds Hugging Face row r (for an interleaved base). */
static int hf_to_interleaved_row(int r, int hd)
{
    int h = r / hd, k = r % hd, half = hd / 2;
    int j = k / half, i = k % half;

    return h * hd + 2 * i + j;
}

/* Rows of x [rows, cols] reordered: dst row r = src row map(r). to_hf: map
 * is hf_to_interleaved_row (permuted -> HF); else its inverse. */
static void reorder_rows(float *x, int rows, int cols, int hd, bool to_hf,
                         float *tmp)
{
    memcpy(tmp, x, (size_t)rows * cols * sizeof(float));
    for (int r = 0; r < rows; r++) {
        int s = hf_to_interleaved_row(r, hd);
        if (to_hf)
            memcpy(x + (size_t)r * cols, tmp + (size_t)s * cols,
                   (size_t)cols * sizeof(float));
        else
            memcpy(x + (size_t)s * cols, tmp + (size_t)r * cols,
                   (size_t)cols * sizeof(float));
    }
}

enum { KEEP_ROWS, TO_HF_ROWS, TO_PERMUTED_ROWS };

/* Copies a (same config), reordering the q/k lora_B rows as mode says. */
static int adapter_reordered(const eng_model *m, const eng_adapter *a,
                             int mode, eng_adapter **ret)
{
    const eng_config *c = &m->cfg;
    eng_adapter *b;
    float *tmp;
    int rc;

    if (a->n_layers != c->n_layers)
        return -EINVAL;
    if ((rc = eng_adapter_new(m, a->rank, a->alpha, a->targets, 0, &b)))
        return rc;
    if (b->n_floats != a->n_floats) {
        eng_adapter_unref(b);
        return -EINVAL;
    }
    memcpy(b->data, a->data, a->n_floats * sizeof(float));
    b->scale = a->scale;
    b->dropout = a->dropout;
    /* A scale other than alpha/rank (rsLoRA) is carried by alpha. */
    b->alpha = a->scale * (float)a->rank;
    tmp = malloc((size_t)c->n_heads * c->head_dim * a->rank * sizeof(float));
    if (!tmp) {
        eng_adapter_unref(b);
        return -ENOMEM;
    }
    for (int l = 0; mode != KEEP_ROWS && l < c->n_layers; l++)
        for (int t = ENG_T_Q; t <= ENG_T_K; t++) {
            eng_lora *lo = eng_adapter_at(b, l, t);
            if (lo->A)
                reorder_rows(lo->B, lo->out, b->rank, c->head_dim,
                             mode == TO_HF_ROWS, tmp);
        }
    free(tmp);
    *ret = b;
    return 0;
}

static bool interleaved(const eng_model *m)
{
    return m->cfg.rope_style == ENG_ROPE_INTERLEAVED;
}

/* ------------------------------------------------------------------------ */
/* PEFT                                                                      */

int eng_adapter_export_peft(const eng_model *m, const eng_adapter *a,
                            const char *dir, const char *base_name,
                            char *err, size_t errlen)
{
    eng_adapter *b = NULL;
    int rc;

    if (!m || !a || !dir)
        return -EINVAL;
    if ((rc = adapter_reordered(m, a, interleaved(m) ? TO_HF_ROWS
                                                     : KEEP_ROWS, &b))) {
        eng_err(err, errlen, "the adapter does not fit the base model");
        return rc;
    }
    rc = eng_adapter_save(b, dir, base_name, err, errlen);
    eng_adapter_unref(b);
    return rc;
}

/* Reads r from adapter_config.json (0 when absent or unreadable). */
static int config_rank(const char *dir)
{
    char path[PATH_MAX], buf[1 << 16];
    FILE *f;
    size_t n;
    int r = 0;

    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (!(f = fopen(path, "rb")))
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    const cJSON *jr = cJSON_GetObjectItemCaseSensitive(j, "r");
    if (cJSON_IsNumber(jr) && jr->valuedouble >= 1 && jr->valuedouble <= 4096)
        r = (int)jr->valuedouble;
    cJSON_Delete(j);
    return r;
}

/* Parses a PEFT LoRA tensor name; false when it is not one Tuna knows. */
static bool parse_lora_name(const char *name, int *layer, int *t, int *is_b)
{
    char buf[160];

    for (int tt = 0; tt < ENG_T_COUNT; tt++)
        for (int b = 0; b < 2; b++) {
            int l = -1, n = 0;
            snprintf(buf, sizeof buf,
                     "base_model.model.model.layers.%%d.%s.lora_%c.weight%%n",
                     hf_module[tt], b ? 'B' : 'A');
            if (sscanf(name, buf, &l, &n) == 1 && n > 0 &&
                name[n] == '\0' && l >= 0) {
                *layer = l;
                *t = tt;
                *is_b = b;
                return true;
            }
        }
    return false;
}

/* Every tensor of the file against the base: a message naming the first
 * that does not fit. */
static int check_peft_shapes(const eng_model *m, const char *dir, char *err,
                             size_t errlen)
{
    char path[PATH_MAX];
    eng_st_file *f = NULL;
    int rank = config_rank(dir), rc;

    int nl = m->cfg.n_layers;
    unsigned char *have = calloc((size_t)nl * ENG_T_COUNT * 2, 1);
    unsigned targets = 0;

    if (!have)
        return -ENOMEM;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if ((rc = eng_st_open(path, &f, err, errlen))) {
        free(have);
        return rc;
    }
    for (int i = 0; i < f->n && !rc; i++) {
        const eng_st_tensor *st = &f->t[i];
        int l, t, b, in, out;
        int64_t want0, want1;

        if (!parse_lora_name(st->name, &l, &t, &b)) {
            eng_err(err, errlen, "tensor %s: not a LoRA weight of a q/k/v/o/"
                    "gate/up/down projection", st->name);
            rc = -EINVAL;
            break;
        }
        eng_target_shape(&m->cfg, t, &in, &out);
        want0 = b ? out : rank;
        want1 = b ? rank : in;
        if (l >= m->cfg.n_layers) {
            eng_err(err, errlen, "tensor %s: layer %d, the base model has %d "
                    "layers", st->name, l, m->cfg.n_layers);
            rc = -EINVAL;
        } else if (!st->known || st->ndim != 2 || st->shape[0] != want0 ||
                   st->shape[1] != want1) {
            eng_err(err, errlen, "tensor %s: shape [%lld, %lld] %s, the base "
                    "model needs [%lld, %lld] F32/F16/BF16 (rank %d)",
                    st->name, (long long)st->shape[0],
                    (long long)(st->ndim > 1 ? st->shape[1] : 0),
                    st->dtype_name, (long long)want0, (long long)want1, rank);
            rc = -EINVAL;
        } else {
            have[(l * ENG_T_COUNT + t) * 2 + b] = 1;
            targets |= 1u << t;
        }
    }
    /* every layer of every adapted projection: a missing one is named */
    for (int l = 0; !rc && l < nl; l++)
        for (int t = 0; !rc && t < ENG_T_COUNT; t++)
            for (int b = 0; !rc && b < 2; b++)
                if ((targets >> t & 1) && !have[(l * ENG_T_COUNT + t) * 2 + b]) {
                    eng_err(err, errlen, "tensor base_model.model.model."
                            "layers.%d.%s.lora_%c.weight is missing (the "
                            "base model has %d layers)", l, hf_module[t],
                            b ? 'B' : 'A', nl);
                    rc = -EINVAL;
                }
    free(have);
    eng_st_close(f);
    return rc;
}

int eng_adapter_import_peft(const eng_model *m, const char *dir,
                            eng_adapter **ret, char *err, size_t errlen)
{
    eng_adapter *a = NULL, *b = NULL;
    int rc;

    if (!m || !dir || !ret)
        return -EINVAL;
    if ((rc = check_peft_shapes(m, dir, err, errlen)) ||
        (rc = eng_adapter_load(m, dir, &a, err, errlen)))
        return rc;
    if (!interleaved(m)) {
        *ret = a;
        return 0;
    }
    rc = adapter_reordered(m, a, TO_PERMUTED_ROWS, &b);
    if (!rc) {
        b->scale = a->scale;
        *ret = b;
    }
    eng_adapter_unref(a);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* GGUF LoRA                                                                 */

typedef struct buf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
} buf;

static void put(buf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }

static void put_str(buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void put_pad(buf *b, size_t align)
{
    static const unsigned char zero[32];
    put(b, zero, (align - b->len % align) % align);
}

/* key = string value */
static void kv_str(buf *b, const char *key, const char *val)
{
    put_str(b, key);
    put_u32(b, 8); /* GGUF_TYPE_STRING */
    put_str(b, val);
}

int eng_adapter_export_gguf(const eng_model *m, const eng_adapter *a,
                            const char *path, const char *name, char *err,
                            size_t errlen)
{
    const eng_config *c = &m->cfg;
    bool qwen = !strcmp(c->arch, "qwen2");
    /* llama.cpp permutes q/k for every architecture but qwen2 here */
    bool want_permuted = !qwen;
    eng_adapter *b = NULL;
    buf out = { 0 };
    size_t off = 0;
    int n_t = 0, rc;
    float alpha;

    if (!m || !a || !path)
        return -EINVAL;
    if ((rc = adapter_reordered(m, a,
                                want_permuted == interleaved(m) ? KEEP_ROWS
                                : want_permuted ? TO_PERMUTED_ROWS
                                                : TO_HF_ROWS, &b)))
        goto fail_fit;
    alpha = b->scale * (float)b->rank;
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++)
            n_t += eng_adapter_at(b, l, t)->A ? 2 : 0;
    put(&out, "GGUF", 4);
    put_u32(&out, 3);
    put_u64(&out, (uint64_t)n_t);
    put_u64(&out, 5);
    kv_str(&out, "general.architecture", qwen ? "qwen2" : "llama");
    kv_str(&out, "general.type", "adapter");
    kv_str(&out, "general.name", name && *name ? name : "tuna-lora");
    kv_str(&out, "adapter.type", "lora");
    put_str(&out, "adapter.lora.alpha");
    put_u32(&out, 6); /* GGUF_TYPE_FLOAT32 */
    put(&out, &alpha, 4);
    /* tensor infos: data offsets relative to the (aligned) data section */
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++) {
            const eng_lora *lo = eng_adapter_at(b, l, t);
            if (!lo->A)
                continue;
            for (int isb = 0; isb < 2; isb++) {
                char tn[96];
                snprintf(tn, sizeof tn, "blk.%d.%s.weight.lora_%c", l,
                         gguf_module[t], isb ? 'b' : 'a');
                put_str(&out, tn);
                put_u32(&out, 2);
                put_u64(&out, (uint64_t)(isb ? b->rank : lo->in));
                put_u64(&out, (uint64_t)(isb ? lo->out : b->rank));
                put_u32(&out, 0); /* GGML_TYPE_F32 */
                put_u64(&out, off);
                size_t bytes = (size_t)b->rank * (isb ? lo->out : lo->in) * 4;
                off += (bytes + 31) / 32 * 32;
            }
        }
    put_pad(&out, 32);
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++) {
            const eng_lora *lo = eng_adapter_at(b, l, t);
            if (!lo->A)
                continue;
            put(&out, lo->A, (size_t)b->rank * lo->in * 4);
            put_pad(&out, 32);
            put(&out, lo->B, (size_t)b->rank * lo->out * 4);
            put_pad(&out, 32);
        }
    eng_adapter_unref(b);
    if (out.oom) {
        free(out.p);
        return -ENOMEM;
    }
    {
        const void *parts[] = { out.p };
        size_t lens[] = { out.len };
        rc = eng_write_atomic(path, parts, lens, 1);
    }
    free(out.p);
    if (rc)
        eng_err(err, errlen, "%s: write failed", path);
    return rc;
fail_fit:
    eng_err(err, errlen, "the adapter does not fit the base model");
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Merged Hugging Face folder                                                */

typedef struct out_tensor {
    char name[96];
    const eng_tensor *w;     /* base weight (or vector) */
    const eng_lora *lo;      /* merged in, or NULL */
    int heads;               /* rows to unpermute (q/k of interleaved) */
} out_tensor;

/* Output tensor list in Hugging Face order; returns the count. */
static int list_tensors(const eng_model *m, const eng_adapter *a,
                        out_tensor *o)
{
    const eng_config *c = &m->cfg;
    bool il = interleaved(m);
    int n = 0;

    o[n++] = (out_tensor){ "model.embed_tokens.weight", &m->tok_emb, 0, 0 };
    for (int l = 0; l < c->n_layers; l++) {
        eng_layer *ly = &m->layers[l];
        const eng_tensor *bias[3] = { &ly->bq, &ly->bk, &ly->bv };

        snprintf(o[n].name, sizeof o[n].name,
                 "model.layers.%d.input_layernorm.weight", l);
        o[n++].w = &ly->attn_norm;
        for (int t = 0; t < ENG_T_COUNT; t++) {
            out_tensor *e = &o[n++];
            snprintf(e->name, sizeof e->name, "model.layers.%d.%s.weight", l,
                     hf_module[t]);
            e->w = eng_layer_target(ly, t);
            e->lo = a && eng_adapter_at(a, l, t)->A ? eng_adapter_at(a, l, t)
                                                    : NULL;
            e->heads = il ? permuted_heads(c, t) : 0;
            if (t <= ENG_T_V && c->qkv_bias) {
                e = &o[n++];
                snprintf(e->name, sizeof e->name,
                         "model.layers.%d.%s.bias", l, hf_module[t]);
                e->w = bias[t];
                e->heads = il ? permuted_heads(c, t) : 0;
            }
        }
        snprintf(o[n].name, sizeof o[n].name,
                 "model.layers.%d.post_attention_layernorm.weight", l);
        o[n++].w = &ly->ffn_norm;
    }
    o[n++] = (out_tensor){ "model.norm.weight", &m->final_norm, 0, 0 };
    if (!c->tied_embeddings)
        o[n++] = (out_tensor){ "lm_head.weight", &m->lm_head, 0, 0 };
    return n;
}

static const char *st_dtype_name(int dt)
{
    return dt == ENG_DT_BF16 ? "BF16" : dt == ENG_DT_F16 ? "F16" : "F32";
}

static char *st_header(const out_tensor *o, int n, int dt, size_t *ret_len)
{
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    size_t off = 0, es = dt == ENG_DT_F32 ? 4 : 2;
    char *s, *padded;

    cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddItemToObject(h, "__metadata__", meta);
    for (int i = 0; i < n; i++) {
        const eng_tensor *w = o[i].w;
        bool vec = w->rows == 1 && strstr(o[i].name, "proj") == NULL;
        bool bias = strstr(o[i].name, ".bias") != NULL;
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray();
        cJSON *offs = cJSON_CreateArray();
        size_t bytes = (size_t)w->rows * w->cols * es;

        cJSON_AddStringToObject(t, "dtype", st_dtype_name(dt));
        if (!vec && !bias)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber(w->rows));
        cJSON_AddItemToArray(shape, cJSON_CreateNumber(w->cols));
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        cJSON_AddItemToObject(t, "data_offsets", offs);
        cJSON_AddItemToObject(h, o[i].name, t);
        off += bytes;
    }
    s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!s)
        return NULL;
    size_t len = strlen(s), plen = (len + 7) / 8 * 8;
    padded = malloc(plen + 1);
    if (padded) {
        memcpy(padded, s, len);
        memset(padded + len, ' ', plen - len);
        padded[plen] = '\0';
        *ret_len = plen;
    }
    free(s);
    return padded;
}

/* Row r of output tensor e (Hugging Face order) into row[cols], merged. */
static void out_row(const eng_model *m, const eng_adapter *a,
                    const out_tensor *e, int r, float *row)
{
    const eng_tensor *w = e->w;
    int src = e->heads ? hf_to_interleaved_row(r, m->cfg.head_dim) : r;

    if (w->rows == 1 && e->heads) {
        /* a q/k bias: reorder its elements */
        for (int i = 0; i < w->cols; i++)
            row[i] = eng_k_get(w, hf_to_interleaved_row(i, m->cfg.head_dim));
        return;
    }
    eng_k_row_f32(w, src, row);
    if (!e->lo)
        return;
    const float *B = e->lo->B + (size_t)src * a->rank;
    for (int k = 0; k < a->rank; k++) {
        float s = a->scale * B[k];
        const float *A = e->lo->A + (size_t)k * e->lo->in;
        if (s != 0.0f)
            for (int i = 0; i < w->cols; i++)
                row[i] += s * A[i];
    }
}

static int write_rows(FILE *f, const float *row, int cols, int dt,
                      uint16_t *half)
{
    if (dt == ENG_DT_F32)
        return fwrite(row, 4, (size_t)cols, f) == (size_t)cols ? 0 : -EIO;
    for (int i = 0; i < cols; i++)
        half[i] = dt == ENG_DT_BF16 ? eng_k_f32_to_bf16(row[i])
                                    : eng_k_f32_to_f16(row[i]);
    return fwrite(half, 2, (size_t)cols, f) == (size_t)cols ? 0 : -EIO;
}

static int write_model_st(const eng_model *m, const eng_adapter *a, int dt,
                          const char *path, char *err, size_t errlen)
{
    const eng_config *c = &m->cfg;
    int cap = 3 + c->n_layers * (2 + ENG_T_COUNT + 3), n, rc = 0;
    out_tensor *o = calloc((size_t)cap, sizeof(*o));
    int maxc = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    maxc = maxc > c->n_heads * c->head_dim ? maxc : c->n_heads * c->head_dim;
    float *row = malloc((size_t)maxc * sizeof(float));
    uint16_t *half = malloc((size_t)maxc * sizeof(uint16_t));
    char tmp[PATH_MAX + 8], *hdr = NULL;
    size_t hlen = 0;
    FILE *f = NULL;

    if (!o || !row || !half) {
        rc = -ENOMEM;
        goto out;
    }
    n = list_tensors(m, a, o);
    if (!(hdr = st_header(o, n, dt, &hlen))) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) {
        eng_err(err, errlen, "%s: cannot create", tmp);
        rc = -EIO;
        goto out;
    }
    uint64_t hl = hlen;
    if (fwrite(&hl, 8, 1, f) != 1 || fwrite(hdr, 1, hlen, f) != hlen)
        rc = -EIO;
    for (int i = 0; i < n && !rc; i++)
        for (int r = 0; r < o[i].w->rows && !rc; r++) {
            out_row(m, a, &o[i], r, row);
            rc = write_rows(f, row, o[i].w->cols, dt, half);
        }
    if (!rc && (fflush(f) || fsync(fileno(f))))
        rc = -EIO;
    if (fclose(f) && !rc)
        rc = -EIO;
    f = NULL;
    if (!rc && rename(tmp, path))
        rc = -EIO;
    if (rc) {
        unlink(tmp);
        eng_err(err, errlen, "%s: write failed", path);
    }
out:
    free(o);
    free(row);
    free(half);
    free(hdr);
    return rc;
}

static char *hf_config_json(const eng_config *c, int dt, int32_t bos,
                            int32_t eos)
{
    const char *arch = !strcmp(c->arch, "qwen2") ? "qwen2"
                       : !strcmp(c->arch, "mistral") ? "mistral" : "llama";
    const char *cls = !strcmp(arch, "qwen2") ? "Qwen2ForCausalLM"
                      : !strcmp(arch, "mistral") ? "MistralForCausalLM"
                                                 : "LlamaForCausalLM";
    cJSON *o = cJSON_CreateObject(), *archs = cJSON_CreateArray();
    char *s;

    cJSON_AddItemToArray(archs, cJSON_CreateString(cls));
    cJSON_AddItemToObject(o, "architectures", archs);
    cJSON_AddStringToObject(o, "model_type", arch);
    cJSON_AddNumberToObject(o, "hidden_size", c->dim);
    cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq_len);
    cJSON_AddNumberToObject(o, "rms_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddStringToObject(o, "torch_dtype", dt == ENG_DT_BF16 ? "bfloat16"
                            : dt == ENG_DT_F16 ? "float16" : "float32");
    if (!strcmp(arch, "qwen2"))
        cJSON_AddBoolToObject(o, "use_sliding_window", 0);
    if (!strcmp(arch, "mistral"))
        cJSON_AddNullToObject(o, "sliding_window");
    if (bos >= 0)
        cJSON_AddNumberToObject(o, "bos_token_id", bos);
    if (eos >= 0)
        cJSON_AddNumberToObject(o, "eos_token_id", eos);
    if (c->rope_scaling != ENG_ROPE_SCALING_NONE) {
        cJSON *rs = cJSON_CreateObject();
        bool l3 = c->rope_scaling == ENG_ROPE_SCALING_LLAMA3;
        cJSON_AddStringToObject(rs, "rope_type", l3 ? "llama3" : "linear");
        cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
        if (l3) {
            cJSON_AddNumberToObject(rs, "low_freq_factor",
                                    c->rope_low_freq_factor);
            cJSON_AddNumberToObject(rs, "high_freq_factor",
                                    c->rope_high_freq_factor);
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings",
                                    c->rope_orig_max_pos);
        }
        cJSON_AddItemToObject(o, "rope_scaling", rs);
    }
    cJSON_AddStringToObject(o, "transformers_version", "4.44.0");
    s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

int eng_model_export_hf(const eng_model *m, const eng_adapter *a, int dtype,
                        const char *dir, int32_t bos_id, int32_t eos_id,
                        char *err, size_t errlen)
{
    char path[PATH_MAX], *cfg;
    int rc;

    if (!m || !dir || (dtype != ENG_DT_F32 && dtype != ENG_DT_BF16 &&
                       dtype != ENG_DT_F16))
        return -EINVAL;
    if (a && a->n_layers != m->cfg.n_layers) {
        eng_err(err, errlen, "the adapter does not fit the base model");
        return -EINVAL;
    }
    if (m->cfg.rope_scaling == ENG_ROPE_SCALING_NONE) {
        /* A GGUF llama 3 carries its RoPE scaling as rope_freqs.weight
         * factors, which config.json cannot express without the llama3
         * parameters the file does not keep: refuse rather than write a
         * model that computes other positions. */
        for (int i = 0; i < m->cfg.head_dim / 2; i++) {
            double f = pow((double)m->cfg.rope_theta,
                           -2.0 * i / m->cfg.head_dim);
            if (fabs(m->rope_inv_freq[i] - f) > 1e-6 * f) {
                eng_err(err, errlen, "the base model's RoPE frequencies "
                        "(GGUF rope_freqs) have no config.json equivalent; "
                        "export PEFT or GGUF instead");
                return -EINVAL;
            }
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rc = write_model_st(m, a, dtype, path, err, errlen)))
        return rc;
    if (!(cfg = hf_config_json(&m->cfg, dtype, bos_id, eos_id)))
        return -ENOMEM;
    snprintf(path, sizeof path, "%s/config.json", dir);
    const void *parts[] = { cfg, "\n" };
    size_t lens[] = { strlen(cfg), 1 };
    rc = eng_write_atomic(path, parts, lens, 2);
    free(cfg);
    if (rc)
        eng_err(err, errlen, "%s: write failed", path);
    return rc;
}
