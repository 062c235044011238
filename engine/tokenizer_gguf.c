/* SPDX-License-Identifier: MIT */
/*
 * tokenizer_gguf.c - tokenizer from GGUF metadata (tokenizer.ggml.*), built
 * on tokcore and made to tokenize as llama.cpp does for the same file.
 *
 *  - model "llama": SentencePiece BPE. tokens + scores; pieces merge by
 *    best score (TOKCORE_MERGE_SCORE); characters that end up in no piece
 *    become <0xNN> byte tokens. " " is written U+2581 and, when
 *    tokenizer.ggml.add_space_prefix (default true), U+2581 is put before
 *    every stretch of text (at the start and after each special token), as
 *    llama.cpp does.
 *  - model "gpt2": byte-level BPE with tokenizer.ggml.merges ("a b"
 *    strings). tokenizer.ggml.pre names the regex list that splits text
 *    into words (eng_gguf_pre_regexes); each regex splits the pieces of the
 *    previous one and the gaps between matches stay pieces.
 *  - token_type: CONTROL (3) and UNKNOWN (2) tokens are special (matched in
 *    text only when parse_special), USER_DEFINED (4) tokens are always
 *    matched before the model, as llama.cpp's special-token partition does.
 *  - bos/eos/unknown ids, add_bos_token, and tokenizer.chat_template.
 */
#include "tokenizer_gguf.h"
#include "err.h"
#include "tokcore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4,
       TT_UNUSED = 5, TT_BYTE = 6 };

#define GPT2_RE \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define LLAMA3_RE \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|" \
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RE \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|" \
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const char *const re_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]", NULL,
};
static const char *const re_gpt2[] = { GPT2_RE, NULL };
static const char *const re_llama3[] = { LLAMA3_RE, NULL };
static const char *const re_qwen2[] = { QWEN2_RE, NULL };
static const char *const re_starcoder[] = { "\\p{N}", GPT2_RE, NULL };
static const char *const re_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_RE, "[0-9][0-9][0-9]", NULL,
};
static const char *const re_deepseek_coder[] = {
    "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}", NULL,
};
static const char *const re_deepseek_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"
    "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-"
    "\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"
    "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
    "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-"
    "\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-"
    "\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-"
    "\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-"
    "\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-"
    "\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}"
    "-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
    "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"
    "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}"
    "\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-"
    "\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}"
    "-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
    "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-"
    "\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-"
    "\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-"
    "\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-"
    "\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-"
    "\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-"
    "\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-"
    "\\x{118DF}\\x{1E900}-\\x{1E943}]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
    NULL,
};

static const struct {
    const char *name;
    const char *const *re;
    bool ignore_merges;
} pre_table[] = {
    { "default", re_default, false },
    { "llama3", re_llama3, true },
    { "llama-v3", re_llama3, true },
    { "llama-bpe", re_llama3, true },
    { "falcon3", re_llama3, true },
    { "dbrx", re_llama3, false },
    { "smaug-bpe", re_llama3, false },
    { "deepseek-llm", re_deepseek_llm, false },
    { "deepseek-coder", re_deepseek_coder, false },
    { "falcon", re_falcon, false },
    { "gpt-2", re_gpt2, false },
    { "mpt", re_gpt2, false },
    { "olmo", re_gpt2, false },
    { "jais", re_gpt2, false },
    { "phi-2", re_gpt2, false },
    { "starcoder", re_starcoder, false },
    { "refact", re_starcoder, false },
    { "command-r", re_starcoder, false },
    { "smollm", re_starcoder, false },
    { "codeshell", re_starcoder, false },
    { "exaone", re_starcoder, false },
    { "qwen2", re_qwen2, false },
    { "deepseek-r1-qwen", re_qwen2, false },
    { "stablelm2", re_qwen2, false },
};

const char *const *eng_gguf_pre_regexes(const char *pre, bool *ignore_merges)
{
    for (size_t i = 0; i < sizeof(pre_table) / sizeof(pre_table[0]); i++)
        if (strcmp(pre, pre_table[i].name) == 0) {
            *ignore_merges = pre_table[i].ignore_merges;
            return pre_table[i].re;
        }
    return NULL;
}

static int32_t get_id(const gguf_meta *m, const char *key, int64_t n)
{
    int64_t v;
    if (gguf_meta_get_i64(m, key, &v) < 0 || v < 0 || v >= n)
        return -1;
    return (int32_t)v;
}

