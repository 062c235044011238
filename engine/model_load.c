/* SPDX-License-Identifier: MIT */
/*
 * model_load.c - format detection (eng_model_load) and the weight-slot
 * helpers the Hugging Face and GGUF loaders share (see loader-impl.h).
 *
 * Detection: a directory is a Hugging Face folder; a file that starts with
 * the bytes "GGUF" is a GGUF file; anything else is tried as a llama2.c
 * checkpoint, which has no magic number of its own.
 */
#include "loader-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Slots                                                                     */

static int slot_count(const eng_config *c)
{
    int per_layer = 9 + (c->qkv_bias ? 3 : 0);

    return 3 + c->n_layers * per_layer;
}

static void put(eng_ld_slot **p, eng_w_kind k, int layer, eng_tensor *dst,
                int rows, int cols)
{
    eng_ld_slot *s = (*p)++;

    s->kind = k;
    s->layer = layer;
    s->dst = dst;
    s->rows = rows;
    s->cols = cols;
    s->vector = rows == 1;
}

/* Fills slots[] (capacity slot_count(cfg)) for the tensors model m needs
 * under its config. Returns the number of slots. */
static int fill_slots(eng_model *m, eng_ld_slot *slots)
{
    const eng_config *c = &m->cfg;
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    eng_ld_slot *p = slots;

    put(&p, ENG_W_TOK_EMB, -1, &m->tok_emb, c->vocab_size, c->dim);
    put(&p, ENG_W_FINAL_NORM, -1, &m->final_norm, 1, c->dim);
    if (!c->tied_embeddings)
        put(&p, ENG_W_LM_HEAD, -1, &m->lm_head, c->vocab_size, c->dim);
    for (int i = 0; i < c->n_layers; i++) {
        eng_layer *l = &m->layers[i];

        put(&p, ENG_W_ATTN_NORM, i, &l->attn_norm, 1, c->dim);
        put(&p, ENG_W_FFN_NORM, i, &l->ffn_norm, 1, c->dim);
        put(&p, ENG_W_Q, i, &l->wq, q, c->dim);
        put(&p, ENG_W_K, i, &l->wk, kv, c->dim);
        put(&p, ENG_W_V, i, &l->wv, kv, c->dim);
        put(&p, ENG_W_O, i, &l->wo, c->dim, q);
        put(&p, ENG_W_GATE, i, &l->w_gate, c->hidden_dim, c->dim);
        put(&p, ENG_W_UP, i, &l->w_up, c->hidden_dim, c->dim);
        put(&p, ENG_W_DOWN, i, &l->w_down, c->dim, c->hidden_dim);
        if (c->qkv_bias) {
            put(&p, ENG_W_BQ, i, &l->bq, 1, q);
            put(&p, ENG_W_BK, i, &l->bk, 1, kv);
            put(&p, ENG_W_BV, i, &l->bv, 1, kv);
        }
    }
    return (int)(p - slots);
}

