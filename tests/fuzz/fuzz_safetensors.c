/* SPDX-License-Identifier: MIT */
/*
 * fuzz_safetensors.c - the safetensors reader (eng_st_open): 8-byte header
 * length, JSON header, data region.
 *
 * Input: a whole .safetensors file (written to a scratch file, since the
 * reader memory-maps a path).
 *
 * Checks on an accepted file: every tensor lies inside the mapping and its
 * byte count equals its element count times its dtype size (all its bytes
 * are read, so ASan sees any overrun); eng_st_find and eng_st_meta find
 * every name. Round trip (systemd style): when all tensors are F32/F16/BF16
 * with distinct names, eng_st_write re-serialises them with the metadata,
 * the result opens with the same names, dtypes, shapes, bytes and metadata,
 * and writing that again gives a byte-identical file.
 */
#include "tests/fuzz/fuzz.h"

#include "engine/safetensors.h"

static size_t dtype_size(eng_dtype dt)
{
    return dt == ENG_DT_F32 ? 4 : 2;
}

static uint64_t touch(const eng_st_tensor *t)
{
    return eng_fnv1a(ENG_FNV_INIT, t->data, t->nbytes);
}

static void check_file(const eng_st_file *f)
{
    FZ_ASSERT(f->n >= 0 && f->n_meta >= 0);
    const uint8_t *lo = f->map, *hi = lo + f->map_len;
    for (int i = 0; i < f->n; i++) {
        const eng_st_tensor *t = &f->t[i];
        FZ_ASSERT(t->name != NULL);
        FZ_ASSERT(t->ndim >= 0 && t->ndim <= ENG_ST_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++)
            FZ_ASSERT(t->shape[d] >= 0);
        if (t->nbytes) {
            const uint8_t *p = t->data;
            FZ_ASSERT(p >= lo && p + t->nbytes <= hi);
        }
        if (t->known)
            FZ_ASSERT((uint64_t)eng_st_numel(t) * dtype_size(t->dtype) ==
                      t->nbytes);
        (void)touch(t);
        const eng_st_tensor *found = eng_st_find(f, t->name);
        FZ_ASSERT(found != NULL && strcmp(found->name, t->name) == 0);
    }
    for (int i = 0; i < f->n_meta; i++) {
        FZ_ASSERT(f->meta_key[i] && f->meta_val[i]);
        FZ_ASSERT(eng_st_meta(f, f->meta_key[i]) != NULL);
    }
}

/* Writes f's tensors and metadata to path; false when f cannot be written
 * (a dtype the writer does not take, or a repeated name). */
static bool rewrite(const eng_st_file *f, const char *path)
{
    for (int i = 0; i < f->n; i++) {
        if (!f->t[i].known)
            return false;
        if (eng_st_find(f, f->t[i].name) != &f->t[i])
            return false;
    }
    eng_st_out *out = calloc((size_t)f->n + 1, sizeof(*out));
    const char **meta = calloc(2 * (size_t)f->n_meta + 1, sizeof(*meta));
    FZ_ASSERT(out && meta);
    for (int i = 0; i < f->n; i++) {
        out[i].name = f->t[i].name;
        out[i].dtype = f->t[i].dtype;
        out[i].ndim = f->t[i].ndim;
        memcpy(out[i].shape, f->t[i].shape, sizeof(out[i].shape));
        out[i].data = f->t[i].data;
    }
    for (int i = 0; i < f->n_meta; i++) {
        meta[2 * i] = f->meta_key[i];
        meta[2 * i + 1] = f->meta_val[i];
    }
    char err[256] = "";
    int r = eng_st_write(path, out, f->n, meta, f->n_meta, err, sizeof(err));
    if (r < 0)
        fprintf(stderr, "eng_st_write: %s\n", err);
    FZ_ASSERT(r == 0);
    free(out);
    free(meta);
    return true;
}

static void same(const eng_st_file *a, const eng_st_file *b)
{
    FZ_ASSERT(a->n == b->n);
    for (int i = 0; i < a->n; i++) {
        const eng_st_tensor *x = &a->t[i];
        const eng_st_tensor *y = eng_st_find(b, x->name);
        FZ_ASSERT(y != NULL);
        FZ_ASSERT(y->known && y->dtype == x->dtype && y->ndim == x->ndim);
        FZ_ASSERT(!memcmp(x->shape, y->shape, sizeof(x->shape[0]) *
                          (size_t)x->ndim));
        FZ_ASSERT(x->nbytes == y->nbytes);
        FZ_ASSERT(!x->nbytes || !memcmp(x->data, y->data, x->nbytes));
    }
    for (int i = 0; i < a->n_meta; i++) {
        const char *v = eng_st_meta(b, a->meta_key[i]);
        FZ_ASSERT(v != NULL);
        FZ_ASSERT(!strcmp(v, eng_st_meta(a, a->meta_key[i])));
    }
}

static bool file_eq(const char *p1, const char *p2)
{
    FILE *a = fopen(p1, "rb"), *b = fopen(p2, "rb");
    FZ_ASSERT(a && b);
    int ca, cb;
    do {
        ca = getc(a);
        cb = getc(b);
    } while (ca == cb && ca != EOF);
    fclose(a);
    fclose(b);
    return ca == cb;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (4 << 20))
        return 0;
    char in[512], out1[512], out2[512], err[256] = "";
    fz_write_file("in.safetensors", data, size, in, sizeof(in));
    eng_st_file *f = NULL;
    int r = eng_st_open(in, &f, err, sizeof(err));
    if (r < 0) {
        FZ_ASSERT(r == -EIO || r == -ENOMEM || r == -EINVAL);
        FZ_ASSERT(f == NULL);
        return 0;
    }
    check_file(f);
    snprintf(out1, sizeof(out1), "%s/out1.safetensors", fz_dir());
    snprintf(out2, sizeof(out2), "%s/out2.safetensors", fz_dir());
    if (rewrite(f, out1)) {
        eng_st_file *g = NULL;
        r = eng_st_open(out1, &g, err, sizeof(err));
        if (r < 0)
            fprintf(stderr, "reopen: %s\n", err);
        FZ_ASSERT(r == 0);
        check_file(g);
        same(f, g);
        same(g, f);
        FZ_ASSERT(rewrite(g, out2));
        FZ_ASSERT(file_eq(out1, out2));
        eng_st_close(g);
    }
    eng_st_close(f);
    return 0;
}
