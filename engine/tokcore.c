/* SPDX-License-Identifier: MIT */
/*
 * tokcore.c - shared tokenizer machinery (see tokcore.h for the pipeline).
 *
 * Data: tokens are stored by id; an open-addressing hash (FNV-1a, linear
 * probing) maps text to id. Merges live in a second open-addressing hash
 * keyed (left id, right id) -> (rank, merged id).
 *
 * The text between added tokens travels through the stages as a list of
 * spans over a byte buffer; each stage (normalizer, pre-tokenizer) writes a
 * fresh buffer, so stages never alias. Words then go through the BPE merge
 * loop: symbols in a doubly linked list and candidate pairs in a binary
 * heap, stale entries skipped when popped. RANK mode (Hugging Face BPE,
 * GPT-2) pops the lowest merge rank, SCORE mode (SentencePiece as llama.cpp
 * runs it) the best-scoring vocabulary piece; ties go to the leftmost pair.
 */
#include "tokcore.h"
#include "err.h"
#include "tokcore_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Vocabulary and merges                                                    */

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

int tokcore_new(tokcore_merge_mode mode, tokcore **ret)
{
    tokcore *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->mode = mode;
    c->unk_id = -1;
    c->bos = -1;
    for (int i = 0; i < 256; i++)
        c->byte_id[i] = -1;
    *ret = c;
    return 0;
}

void tokcore_free(void *p)
{
    tokcore *c = p;
    if (!c)
        return;
    for (int i = 0; i < c->id_cap; i++)
        free(c->text[i]);
    free(c->text);
    free(c->tlen);
    free(c->score);
    free(c->is_added);
    free(c->hash);
    free(c->mkey);
    free(c->mval);
    for (int i = 0; i < c->n_added; i++)
        free(c->added[i].text);
    free(c->added);
    free(c->added_order);
    for (int i = 0; i < c->n_norm; i++) {
        free(c->norm[i].a);
        free(c->norm[i].b);
        pcre2_code_free(c->norm[i].re);
    }
    for (int i = 0; i < c->n_pre; i++) {
        pcre2_code_free(c->pre[i].re);
        free(c->pre[i].repl);
    }
    free(c->piece_blob);
    free(c->piece_off);
    free(c);
}

static int hash_grow(tokcore *c)
{
    uint32_t cap = c->hash_cap ? c->hash_cap * 2 : 1024;
    int32_t *h = malloc(sizeof(*h) * cap);
    if (!h)
        return -ENOMEM;
    memset(h, 0xff, sizeof(*h) * cap);
    for (uint32_t i = 0; i < c->hash_cap; i++) {
        int32_t id = c->hash[i];
        if (id < 0)
            continue;
        uint32_t k = (uint32_t)fnv1a(c->text[id], c->tlen[id]) & (cap - 1);
        while (h[k] >= 0)
            k = (k + 1) & (cap - 1);
        h[k] = id;
    }
    free(c->hash);
    c->hash = h;
    c->hash_cap = cap;
    return 0;
}

int tokcore_vocab_size(const tokcore *c)
{
    return c->vocab_size;
}

int32_t tokcore_lookup(const tokcore *c, const char *s, size_t n)
{
    if (!c->hash_cap)
        return -1;
    uint32_t k = (uint32_t)fnv1a(s, n) & (c->hash_cap - 1);
    for (;;) {
        int32_t id = c->hash[k];
        if (id < 0)
            return -1;
        if (c->tlen[id] == n && memcmp(c->text[id], s, n) == 0)
            return id;
        k = (k + 1) & (c->hash_cap - 1);
    }
}

static int ids_reserve(tokcore *c, int32_t id)
{
    if (id < c->id_cap)
        return 0;
    int cap = c->id_cap ? c->id_cap : 1024;
    while (cap <= id)
        cap *= 2;
    char **t = realloc(c->text, sizeof(*t) * cap);
    if (t)
        c->text = t;
    uint32_t *l = realloc(c->tlen, sizeof(*l) * cap);
    if (l)
        c->tlen = l;
    float *s = realloc(c->score, sizeof(*s) * cap);
    if (s)
        c->score = s;
    bool *a = realloc(c->is_added, sizeof(*a) * cap);
    if (a)
        c->is_added = a;
    if (!t || !l || !s || !a)
        return -ENOMEM;
    for (int i = c->id_cap; i < cap; i++) {
        t[i] = NULL;
        l[i] = 0;
        s[i] = 0;
        a[i] = false;
    }
    c->id_cap = cap;
    return 0;
}