static bool get_bool(const gguf_meta *m, const char *key, bool dflt)
{
    bool b;
    return gguf_meta_get_bool(m, key, &b) == 0 ? b : dflt;
}

/* Vocabulary, scores and token types; special tokens become added ones. */
static int load_vocab(tokcore *c, const gguf_meta *m, const gguf_kv *tok,
                      bool spm, char *err, size_t errlen)
{
    const gguf_kv *sc = NULL, *tt = NULL;
    gguf_meta_get_arr(m, "tokenizer.ggml.scores", GGUF_TYPE_COUNT, &sc);
    gguf_meta_get_arr(m, "tokenizer.ggml.token_type", GGUF_TYPE_COUNT, &tt);
    if ((sc && (sc->n != tok->n || !gguf_type_size(sc->arr_type))) ||
        (tt && (tt->n != tok->n || !gguf_type_size(tt->arr_type)))) {
        eng_err(err, errlen, "GGUF scores/token_type do not match the tokens");
        return -EINVAL;
    }
    if (spm && !sc) {
        eng_err(err, errlen, "GGUF llama tokenizer without scores");
        return -EINVAL;
    }
    gguf_str *s = malloc(sizeof(*s) * (tok->n ? tok->n : 1));
    if (!s)
        return -ENOMEM;
    int rc = gguf_arr_strings(tok, s);
    for (uint64_t i = 0; !rc && i < tok->n; i++) {
        float score = sc ? (float)gguf_arr_f64(sc, i) : 0.0f;
        int64_t type = tt ? gguf_arr_i64(tt, i) : TT_NORMAL;
        rc = tokcore_add_token(c, s[i].ptr, s[i].len, (int32_t)i, score);
        if (rc || !(type == TT_CONTROL || type == TT_UNKNOWN ||
                    type == TT_USER) || s[i].len == 0)
            continue;
        char *txt = gguf_str_dup(s[i]);
        if (!txt) {
            rc = -ENOMEM;
            break;
        }
        if (strlen(txt) == s[i].len)
            rc = tokcore_add_added(c, txt, (int32_t)i, type != TT_USER,
                                   false, false, false);
        free(txt);
    }
    free(s);
    if (rc)
        eng_err(err, errlen, "bad GGUF vocabulary");
    return rc;
}

static int load_merges(tokcore *c, const gguf_meta *m, char *err,
                       size_t errlen)
{
    const gguf_kv *mk;
    if (gguf_meta_get_arr(m, "tokenizer.ggml.merges", GGUF_TYPE_STRING,
                          &mk) < 0) {
        eng_err(err, errlen, "GGUF gpt2 tokenizer without merges");
        return -EINVAL;
    }
    gguf_str *s = malloc(sizeof(*s) * (mk->n ? mk->n : 1));
    if (!s)
        return -ENOMEM;
    int rc = gguf_arr_strings(mk, s);
    for (uint64_t i = 0; !rc && i < mk->n; i++) {
        const char *sp = s[i].len > 1 ? memchr(s[i].ptr + 1, ' ', s[i].len - 1)
                                      : NULL;
        if (!sp) {
            rc = -EINVAL;
            break;
        }
        size_t a = (size_t)(sp - s[i].ptr);
        rc = tokcore_add_merge(c, s[i].ptr, a, sp + 1, s[i].len - a - 1);
        if (rc == -EINVAL)
            rc = 0; /* llama.cpp skips merges it cannot resolve */
    }
    if (rc)
        eng_err(err, errlen, "bad GGUF merge %s", rc == -ENOMEM ? "(no memory)" : "");
    free(s);
    return rc;
}

