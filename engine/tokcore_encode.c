/* SPDX-License-Identifier: MIT */
/*
 * tokcore_encode.c - text to ids and ids to bytes for tokcore (the
 * pipeline is described in tokcore.h, the data in tokcore.c).
 *
 * Every call owns an ectx: two span lists that the stages ping-pong
 * between, the PCRE2 match data, and the merge loop's symbol and heap
 * arrays. Nothing in the tokcore is written, so calls run concurrently.
 */
#include "tokcore_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

typedef struct span {
    size_t off, len;
    bool first; /* starts at offset 0 of the input */
} span;

typedef struct pieces {
    sbuf b;
    span *s;
    int n, cap;
} pieces;

typedef struct seg {
    size_t s, e;
    bool m;
} seg;

typedef struct sym {
    int32_t id;
    uint32_t start, len;
    int32_t prev, next;
} sym;

typedef struct hent {
    double key;
    int32_t left, right, aux;
} hent;

typedef struct ectx {
    const tokcore *c;
    pcre2_match_data *md;
    int32_t *out;
    int cap, n;
    pieces A, B;
    sbuf n1, n2;
    seg *seg;
    int nseg, segcap;
    sym *sym;
    int symcap;
    hent *heap;
    int nheap, heapcap;
    uint32_t cp_of_byte[256];
} ectx;

static int sb_reserve(sbuf *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) < 0)
        return -ENOMEM;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

/* Appends one piece (empty pieces are dropped). */
static int emit(pieces *o, const char *s, size_t n, bool first)
{
    if (!n)
        return 0;
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 64;
        span *p = realloc(o->s, sizeof(*p) * cap);
        if (!p)
            return -ENOMEM;
        o->s = p;
        o->cap = cap;
    }
    size_t off = o->b.n;
    if (sb_put(&o->b, s, n) < 0)
        return -ENOMEM;
    o->s[o->n++] = (span){ off, n, first };
    return 0;
}

static void push_id(ectx *x, int32_t id)
{
    if (x->n < x->cap)
        x->out[x->n] = id;
    x->n++;
}

static uint32_t cp_at(const char *s, size_t n, size_t i, int *clen)
{
    int32_t cp = 0;
    utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i,
                                          (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0) {
        *clen = 1;
        return 0xfffd;
    }
    *clen = (int)k;
    return (uint32_t)cp;
}

static size_t prev_start(const char *s, size_t i)
{
    do
        i--;
    while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80);
    return i;
}

static bool is_ws(uint32_t cp)
{
    if (cp == ' ' || (cp >= 9 && cp <= 13) || cp == 0x85)
        return true;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL ||
           k == UTF8PROC_CATEGORY_ZP;
}