int tokcore_add_token(tokcore *c, const char *s, size_t n, int32_t id,
                      float score)
{
    if (id < 0 || id >= (1 << 30) || n > UINT32_MAX)
        return -EINVAL;
    if (ids_reserve(c, id) < 0)
        return -ENOMEM;
    if (c->text[id])
        return -EINVAL; /* id given twice */
    char *p = malloc(n + 1);
    if (!p)
        return -ENOMEM;
    memcpy(p, s, n);
    p[n] = '\0';
    c->text[id] = p;
    c->tlen[id] = (uint32_t)n;
    c->score[id] = score;
    if (id + 1 > c->n_ids)
        c->n_ids = id + 1;
    if (tokcore_lookup(c, s, n) >= 0)
        return 0; /* duplicate text: the first id keeps the lookup */
    if ((c->n_hashed + 1) * 2 > c->hash_cap && hash_grow(c) < 0)
        return -ENOMEM;
    uint32_t k = (uint32_t)fnv1a(s, n) & (c->hash_cap - 1);
    while (c->hash[k] >= 0)
        k = (k + 1) & (c->hash_cap - 1);
    c->hash[k] = id;
    c->n_hashed++;
    return 0;
}

static int merge_grow(tokcore *c)
{
    uint32_t cap = c->mcap ? c->mcap * 2 : 4096;
    uint64_t *key = malloc(sizeof(*key) * cap);
    tokcore_mval *val = malloc(sizeof(*val) * cap);
    if (!key || !val) {
        free(key);
        free(val);
        return -ENOMEM;
    }
    memset(key, 0xff, sizeof(*key) * cap);
    for (uint32_t i = 0; i < c->mcap; i++) {
        if (c->mkey[i] == UINT64_MAX)
            continue;
        uint32_t k = (uint32_t)mix64(c->mkey[i]) & (cap - 1);
        while (key[k] != UINT64_MAX)
            k = (k + 1) & (cap - 1);
        key[k] = c->mkey[i];
        val[k] = c->mval[i];
    }
    free(c->mkey);
    free(c->mval);
    c->mkey = key;
    c->mval = val;
    c->mcap = cap;
    return 0;
}

const tokcore_mval *tokcore_merge_find(const tokcore *c, int32_t a,
                                       int32_t b)
{
    if (!c->mcap)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t k = (uint32_t)mix64(key) & (c->mcap - 1);
    while (c->mkey[k] != UINT64_MAX) {
        if (c->mkey[k] == key)
            return &c->mval[k];
        k = (k + 1) & (c->mcap - 1);
    }
    return NULL;
}

int tokcore_add_merge(tokcore *c, const char *a, size_t alen, const char *b,
                      size_t blen)
{
    int32_t ia = tokcore_lookup(c, a, alen), ib = tokcore_lookup(c, b, blen);
    char stackbuf[256], *cat = stackbuf;
    if (ia < 0 || ib < 0)
        return -EINVAL;
    if (alen + blen > sizeof(stackbuf) && !(cat = malloc(alen + blen)))
        return -ENOMEM;
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int32_t inew = tokcore_lookup(c, cat, alen + blen);
    if (cat != stackbuf)
        free(cat);
    if (inew < 0)
        return -EINVAL;
    if ((c->mcount + 1) * 2 > c->mcap && merge_grow(c) < 0)
        return -ENOMEM;
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    uint32_t k = (uint32_t)mix64(key) & (c->mcap - 1);
    while (c->mkey[k] != UINT64_MAX && c->mkey[k] != key)
        k = (k + 1) & (c->mcap - 1);
    if (c->mkey[k] == UINT64_MAX)
        c->mcount++;
    /* a repeated pair takes the later rank, as Hugging Face's map does */
    c->mkey[k] = key;
    c->mval[k].rank = c->n_merges++;
    c->mval[k].id = inew;
    return 0;
}

int tokcore_add_added(tokcore *c, const char *content, int32_t id,
                      bool special, bool lstrip, bool rstrip,
                      bool single_word)
{
    size_t n = strlen(content);
    if (id < 0 || n == 0)
        return -EINVAL;
    if (ids_reserve(c, id) < 0)
        return -ENOMEM;
    tokcore_added *a = realloc(c->added, sizeof(*a) * (c->n_added + 1));
    if (!a)
        return -ENOMEM;
    c->added = a;
    a = &c->added[c->n_added];
    if (!(a->text = strdup(content)))
        return -ENOMEM;
    c->n_added++;
    a->len = n;
    a->id = id;
    a->special = special;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->single_word = single_word;
    c->is_added[id] = true;
    if (!c->text[id]) {
        int rc = tokcore_add_token(c, content, n, id, 0);
        if (rc < 0)
            return rc;
    }
    if (id + 1 > c->n_ids)
        c->n_ids = id + 1;
    return 0;
}

