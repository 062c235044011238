/* SPDX-License-Identifier: MIT */
/*
 * test_export.c - export.c on tiny random models, for a base with Hugging
 * Face (half-split) RoPE and one with interleaved RoPE (a GGUF llama's
 * permuted q/k rows), and a Qwen2-style base with q/k/v biases:
 *  - the merged Hugging Face folder, loaded back with eng_model_load_hf,
 *    gives the logits of base + adapter (session API) to 1e-4, in F32;
 *  - a PEFT export imported again is the same adapter (bit for bit) and
 *    gives the same logits; an interleaved base's PEFT export equals the
 *    HF-order adapter of the merged-equivalent HF model (merged logits of
 *    the HF model + imported adapter match);
 *  - a PEFT adapter with a wrong shape is refused naming the tensor;
 *  - the GGUF adapter is read back by a reader written here: metadata
 *    (general.type, adapter.type, adapter.lora.alpha, general.architecture)
 *    through gguf_meta, tensor infos (names, ne [in, rank] / [rank, out],
 *    F32, aligned offsets) and data: lora_a is A, lora_b is B with q/k rows
 *    in llama.cpp's permuted order.
 */
#include "engine/gguf_meta.h"
#include "engine/model.h"
#include "engine/safetensors.h"
#include "engine/session.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const int32_t TOKENS[] = { 1, 7, 33, 2, 60, 12, 5, 41, 19, 3 };
#define N_TOK ((int)(sizeof TOKENS / sizeof TOKENS[0]))

static eng_model *model(eng_rope_style rs, bool bias, const char *arch)
{
    eng_config cfg = {
        .dim = 48, .hidden_dim = 80, .n_layers = 2, .n_heads = 4,
        .n_kv_heads = 2, .head_dim = 12, .vocab_size = 64,
        .max_seq_len = 64, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
        .rope_style = rs, .tied_embeddings = !bias, .qkv_bias = bias,
    };
    eng_model *m = NULL;
    snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
    CHECK(eng_model_new_random(&cfg, 11, 0.3f, &m) == 0);
    return m;
}

static eng_adapter *adapter(eng_model *m)
{
    eng_adapter *a = NULL;
    uint64_t s = 77;
    CHECK(eng_adapter_new(m, 4, 8.0f, ENG_TARGET_ALL, 5, &a) == 0);
    for (size_t i = 0; a && i < a->n_floats; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        /* B was zero: make every weight non-trivial */
        a->data[i] += (float)((double)(s >> 40) / (1 << 24) - 0.5) * 0.4f;
    }
    return a;
}

/* Last-position logits of TOKENS (malloc'd). */
static float *logits(eng_model *m, const eng_adapter *a)
{
    eng_session *s = NULL;
    int V = m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * (size_t)V * N_TOK);
    CHECK(eng_session_new(m, 32, 16, &s) == 0);
    if (!s)
        return out;
    CHECK(eng_session_set_adapter(s, a) == 0);
    for (int i = 0; i < N_TOK; i++) {
        CHECK(eng_session_eval(s, &TOKENS[i], 1) == 0);
        memcpy(out + (size_t)i * V, s->logits, sizeof(float) * V);
    }
    eng_session_free(s);
    return out;
}

