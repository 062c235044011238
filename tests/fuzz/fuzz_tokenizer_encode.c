/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tokenizer_encode.c - tokenizer encode and decode on untrusted text
 * (what /generate prompts and dataset rows go through), with real
 * tokenizers loaded once per process: GPT-2 (byte-level BPE, tokenizer
 * .json), TinyLlama (SentencePiece-style BPE with byte fallback,
 * tokenizer.json), the embedded stories260K (llama2.c tokenizer.bin) and
 * llama.cpp's llama-spm vocabulary (GGUF).
 *
 * Input: byte 0 picks the tokenizer (bits 0-1), add_bos (bit 2) and
 * parse_special (bit 3); the rest is the text.
 *
 * Checks: invalid UTF-8 gives -EINVAL; otherwise every id is inside the
 * vocabulary, has a piece, and the ids decode. Round trip: for GPT-2 and
 * TinyLlama without special-token parsing, decode(encode(text)) == text
 * (both are lossless for UTF-8 without NUL bytes, as the engine tests
 * check on fixed strings; for TinyLlama not when the text holds U+2581,
 * SentencePiece's own space mark).
 */
#include "tests/fuzz/fuzz_tok.h"

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF),
 * written here independently of the engine's check it is compared with. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

#define N_TOK 4
static eng_tokenizer *toks[N_TOK];
static const bool lossless[N_TOK] = { true, true, false, false };

static eng_tokenizer *load_one(int i)
{
    char path[1024], err[256] = "";
    const char *root = fz_source_root();
    eng_tokenizer *t = NULL;
    int r;
    switch (i) {
    case 0:
        snprintf(path, sizeof(path), "%s/tests/data/tokenizers/gpt2", root);
        r = eng_tokenizer_load_hf(path, &t, err, sizeof(err));
        break;
    case 1:
        snprintf(path, sizeof(path),
                 "%s/tests/data/tokenizers/tinyllama-1.1b-chat-v1.0", root);
        r = eng_tokenizer_load_hf(path, &t, err, sizeof(err));
        break;
    case 2:
        snprintf(path, sizeof(path), "%s/models/stories260K/tok512.bin", root);
        r = eng_tokenizer_load_llama2c(path, 512, &t, err, sizeof(err));
        break;
    default:
        snprintf(path, sizeof(path), "%s/tests/data/tokenizers/llama.cpp-vocab"
                 "/ggml-vocab-llama-spm.gguf", root);
        r = eng_tokenizer_load_gguf(path, &t, err, sizeof(err));
        break;
    }
    if (r < 0) {
        fprintf(stderr, "fuzz: cannot load tokenizer %s: %s\n", path, err);
        abort();
    }
    return t;
}

static void free_toks(void)
{
    for (int i = 0; i < N_TOK; i++)
        eng_tokenizer_unref(toks[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (64 << 10))
        return 0;
    int which = data[0] & 3;
    bool add_bos = data[0] & 4, special = data[0] & 8;
    if (!toks[which]) {
        if (!toks[0] && !toks[1] && !toks[2] && !toks[3])
            atexit(free_toks);
        toks[which] = load_one(which);
    }
    const eng_tokenizer *t = toks[which];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    int cap = (int)len * 2 + 8, n = -1;
    int32_t *ids = malloc(sizeof(*ids) * (size_t)cap);
    FZ_ASSERT(ids != NULL);
    int r = eng_tokenizer_encode(t, text, len, add_bos, special, ids, cap, &n);
    bool valid = utf8_valid(data + 1, len);
    if (!valid) {
        FZ_ASSERT(r == -EINVAL);
        free(ids);
        return 0;
    }
    FZ_ASSERT(r == 0);
    FZ_ASSERT(n >= 0 && n <= cap);
    fz_check_ids(t, ids, n);
    char *back = NULL;
    FZ_ASSERT(eng_tokenizer_decode(t, ids, n, &back) >= 0 && back);
    /* SentencePiece writes spaces as U+2581: a literal one in the text
     * cannot come back as itself. */
    bool spm_marker = which == 1 && memmem(text, len, "\xe2\x96\x81", 3);
    if (lossless[which] && !special && !spm_marker && !memchr(text, 0, len)) {
        if (strlen(back) != len || memcmp(back, text, len) != 0)
            fprintf(stderr, "round trip: \"%.*s\" -> \"%s\"\n",
                    (int)(len > 200 ? 200 : len), text, back);
        FZ_ASSERT(strlen(back) == len && memcmp(back, text, len) == 0);
    }
    free(back);
    free(ids);
    return 0;
}
