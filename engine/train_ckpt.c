/* SPDX-License-Identifier: MIT */
/*
 * train_ckpt.c - trainer checkpoints: everything needed to continue a run
 * bit-exactly, in one safetensors file written atomically.
 *
 * File: <dir>/checkpoint.safetensors
 *   tensors   LoRA: the adapter's A and B under their PEFT names (so the
 *             file doubles as adapter weights); full finetune: "params"
 *             [n]. Then "optimizer.exp_avg" [n] and "optimizer.exp_avg_sq"
 *             [n], in the trainer's flat parameter order.
 *   metadata  format "tuna-checkpoint", version "1", step, total_steps,
 *             tokens_seen, seed, rng_counter (dropout masks are a function
 *             of seed and step, so this is all the RNG state there is),
 *             plan_hash (the data and its per-epoch order: resuming with
 *             other data or other batch settings is refused), n_param,
 *             rank, alpha, targets, full_finetune, and checksum: FNV-1a 64
 *             over the data region.
 * A torn or altered file fails the size checks of the reader or the
 * checksum, and loads as -EIO without touching the trainer.
 */
#include "train_impl.h"
#include "err.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CKPT_FORMAT "tuna-checkpoint"
#define CKPT_VERSION "1"
#define CKPT_FILE "checkpoint.safetensors"

enum { N_META = 14 };

/* Metadata values, printed into vals[N_META][32]. */
static void fill_meta(const eng_trainer *t, uint64_t checksum,
                      const char *kv[2 * N_META], char vals[N_META][32])
{
    static const char *const keys[N_META] = {
        "format", "version", "step", "total_steps", "tokens_seen", "seed",
        "rng_counter", "plan_hash", "n_param", "rank", "alpha", "targets",
        "full_finetune", "checksum",
    };
    snprintf(vals[0], 32, "%s", CKPT_FORMAT);
    snprintf(vals[1], 32, "%s", CKPT_VERSION);
    snprintf(vals[2], 32, "%d", t->step);
    snprintf(vals[3], 32, "%d", t->n_steps);
    snprintf(vals[4], 32, "%" PRId64, t->tokens_seen);
    snprintf(vals[5], 32, "%" PRIu64, t->p.seed);
    snprintf(vals[6], 32, "%d", t->step);
    snprintf(vals[7], 32, "%016" PRIx64, t->plan_hash);
    snprintf(vals[8], 32, "%zu", t->n_param);
    snprintf(vals[9], 32, "%d", t->ad ? t->ad->rank : 0);
    snprintf(vals[10], 32, "%.9g", t->ad ? t->ad->alpha : 0.0f);
    snprintf(vals[11], 32, "%u", t->ad ? t->ad->targets : 0u);
    snprintf(vals[12], 32, "%d", t->p.full_finetune ? 1 : 0);
    snprintf(vals[13], 32, "%016" PRIx64, checksum);
    for (int i = 0; i < N_META; i++) {
        kv[2 * i] = keys[i];
        kv[2 * i + 1] = vals[i];
    }
}

/* Lists the checkpoint's tensors in file order; returns the count. */
static int ckpt_tensors(const eng_trainer *t, eng_st_out *out, char *names)
{
    int n = 0;
    if (t->ad) {
        n = eng_adapter_tensors(t->ad, out, names);
    } else {
        out[n++] = (eng_st_out){.name = "params", .dtype = ENG_DT_F32,
                                .ndim = 1, .shape = {(int64_t)t->n_param},
                                .data = t->param};
    }
    out[n++] = (eng_st_out){.name = "optimizer.exp_avg", .dtype = ENG_DT_F32,
                            .ndim = 1, .shape = {(int64_t)t->n_param},
                            .data = t->m1};
    out[n++] = (eng_st_out){.name = "optimizer.exp_avg_sq",
                            .dtype = ENG_DT_F32, .ndim = 1,
                            .shape = {(int64_t)t->n_param}, .data = t->m2};
    return n;
}

static int ckpt_max_tensors(const eng_trainer *t)
{
    return (t->ad ? eng_adapter_n_tensors(t->ad) : 1) + 2;
}

int eng_trainer_save_checkpoint(const eng_trainer *t, const char *dir,
                                char *err, size_t errlen)
{
    int cap = ckpt_max_tensors(t), n, rc;
    eng_st_out *out = calloc((size_t)cap, sizeof(*out));
    char *names = malloc((size_t)cap * 96), path[4096], vals[N_META][32];
    const char *kv[2 * N_META];
    uint64_t h = ENG_FNV_INIT;
    if (!out || !names) {
        rc = -ENOMEM;
        goto out;
    }
    if (mkdir(dir, 0755) && errno != EEXIST) {
        rc = errno == ENOENT ? -ENOENT : -EIO;
        eng_err(err, errlen, "%s: cannot create directory", dir);
        goto out;
    }
    n = ckpt_tensors(t, out, names);
    for (int i = 0; i < n; i++) { /* same bytes, same order as the file */
        size_t numel = 1;
        for (int d = 0; d < out[i].ndim; d++)
            numel *= (size_t)out[i].shape[d];
        h = eng_fnv1a(h, out[i].data, numel * sizeof(float));
    }
    fill_meta(t, h, kv, vals);
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_FILE);
    rc = eng_st_write(path, out, n, kv, N_META, err, errlen);
