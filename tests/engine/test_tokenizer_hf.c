/* SPDX-License-Identifier: MIT */
/*
 * test_tokenizer_hf.c - Hugging Face tokenizer.json loader against
 * published ids: llama.cpp's test vectors for the same vocabulary (see
 * tests/data/tokenizers/llama.cpp-tests/SOURCE.md for which carries over
 * to which tokenizer.json, and why), targeted added/special-token cases,
 * configs (BOS/EOS/add_bos/chat template), and decode(encode(s)) == s
 * over many strings with and without BOS and special-token parsing.
 */
#include "engine/tokenizer.h"
#include "tok_vectors.h"

#include <errno.h>

static eng_tokenizer *load(const char *dir)
{
    char p[1024], err[256] = "";
    test_path(p, sizeof(p), "tests/data/tokenizers/%s", dir);
    eng_tokenizer *t = NULL;
    int rc = eng_tokenizer_load_hf(p, &t, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "%s: load failed (%d): %s\n", dir, rc, err);
        failures++;
    }
    return t;
}

/* Spaces and runs of spaces, newlines, tabs, digits and long numbers,
 * punctuation, contractions, accents, CJK, emoji with joiners. */
static const char *const strings[] = {
    "", "a", "Hello world", "Hello  world", "   three leading",
    "trailing   ", "\n", "\n\n\nnewlines\n", "tabs\tand\t\ttabs",
    "mixed \t\n \r\n whitespace", "1234567890", "3.14159265358979",
    "10,000,000 and 2024-01-31", "!!!???...,,,;;::", "\"quoted\" (paren) [b]",
    "don't won't I'm you're they've we'll he'd", "DON'T I'M",
    "naïve café résumé Ångström", "Crème brûlée, jalapeño, Zürich",
    "日本語のテキストです。", "中文测试，你好世界！", "한국어 텍스트",
    "нещо на Български", "Ελληνικά", "emoji 👩‍👩‍👧‍👦 family",
    "flags 🇫🇷🇩🇪 and 👍🏽 skin", "😶‍🌫️ (joiners) ❤️‍🔥", "🦙🦙🦙",
    "code: if (x == 1) { return y; }", "    indented code\n        more",
    "<tag attr=\"v\">text</tag>", "C:\\path\\to\\file.txt",
    "https://example.com/a?b=c&d=e#f", "x" , "a b c d e f g",
    "ẞ ß ﬁ ﬀ", "Ꮳ Ꭰ ᏸ", "line1\r\nline2\rline3",
};
#define N_STRINGS (sizeof(strings) / sizeof(*strings))

/* Round trips for every string, with and without BOS. When
 * drop_leading_space, a string that starts with a space is expected back
 * without it (Metaspace prepend_scheme "first": Hugging Face's decode of
 * Mistral does the same). */
static int roundtrips(const eng_tokenizer *t, const char *name,
                      bool drop_leading_space)
{
    int ok = 0;
    for (size_t i = 0; i < N_STRINGS; i++) {
        const char *s = strings[i];
        for (int bos = 0; bos < 2; bos++) {
            for (int ps = 0; ps < 2; ps++) {
                if (drop_leading_space && (s[0] == ' ' || s[0] == '\t' ||
                                           s[0] == '\n')) {
                    continue;
                }
                ok += tv_roundtrip(t, name, s, strlen(s), bos, ps, true);
            }
        }
    }
    return ok;
}

static void expect(const eng_tokenizer *t, const char *name, const char *s,
                   bool bos, bool ps, const int32_t *want, int n)
{
    tv_expect(t, name, s, strlen(s), bos, ps, want, n);
}

static void test_gpt2(void)
{
    eng_tokenizer *t = load("gpt2");
    if (!t)
        return;
    int v = tv_run_vectors(t, "gpt2", "ggml-vocab-gpt-2.gguf");
    CHECK(v == 46);
    CHECK(eng_tokenizer_vocab_size(t) == 50257);
    CHECK(eng_tokenizer_bos(t) == 50256 && eng_tokenizer_eos(t) == 50256);
    CHECK(!t->add_bos_default);
    /* <|endoftext|> is special: one id only when parsed */
    expect(t, "gpt2", "a<|endoftext|>b", false, true,
           (int32_t[]){ 64, 50256, 65 }, 3);
    expect(t, "gpt2", "<|endoftext|>", false, false,
           (int32_t[]){ 27, 91, 437, 1659, 5239, 91, 29 }, 7);
    int r = roundtrips(t, "gpt2", false);
    printf("gpt2: %d vectors, %d round trips\n", v, r);
    eng_tokenizer_unref(t);
}

static void test_phi2(void)
{
    eng_tokenizer *t = load("phi-2");
    if (!t)
        return;
    int v = tv_run_vectors(t, "phi-2", "ggml-vocab-phi-2.gguf");
    CHECK(v == 46);
    CHECK(eng_tokenizer_vocab_size(t) == 50295);
    /* whitespace added tokens are not special: matched either way */
    expect(t, "phi-2", "a    b", false, false,
           (int32_t[]){ 64, 50284, 65 }, 3);
    int r = roundtrips(t, "phi-2", false);
    printf("phi-2: %d vectors, %d round trips\n", v, r);
    eng_tokenizer_unref(t);
}

