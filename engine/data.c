/* SPDX-License-Identifier: MIT */
/*
 * data.c - training records to token sequences with loss masks, and Tuna's
 * default chat template.
 *
 * Every record kind becomes one text plus the byte spans that carry loss:
 *   text        the text; span = all of it; EOS appended (loss on it)
 *   completion  prompt + completion joined with nothing in between (the
 *               user writes any separator); span = the completion; EOS
 *               appended (loss on it)
 *   chat        the default template below; spans = each assistant reply
 *               with its end marker; EOS appended when the last turn is the
 *               assistant's
 * The text is encoded once, with BOS when the tokenizer wants one. Encoding
 * the whole string (rather than prompt and completion apart) gives exactly
 * the tokens the model sees at inference when it continues the prompt, and
 * avoids the second SentencePiece dummy space a separate encoding of the
 * completion would add. A token gets loss when its bytes overlap a span:
 * each token's bytes are found by decoding it piece by piece and checking
 * the pieces spell the text. At a clean boundary this is the same as
 * "everything after the prompt's own token count"; when a token straddles
 * the boundary (prompt "Hel", completion "lo"), it carries completion text,
 * so the model must learn to produce it and it gets loss. Tokenizers whose
 * pieces do not spell the input (normalising ones) fall back to counting
 * the tokens of each span's prefix encoded alone.
 *
 * Default chat template (docs/chat-template.md), for models without one:
 *
 *   <|system|>\n{content}<|end|>\n
 *   <|user|>\n{content}<|end|>\n
 *   <|assistant|>\n{content}<|end|>\n
 *   ... and with add_generation_prompt a final "<|assistant|>\n".
 *
 * Plain-text markers, so any byte-level tokenizer (even the 512-token
 * stories one) encodes them; generation stops on the stop string "<|end|>".
 * Loss covers each assistant {content}<|end|>.
 */
#include "chat_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAT_END "<|end|>"

typedef struct span {
    size_t start, end; /* bytes [start, end) of the text carry loss */
} span;

void eng_example_done(eng_example *ex)
{
    if (!ex)
        return;
    free(ex->ids);
    free(ex->mask);
    ex->ids = NULL;
    ex->mask = NULL;
    ex->n = 0;
}

/* ------------------------------------------------------------------------ */
/* Chat template                                                             */

static bool role_ok(const char *r)
{
    return r && (!strcmp(r, "system") || !strcmp(r, "user") ||
                 !strcmp(r, "assistant") || !strcmp(r, "tool"));
}

/* Renders into a malloc'd string; spans (n entries, may be NULL) get the
 * bytes of each assistant reply plus its end marker. */
static int chat_render(const eng_message *msgs, int n, bool add_gen,
                       char **ret_text, size_t *ret_len, span *spans,
                       int *ret_n_spans)
{
    size_t len = 0, cap = 64;
    int ns = 0;
    char *buf;

    if (n < 0 || (n && !msgs))
        return -EINVAL;
    for (int i = 0; i < n; i++) {
        if (!role_ok(msgs[i].role))
            return -EINVAL;
        cap += strlen(msgs[i].role) + (msgs[i].content ? strlen(msgs[i].content)
                                                        : 0) + 32;
    }
    buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        const char *c = msgs[i].content ? msgs[i].content : "";
        bool assistant = !strcmp(msgs[i].role, "assistant");
        size_t start;

        len += (size_t)sprintf(buf + len, "<|%s|>\n", msgs[i].role);
        start = len;
        memcpy(buf + len, c, strlen(c));
        len += strlen(c);
        memcpy(buf + len, CHAT_END, sizeof(CHAT_END) - 1);
        len += sizeof(CHAT_END) - 1;
        if (assistant && spans)
            spans[ns++] = (span){ start, len };
        buf[len++] = '\n';
    }
    if (add_gen)
        len += (size_t)sprintf(buf + len, "<|assistant|>\n");
    buf[len] = '\0';
    *ret_text = buf;
    if (ret_len)
        *ret_len = len;
    if (ret_n_spans)
        *ret_n_spans = ns;
    return 0;
}