static bool is_word(uint32_t cp)
{
    if (cp == '_')
        return true;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

/* ------------------------------------------------------------------------ */
/* Added tokens                                                             */

static bool single_word_ok(const char *t, size_t n, size_t s, size_t e)
{
    int k;
    if (s > 0 && is_word(cp_at(t, n, prev_start(t, s), &k)))
        return false;
    if (e < n && is_word(cp_at(t, n, e, &k)))
        return false;
    return true;
}

/* Leftmost-longest added token in t[from..n). */
static bool find_added(const tokcore *c, const char *t, size_t n, size_t from,
                       bool parse_special, size_t *ms, size_t *me,
                       int32_t *id)
{
    if (!c->n_added)
        return false;
    for (size_t i = from; i < n; i++) {
        unsigned char b = (unsigned char)t[i];
        for (int k = c->added_first[b]; k < c->added_first[b + 1]; k++) {
            const tokcore_added *a = &c->added[c->added_order[k]];
            if ((a->special && !parse_special) || a->len > n - i ||
                memcmp(t + i, a->text, a->len) != 0)
                continue;
            size_t s = i, e = i + a->len;
            if (a->single_word && !single_word_ok(t, n, s, e))
                continue;
            int kl;
            while (a->lstrip && s > from &&
                   is_ws(cp_at(t, n, prev_start(t, s), &kl)))
                s = prev_start(t, s);
            while (a->rstrip && e < n && is_ws(cp_at(t, n, e, &kl)))
                e += (size_t)kl;
            *ms = s;
            *me = e;
            *id = a->id;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Normalizers: in -> out                                                   */

static int norm_apply(ectx *x, const tokcore_norm *nm, const char *in,
                      size_t n, sbuf *out)
{
    out->n = 0;
    switch (nm->k) {
    case TOKCORE_NORM_NFC: case TOKCORE_NORM_NFD:
    case TOKCORE_NORM_NFKC: case TOKCORE_NORM_NFKD: {
        int opt = UTF8PROC_STABLE;
        opt |= (nm->k == TOKCORE_NORM_NFC || nm->k == TOKCORE_NORM_NFKC)
                   ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
        if (nm->k == TOKCORE_NORM_NFKC || nm->k == TOKCORE_NORM_NFKD)
            opt |= UTF8PROC_COMPAT;
        if (!n)
            return 0;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)in,
                                          (utf8proc_ssize_t)n, &dst,
                                          (utf8proc_option_t)opt);
        if (k < 0)
            return k == UTF8PROC_ERROR_NOMEM ? -ENOMEM : -EINVAL;
        int rc = sb_put(out, (const char *)dst, (size_t)k);
        free(dst);
        return rc;
    }
    case TOKCORE_NORM_LOWERCASE:
        for (size_t i = 0; i < n;) {
            int k;
            uint32_t cp = cp_at(in, n, i, &k);
            utf8proc_uint8_t enc[4];
            utf8proc_ssize_t m = utf8proc_encode_char(
                utf8proc_tolower((utf8proc_int32_t)cp), enc);
            if (sb_put(out, (const char *)enc, (size_t)m) < 0)
                return -ENOMEM;
            i += (size_t)k;
        }
        return 0;
    case TOKCORE_NORM_PREPEND:
        if (n && sb_put(out, nm->a, strlen(nm->a)) < 0)
            return -ENOMEM;
        return sb_put(out, in, n);
    case TOKCORE_NORM_REPLACE: {
        size_t off = 0, blen = strlen(nm->b);
        while (off < n) {
            int rc = pcre2_match(nm->re, (PCRE2_SPTR)in, n, off,
                                 PCRE2_NO_UTF_CHECK, x->md, NULL);
            if (rc < 0)
                break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
            if (ov[1] == ov[0]) { /* empty match: keep one character */
                int k;
                cp_at(in, n, ov[0], &k);
                if (sb_put(out, in + off, ov[0] + k - off) < 0)
                    return -ENOMEM;
                off = ov[0] + k;
                continue;
            }
            if (sb_put(out, in + off, ov[0] - off) < 0 ||
                sb_put(out, nm->b, blen) < 0)
                return -ENOMEM;
            off = ov[1];
        }
        return off < n ? sb_put(out, in + off, n - off) : 0;
    }
    }
    return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Pre-tokenizers: pieces A -> pieces B                                     */

static int seg_push(ectx *x, size_t s, size_t e, bool m)
{
    if (s == e)
        return 0;
    if (x->nseg == x->segcap) {
        int cap = x->segcap ? x->segcap * 2 : 64;
        seg *p = realloc(x->seg, sizeof(*p) * cap);
        if (!p)
            return -ENOMEM;
        x->seg = p;
        x->segcap = cap;
    }
    x->seg[x->nseg++] = (seg){ s, e, m };
    return 0;
}

/* Cuts t[0..n) into matches and gaps of re (empty matches ignored). */
static int regex_segments(ectx *x, const pcre2_code *re, const char *t,
                          size_t n, bool invert)
{
    size_t off = 0, last = 0;
    x->nseg = 0;
    while (off < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)t, n, off, PCRE2_NO_UTF_CHECK,
                             x->md, NULL);
        if (rc < 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
        if (ov[1] == ov[0]) {
            int k;
            cp_at(t, n, ov[0], &k);
            off = ov[0] + k;
            continue;
        }
        if (seg_push(x, last, ov[0], invert) < 0 ||
            seg_push(x, ov[0], ov[1], !invert) < 0)
            return -ENOMEM;
        last = off = ov[1];
    }
    return seg_push(x, last, n, invert);
}

/* Combines the segments per behaviour (Hugging Face's Split semantics). */
static int split_emit(ectx *x, pieces *o, const char *t,
                      tokcore_split_behavior beh, bool first)
{
    int n = 0;
    bool prevm = false;
    seg *s = x->seg;
    switch (beh) {
    case TOKCORE_SPLIT_ISOLATED:
        n = x->nseg;
        break;
    case TOKCORE_SPLIT_REMOVED:
        for (int i = 0; i < x->nseg; i++)
            if (!s[i].m)
                s[n++] = s[i];
        break;
    case TOKCORE_SPLIT_MERGED_PREV:
        for (int i = 0; i < x->nseg; i++) {
            if (s[i].m && !prevm && n > 0)
                s[n - 1].e = s[i].e;
            else
                s[n++] = s[i];
            prevm = s[i].m;
        }
        break;
    case TOKCORE_SPLIT_MERGED_NEXT: {
        int w = x->nseg; /* fill from the back, then slide down */
        for (int i = x->nseg - 1; i >= 0; i--) {
            if (s[i].m && !prevm && w < x->nseg)
                s[w].s = s[i].s;
            else
                s[--w] = s[i];
            prevm = s[i].m;
        }
        memmove(s, s + w, sizeof(*s) * (x->nseg - w));
        n = x->nseg - w;
        break;
    }
    case TOKCORE_SPLIT_CONTIGUOUS:
        for (int i = 0; i < x->nseg; i++) {
            if (n > 0 && s[i].m && prevm)
                s[n - 1].e = s[i].e;
            else
                s[n++] = s[i];
            prevm = s[i].m;
        }
        break;
    }
    for (int i = 0; i < n; i++)
        if (emit(o, t + s[i].s, s[i].e - s[i].s, first && s[i].s == 0) < 0)
            return -ENOMEM;
    return 0;
}

static int bytelevel_emit(ectx *x, pieces *o, const char *t, size_t n,
                          bool first)
{
    if (sb_reserve(&x->n1, 2 * n) < 0)
        return -ENOMEM;
    char *q = x->n1.p;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = x->cp_of_byte[(unsigned char)t[i]];
        k += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp,
                                          (utf8proc_uint8_t *)q + k);
    }
    return emit(o, q, k, first);
}

