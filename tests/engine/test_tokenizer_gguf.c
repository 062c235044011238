/* SPDX-License-Identifier: MIT */
/*
 * test_tokenizer_gguf.c - tokenizers built from llama.cpp's vocab-only GGUF
 * files, checked id for id against llama.cpp's own published test vectors
 * (tests/data/tokenizers/llama.cpp-tests, see its SOURCE.md), plus round
 * trips, special tokens and the metadata the tokenizer keeps.
 */
#include "tok_vectors.h"

static eng_tokenizer *load(const char *name)
{
    char p[1024], err[256] = "";
    test_path(p, sizeof(p),
              "tests/data/tokenizers/llama.cpp-vocab/ggml-vocab-%s.gguf", name);
    eng_tokenizer *t = NULL;
    int rc = eng_tokenizer_load_gguf(p, &t, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "%s: load failed: %s\n", name, err);
        failures++;
    }
    return t;
}

static const char *const roundtrip_strings[] = {
    "Hello world", " leading space", "trailing space ", "  two  spaces  ",
    "tabs\tand\nnewlines\r\n", "digits 1234567890 3.14159", "don't we'll I'd",
    "naïve café Åström", "日本語のテキスト", "emoji 👩‍👩‍👧 ❤️ 🦙",
    "punctuation!?.,;:\"'()[]{}<>", "", "x",
};

static void check_vocab(const char *name, int vocab)
{
    eng_tokenizer *t = load(name);
    if (!t)
        return;
    char base[128];
    snprintf(base, sizeof(base), "ggml-vocab-%s.gguf", name);
    int cases = tv_run_vectors(t, name, base);
    CHECK(cases >= 43);
    CHECK(eng_tokenizer_vocab_size(t) == vocab);
    for (size_t i = 0; i < sizeof(roundtrip_strings) / sizeof(*roundtrip_strings); i++) {
        const char *s = roundtrip_strings[i];
        tv_roundtrip(t, name, s, strlen(s), false, false, true);
        tv_roundtrip(t, name, s, strlen(s), true, false, true);
    }
    printf("%s: %d llama.cpp vectors\n", name, cases);
    eng_tokenizer_unref(t);
}

static void check_special(void)
{
    eng_tokenizer *t = load("phi-3");
    if (!t)
        return;
    CHECK(eng_tokenizer_bos(t) == 1);
    CHECK(t != NULL && eng_tokenizer_eos(t) >= 0);
    /* <|user|> (32010) is a control token: one id only when parsed */
    const char *s = "<|user|>";
    int32_t ids[64];
    int n;
    CHECK(eng_tokenizer_encode(t, s, strlen(s), false, true, ids, 64, &n) == 0);
    CHECK(n == 1 && ids[0] == 32010);
    CHECK(eng_tokenizer_encode(t, s, strlen(s), false, false, ids, 64, &n) == 0);
    CHECK(n > 1);
    eng_tokenizer_unref(t);
}

int main(void)
{
    check_vocab("llama-spm", 32000);
    check_vocab("phi-3", 32064);
    check_vocab("gpt-2", 50257);
    check_vocab("deepseek-coder", 32256);
    check_vocab("deepseek-llm", 102400);
    check_vocab("falcon", 65024);
    check_vocab("mpt", 50432);
    check_vocab("refact", 49216);
    check_vocab("starcoder", 49152);
    check_special();
    char err[128];
    eng_tokenizer *t;
    CHECK(eng_tokenizer_load_gguf("/nonexistent.gguf", &t, err,
                                  sizeof(err)) == -ENOENT);
    printf("%d encodings checked\n", tv_checked);
    return test_done("tokenizer_gguf");
}
