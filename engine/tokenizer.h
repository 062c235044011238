/* SPDX-License-Identifier: MIT */
/*
 * tokenizer.h - engine-internal tokenizer object: one public type, several
 * backends (llama2.c tokenizer.bin, Hugging Face tokenizer.json, GGUF
 * metadata) behind a small vtable. Only engine/ includes this.
 */
#ifndef TUNA_ENGINE_TOKENIZER_H
#define TUNA_ENGINE_TOKENIZER_H

#include "engine.h"
#include <stdatomic.h>

typedef struct eng_tok_ops {
    /* Encode text (no BOS handling: the front end adds BOS). Appends ids to
     * out (cap), *ret_n gets the full count. */
    int (*encode)(const eng_tokenizer *t, const char *text, size_t len,
                  bool parse_special, int32_t *out, int cap, int *ret_n);
    /* Raw bytes of a token as decoded text (see eng_tokenizer_piece). */
    int (*piece)(const eng_tokenizer *t, int32_t prev, int32_t id,
                 const char **ret_bytes);
    void (*free_impl)(void *impl);
} eng_tok_ops;

struct eng_tokenizer {
    atomic_int refs;
    const eng_tok_ops *ops;
    void *impl;
    int vocab_size;
    int32_t bos_id;        /* -1 if none */
    int32_t eos_id;        /* -1 if none */
    bool add_bos_default;  /* whether the model expects BOS */
    char *chat_template;   /* Jinja source, NULL if none (malloc'd) */
};

/* Wraps an impl into a new tokenizer object (refs = 1). */
eng_tokenizer *eng_tokenizer_wrap(const eng_tok_ops *ops, void *impl,
                                  int vocab_size, int32_t bos, int32_t eos);

#endif