static void tmpdir(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/tuna-export-%d-%s", (int)getpid(), tag);
    mkdir(buf, 0755);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* ------------------------------------------------------------------------ */

static void check_merged(eng_model *m, eng_adapter *a, const char *tag)
{
    char dir[256], err[256] = "";
    eng_model *hf = NULL;
    size_t n = (size_t)m->cfg.vocab_size * N_TOK;
    tmpdir(dir, sizeof dir, tag);
    CHECK(eng_model_export_hf(m, a, ENG_DT_F32, dir, 1, 2, err, sizeof err) == 0);
    int rc = eng_model_load_hf(dir, &hf, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s: merged load: %s\n", tag, err);
    CHECK(rc == 0);
    if (hf) {
        float *want = logits(m, a), *got = logits(hf, NULL);
        double d = max_diff(want, got, n);
        printf("%s: merged HF folder vs base+adapter: max |diff| %.3g\n", tag, d);
        CHECK(d <= 1e-4);
        CHECK(hf->cfg.rope_style == ENG_ROPE_HALF);

        /* PEFT export onto the HF-order model: the same function again */
        char pdir[300];
        eng_adapter *b = NULL;
        eng_model *hf_base = NULL;
        snprintf(pdir, sizeof pdir, "%s/peft", dir);
        mkdir(pdir, 0755);
        CHECK(eng_adapter_export_peft(m, a, pdir, "x", err, sizeof err) == 0);
        /* the unmerged HF base: export m alone, load, apply the PEFT file */
        char bdir[300];
        snprintf(bdir, sizeof bdir, "%s/base", dir);
        mkdir(bdir, 0755);
        CHECK(eng_model_export_hf(m, NULL, ENG_DT_F32, bdir, 1, 2, err,
                                  sizeof err) == 0);
        CHECK(eng_model_load_hf(bdir, &hf_base, err, sizeof err) == 0);
        if (hf_base) {
            CHECK(eng_adapter_import_peft(hf_base, pdir, &b, err, sizeof err) == 0);
            float *g2 = logits(hf_base, b);
            d = max_diff(want, g2, n);
            printf("%s: HF base + PEFT export vs base+adapter: max |diff| %.3g\n",
                   tag, d);
            CHECK(d <= 1e-4);
            free(g2);
        }
        eng_adapter_unref(b);
        eng_model_unref(hf_base);
        free(want);
        free(got);
    }
    eng_model_unref(hf);
    rm_rf(dir);
}

static void check_peft_round_trip(eng_model *m, eng_adapter *a,
                                  const char *tag)
{
    char dir[256], err[256] = "";
    eng_adapter *b = NULL;
    tmpdir(dir, sizeof dir, tag);
    CHECK(eng_adapter_export_peft(m, a, dir, "base", err, sizeof err) == 0);
    CHECK(eng_adapter_import_peft(m, dir, &b, err, sizeof err) == 0);
    if (b) {
        CHECK(b->n_floats == a->n_floats && b->rank == a->rank &&
              b->scale == a->scale);
        CHECK(memcmp(a->data, b->data, a->n_floats * sizeof(float)) == 0);
        float *x = logits(m, a), *y = logits(m, b);
        CHECK(max_diff(x, y, (size_t)m->cfg.vocab_size * N_TOK) == 0);
        free(x);
        free(y);
    }
    eng_adapter_unref(b);

    /* a wrong shape names the tensor */
    eng_model *other = NULL;
    eng_config c2 = m->cfg;
    c2.dim = 40;
    c2.head_dim = 10;
    CHECK(eng_model_new_random(&c2, 1, 0.1f, &other) == 0);
    err[0] = '\0';
    CHECK(eng_adapter_import_peft(other, dir, &b, err, sizeof err) == -EINVAL);
    printf("%s: mismatched base: %s\n", tag, err);
    CHECK(strstr(err, "base_model.model.model.layers.0.self_attn.q_proj") != NULL);
    eng_model_unref(other);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------ */
/* GGUF adapter reader                                                       */

typedef struct rtensor {
    char name[96];
    uint32_t nd, type;
    uint64_t ne[4], off;
} rtensor;

static const float *gguf_tensor(const gguf_meta *g, const rtensor *t,
                                int nt, const char *name, uint64_t ne0,
                                uint64_t ne1)
{
    size_t data = g->tensor_info_offset;
    /* data section starts after the infos, aligned to 32 */
    const uint8_t *p = g->base + g->tensor_info_offset;
    for (int i = 0; i < nt; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        p += 8 + len + 4 + 8 * t[i].nd + 4 + 8;
    }
    data = (size_t)(p - g->base);
    data = (data + 31) / 32 * 32;
    for (int i = 0; i < nt; i++)
        if (!strcmp(t[i].name, name)) {
            CHECK(t[i].nd == 2 && t[i].ne[0] == ne0 && t[i].ne[1] == ne1);
            CHECK(t[i].type == 0 && t[i].off % 32 == 0);
            CHECK(data + t[i].off + ne0 * ne1 * 4 <= g->size);
            return (const float *)(g->base + data + t[i].off);
        }
    fprintf(stderr, "tensor %s missing\n", name);
    failures++;
    return NULL;
}

static void check_gguf(eng_model *m, eng_adapter *a, const char *tag,
                       bool expect_permute, const char *arch)
{
    char dir[256], path[300], err[256] = "";
    gguf_meta *g = NULL;
    tmpdir(dir, sizeof dir, tag);
    snprintf(path, sizeof path, "%s/a.gguf", dir);
    CHECK(eng_adapter_export_gguf(m, a, path, "test", err, sizeof err) == 0);
    CHECK(gguf_meta_open(path, &g, err, sizeof err) == 0);
    if (!g)
        return;
    gguf_str s;
    double alpha = 0;
    CHECK(g->version == 3);
    CHECK(gguf_meta_get_str(g, "general.type", &s) == 0 && gguf_str_eq(s, "adapter"));
    CHECK(gguf_meta_get_str(g, "adapter.type", &s) == 0 && gguf_str_eq(s, "lora"));
    CHECK(gguf_meta_get_str(g, "general.architecture", &s) == 0 &&
          gguf_str_eq(s, arch));
    const gguf_kv *kv = gguf_meta_find(g, "adapter.lora.alpha");
    CHECK(kv && kv->type == GGUF_TYPE_FLOAT32);
    CHECK(gguf_meta_get_f64(g, "adapter.lora.alpha", &alpha) == 0 &&
          fabs(alpha - a->alpha) < 1e-6);
    int nt = (int)g->n_tensors;
    CHECK(nt == 2 * ENG_T_COUNT * m->cfg.n_layers);
    rtensor *t = calloc((size_t)nt, sizeof(*t));
    const uint8_t *p = g->base + g->tensor_info_offset;
    for (int i = 0; i < nt; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        p += 8;
        snprintf(t[i].name, sizeof t[i].name, "%.*s", (int)len, (const char *)p);
        p += len;
        memcpy(&t[i].nd, p, 4);
        p += 4;
        for (uint32_t d = 0; d < t[i].nd && d < 4; d++, p += 8)
            memcpy(&t[i].ne[d], p, 8);
        memcpy(&t[i].type, p, 4);
        p += 4;
        memcpy(&t[i].off, p, 8);
        p += 8;
    }
    static const char *mods[] = { "attn_q", "attn_k", "attn_v", "attn_output",
                                  "ffn_gate", "ffn_up", "ffn_down" };
    int hd = m->cfg.head_dim;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < ENG_T_COUNT; k++) {
            const eng_lora *lo = eng_adapter_at(a, l, k);
            char na[96], nb[96];
            snprintf(na, sizeof na, "blk.%d.%s.weight.lora_a", l, mods[k]);
            snprintf(nb, sizeof nb, "blk.%d.%s.weight.lora_b", l, mods[k]);
            const float *A = gguf_tensor(g, t, nt, na, lo->in, a->rank);
            const float *B = gguf_tensor(g, t, nt, nb, a->rank, lo->out);
            if (!A || !B)
                continue;
            CHECK(!memcmp(A, lo->A, sizeof(float) * a->rank * lo->in));
            bool perm = expect_permute && k <= 1;
            int bad = 0;
            for (int r = 0; r < lo->out; r++) {
                /* stored (llama.cpp) row of HF row r: h*hd + 2i + j */
                int h = r / hd, kk = r % hd, j = kk / (hd / 2), i = kk % (hd / 2);
                int dst = perm ? h * hd + 2 * i + j : r;
                bad += memcmp(B + (size_t)dst * a->rank,
                              lo->B + (size_t)r * a->rank,
                              sizeof(float) * a->rank) != 0;
            }
            CHECK(bad == 0);
        }
    printf("%s: GGUF adapter: %d tensors, alpha %g, arch %s, q/k %s\n", tag,
           nt, alpha, arch, expect_permute ? "permuted" : "as stored");
    free(t);
    gguf_meta_free(g);
    rm_rf(dir);
}

int main(void)
{
    struct { eng_rope_style rs; bool bias; const char *arch, *tag, *gg; bool perm; } cases[] = {
        { ENG_ROPE_HALF, false, "llama", "hf-llama", "llama", true },
        { ENG_ROPE_INTERLEAVED, false, "llama", "gguf-llama", "llama", false },
        { ENG_ROPE_HALF, true, "qwen2", "qwen2", "qwen2", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_model *m = model(cases[i].rs, cases[i].bias, cases[i].arch);
        eng_adapter *a = m ? adapter(m) : NULL;
        if (!a)
            return 1;
        check_merged(m, a, cases[i].tag);
        check_peft_round_trip(m, a, cases[i].tag);
        check_gguf(m, a, cases[i].tag, cases[i].perm, cases[i].gg);
        eng_adapter_unref(a);
        eng_model_unref(m);
    }
    return test_done("export");
}
