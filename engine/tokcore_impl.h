/* SPDX-License-Identifier: MIT */
/*
 * tokcore_impl.h - the tokcore struct, shared by tokcore.c (building) and
 * tokcore_encode.c (encoding and decoding). Nothing else includes it.
 */
#ifndef TUNA_ENGINE_TOKCORE_IMPL_H
#define TUNA_ENGINE_TOKCORE_IMPL_H

#include "tokcore.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#define TOKCORE_MAX_STAGES 16

typedef struct tokcore_mval {
    uint32_t rank;
    int32_t id; /* merged token */
} tokcore_mval;

typedef struct tokcore_added {
    char *text;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word;
} tokcore_added;

typedef struct tokcore_norm {
    tokcore_norm_kind k;
    char *a, *b;
    pcre2_code *re; /* Replace */
} tokcore_norm;

typedef enum {
    TOKCORE_PRE_SPLIT, TOKCORE_PRE_BYTELEVEL, TOKCORE_PRE_METASPACE,
} tokcore_pre_kind;

typedef struct tokcore_pre {
    tokcore_pre_kind k;
    pcre2_code *re;               /* Split; ByteLevel with use_regex */
    tokcore_split_behavior beh;
    bool invert;
    bool add_prefix_space;        /* ByteLevel */
    char *repl;                   /* Metaspace */
    tokcore_prepend_scheme scheme;
    bool split;
} tokcore_pre;

struct tokcore {
    tokcore_merge_mode mode;
    /* vocabulary, by id */
    int id_cap, n_ids;
    char **text;
    uint32_t *tlen;
    float *score;
    bool *is_added;
    int32_t *hash;        /* ids, -1 empty */
    uint32_t hash_cap, n_hashed;
    /* merges */
    uint64_t *mkey;       /* UINT64_MAX empty */
    tokcore_mval *mval;
    uint32_t mcap, mcount, n_merges;
    /* added tokens, and their order sorted by (first byte, length desc) */
    tokcore_added *added;
    int n_added;
    int *added_order;
    int added_first[257];
    /* pipeline */
    tokcore_norm norm[TOKCORE_MAX_STAGES];
    int n_norm;
    tokcore_pre pre[TOKCORE_MAX_STAGES];
    int n_pre;
    /* model */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    int32_t byte_id[256];
    /* decoding */
    int vocab_size;
    int32_t bos;
    tokcore_decode_cfg dc;
    char *piece_blob;
    size_t *piece_off;    /* [vocab_size + 1] */
};

const tokcore_mval *tokcore_merge_find(const tokcore *c, int32_t a,
                                       int32_t b);
pcre2_code *tokcore_regex(const char *pat, bool literal, char *err,
                          size_t errlen);
void tokcore_byte_map(uint32_t cp_of_byte[256]);

#endif