int eng_chat_render_default(const eng_message *msgs, int n,
                            bool add_generation_prompt, char **ret_text)
{
    return chat_render(msgs, n, add_generation_prompt, ret_text, NULL, NULL,
                       NULL);
}

/* ------------------------------------------------------------------------ */
/* Tokens and masks                                                          */

/* How a text is encoded: BOS or not, special-token text parsed or not. */
typedef struct enc_opts {
    bool add_bos;
    bool parse_special;
} enc_opts;

static int encode_alloc(const eng_tokenizer *t, const char *text, size_t len,
                        enc_opts eo, int extra, int32_t **ret_ids, int *ret_n)
{
    int cap = (int)(len < 1u << 28 ? len : 1u << 28) + 4 + extra, n = 0, rc;
    int32_t *ids;

    for (;;) {
        ids = malloc((size_t)cap * sizeof(*ids));
        if (!ids)
            return -ENOMEM;
        rc = eng_tokenizer_encode(t, text, len, eo.add_bos, eo.parse_special,
                                  ids, cap - extra, &n);
        if (rc || n <= cap - extra)
            break;
        free(ids);
        cap = n + extra;
    }
    if (rc) {
        free(ids);
        return rc;
    }
    *ret_ids = ids;
    *ret_n = n;
    return 0;
}

/* Marks tokens whose decoded bytes overlap a span. Returns -EIO when the
 * pieces do not spell the text (the caller then falls back). */
static int mask_by_offsets(const eng_tokenizer *t, const char *text,
                           size_t len, const int32_t *ids, int n, int first,
                           const span *sp, int ns, uint8_t *mask)
{
    size_t off = 0;
    int32_t prev = first > 0 ? ids[first - 1] : -1;

    for (int i = first; i < n; i++) {
        const char *p;
        int k = eng_tokenizer_piece(t, prev, ids[i], &p);

        if (k < 0 || (size_t)k > len - off || memcmp(text + off, p, k))
            return -EIO;
        mask[i] = 0;
        for (int s = 0; s < ns && k > 0; s++)
            if (off < sp[s].end && off + k > sp[s].start)
                mask[i] = 1;
        off += k;
        prev = ids[i];
    }
    if (off != len)
        return -EIO;
    /* A token that decodes to nothing here (SentencePiece's dummy space
     * right after BOS) is part of producing the next token's text, so it
     * shares that token's mask. */
    for (int i = n - 2; i >= first; i--) {
        const char *p;

        if (eng_tokenizer_piece(t, i > 0 ? ids[i - 1] : -1, ids[i], &p) == 0)
            mask[i] = mask[i + 1];
    }
    return 0;
}

/* Fallback: a span covers tokens [count(prefix before it), count(prefix
 * through it)). */
static int mask_by_prefixes(const eng_tokenizer *t, const char *text, int n,
                            enc_opts eo, const span *sp, int ns,
                            uint8_t *mask)
{
    if (n > 0)
        memset(mask, 0, (size_t)n);
    for (int s = 0; s < ns; s++) {
        int a = 0, b = 0, rc;

        if ((rc = eng_tokenizer_encode(t, text, sp[s].start, eo.add_bos,
                                       eo.parse_special, NULL, 0, &a)) ||
            (rc = eng_tokenizer_encode(t, text, sp[s].end, eo.add_bos,
                                       eo.parse_special, NULL, 0, &b)))
            return rc;
        for (int i = a; i < b && i < n; i++)
            mask[i] = 1;
    }
    return 0;
}