void tokcore_set_model(tokcore *c, bool byte_fallback, int32_t unk_id,
                       bool fuse_unk, bool ignore_merges)
{
    c->byte_fallback = byte_fallback;
    c->unk_id = unk_id;
    c->fuse_unk = fuse_unk;
    c->ignore_merges = ignore_merges;
}

/* ------------------------------------------------------------------------ */
/* Pipeline configuration                                                   */

pcre2_code *tokcore_regex(const char *pat, bool literal, char *err,
                          size_t errlen)
{
    int ec;
    PCRE2_SIZE eo;
    /* $ means the end of the piece (as in llama.cpp's std::regex use) */
    uint32_t opt = PCRE2_UTF; /* patterns come from files: check them */
    opt |= literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_DOLLAR_ENDONLY;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   opt, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        eng_err(err, errlen, "regex error at %zu: %s", (size_t)eo,
                (char *)msg);
        return NULL;
    }
    /* JIT is an optimisation only; without it matching still works */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

int tokcore_add_normalizer(tokcore *c, tokcore_norm_kind k, const char *a,
                           const char *b, bool is_regex, char *err,
                           size_t errlen)
{
    if (c->n_norm == TOKCORE_MAX_STAGES) {
        eng_err(err, errlen, "too many normalizers");
        return -EINVAL;
    }
    tokcore_norm *n = &c->norm[c->n_norm];
    memset(n, 0, sizeof(*n));
    n->k = k;
    if ((a && !(n->a = strdup(a))) || (b && !(n->b = strdup(b))))
        goto nomem;
    if (k == TOKCORE_NORM_REPLACE) {
        if (!a || !b || !*a) {
            eng_err(err, errlen, "Replace normalizer without pattern");
            goto bad;
        }
        if (!(n->re = tokcore_regex(a, !is_regex, err, errlen)))
            goto bad;
    }
    if (k == TOKCORE_NORM_PREPEND && !a) {
        eng_err(err, errlen, "Prepend normalizer without text");
        goto bad;
    }
    c->n_norm++;
    return 0;
nomem:
    free(n->a);
    free(n->b);
    return -ENOMEM;
bad:
    free(n->a);
    free(n->b);
    return -EINVAL;
}

static tokcore_pre *pre_new(tokcore *c, tokcore_pre_kind k)
{
    if (c->n_pre == TOKCORE_MAX_STAGES)
        return NULL;
    tokcore_pre *p = &c->pre[c->n_pre];
    memset(p, 0, sizeof(*p));
    p->k = k;
    return p;
}

int tokcore_add_split(tokcore *c, const char *pattern, bool is_regex,
                      tokcore_split_behavior b, bool invert, char *err,
                      size_t errlen)
{
    tokcore_pre *p = pre_new(c, TOKCORE_PRE_SPLIT);
    if (!p) {
        eng_err(err, errlen, "too many pre-tokenizers");
        return -EINVAL;
    }
    if (!(p->re = tokcore_regex(pattern, !is_regex, err, errlen)))
        return -EINVAL;
    p->beh = b;
    p->invert = invert;
    c->n_pre++;
    return 0;
}

int tokcore_add_bytelevel(tokcore *c, bool add_prefix_space, bool use_regex,
                          char *err, size_t errlen)
{
    tokcore_pre *p = pre_new(c, TOKCORE_PRE_BYTELEVEL);
    if (!p) {
        eng_err(err, errlen, "too many pre-tokenizers");
        return -EINVAL;
    }
    if (use_regex &&
        !(p->re = tokcore_regex(TOKCORE_GPT2_REGEX, false, err, errlen)))
        return -EINVAL;
    p->add_prefix_space = add_prefix_space;
    c->n_pre++;
    return 0;
}

