/* SPDX-License-Identifier: MIT */
/*
 * test_model.c - model.c: the llama2.c loader (shared and unshared
 * classifier, bad files), random models, shapes, and the RoPE table with
 * linear and llama3 scaling (expected values from Hugging Face's
 * _compute_llama3_parameters, computed in Python).
 */
#include "engine/model.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *b;

    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = malloc(*len + 512 * 64 * 4); /* room for a classifier */
    if (fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void spit(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");

    fwrite(b, 1, len, f);
    fclose(f);
}

static void test_llama2c(const char *path)
{
    eng_model *m = NULL, *u = NULL;
    char err[256] = "", tmp[] = "/tmp/tuna-test-model-XXXXXX";
    size_t len = 0;
    char *file = slurp(path, &len);
    int fd = mkstemp(tmp);
    int32_t hdr[7];

    CHECK(file != NULL && fd >= 0);
    if (!file || fd < 0)
        return;
    close(fd);
    CHECK(eng_model_load_llama2c(path, &m, err, sizeof(err)) == 0);
    if (!m)
        return;
    const eng_config *c = eng_model_config(m);
    CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5);
    CHECK(c->n_heads == 8 && c->n_kv_heads == 4 && c->head_dim == 8);
    CHECK(c->vocab_size == 512 && c->max_seq_len == 512 && c->tied_embeddings);
    CHECK(c->rope_style == ENG_ROPE_INTERLEAVED && c->norm_eps == 1e-5f);
    CHECK(m->lm_head.data == m->tok_emb.data);
    CHECK(eng_model_n_params(m) == 260032);
    CHECK(eng_model_ref(m) == m);
    eng_model_unref(m);

    /* The same weights with an unshared classifier: negative vocab in the
     * header, wcls (a copy of the embedding) after freq_cis. */
    memcpy(hdr, file, sizeof(hdr));
    hdr[5] = -hdr[5];
    memcpy(file, hdr, sizeof(hdr));
    memcpy(file + len, file + 28, (size_t)512 * 64 * 4);
    spit(tmp, file, len + (size_t)512 * 64 * 4);
    CHECK(eng_model_load_llama2c(tmp, &u, err, sizeof(err)) == 0);
    if (u) {
        CHECK(!eng_model_config(u)->tied_embeddings);
        CHECK(u->lm_head.data != u->tok_emb.data);
        CHECK(!memcmp(u->lm_head.data, m->tok_emb.data, 512 * 64 * 4));
        CHECK(eng_model_n_params(u) == 260032 + 512 * 64);
        eng_model_unref(u);
        u = NULL;
    }
    /* ... which is then missing its classifier if cut short */
    spit(tmp, file, len);
    CHECK(eng_model_load_llama2c(tmp, &u, err, sizeof(err)) == -EIO);
    /* bad headers, truncation, absence */
    hdr[5] = -hdr[5];
    hdr[3] = 7; /* 64 % 7 != 0 */
    memcpy(file, hdr, sizeof(hdr));
    spit(tmp, file, len);
    CHECK(eng_model_load_llama2c(tmp, &u, err, sizeof(err)) == -EIO);
    hdr[3] = 8;
    memcpy(file, hdr, sizeof(hdr));
    spit(tmp, file, len - 4);
    CHECK(eng_model_load_llama2c(tmp, &u, err, sizeof(err)) == -EIO);
    spit(tmp, file, 10);
    CHECK(eng_model_load_llama2c(tmp, &u, err, sizeof(err)) == -EIO);
    unlink(tmp);
    CHECK(eng_model_load_llama2c(tmp, &u, err, sizeof(err)) == -ENOENT);
    CHECK(err[0] != 0);
    eng_model_unref(m);
    free(file);
}

static eng_config base_config(void)
{
    eng_config c = { 0 };

    c.dim = 32;
    c.hidden_dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 128;
    c.vocab_size = 16;
    c.max_seq_len = 32;
    c.norm_eps = 1e-5f;
    c.rope_theta = 500000.0f;
    return c;
}

static bool close_rel(float a, double b)
{
    return fabs(a - b) <= 1e-5 * fabs(b);
}

static void test_rope_and_random(void)
{
    eng_config c = base_config();
    eng_model *m = NULL;
    int in, out;

    /* plain theta, and head_dim != dim / n_heads is allowed */
    CHECK(eng_model_new_random(&c, 1, 0.02f, &m) == 0);
    if (m) {
        CHECK(m->rope_inv_freq[0] == 1.0f);
        CHECK(close_rel(m->rope_inv_freq[10], pow(500000.0, -20.0 / 128)));
        CHECK(eng_f32(&m->layers[1].ffn_norm)[3] == 1.0f);
        CHECK(m->layers[0].wq.rows == 512 && m->layers[0].wo.cols == 512);
        eng_model_unref(m);
        m = NULL;
    }
    /* linear */
    c.rope_scaling = ENG_ROPE_SCALING_LINEAR;
    c.rope_factor = 4.0f;
    CHECK(eng_model_new_random(&c, 1, 0.02f, &m) == 0);
    if (m) {
        CHECK(close_rel(m->rope_inv_freq[10], pow(500000.0, -20.0 / 128) / 4));
        eng_model_unref(m);
        m = NULL;
    }
    /* llama3 (Llama 3.1: factor 8, low 1, high 4, original 8192) */
    c.rope_scaling = ENG_ROPE_SCALING_LLAMA3;
    c.rope_factor = 8.0f;
    c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f;
    c.rope_orig_max_pos = 8192;
    CHECK(eng_model_new_random(&c, 1, 0.02f, &m) == 0);
    if (m) {
        static const struct { int i; double v; } want[] = {
            { 0, 1.0 }, { 10, 0.12868737343265052 },
            { 25, 0.005940730375674967 }, { 30, 0.0013718935677611381 },
            { 35, 9.556212353964683e-05 }, { 50, 4.411534674558404e-06 },
            { 63, 3.068925988914511e-07 },
        };
        for (size_t k = 0; k < sizeof(want) / sizeof(*want); k++)
            CHECK(close_rel(m->rope_inv_freq[want[k].i], want[k].v));
        eng_model_unref(m);
        m = NULL;
    }
    /* GQA and bias bookkeeping */
    c = base_config();
    c.head_dim = 8;
    c.qkv_bias = true;
    c.tied_embeddings = false;
    CHECK(eng_model_new_random(&c, 2, 0.02f, &m) == 0);
    if (m) {
        int64_t q = 4 * 8, kv = 2 * 8, want;

        want = 2 * 16 * 32 + 32 +
               2 * (2 * 32 + q * 32 + 2 * kv * 32 + 32 * q + 3 * 64 * 32 + q + 2 * kv);
        CHECK(eng_model_n_params(m) == want);
        CHECK(m->layers[1].bk.cols == kv && m->layers[1].bq.data);
        eng_model_unref(m);
    }
    eng_target_shape(&c, ENG_T_K, &in, &out);
    CHECK(in == 32 && out == 16);
    eng_target_shape(&c, ENG_T_DOWN, &in, &out);
    CHECK(in == 64 && out == 32);
    /* inconsistent configs */
    c.n_kv_heads = 3;
    CHECK(eng_model_new_random(&c, 1, 0.02f, &m) == -EINVAL);
    c.n_kv_heads = 2;
    c.head_dim = 7;
    CHECK(eng_model_new_random(&c, 1, 0.02f, &m) == -EINVAL);
}

int main(void)
{
    char path[1024];

    test_llama2c(test_path(path, sizeof path,
                           "models/stories260K/stories260K.bin"));
    test_rope_and_random();
    return test_done("model");
}