static void test_tinyllama(void)
{
    eng_tokenizer *t = load("tinyllama-1.1b-chat-v1.0");
    if (!t)
        return;
    int v = tv_run_vectors(t, "tinyllama", "ggml-vocab-llama-spm.gguf");
    CHECK(v == 43);
    CHECK(eng_tokenizer_bos(t) == 1 && eng_tokenizer_eos(t) == 2);
    CHECK(t->add_bos_default);
    CHECK(t->chat_template && strstr(t->chat_template, "<|user|>"));
    expect(t, "tinyllama", "Hello world", true, false,
           (int32_t[]){ 1, 15043, 3186 }, 3);
    /* <s> in text: one id when parsed; Prepend applies to the stretch after */
    expect(t, "tinyllama", "<s>Hello", false, true,
           (int32_t[]){ 1, 15043 }, 2);
    int r = roundtrips(t, "tinyllama", false);
    printf("tinyllama: %d vectors, %d round trips\n", v, r);
    eng_tokenizer_unref(t);
}

static void test_phi3(void)
{
    eng_tokenizer *t = load("phi-3-mini-4k-instruct");
    if (!t)
        return;
    int v = tv_run_vectors(t, "phi-3", "ggml-vocab-phi-3.gguf");
    CHECK(v == 46);
    CHECK(eng_tokenizer_vocab_size(t) == 32011);
    CHECK(!t->add_bos_default);
    CHECK(eng_tokenizer_eos(t) == 32000);
    CHECK(t->chat_template && strstr(t->chat_template, "<|end|>"));
    /* rstrip: the newline after <|user|> is absorbed */
    expect(t, "phi-3", "<|user|>\nHello<|end|>\n<|assistant|>", false, true,
           (int32_t[]){ 32010, 15043, 32007, 32001 }, 4);
    int r = roundtrips(t, "phi-3", false);
    printf("phi-3: %d vectors, %d round trips\n", v, r);
    eng_tokenizer_unref(t);
}

static void test_mistral(void)
{
    eng_tokenizer *t = load("mistral-7b-v0.1");
    if (!t)
        return;
    CHECK(eng_tokenizer_vocab_size(t) == 32000);
    CHECK(eng_tokenizer_bos(t) == 1 && eng_tokenizer_eos(t) == 2);
    CHECK(t->add_bos_default);
    CHECK(t->chat_template == NULL);
    /* Metaspace(prepend_scheme first): "▁Hello" (22557) at the start,
     * " Hello" is not prefixed again, and text after a special token gets
     * no prefix ("Hello" 16230). Ids from the file's vocabulary. */
    expect(t, "mistral", "Hello", true, false, (int32_t[]){ 1, 22557 }, 2);
    expect(t, "mistral", " Hello", false, false, (int32_t[]){ 22557 }, 1);
    expect(t, "mistral", "<s>Hello", false, true, (int32_t[]){ 1, 16230 }, 2);
    expect(t, "mistral", "Hello world", false, false,
           (int32_t[]){ 22557, 1526 }, 2);
    int r = roundtrips(t, "mistral", true);
    printf("mistral: %d round trips\n", r);
    eng_tokenizer_unref(t);
}

static void test_qwen3(void)
{
    eng_tokenizer *t = load("qwen3");
    if (!t)
        return;
    int v = tv_run_vectors(t, "qwen3", "ggml-vocab-qwen2.gguf");
    CHECK(v == 43);
    CHECK(eng_tokenizer_vocab_size(t) == 151669);
    CHECK(eng_tokenizer_bos(t) == -1 && !t->add_bos_default);
    CHECK(eng_tokenizer_eos(t) == 151645);
    CHECK(t->chat_template && strstr(t->chat_template, "<|im_start|>"));
    expect(t, "qwen3", "<|im_start|>user\nhi<|im_end|>", false, true,
           (int32_t[]){ 151644, 872, 198, 6023, 151645 }, 5);
    const char *chat = "<|im_start|>user\nHello world<|im_end|>\n"
                       "<|im_start|>assistant\n<think>\n\n</think>\n\nHi!";
    CHECK(tv_roundtrip(t, "qwen3", chat, strlen(chat), false, true, true));
    /* NFC: a decomposed é encodes like the composed one */
    int32_t a[16], b[16];
    int na, nb;
    CHECK(eng_tokenizer_encode(t, "caf\xc3\xa9", 5, false, false, a, 16, &na) == 0);
    CHECK(eng_tokenizer_encode(t, "cafe\xcc\x81", 6, false, false, b, 16, &nb) == 0);
    CHECK(na == nb && !memcmp(a, b, sizeof(*a) * na));
    int r = roundtrips(t, "qwen3", false);
    printf("qwen3: %d vectors, %d round trips\n", v, r);
    eng_tokenizer_unref(t);
}

static void test_errors(void)
{
    char err[256];
    eng_tokenizer *t = NULL;
    CHECK(eng_tokenizer_load_hf("/nonexistent/dir/tokenizer.json", &t, err,
                                sizeof(err)) == -ENOENT);
    char p[1024];
    test_path(p, sizeof(p), "tests/data/tokenizers/llama.cpp-tests/SOURCE.md");
    CHECK(eng_tokenizer_load_hf(p, &t, err, sizeof(err)) == -EINVAL);
}

int main(void)
{
    test_gpt2();
    test_phi2();
    test_tinyllama();
    test_phi3();
    test_mistral();
    test_qwen3();
    test_errors();
    printf("%d encodings checked\n", tv_checked);
    return test_done("tokenizer_hf");
}