int tokcore_add_metaspace(tokcore *c, const char *replacement,
                          tokcore_prepend_scheme scheme, bool split)
{
    tokcore_pre *p = pre_new(c, TOKCORE_PRE_METASPACE);
    if (!p || !replacement || !*replacement)
        return -EINVAL;
    if (!(p->repl = strdup(replacement)))
        return -ENOMEM;
    p->scheme = scheme;
    p->split = split;
    c->n_pre++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Finishing: byte tokens, added-token index, decoded pieces                */

/* GPT-2's byte <-> unicode table: printable Latin-1 bytes map to
 * themselves, the other 68 bytes to U+0100.. in byte order. */
void tokcore_byte_map(uint32_t cp_of_byte[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
                    (b >= 0xae && b <= 0xff);
        cp_of_byte[b] = keep ? (uint32_t)b : 256u + (uint32_t)n++;
    }
}

static int cmp_added(const void *pa, const void *pb, void *arg)
{
    const tokcore_added *ad = arg;
    const tokcore_added *x = &ad[*(const int *)pa], *y = &ad[*(const int *)pb];
    unsigned char fx = (unsigned char)x->text[0], fy = (unsigned char)y->text[0];
    if (fx != fy)
        return fx < fy ? -1 : 1;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1; /* longest first */
    return *(const int *)pa - *(const int *)pb;
}

/* Decoded bytes of token id into buf (cap >= 4 * len + 8). */
static size_t decode_token(const tokcore *c, int32_t id, char *buf,
                           const int16_t *byte_of_cp)
{
    const char *t = c->text[id];
    size_t n = c->tlen[id];
    if (!t)
        return 0;
    if (c->is_added[id]) {
        memcpy(buf, t, n);
        return n;
    }
    if (c->dc.byte_fallback && n == 6 && !memcmp(t, "<0x", 3) && t[5] == '>') {
        unsigned v;
        if (sscanf(t + 3, "%2x", &v) == 1) {
            buf[0] = (char)v;
            return 1;
        }
    }
    if (c->dc.byte_level) {
        size_t o = 0, i = 0;
        while (i < n) {
            int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)t + i,
                                                  (utf8proc_ssize_t)(n - i),
                                                  &cp);
            if (k <= 0 || cp >= 324 || byte_of_cp[cp] < 0) {
                memcpy(buf, t, n); /* not byte-level text: raw bytes */
                return n;
            }
            buf[o++] = (char)byte_of_cp[cp];
            i += (size_t)k;
        }
        return o;
    }
    if (c->dc.metaspace) {
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(t + i, "\xe2\x96\x81", 3)) {
                buf[o++] = ' ';
                i += 3;
            } else {
                buf[o++] = t[i++];
            }
        }
        return o;
    }
    memcpy(buf, t, n);
    return n;
}

static int build_pieces(tokcore *c)
{
    uint32_t cp_of_byte[256];
    int16_t byte_of_cp[324];
    tokcore_byte_map(cp_of_byte);
    for (int i = 0; i < 324; i++)
        byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++)
        byte_of_cp[cp_of_byte[b]] = (int16_t)b;
    size_t total = 0;
    for (int id = 0; id < c->n_ids; id++)
        total += c->tlen[id] + 1;
    c->piece_blob = malloc(total + 1);
    c->piece_off = malloc(sizeof(*c->piece_off) * ((size_t)c->vocab_size + 1));
    if (!c->piece_blob || !c->piece_off)
        return -ENOMEM;
    size_t o = 0;
    for (int id = 0; id < c->vocab_size; id++) {
        c->piece_off[id] = o;
        if (id < c->n_ids)
            o += decode_token(c, id, c->piece_blob + o, byte_of_cp);
    }
    c->piece_off[c->vocab_size] = o;
    return 0;
}

int tokcore_finish(tokcore *c, int vocab_size, int32_t bos,
                   const tokcore_decode_cfg *dc, char *err, size_t errlen)
{
    if (vocab_size < c->n_ids)
        vocab_size = c->n_ids;
    if (vocab_size <= 0) {
        eng_err(err, errlen, "empty vocabulary");
        return -EINVAL;
    }
    if (ids_reserve(c, vocab_size) < 0)
        return -ENOMEM;
    c->vocab_size = vocab_size;
    c->bos = bos;
    c->dc = *dc;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof(name), "<0x%02X>", b);
        c->byte_id[b] = tokcore_lookup(c, name, 6);
    }
    if (c->n_added) {
        c->added_order = malloc(sizeof(int) * c->n_added);
        if (!c->added_order)
            return -ENOMEM;
        for (int i = 0; i < c->n_added; i++)
            c->added_order[i] = i;
        qsort_r(c->added_order, c->n_added, sizeof(int), cmp_added, c->added);
        for (int b = 0; b < 257; b++)
            c->added_first[b] = c->n_added;
        for (int i = c->n_added - 1; i >= 0; i--)
            c->added_first[(unsigned char)c->added[c->added_order[i]].text[0]] = i;
        for (int b = 255; b >= 0; b--)
            if (c->added_first[b] == c->n_added)
                c->added_first[b] = c->added_first[b + 1];
    }
    return build_pieces(c);
}