/* Encodes text (+ EOS) and builds the mask; truncates to max_len. */
static int tokenize_masked_eo(const eng_tokenizer *t, const char *text,
                              size_t len, enc_opts eo, const span *sp,
                              int ns, bool add_eos, int max_len,
                              eng_example *ret)
{
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int n = 0, first, rc;

    add_eos = add_eos && t->eos_id >= 0;
    if ((rc = encode_alloc(t, text, len, eo, 1, &ids, &n)))
        return rc;
    mask = malloc((size_t)n + 1);
    if (!mask) {
        rc = -ENOMEM;
        goto out;
    }
    first = n > 0 && eo.add_bos && t->bos_id >= 0 && ids[0] == t->bos_id;
    if (mask_by_offsets(t, text, len, ids, n, first, sp, ns, mask) &&
        (rc = mask_by_prefixes(t, text, n, eo, sp, ns, mask)))
        goto out;
    if (first)
        mask[0] = 0; /* nothing predicts the first token */
    if (add_eos) {
        ids[n] = t->eos_id;
        mask[n++] = 1;
    }
    ret->truncated = max_len > 0 && n > max_len;
    ret->n = ret->truncated ? max_len : n;
    ret->ids = ids;
    ret->mask = mask;
    ids = NULL;
    mask = NULL;
out:
    free(ids);
    free(mask);
    return rc;
}

static int tokenize_masked(const eng_tokenizer *t, const char *text,
                           size_t len, const span *sp, int ns, bool add_eos,
                           int max_len, eng_example *ret)
{
    enc_opts eo = { t->add_bos_default, false };

    return tokenize_masked_eo(t, text, len, eo, sp, ns, add_eos, max_len, ret);
}

static int from_completion(const eng_tokenizer *t, const eng_record *rec,
                           int max_len, eng_example *ret)
{
    const char *p = rec->prompt ? rec->prompt : "";
    const char *c = rec->completion ? rec->completion : "";
    size_t lp = strlen(p), lc = strlen(c);
    char *text = malloc(lp + lc + 1);
    span sp = { lp, lp + lc };
    int rc;

    if (!text)
        return -ENOMEM;
    memcpy(text, p, lp);
    memcpy(text + lp, c, lc + 1);
    rc = tokenize_masked(t, text, lp + lc, &sp, 1, true, max_len, ret);
    free(text);
    return rc;
}

static int from_chat(const eng_tokenizer *t, const eng_record *rec,
                     int max_len, eng_example *ret)
{
    span *sp;
    char *text = NULL;
    size_t len = 0;
    int ns = 0, rc;
    bool last_assistant;

    if (rec->n_messages <= 0 || !rec->messages)
        return -EINVAL;
    sp = malloc((size_t)rec->n_messages * sizeof(*sp));
    if (!sp)
        return -ENOMEM;
    rc = chat_render(rec->messages, rec->n_messages, false, &text, &len, sp,
                     &ns);
    last_assistant = rc == 0 &&
        !strcmp(rec->messages[rec->n_messages - 1].role, "assistant");
    if (!rc)
        rc = tokenize_masked(t, text, len, sp, ns, last_assistant, max_len,
                             ret);
    free(text);
    free(sp);
    return rc;
}