static int pre_apply(ectx *x, const tokcore_pre *p, const pieces *in,
                     pieces *o)
{
    o->n = 0;
    o->b.n = 0;
    for (int i = 0; i < in->n; i++) {
        const char *t = in->b.p + in->s[i].off;
        size_t n = in->s[i].len;
        bool first = in->s[i].first;
        int rc = 0;
        if (p->k == TOKCORE_PRE_SPLIT) {
            if ((rc = regex_segments(x, p->re, t, n, p->invert)) == 0)
                rc = split_emit(x, o, t, p->beh, first);
        } else if (p->k == TOKCORE_PRE_BYTELEVEL) {
            sbuf *w = &x->n2;
            w->n = 0;
            if (p->add_prefix_space && t[0] != ' ')
                rc = sb_put(w, " ", 1);
            if (!rc)
                rc = sb_put(w, t, n);
            if (rc)
                return rc;
            if (!p->re) {
                rc = bytelevel_emit(x, o, w->p, w->n, first);
            } else if ((rc = regex_segments(x, p->re, w->p, w->n, false)) == 0) {
                for (int k = 0; k < x->nseg && !rc; k++)
                    rc = bytelevel_emit(x, o, w->p + x->seg[k].s,
                                        x->seg[k].e - x->seg[k].s,
                                        first && x->seg[k].s == 0);
            }
        } else { /* METASPACE */
            sbuf *w = &x->n2;
            size_t rl = strlen(p->repl);
            w->n = 0;
            bool pre = p->scheme == TOKCORE_PREPEND_ALWAYS ||
                       (p->scheme == TOKCORE_PREPEND_FIRST && first);
            bool starts = (t[0] == ' ') ||
                          (n >= rl && !memcmp(t, p->repl, rl));
            if (pre && !starts)
                rc = sb_put(w, p->repl, rl);
            for (size_t k = 0; k < n && !rc; k++)
                rc = t[k] == ' ' ? sb_put(w, p->repl, rl) : sb_put(w, t + k, 1);
            if (rc)
                return rc;
            if (!p->split) {
                rc = emit(o, w->p, w->n, first);
            } else {
                size_t st = 0;
                for (size_t k = 1; k + rl <= w->n && !rc; k++)
                    if (!memcmp(w->p + k, p->repl, rl)) {
                        rc = emit(o, w->p + st, k - st, first && st == 0);
                        st = k;
                    }
                if (!rc)
                    rc = emit(o, w->p + st, w->n - st, first && st == 0);
            }
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* BPE                                                                      */

static bool hent_less(const hent *a, const hent *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(ectx *x, hent e)
{
    if (x->nheap == x->heapcap) {
        int cap = x->heapcap ? x->heapcap * 2 : 64;
        hent *p = realloc(x->heap, sizeof(*p) * cap);
        if (!p)
            return -ENOMEM;
        x->heap = p;
        x->heapcap = cap;
    }
    int i = x->nheap++;
    while (i > 0) {
        int up = (i - 1) / 2;
        if (!hent_less(&e, &x->heap[up]))
            break;
        x->heap[i] = x->heap[up];
        i = up;
    }
    x->heap[i] = e;
    return 0;
}

static hent heap_pop(ectx *x)
{
    hent top = x->heap[0], e = x->heap[--x->nheap];
    int i = 0, n = x->nheap;
    for (;;) {
        int l = 2 * i + 1, m = i;
        const hent *best = &e;
        if (l < n && hent_less(&x->heap[l], best))
            best = &x->heap[m = l];
        if (l + 1 < n && hent_less(&x->heap[l + 1], best))
            m = l + 1;
        if (m == i)
            break;
        x->heap[i] = x->heap[m];
        i = m;
    }
    if (n)
        x->heap[i] = e;
    return top;
}

static int add_pair(ectx *x, const char *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return 0;
    const tokcore *c = x->c;
    if (c->mode == TOKCORE_MERGE_RANK) {
        const tokcore_mval *m = tokcore_merge_find(c, x->sym[l].id,
                                                   x->sym[r].id);
        if (!m)
            return 0;
        return heap_push(x, (hent){ m->rank, l, r, m->id });
    }
    uint32_t size = x->sym[l].len + x->sym[r].len;
    int32_t id = tokcore_lookup(c, w + x->sym[l].start, size);
    if (id < 0)
        return 0;
    return heap_push(x, (hent){ -(double)c->score[id], l, r, (int32_t)size });
}

static int sym_add(ectx *x, int *ns, int32_t id, uint32_t start, uint32_t len)
{
    if (*ns == x->symcap) {
        int cap = x->symcap ? x->symcap * 2 : 64;
        sym *p = realloc(x->sym, sizeof(*p) * cap);
        if (!p)
            return -ENOMEM;
        x->sym = p;
        x->symcap = cap;
    }
    int i = (*ns)++;
    x->sym[i] = (sym){ id, start, len, i - 1, -1 };
    if (i > 0)
        x->sym[i - 1].next = i;
    return 0;
}

/* Initial symbols: one per character (RANK mode looks them up, falling
 * back to byte tokens or the unknown token). */
static int initial_symbols(ectx *x, const char *w, size_t n, int *ns)
{
    const tokcore *c = x->c;
    bool last_unk = false;
    for (size_t i = 0; i < n;) {
        int k;
        cp_at(w, n, i, &k);
        int32_t id = -1;
        if (c->mode == TOKCORE_MERGE_SCORE) {
            if (sym_add(x, ns, -1, (uint32_t)i, (uint32_t)k) < 0)
                return -ENOMEM;
            i += (size_t)k;
            continue;
        }
        id = tokcore_lookup(c, w + i, (size_t)k);
        bool bytes_ok = c->byte_fallback;
        for (int j = 0; id < 0 && bytes_ok && j < k; j++)
            bytes_ok = c->byte_id[(unsigned char)w[i + j]] >= 0;
        if (id >= 0) {
            if (sym_add(x, ns, id, (uint32_t)i, (uint32_t)k) < 0)
                return -ENOMEM;
            last_unk = false;
        } else if (bytes_ok) {
            for (int j = 0; j < k; j++)
                if (sym_add(x, ns, c->byte_id[(unsigned char)w[i + j]],
                            (uint32_t)(i + j), 1) < 0)
                    return -ENOMEM;
            last_unk = false;
        } else if (c->unk_id >= 0) {
            if (last_unk && c->fuse_unk) {
                x->sym[*ns - 1].len += (uint32_t)k;
            } else if (sym_add(x, ns, c->unk_id, (uint32_t)i, (uint32_t)k) < 0) {
                return -ENOMEM;
            }
            last_unk = true;
        }
        i += (size_t)k;
    }
    return 0;
}

static void emit_score_symbol(ectx *x, const char *w, const sym *s)
{
    const tokcore *c = x->c;
    int32_t id = tokcore_lookup(c, w + s->start, s->len);
    if (id >= 0) {
        push_id(x, id);
        return;
    }
    for (uint32_t j = 0; j < s->len; j++) {
        int32_t b = c->byte_id[(unsigned char)w[s->start + j]];
        if (b >= 0)
            push_id(x, b);
        else if (c->unk_id >= 0)
            push_id(x, c->unk_id);
    }
}

static int bpe_word(ectx *x, const char *w, size_t n)
{
    const tokcore *c = x->c;
    if (c->ignore_merges) {
        int32_t id = tokcore_lookup(c, w, n);
        if (id >= 0) {
            push_id(x, id);
            return 0;
        }
    }
    int ns = 0;
    x->nheap = 0;
    if (initial_symbols(x, w, n, &ns) < 0)
        return -ENOMEM;
    for (int i = 0; i + 1 < ns; i++)
        if (add_pair(x, w, i, i + 1) < 0)
            return -ENOMEM;
    while (x->nheap) {
        hent h = heap_pop(x);
        sym *L = &x->sym[h.left];
        if (L->len == 0)
            continue;
        int32_t r = h.right;
        if (c->mode == TOKCORE_MERGE_RANK) {
            r = L->next;
            const tokcore_mval *m;
            if (r < 0 || !(m = tokcore_merge_find(c, L->id, x->sym[r].id)) ||
                m->id != h.aux)
                continue;
            L->id = h.aux;
        } else if (x->sym[r].len == 0 ||
                   L->len + x->sym[r].len != (uint32_t)h.aux) {
            continue;
        }
        sym *R = &x->sym[r];
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0)
            x->sym[R->next].prev = h.left;
        if (add_pair(x, w, L->prev, h.left) < 0 ||
            add_pair(x, w, h.left, L->next) < 0)
            return -ENOMEM;
    }
    for (int i = ns ? 0 : -1; i >= 0; i = x->sym[i].next) {
        if (c->mode == TOKCORE_MERGE_RANK)
            push_id(x, x->sym[i].id);
        else
            emit_score_symbol(x, w, &x->sym[i]);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Encode / piece                                                           */

static int encode_stretch(ectx *x, const char *t, size_t n, bool first)
{
    const tokcore *c = x->c;
    sbuf *cur = &x->n1, *nxt = &x->n2;
    int rc;
    cur->n = 0;
    if ((rc = sb_put(cur, t, n)) < 0)
        return rc;
    for (int i = 0; i < c->n_norm; i++) {
        if ((rc = norm_apply(x, &c->norm[i], cur->p, cur->n, nxt)) < 0)
            return rc;
        sbuf tmp = *cur;
        *cur = *nxt;
        *nxt = tmp;
    }
    pieces *in = &x->A, *out = &x->B;
    in->n = 0;
    in->b.n = 0;
    if ((rc = emit(in, cur->p, cur->n, first)) < 0)
        return rc;
    for (int i = 0; i < c->n_pre; i++) {
        if ((rc = pre_apply(x, &c->pre[i], in, out)) < 0)
            return rc;
        pieces *tmp = in;
        in = out;
        out = tmp;
    }
    for (int i = 0; i < in->n; i++)
        if ((rc = bpe_word(x, in->b.p + in->s[i].off, in->s[i].len)) < 0)
            return rc;
    return 0;
}

static int tokcore_encode(const eng_tokenizer *t, const char *text,
                          size_t len, bool parse_special, int32_t *out,
                          int cap, int *ret_n)
{
    ectx x;
    memset(&x, 0, sizeof(x));
    x.c = t->impl;
    x.out = out;
    x.cap = cap;
    tokcore_byte_map(x.cp_of_byte);
    x.md = pcre2_match_data_create(32, NULL);
    int rc = x.md ? 0 : -ENOMEM;
    size_t pos = 0;
    while (!rc && pos < len) {
        size_t ms = len, me = len;
        int32_t id = -1;
        bool found = find_added(x.c, text, len, pos, parse_special, &ms, &me,
                                &id);
        if (ms > pos)
            rc = encode_stretch(&x, text + pos, ms - pos, pos == 0);
        if (!found)
            break;
        push_id(&x, id);
        pos = me;
    }
    pcre2_match_data_free(x.md);
    free(x.A.b.p);
    free(x.A.s);
    free(x.B.b.p);
    free(x.B.s);
    free(x.n1.p);
    free(x.n2.p);
    free(x.seg);
    free(x.sym);
    free(x.heap);
    if (rc)
        return rc;
    *ret_n = x.n;
    return 0;
}

static int tokcore_piece(const eng_tokenizer *t, int32_t prev, int32_t id,
                         const char **ret_bytes)
{
    const tokcore *c = t->impl;
    static const char empty[1] = "";
    if (id < 0 || id >= c->vocab_size)
        return -EINVAL;
    const char *p = c->piece_blob + c->piece_off[id];
    int n = (int)(c->piece_off[id + 1] - c->piece_off[id]);
    if (prev < 0 && id == c->bos) {
        *ret_bytes = empty; /* the BOS an encoder added carries no text */
        return 0;
    }
    if (c->dc.strip_leading && (prev < 0 || prev == c->bos) && n > 0 &&
        p[0] == ' ') {
        p++;
        n--;
    }
    *ret_bytes = p;
    return n;
}

const eng_tok_ops tokcore_ops = {
    .encode = tokcore_encode,
    .piece = tokcore_piece,
    .free_impl = tokcore_free,
};