out:
    free(out);
    free(names);
    return rc;
}

/* Checks that metadata key equals the value this trainer would write. */
static int meta_eq(const eng_st_file *f, const char *key, const char *want)
{
    const char *v = eng_st_meta(f, key);
    return v && !strcmp(v, want);
}

static int copy_f32(const eng_st_file *f, const char *name, float *dst,
                    size_t n)
{
    const eng_st_tensor *st = eng_st_find(f, name);
    if (!st || !st->known || st->dtype != ENG_DT_F32 ||
        st->nbytes != n * sizeof(float))
        return -EINVAL;
    memcpy(dst, st->data, st->nbytes);
    return 0;
}

/* Verifies f against t without changing t. */
static int ckpt_verify(const eng_trainer *t, const eng_st_file *f,
                       int *ret_step, int64_t *ret_tokens, char *err,
                       size_t errlen)
{
    char vals[N_META][32];
    const char *kv[2 * N_META];
    uint64_t h = ENG_FNV_INIT;
    if (!meta_eq(f, "format", CKPT_FORMAT) ||
        !meta_eq(f, "version", CKPT_VERSION) || !eng_st_meta(f, "checksum")) {
        eng_err(err, errlen, "not a Tuna checkpoint (version %s)",
                CKPT_VERSION);
        return -EIO;
    }
    for (int i = 0; i < f->n; i++)
        h = eng_fnv1a(h, f->t[i].data, f->t[i].nbytes);
    char sum[32];
    snprintf(sum, sizeof sum, "%016" PRIx64, h);
    if (!meta_eq(f, "checksum", sum)) {
        eng_err(err, errlen, "checkpoint is corrupt (checksum mismatch)");
        return -EIO;
    }
    fill_meta(t, 0, kv, vals);
    /* plan_hash, n_param, rank, alpha, targets, full_finetune, seed */
    static const int must[] = {5, 7, 8, 9, 10, 11, 12};
    for (size_t i = 0; i < sizeof must / sizeof *must; i++)
        if (!meta_eq(f, kv[2 * must[i]], vals[must[i]])) {
            eng_err(err, errlen,
                    "checkpoint is for other data or settings (%s)",
                    kv[2 * must[i]]);
            return -EINVAL;
        }
    const char *s = eng_st_meta(f, "step"), *tk = eng_st_meta(f, "tokens_seen");
    char *end;
    long step = s ? strtol(s, &end, 10) : -1;
    if (!s || *end || step < 0 || step > t->n_steps || !tk) {
        eng_err(err, errlen, "checkpoint has a bad step");
        return -EIO;
    }
    *ret_step = (int)step;
    *ret_tokens = strtoll(tk, NULL, 10);
    return 0;
}

int eng_trainer_load_checkpoint(eng_trainer *t, const char *dir, char *err,
                                size_t errlen)
{
    char path[4096];
    eng_st_file *f = NULL;
    int rc, step, cap = ckpt_max_tensors(t);
    int64_t tokens;
    eng_st_out *out = calloc((size_t)cap, sizeof(*out));
    char *names = malloc((size_t)cap * 96);
    if (!out || !names) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_FILE);
    if ((rc = eng_st_open(path, &f, err, errlen)))
        goto out;
    if ((rc = ckpt_verify(t, f, &step, &tokens, err, errlen)))
        goto out;
    /* Every tensor is present with the right size before anything is
     * copied, so a failed load leaves the trainer as it was. */
    int n = ckpt_tensors(t, out, names);
    for (int i = 0; i < n; i++) {
        const eng_st_tensor *st = eng_st_find(f, out[i].name);
        if (!st || !st->known || st->dtype != ENG_DT_F32 ||
            st->ndim != out[i].ndim || st->shape[0] != out[i].shape[0] ||
            (st->ndim > 1 && st->shape[1] != out[i].shape[1])) {
            eng_err(err, errlen, "checkpoint lacks %s", out[i].name);
            rc = -EINVAL;
            goto out;
        }
    }
    for (int i = 0; i < n - 2; i++) {
        const eng_st_tensor *st = eng_st_find(f, out[i].name);
        memcpy((void *)out[i].data, st->data, st->nbytes);
    }
    copy_f32(f, "optimizer.exp_avg", t->m1, t->n_param);
    copy_f32(f, "optimizer.exp_avg_sq", t->m2, t->n_param);
    t->step = step;
    t->tokens_seen = tokens;
out:
    eng_st_close(f);
    free(out);
    free(names);
    return rc;
}