/* Allocates m->owned for every vector slot (fp32). -ENOMEM. */
static int alloc_vectors(eng_model *m, const eng_ld_slot *slots, int n)
{
    size_t floats = 0;

    for (int i = 0; i < n; i++)
        if (slots[i].vector)
            floats += (size_t)slots[i].cols;
    free(m->owned);
    m->owned = malloc((floats ? floats : 1) * sizeof(float));
    return m->owned ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------------ */
/* Binding                                                                   */

static const char *dtype_name(eng_dtype dt)
{
    static const char *const names[] = { "F32", "F16", "BF16", "Q8_0",
                                         "Q4_0", "Q4_K", "Q6_K" };

    return (unsigned)dt < sizeof(names) / sizeof(names[0]) ? names[dt] : "?";
}

int eng_ld_block_elems(eng_dtype dt)
{
    switch (dt) {
    case ENG_DT_Q8_0:
    case ENG_DT_Q4_0: return 32;
    case ENG_DT_Q4_K:
    case ENG_DT_Q6_K: return 256;
    default: return 1;
    }
}

static int src_shape(const eng_ld_src *src, int64_t *ret_rows,
                     int64_t *ret_cols)
{
    if (src->ndim == 1) {
        *ret_rows = 1;
        *ret_cols = src->dims[0];
    } else if (src->ndim == 2) {
        *ret_rows = src->dims[0];
        *ret_cols = src->dims[1];
    } else {
        return -EINVAL;
    }
    return 0;
}

/* Binds slot s to src: checks the shape (a vector may be stored as [n] or
 * [1, n]), points s->dst at src->data for matrices, or converts a vector into
 * *vec_cursor (advancing it) for vectors. -EINVAL with a message on a shape
 * or dtype mismatch. */
static int bind_slot(const eng_ld_slot *s, const eng_ld_src *src,
                     float **vec_cursor, char *err, size_t errlen)
{
    int64_t rows, cols;

    if (src_shape(src, &rows, &cols) || rows != s->rows || cols != s->cols) {
        eng_err(err, errlen,
                "tensor %s: %d-d shape [%lld, %lld], expected [%d, %d]",
                src->name, src->ndim, (long long)src->dims[0],
                (long long)(src->ndim > 1 ? src->dims[1] : 0), s->rows,
                s->cols);
        return -EINVAL;
    }
    if (s->vector) {
        if (src->dtype != ENG_DT_F32 && src->dtype != ENG_DT_F16 &&
            src->dtype != ENG_DT_BF16) {
            eng_err(err, errlen, "tensor %s: vector stored as %s",
                    src->name, dtype_name(src->dtype));
            return -EINVAL;
        }
        eng_tensor view = { src->dtype, 1, s->cols, (void *)src->data };

        eng_k_row_f32(&view, 0, *vec_cursor);
        *s->dst = (eng_tensor){ ENG_DT_F32, 1, s->cols, *vec_cursor };
        *vec_cursor += s->cols;
        return 0;
    }
    if (s->cols % eng_ld_block_elems(src->dtype)) {
        eng_err(err, errlen, "tensor %s: %s rows of %d values are not "
                "whole blocks", src->name, dtype_name(src->dtype), s->cols);
        return -EINVAL;
    }
    /* BLAS reads f32 weights as float*; a file that packs them unaligned
     * (safetensors does not promise alignment) is refused, not mis-read. */
    if (src->dtype == ENG_DT_F32 && ((uintptr_t)src->data & 3)) {
        eng_err(err, errlen, "tensor %s: F32 data not 4-byte aligned",
                src->name);
        return -EINVAL;
    }
    *s->dst = (eng_tensor){ src->dtype, s->rows, s->cols, (void *)src->data };
    return 0;
}

int eng_ld_bind_all(eng_model *m, eng_ld_lookup_fn lookup, const void *file,
                    char *err, size_t errlen)
{
    int n = slot_count(&m->cfg), rc;
    eng_ld_slot *slots = calloc((size_t)n, sizeof(*slots));
    float *vec;

    if (!slots)
        return -ENOMEM;
    n = fill_slots(m, slots);
    if ((rc = alloc_vectors(m, slots, n)))
        goto out;
    vec = m->owned;
    for (int i = 0; i < n; i++) {
        char name[96];
        eng_ld_src src = { .name = name };

        if ((rc = lookup(file, &slots[i], name, sizeof name, &src, err,
                         errlen)) ||
            (rc = bind_slot(&slots[i], &src, &vec, err, errlen)))
            goto out;
    }
out:
    free(slots);
    return rc;
}

int eng_ld_check_limits(const eng_config *c, char *err, size_t errlen)
{
    /* Far above any released model; keeps a hostile header from sizing
     * huge allocations or overflowing slot counts. */
    if (c->dim > (1 << 16) || c->hidden_dim > (1 << 18) ||
        c->n_layers > 1024 || c->n_heads > 1024 || c->head_dim > 4096 ||
        c->vocab_size > (1 << 24)) {
        eng_err(err, errlen, "implausible model sizes (dim %d, hidden %d, "
                "layers %d, heads %d, vocab %d)", c->dim, c->hidden_dim,
                c->n_layers, c->n_heads, c->vocab_size);
        return -EINVAL;
    }
    return 0;
}

int eng_ld_finish(eng_model *m, char *err, size_t errlen)
{
    int rc = eng_model_finish(m);

    if (rc)
        eng_err(err, errlen, "model incomplete or inconsistent (%s)",
                strerror(-rc));
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Detection                                                                 */

int eng_model_load(const char *path, eng_model **ret_model, char *err,
                   size_t errlen)
{
    struct stat st;
    char magic[4] = { 0 };
    int fd;

    if (stat(path, &st)) {
        eng_err(err, errlen, "%s: %s", path, strerror(errno));
        return -ENOENT;
    }
    if (S_ISDIR(st.st_mode))
        return eng_model_load_hf(path, ret_model, err, errlen);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        eng_err(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? -ENOENT : -EIO;
    }
    ssize_t n = read(fd, magic, sizeof magic);

    close(fd);
    if (n == 4 && !memcmp(magic, "GGUF", 4))
        return eng_model_load_gguf(path, ret_model, err, errlen);
    return eng_model_load_llama2c(path, ret_model, err, errlen);
}