int eng_example_from_record(const eng_tokenizer *t, const eng_record *rec,
                            int max_len, eng_example *ret)
{
    eng_example ex = { 0 };
    int rc;

    if (!t || !rec || !ret)
        return -EINVAL;
    switch (rec->kind) {
    case ENG_REC_COMPLETION:
        if (!rec->prompt && !rec->completion)
            return -EINVAL;
        rc = from_completion(t, rec, max_len, &ex);
        break;
    case ENG_REC_CHAT:
        /* The model's own template when it has one that renders this
         * conversation; Tuna's default otherwise. */
        rc = t->chat_template
                 ? eng_example_from_chat_template(t, t->chat_template, rec,
                                                  max_len, &ex, NULL, 0)
                 : -EINVAL;
        if (rc == -EINVAL)
            rc = from_chat(t, rec, max_len, &ex);
        break;
    case ENG_REC_TEXT: {
        span sp = { 0, rec->text ? strlen(rec->text) : 0 };

        if (!rec->text)
            return -EINVAL;
        rc = tokenize_masked(t, rec->text, sp.end, &sp, 1, true, max_len, &ex);
        break;
    }
    default:
        return -EINVAL;
    }
    if (!rc)
        *ret = ex;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Model chat templates                                                      */

static int render_first(const eng_tokenizer *t, const char *tmpl,
                        const eng_record *rec, int n, bool add_gen,
                        char **ret, char *err, size_t errlen)
{
    eng_chat_params p;
    char bos[128], eos[128];

    eng_chat_params_default(&p);
    p.add_generation_prompt = add_gen;
    p.bos_token = eng_chat_token_text(t, t->bos_id, bos, sizeof bos);
    p.eos_token = eng_chat_token_text(t, t->eos_id, eos, sizeof eos);
    return eng_chat_template_render(tmpl, rec->messages, n, &p, ret, err,
                                    errlen);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The span of assistant turn i in the full text: what the template adds
 * after the generation prompt, when rendering is prefix-stable; else the
 * turn's content found after *cursor. */
static int turn_span(const eng_tokenizer *t, const char *tmpl,
                     const eng_record *rec, int i, const char *full,
                     size_t *cursor, span *ret, char *err, size_t errlen)
{
    char *before = NULL, *through = NULL;
    const char *c = rec->messages[i].content ? rec->messages[i].content : "";
    int rc;

    if ((rc = render_first(t, tmpl, rec, i, true, &before, err, errlen)) ||
        (rc = render_first(t, tmpl, rec, i + 1, false, &through, err,
                           errlen)))
        goto out;
    if (starts_with(through, before) && starts_with(full, through) &&
        strlen(before) >= *cursor) {
        *ret = (span){ strlen(before), strlen(through) };
    } else {
        /* The turn renders differently when it is not the last one (Qwen3
         * drops the think block of earlier turns): find its content, and
         * extend the span over the end-of-turn text the template writes
         * after the content when the turn is last, if the full text has
         * it there too. */
        const char *p = *c ? strstr(full + *cursor, c) : NULL;
        const char *in_through = *c ? strstr(through, c) : NULL;

        rc = p ? 0 : -ENOENT; /* the template dropped the turn: no loss */
        if (p) {
            size_t end = (size_t)(p - full) + strlen(c);
            if (in_through) {
                const char *tail = in_through + strlen(c);
                if (starts_with(full + end, tail))
                    end += strlen(tail);
            }
            *ret = (span){ (size_t)(p - full), end };
        }
    }
    if (!rc)
        *cursor = ret->end;
out:
    free(before);
    free(through);
    return rc;
}

int eng_example_from_chat_template(const eng_tokenizer *t, const char *tmpl,
                                   const eng_record *rec, int max_len,
                                   eng_example *ret, char *err,
                                   size_t errlen)
{
    char *full = NULL, bos[128];
    span *sp = NULL;
    size_t cursor = 0;
    int ns = 0, rc;
    enc_opts eo = { false, true };
    const char *bt;

    if (!t || !rec || !ret || rec->kind != ENG_REC_CHAT ||
        rec->n_messages <= 0 || !rec->messages)
        return -EINVAL;
    if (!tmpl)
        return from_chat(t, rec, max_len, ret);
    if (!(sp = malloc((size_t)rec->n_messages * sizeof(*sp))))
        return -ENOMEM;
    if ((rc = render_first(t, tmpl, rec, rec->n_messages, false, &full, err,
                           errlen)))
        goto out;
    for (int i = 0; i < rec->n_messages; i++) {
        if (strcmp(rec->messages[i].role, "assistant"))
            continue;
        rc = turn_span(t, tmpl, rec, i, full, &cursor, &sp[ns], err, errlen);
        if (rc == -ENOENT)
            continue;
        if (rc)
            goto out;
        ns++;
    }
    bt = eng_chat_token_text(t, t->bos_id, bos, sizeof bos);
    eo.add_bos = t->add_bos_default && !(bt && starts_with(full, bt));
    rc = tokenize_masked_eo(t, full, strlen(full), eo, sp, ns, false, max_len,
                            ret);
out:
    free(full);
    free(sp);
    return rc;
}
