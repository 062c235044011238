/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tok.h - what the tokenizer fuzz targets share, on top of fuzz.h:
 * the invariants of an encoding (every id inside the vocabulary, a piece
 * for every id in its context, and decoding that gives text when it
 * succeeds).
 */
#ifndef TUNA_TESTS_FUZZ_TOK_H
#define TUNA_TESTS_FUZZ_TOK_H

#include "tests/fuzz/fuzz.h"

#include "engine/engine.h"

/* ids[0..n) lie inside t's vocabulary and each has a piece. */
static inline void fz_check_ids(const eng_tokenizer *t, const int32_t *ids,
                                int n)
{
    int vocab = eng_tokenizer_vocab_size(t);
    for (int j = 0; j < n; j++) {
        FZ_ASSERT(ids[j] >= 0 && ids[j] < vocab);
        const char *bytes;
        FZ_ASSERT(eng_tokenizer_piece(t, j ? ids[j - 1] : -1, ids[j],
                                      &bytes) >= 0);
    }
}

/* fz_check_ids, and ids[0..n) decode to text or fail cleanly. */
static inline void fz_check_encoding(const eng_tokenizer *t,
                                     const int32_t *ids, int n)
{
    fz_check_ids(t, ids, n);
    char *text = NULL;
    if (eng_tokenizer_decode(t, ids, n, &text) >= 0)
        FZ_ASSERT(text != NULL);
    free(text);
}

#endif
