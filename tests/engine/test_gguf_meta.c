/* SPDX-License-Identifier: MIT */
/*
 * test_gguf_meta.c - the GGUF metadata reader: the llama.cpp vocab files
 * (GGUF v3), a v2 file built here, and every truncation of a real file
 * (must fail cleanly with -EIO, never read past the end).
 */
#include "engine/gguf_meta.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_vocab_file(const char *name, const char *model,
                            uint64_t n_tokens)
{
    char path[1024], err[256] = "";
    test_path(path, sizeof(path),
              "tests/data/tokenizers/llama.cpp-vocab/ggml-vocab-%s.gguf", name);
    gguf_meta *m = NULL;
    int rc = gguf_meta_open(path, &m, err, sizeof(err));
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "%s: %s\n", name, err);
        return;
    }
    CHECK(m->version == 3);
    CHECK(m->n_tensors == 0);
    gguf_str s;
    CHECK(gguf_meta_get_str(m, "tokenizer.ggml.model", &s) == 0);
    CHECK(gguf_str_eq(s, model));
    const gguf_kv *tok;
    CHECK(gguf_meta_get_arr(m, "tokenizer.ggml.tokens", GGUF_TYPE_STRING,
                            &tok) == 0);
    CHECK(tok->n == n_tokens);
    gguf_str *strs = calloc(tok->n, sizeof(*strs));
    CHECK(gguf_arr_strings(tok, strs) == 0);
    uint64_t bos;
    CHECK(gguf_meta_get_u64(m, "tokenizer.ggml.bos_token_id", &bos) == 0);
    CHECK(bos < n_tokens);
    /* wrong-type access is refused */
    CHECK(gguf_meta_get_u64(m, "tokenizer.ggml.model", &bos) == -EINVAL);
    CHECK(gguf_meta_get_str(m, "no.such.key", &s) == -ENOENT);
    if (strcmp(model, "llama") == 0) {
        const gguf_kv *sc;
        CHECK(gguf_meta_get_arr(m, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32,
                                &sc) == 0);
        CHECK(sc->n == n_tokens);
        CHECK(gguf_str_eq(strs[1], "<s>"));
    }
    free(strs);
    gguf_meta_free(m);
}

/* A little v2 file: 3 kvs (u32, string, array of i32), 0 tensors. */
static size_t build_v2(uint8_t *b)
{
    size_t o = 0;
#define PUT(p, n) do { memcpy(b + o, (p), (n)); o += (n); } while (0)
#define PU32(v) do { uint32_t _v = (v); PUT(&_v, 4); } while (0)
#define PU64(v) do { uint64_t _v = (v); PUT(&_v, 8); } while (0)
#define PSTR(s) do { PU64(strlen(s)); PUT((s), strlen(s)); } while (0)
    PUT("GGUF", 4);
    PU32(2);
    PU64(0);
    PU64(4);
    PSTR("general.alignment"); PU32(GGUF_TYPE_UINT32); PU32(64);
    PSTR("general.name"); PU32(GGUF_TYPE_STRING); PSTR("tiny");
    PSTR("x.ids"); PU32(GGUF_TYPE_ARRAY); PU32(GGUF_TYPE_INT32); PU64(3);
    PU32((uint32_t)-5); PU32(7); PU32(9);
    PSTR("x.nested"); PU32(GGUF_TYPE_ARRAY); PU32(GGUF_TYPE_ARRAY); PU64(1);
    PU32(GGUF_TYPE_STRING); PU64(2); PSTR("ab"); PSTR("");
    return o;
}

static void test_v2_and_truncation(void)
{
    uint8_t buf[512];
    size_t n = build_v2(buf);
    gguf_meta *m = NULL;
    CHECK(gguf_meta_parse(buf, n, &m, NULL, 0) == 0);
    if (!m)
        return;
    CHECK(m->version == 2 && m->n_kv == 4 && m->alignment == 64);
    CHECK(m->tensor_info_offset == n);
    gguf_str s;
    CHECK(gguf_meta_get_str(m, "general.name", &s) == 0 &&
          gguf_str_eq(s, "tiny"));
    const gguf_kv *a;
    CHECK(gguf_meta_get_arr(m, "x.ids", GGUF_TYPE_INT32, &a) == 0);
    CHECK(a->n == 3 && gguf_arr_i64(a, 0) == -5 && gguf_arr_i64(a, 2) == 9);
    CHECK(gguf_meta_get_arr(m, "x.nested", GGUF_TYPE_ARRAY, &a) == 0);
    gguf_meta_free(m);
    /* every strict prefix is corrupt */
    for (size_t k = 0; k < n; k++) {
        m = NULL;
        CHECK(gguf_meta_parse(buf, k, &m, NULL, 0) == -EIO);
        gguf_meta_free(m);
    }
    /* version 1 and a hostile string length */
    buf[4] = 1;
    CHECK(gguf_meta_parse(buf, n, &m, NULL, 0) == -EIO);
    buf[4] = 3;
    uint64_t huge = UINT64_MAX - 3;
    memcpy(buf + 24, &huge, 8);
    CHECK(gguf_meta_parse(buf, n, &m, NULL, 0) == -EIO);
}

static void test_truncated_real_file(void)
{
    char p[1024];
    test_path(p, sizeof(p),
              "tests/data/tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    FILE *f = fopen(p, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz);
    CHECK(fread(b, 1, (size_t)sz, f) == (size_t)sz);
    fclose(f);
    gguf_meta *m = NULL;
    CHECK(gguf_meta_parse(b, (size_t)sz, &m, NULL, 0) == 0);
    size_t full = m ? m->tensor_info_offset : 0;
    gguf_meta_free(m);
    /* prefixes cut at many places (every 997th byte, and the last 64) */
    for (size_t k = 0; k < full; k += (k + 64 < full ? 997 : 1)) {
        m = NULL;
        int rc = gguf_meta_parse(b, k, &m, NULL, 0);
        CHECK(rc == -EIO);
        gguf_meta_free(m);
    }
    free(b);
}

int main(void)
{
    test_vocab_file("llama-spm", "llama", 32000);
    test_vocab_file("phi-3", "llama", 32064);
    test_vocab_file("gpt-2", "gpt2", 50257);
    test_vocab_file("deepseek-coder", "gpt2", 32256);
    test_vocab_file("starcoder", "gpt2", 49152);
    test_v2_and_truncation();
    test_truncated_real_file();
    char err[128];
    gguf_meta *m;
    CHECK(gguf_meta_open("/nonexistent/x.gguf", &m, err, sizeof(err)) ==
          -ENOENT);
    return test_done("gguf_meta");
}
