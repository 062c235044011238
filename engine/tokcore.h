/* SPDX-License-Identifier: MIT */
/*
 * tokcore.h - engine-internal machinery shared by the Hugging Face
 * (tokenizer_hf.c) and GGUF (tokenizer_gguf.c) tokenizer backends: a
 * vocabulary hash, a BPE model (merge ranks, or SentencePiece scores), the
 * pipeline steps between text and words (added tokens, normalizers,
 * pre-tokenizers, byte-level mapping) and per-token decoded bytes.
 *
 * A backend fills a tokcore (tokcore_new, then the add/set functions), calls
 * tokcore_finish(), and hands tokcore_ops plus the tokcore to
 * eng_tokenizer_wrap(). After finish the tokcore is immutable and encode and
 * piece may run on any number of threads (each encode call allocates its own
 * scratch space and PCRE2 match data).
 *
 * Encoding, in Hugging Face's order:
 *   1. added tokens are matched in the raw text, leftmost-longest (special
 *      ones only when parse_special), honouring lstrip/rstrip/single_word;
 *   2. each stretch of text between them is normalized (NFC/NFD/NFKC/NFKD,
 *      Lowercase, Prepend, Replace, in sequence);
 *   3. pre-tokenizers split it into words (Split regex with its behaviour,
 *      ByteLevel with its own regex and byte-to-unicode mapping, Metaspace,
 *      Digits, Whitespace);
 *   4. each word goes through the BPE model.
 * Words are never split across added tokens, and Metaspace's "first"
 * prepend scheme applies only to the stretch at the start of the input.
 */
#ifndef TUNA_ENGINE_TOKCORE_H
#define TUNA_ENGINE_TOKCORE_H

#include "tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tokcore tokcore;

typedef enum {
    TOKCORE_MERGE_RANK = 0,  /* merges list: lowest rank first (HF, GPT-2) */
    TOKCORE_MERGE_SCORE = 1, /* SentencePiece scores: highest-scoring piece */
} tokcore_merge_mode;

typedef enum {
    TOKCORE_NORM_NFC, TOKCORE_NORM_NFD, TOKCORE_NORM_NFKC, TOKCORE_NORM_NFKD,
    TOKCORE_NORM_LOWERCASE,
    TOKCORE_NORM_PREPEND,   /* a: text prepended to non-empty stretches */
    TOKCORE_NORM_REPLACE,   /* a: pattern (regex when is_regex), b: content */
} tokcore_norm_kind;

typedef enum {
    TOKCORE_SPLIT_ISOLATED, TOKCORE_SPLIT_REMOVED,
    TOKCORE_SPLIT_MERGED_PREV, TOKCORE_SPLIT_MERGED_NEXT,
    TOKCORE_SPLIT_CONTIGUOUS,
} tokcore_split_behavior;

typedef enum {
    TOKCORE_PREPEND_ALWAYS, TOKCORE_PREPEND_FIRST, TOKCORE_PREPEND_NEVER,
} tokcore_prepend_scheme;

/* The GPT-2 pattern, used by ByteLevel's use_regex. */
#define TOKCORE_GPT2_REGEX \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|" \
    "\\s+(?!\\S)|\\s+"

int tokcore_new(tokcore_merge_mode mode, tokcore **ret);
void tokcore_free(void *core);

/* Vocabulary: token text in the model's alphabet (byte-level characters or
 * U+2581 for spaces). Ids may come in any order; holes are allowed. A
 * repeated text keeps its first id for encoding. */
int tokcore_add_token(tokcore *c, const char *text, size_t len, int32_t id,
                      float score);
/* Merges (RANK mode): a and b are token texts; rank = order of addition.
 * A merge whose parts or result are missing from the vocabulary fails
 * with -EINVAL (as Hugging Face refuses such a file). */
int tokcore_add_merge(tokcore *c, const char *a, size_t alen, const char *b,
                      size_t blen);
/* An added token (matched before the model). */
int tokcore_add_added(tokcore *c, const char *content, int32_t id,
                      bool special, bool lstrip, bool rstrip,
                      bool single_word);
void tokcore_set_model(tokcore *c, bool byte_fallback, int32_t unk_id,
                       bool fuse_unk, bool ignore_merges);
int tokcore_add_normalizer(tokcore *c, tokcore_norm_kind k, const char *a,
                           const char *b, bool is_regex, char *err,
                           size_t errlen);
/* Split: pattern (regex, or literal text when !is_regex). */
int tokcore_add_split(tokcore *c, const char *pattern, bool is_regex,
                      tokcore_split_behavior b, bool invert, char *err,
                      size_t errlen);
/* ByteLevel pre-tokenizer: optional GPT-2 regex split, then byte mapping. */
int tokcore_add_bytelevel(tokcore *c, bool add_prefix_space, bool use_regex,
                          char *err, size_t errlen);
int tokcore_add_metaspace(tokcore *c, const char *replacement,
                          tokcore_prepend_scheme scheme, bool split);

/* Decoding flags (see tokcore_finish): */
typedef struct tokcore_decode_cfg {
    bool byte_level;     /* map byte-level characters back to bytes */
    bool metaspace;      /* U+2581 (or the replacement given) -> space */
    bool byte_fallback;  /* <0xNN> -> the raw byte */
    bool strip_leading;  /* drop one leading space of the first piece */
} tokcore_decode_cfg;

/* Builds the lookup tables and every token's decoded bytes. vocab_size is
 * the id range (at least max id + 1). bos is used by the piece rule "the
 * first piece, or the one after BOS". */
int tokcore_finish(tokcore *c, int vocab_size, int32_t bos,
                   const tokcore_decode_cfg *dc, char *err, size_t errlen);

/* Ids in use (after finish). */
int tokcore_vocab_size(const tokcore *c);
/* Token id of a text, -1 if none. */
int32_t tokcore_lookup(const tokcore *c, const char *text, size_t len);

extern const eng_tok_ops tokcore_ops;

#endif
