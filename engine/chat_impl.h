/* SPDX-License-Identifier: MIT */
/*
 * chat_impl.h - what chat.c shares with the rest of engine/: data.c renders
 * a model's chat template for training with the same bos/eos token texts
 * eng_chat_render() gives it at inference. Only files inside engine/ include
 * this header.
 */
#ifndef TUNA_ENGINE_CHAT_IMPL_H
#define TUNA_ENGINE_CHAT_IMPL_H

#include "tokenizer.h"

/* Text of token id as t decodes it, NUL-terminated in buf (cap bytes), for a
 * template's bos_token/eos_token; NULL when id < 0, the piece is empty or it
 * does not fit. */
const char *eng_chat_token_text(const eng_tokenizer *t, int32_t id, char *buf,
                                size_t cap);

#endif
