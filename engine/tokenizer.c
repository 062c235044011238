/* SPDX-License-Identifier: MIT */
/*
 * tokenizer.c - the public eng_tokenizer_* front end over the backend vtable
 * in tokenizer.h.
 *
 * Backends (llama2.c tokenizer.bin here; Hugging Face tokenizer.json and
 * GGUF metadata elsewhere) only turn text into ids and ids into bytes. The
 * things every backend would otherwise repeat live here: UTF-8 validation
 * of the input (so backends may assume well-formed text), BOS handling, id
 * range checks, the refcount, and whole-sequence decoding.
 */
#include "tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

eng_tokenizer *eng_tokenizer_wrap(const eng_tok_ops *ops, void *impl,
                                  int vocab_size, int32_t bos, int32_t eos)
{
    eng_tokenizer *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    atomic_init(&t->refs, 1);
    t->ops = ops;
    t->impl = impl;
    t->vocab_size = vocab_size;
    t->bos_id = bos;
    t->eos_id = eos;
    t->add_bos_default = bos >= 0;
    return t;
}

eng_tokenizer *eng_tokenizer_ref(eng_tokenizer *t)
{
    if (t)
        atomic_fetch_add(&t->refs, 1);
    return t;
}

void eng_tokenizer_unref(eng_tokenizer *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    if (t->ops && t->ops->free_impl)
        t->ops->free_impl(t->impl);
    free(t->chat_template);
    free(t);
}

int eng_tokenizer_vocab_size(const eng_tokenizer *t) { return t->vocab_size; }
int32_t eng_tokenizer_bos(const eng_tokenizer *t) { return t->bos_id; }
const char *eng_tokenizer_chat_template(const eng_tokenizer *t)
{
    return t ? t->chat_template : NULL;
}
int32_t eng_tokenizer_eos(const eng_tokenizer *t) { return t->eos_id; }

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF, no truncated sequence at the end. NUL is valid text (backends
 * work on byte spans, never on C strings). */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (len - i - 1 < n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += n + 1;
    }
    return true;
}

int eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len,
                         bool add_bos, bool parse_special, int32_t *ids,
                         int cap, int *ret_n)
{
    int pre = 0, n = 0, rc;

    if (!t || (!text && len) || cap < 0 || (!ids && cap))
        return -EINVAL;
    /* Counts are int: keep every possible token count representable. */
    if (len > INT_MAX / 2 || !utf8_valid((const unsigned char *)text, len))
        return -EINVAL;
    if (add_bos && t->bos_id >= 0) {
        if (cap > 0)
            ids[0] = t->bos_id;
        pre = 1;
    }
    if (len) {
        int sub = cap > pre ? cap - pre : 0;

        rc = t->ops->encode(t, text, len, parse_special, sub ? ids + pre : NULL,
                            sub, &n);
        if (rc)
            return rc;
    }
    *ret_n = pre + n;
    return 0;
}

int eng_tokenizer_piece(const eng_tokenizer *t, int32_t prev, int32_t id,
                        const char **ret_bytes)
{
    if (!t || id < 0 || id >= t->vocab_size)
        return -EINVAL;
    return t->ops->piece(t, prev, id, ret_bytes);
}

int eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, int n,
                         char **ret_text)
{
    size_t len = 0, cap = 64;
    char *buf = malloc(cap), *tmp;
    int32_t prev = -1;

    if (!buf)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        const char *p;
        int k = eng_tokenizer_piece(t, prev, ids[i], &p);

        if (k < 0) {
            free(buf);
            return k;
        }
        if (len + k + 1 > cap) {
            while (len + k + 1 > cap)
                cap *= 2;
            tmp = realloc(buf, cap);
            if (!tmp) {
                free(buf);
                return -ENOMEM;
            }
            buf = tmp;
        }
        memcpy(buf + len, p, k);
        len += k;
        prev = ids[i];
    }
    buf[len] = '\0';
    *ret_text = buf;
    return 0;
}