static int setup_pipeline(tokcore *c, const gguf_meta *m, bool spm,
                          tokcore_decode_cfg *dc, char *err, size_t errlen)
{
    memset(dc, 0, sizeof(*dc));
    if (spm) {
        bool prefix = get_bool(m, "tokenizer.ggml.add_space_prefix", true);
        int rc = 0;
        if (prefix)
            rc = tokcore_add_normalizer(c, TOKCORE_NORM_PREPEND, "\xe2\x96\x81",
                                        NULL, false, err, errlen);
        if (!rc)
            rc = tokcore_add_normalizer(c, TOKCORE_NORM_REPLACE, " ",
                                        "\xe2\x96\x81", false, err, errlen);
        tokcore_set_model(c, true, get_id(m, "tokenizer.ggml.unknown_token_id",
                                          INT32_MAX), false, false);
        dc->metaspace = dc->byte_fallback = true;
        dc->strip_leading = prefix;
        return rc;
    }
    char name[64] = "default";
    gguf_str pre;
    if (gguf_meta_get_str(m, "tokenizer.ggml.pre", &pre) == 0 &&
        pre.len < sizeof(name)) {
        memcpy(name, pre.ptr, pre.len);
        name[pre.len] = '\0';
    }
    bool ignore_merges = false;
    const char *const *re = eng_gguf_pre_regexes(name, &ignore_merges);
    if (!re) {
        eng_err(err, errlen, "unsupported tokenizer.ggml.pre \"%s\"", name);
        return -EINVAL;
    }
    for (; *re; re++) {
        int rc = tokcore_add_split(c, *re, true, TOKCORE_SPLIT_ISOLATED, false,
                                   err, errlen);
        if (rc)
            return rc;
    }
    tokcore_set_model(c, false, -1, false, ignore_merges);
    dc->byte_level = true;
    return tokcore_add_bytelevel(c, false, false, err, errlen);
}

int eng_tokenizer_from_gguf(const gguf_meta *m, eng_tokenizer **ret_tok,
                            char *err, size_t errlen)
{
    gguf_str model;
    const gguf_kv *tok;
    tokcore *c = NULL;
    eng_tokenizer *t = NULL;
    tokcore_decode_cfg dc;
    int rc = -EINVAL;

    if (gguf_meta_get_str(m, "tokenizer.ggml.model", &model) < 0 ||
        gguf_meta_get_arr(m, "tokenizer.ggml.tokens", GGUF_TYPE_STRING,
                          &tok) < 0 || tok->n == 0 || tok->n > (1u << 30)) {
        eng_err(err, errlen, "GGUF file has no tokenizer");
        return -EINVAL;
    }
    bool spm = gguf_str_eq(model, "llama");
    if (!spm && !gguf_str_eq(model, "gpt2")) {
        eng_err(err, errlen, "unsupported tokenizer.ggml.model \"%.*s\"",
                (int)(model.len > 32 ? 32 : model.len), model.ptr);
        return -EINVAL;
    }
    if ((rc = tokcore_new(spm ? TOKCORE_MERGE_SCORE : TOKCORE_MERGE_RANK,
                          &c)) < 0)
        return rc;
    int n = (int)tok->n;
    int32_t bos = get_id(m, "tokenizer.ggml.bos_token_id", n);
    int32_t eos = get_id(m, "tokenizer.ggml.eos_token_id", n);
    if ((rc = load_vocab(c, m, tok, spm, err, errlen)) < 0 ||
        (!spm && (rc = load_merges(c, m, err, errlen)) < 0) ||
        (rc = setup_pipeline(c, m, spm, &dc, err, errlen)) < 0 ||
        (rc = tokcore_finish(c, n, bos, &dc, err, errlen)) < 0)
        goto out;
    t = eng_tokenizer_wrap(&tokcore_ops, c, n, bos, eos);
    if (!t) {
        rc = -ENOMEM;
        goto out;
    }
    c = NULL; /* owned by t */
    t->add_bos_default = bos >= 0 &&
                         get_bool(m, "tokenizer.ggml.add_bos_token", spm);
    gguf_str tmpl;
    if (gguf_meta_get_str(m, "tokenizer.chat_template", &tmpl) == 0 &&
        !(t->chat_template = gguf_str_dup(tmpl))) {
        rc = -ENOMEM;
        goto out;
    }
    *ret_tok = t;
    t = NULL;
    rc = 0;
out:
    eng_tokenizer_unref(t);
    tokcore_free(c);
    return rc;
}

int eng_tokenizer_load_gguf(const char *path, eng_tokenizer **ret_tok,
                            char *err, size_t errlen)
{
    gguf_meta *m;
    int rc = gguf_meta_open(path, &m, err, errlen);
    if (rc < 0)
        return rc;
    rc = eng_tokenizer_from_gguf(m, ret_tok, err, errlen);
    gguf_meta_free(m);
    return rc;
}
