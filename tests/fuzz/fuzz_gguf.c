/* SPDX-License-Identifier: MIT */
/*
 * fuzz_gguf.c - GGUF: the header and metadata reader (gguf_meta_parse), and
 * the model and tokenizer loaders that go on from it
 * (eng_model_load_gguf, eng_tokenizer_load_gguf) on a scratch file.
 *
 * Input: a whole .gguf file.
 *
 * Checks:
 *  - round trip (systemd style): the header and key/value pairs are written
 *    back from the parsed gguf_meta (magic, version, counts, each key, type,
 *    array header and value bytes) and must equal the input up to
 *    tensor_info_offset byte for byte;
 *  - every typed getter and array accessor is called on every key, and
 *    every string lies inside the buffer;
 *  - a tokenizer that loads encodes and decodes a few probe strings with ids
 *    inside its vocabulary; a model that loads has a sane config.
 */
#include "tests/fuzz/fuzz_tok.h"

#include "engine/gguf_meta.h"

static void put(uint8_t **p, const void *src, size_t n)
{
    memcpy(*p, src, n);
    *p += n;
}

/* Writes the header and kvs back and compares with the input. */
static void roundtrip(const gguf_meta *m, const uint8_t *data, size_t size)
{
    size_t n = m->tensor_info_offset;
    FZ_ASSERT(n <= size);
    uint8_t *buf = malloc(n ? n : 1), *p = buf;
    FZ_ASSERT(buf != NULL);
    put(&p, "GGUF", 4);
    put(&p, &m->version, 4);
    put(&p, &m->n_tensors, 8);
    put(&p, &m->n_kv, 8);
    for (uint64_t i = 0; i < m->n_kv; i++) {
        const gguf_kv *kv = &m->kv[i];
        uint32_t t = kv->type;
        FZ_ASSERT((size_t)(p - buf) + 12 + kv->key.len <= n);
        put(&p, &kv->key.len, 8);
        put(&p, kv->key.ptr, kv->key.len);
        put(&p, &t, 4);
        if (kv->type == GGUF_TYPE_ARRAY) {
            uint32_t et = kv->arr_type;
            FZ_ASSERT((size_t)(p - buf) + 12 <= n);
            put(&p, &et, 4);
            put(&p, &kv->n, 8);
        }
        FZ_ASSERT((size_t)(p - buf) + kv->data_len <= n);
        FZ_ASSERT(kv->data_len == 0 ||
                  (kv->data >= data && kv->data + kv->data_len <= data + size));
        put(&p, kv->data, kv->data_len);
    }
    FZ_ASSERT((size_t)(p - buf) == n);
    FZ_ASSERT(memcmp(buf, data, n) == 0);
    free(buf);
}

static void in_buf(const gguf_meta *m, gguf_str s)
{
    FZ_ASSERT(s.len == 0 || ((const uint8_t *)s.ptr >= m->base &&
                             (const uint8_t *)s.ptr + s.len <=
                                 m->base + m->size));
}

static void walk(const gguf_meta *m)
{
    for (uint64_t i = 0; i < m->n_kv; i++) {
        const gguf_kv *kv = &m->kv[i];
        in_buf(m, kv->key);
        char *key = gguf_str_dup(kv->key);
        FZ_ASSERT(key != NULL);
        uint64_t u;
        int64_t s;
        double d;
        bool b;
        gguf_str str;
        const gguf_kv *arr;
        (void)gguf_meta_find(m, key);
        (void)gguf_meta_get_u64(m, key, &u);
        (void)gguf_meta_get_i64(m, key, &s);
        (void)gguf_meta_get_f64(m, key, &d);
        (void)gguf_meta_get_bool(m, key, &b);
        if (gguf_meta_get_str(m, key, &str) == 0)
            in_buf(m, str);
        (void)gguf_type_name(kv->type);
        if (gguf_meta_get_arr(m, key, GGUF_TYPE_COUNT, &arr) == 0 &&
            arr == kv) {
            if (gguf_type_size(kv->arr_type)) {
                for (uint64_t j = 0; j < kv->n && j < 64; j++) {
                    (void)gguf_arr_f64(kv, j);
                    (void)gguf_arr_i64(kv, j);
                }
                if (kv->n) {
                    (void)gguf_arr_f64(kv, kv->n - 1);
                    (void)gguf_arr_i64(kv, kv->n - 1);
                }
            } else if (kv->arr_type == GGUF_TYPE_STRING) {
                gguf_str *out = calloc(kv->n ? kv->n : 1, sizeof(*out));
                FZ_ASSERT(out != NULL);
                FZ_ASSERT(gguf_arr_strings(kv, out) == 0);
                for (uint64_t j = 0; j < kv->n; j++)
                    in_buf(m, out[j]);
                free(out);
            }
        }
        free(key);
    }
}

static const char *const probes[] = {
    "Hello world", " Once upon a time, there was a cat.", "日本語 émoji 🙂",
    "<s>[INST] hi [/INST]</s><|im_start|>user\n<|endoftext|>", "\t\n  12345",
    "",
};

static void use_tokenizer(const eng_tokenizer *t)
{
    int vocab = eng_tokenizer_vocab_size(t);
    FZ_ASSERT(vocab > 0);
    int32_t ids[512];
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        int n = -1;
        int r = eng_tokenizer_encode(t, probes[i], strlen(probes[i]), i & 1,
                                     i & 2, ids, 512, &n);
        if (r < 0)
            continue;
        FZ_ASSERT(n >= 0);
        fz_check_encoding(t, ids, n < 512 ? n : 512);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (4 << 20))
        return 0;
    char err[256] = "", path[512];
    gguf_meta *m = NULL;
    if (gguf_meta_parse(data, size, &m, err, sizeof(err)) == 0) {
        FZ_ASSERT(m->version == 2 || m->version == 3);
        FZ_ASSERT(m->alignment && !(m->alignment & (m->alignment - 1)));
        roundtrip(m, data, size);
        walk(m);
        gguf_meta_free(m);
    } else {
        /* Not GGUF at all: the loaders would only say the same. */
        return 0;
    }

    fz_write_file("in.gguf", data, size, path, sizeof(path));
    eng_tokenizer *t = NULL;
    if (eng_tokenizer_load_gguf(path, &t, err, sizeof(err)) == 0) {
        use_tokenizer(t);
        eng_tokenizer_unref(t);
    }
    eng_model *mod = NULL;
    if (eng_model_load_gguf(path, &mod, err, sizeof(err)) == 0) {
        const eng_config *c = eng_model_config(mod);
        FZ_ASSERT(c->dim > 0 && c->n_layers > 0 && c->vocab_size > 0);
        FZ_ASSERT(eng_model_n_params(mod) > 0);
        eng_model_unref(mod);
    }
    return 0;
}
