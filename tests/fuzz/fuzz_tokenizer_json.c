/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tokenizer_json.c - the Hugging Face tokenizer.json loader
 * (eng_tokenizer_load_hf): model (BPE, byte-level or SentencePiece-style),
 * normalizers, pre-tokenizers, added tokens, decoders.
 *
 * Input: a whole tokenizer.json, written to a scratch folder of its own
 * (so no tokenizer_config.json is found next to it).
 *
 * Checks: a tokenizer that loads encodes a set of probe strings (with and
 * without BOS and special-token parsing; invalid UTF-8 must give -EINVAL)
 * into ids inside its vocabulary, gives a piece for every id, and decodes
 * the ids. When the fuzzed JSON was accepted, it also round-trips through
 * cJSON (printed and parsed again, the tokenizer loads again with the same
 * vocabulary size and the same encodings).
 */
#include "tests/fuzz/fuzz_tok.h"

#include <cjson/cJSON.h>

static const char *const probes[] = {
    "Hello world",
    " Once upon a time, there was a little cat named Tom.",
    "日本語 émoji 🙂 naïve café",
    "<s>[INST] hi [/INST]</s><|im_start|>user\n<|endoftext|><unk>",
    "\t\n  12345 678\r\n",
    "don't   you'll  ABC abc",
    "",
};
#define N_PROBES (sizeof(probes) / sizeof(probes[0]))
#define CAP 512

typedef struct enc {
    int n[N_PROBES * 4];
    int32_t ids[N_PROBES * 4][CAP];
} enc;

static void use_tokenizer(const eng_tokenizer *t, enc *e)
{
    int vocab = eng_tokenizer_vocab_size(t);
    FZ_ASSERT(vocab > 0);
    int32_t ids[CAP];
    int n = 0;
    FZ_ASSERT(eng_tokenizer_encode(t, "a\xff", 2, false, false, ids, CAP,
                                   &n) == -EINVAL);
    for (size_t i = 0; i < N_PROBES * 4; i++) {
        const char *s = probes[i / 4];
        n = -1;
        int r = eng_tokenizer_encode(t, s, strlen(s), i & 1, i & 2, ids, CAP,
                                     &n);
        e->n[i] = r < 0 ? r : n;
        if (r < 0)
            continue;
        FZ_ASSERT(n >= 0);
        int k = n < CAP ? n : CAP;
        memcpy(e->ids[i], ids, (size_t)k * sizeof(ids[0]));
        fz_check_encoding(t, ids, k);
    }
}

static int load(const char *name, const void *data, size_t size,
                eng_tokenizer **t)
{
    char dir[512], path[600], err[256] = "";
    snprintf(dir, sizeof(dir), "%s/%s", fz_dir(), name);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/tokenizer.json", name);
    char full[1400];
    fz_write_file(path, data, size, full, sizeof(full));
    int r = eng_tokenizer_load_hf(full, t, err, sizeof(err));
    if (r < 0)
        FZ_ASSERT(r == -EINVAL || r == -ENOMEM || r == -EIO || r == -ENOENT);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return 0;
    eng_tokenizer *t = NULL;
    if (load("a", data, size, &t) < 0)
        return 0;
    static enc e1, e2;
    use_tokenizer(t, &e1);

    /* Round trip through cJSON: same tokenizer. */
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (j) {
        char *s = cJSON_PrintUnformatted(j);
        FZ_ASSERT(s != NULL);
        eng_tokenizer *t2 = NULL;
        if (load("b", s, strlen(s), &t2) == 0) {
            FZ_ASSERT(eng_tokenizer_vocab_size(t2) ==
                      eng_tokenizer_vocab_size(t));
            use_tokenizer(t2, &e2);
            for (size_t i = 0; i < N_PROBES * 4; i++) {
                FZ_ASSERT(e1.n[i] == e2.n[i]);
                int k = e1.n[i] < CAP ? e1.n[i] : CAP;
                for (int x = 0; x < k; x++)
                    FZ_ASSERT(e1.ids[i][x] == e2.ids[i][x]);
            }
            eng_tokenizer_unref(t2);
        }
        free(s);
        cJSON_Delete(j);
    }
    eng_tokenizer_unref(t);
    return 0;
}
