/* SPDX-License-Identifier: MIT */
/*
 * tokenizer_gguf.h - engine-internal: a tokenizer from GGUF metadata that
 * a model loader has already parsed (the public eng_tokenizer_load_gguf()
 * opens the file itself).
 */
#ifndef TUNA_ENGINE_TOKENIZER_GGUF_H
#define TUNA_ENGINE_TOKENIZER_GGUF_H

#include "engine.h"
#include "gguf_meta.h"

/* Reads tokenizer.ggml.* and tokenizer.chat_template from m (borrowed; the
 * tokenizer copies what it keeps). -EINVAL for a missing or unsupported
 * tokenizer (model other than llama/gpt2, unknown tokenizer.ggml.pre). */
int eng_tokenizer_from_gguf(const gguf_meta *m, eng_tokenizer **ret_tok,
                            char *err, size_t errlen);

/* The pre-tokenizer regexes llama.cpp applies for a tokenizer.ggml.pre
 * name (NULL-terminated list, applied one after the other, each splitting
 * the pieces of the previous one), and whether merges are skipped for
 * words already in the vocabulary. NULL for an unknown name. */
const char *const *eng_gguf_pre_regexes(const char *pre, bool *ignore_merges);

#endif
