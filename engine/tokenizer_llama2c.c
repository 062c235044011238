/* SPDX-License-Identifier: MIT */
/*
 * tokenizer_llama2c.c - llama2.c's tokenizer.bin: SentencePiece-style BPE.
 *
 * File format: uint32 max_token_length, then for each token a float32 merge
 * score, an int32 byte length and the piece's bytes (SentencePiece's U+2581
 * already replaced by a plain space). Ids 0, 1, 2 are <unk>, BOS and EOS;
 * "<0xNN>" pieces are byte-fallback tokens.
 *
 * Encoding does what SentencePiece's BPE does (and llama2.c's run.c copies):
 * a space is prepended to the text (the "dummy prefix"), every code point
 * becomes its own piece or, when the vocabulary lacks it, one byte-fallback
 * token per byte, then the adjacent pair whose concatenation is the
 * best-scoring piece is merged, leftmost first among equal scores, until no
 * pair merges. run.c rescans every pair after each merge (quadratic); here
 * the candidate pairs sit in a binary heap keyed (score desc, offset asc)
 * and stale entries are dropped when popped, which picks exactly the same
 * merges in O(n log n), so long training documents stay cheap.
 *
 * Decoding maps byte tokens to their raw byte, drops the dummy-prefix space
 * of the first piece (after BOS or at the start), and gives control tokens
 * no text.
 */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct l2c_tok {
    char *blob;          /* every piece, back to back */
    const char **piece;  /* [V] into blob */
    int *len;            /* [V] */
    float *score;        /* [V] */
    int16_t *byte_of;    /* [V] byte value of a <0xNN> token, else -1 */
    int32_t byte_id[256];/* token of each byte, -1 if the vocab lacks it */
    int32_t *table;      /* open-addressing hash of mergeable pieces -> id */
    uint32_t mask;
    int max_len;
    int n_vocab;
    char bytes[256];     /* bytes[b] == b: storage for one-byte pieces */
} l2c_tok;

enum { L2C_UNK = 0, L2C_BOS = 1, L2C_EOS = 2 };

static uint32_t hash_bytes(const char *s, int n)
{
    uint32_t h = 2166136261u;

    for (int i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int32_t lookup(const l2c_tok *k, const char *s, int n)
{
    if (n > k->max_len)
        return -1;
    for (uint32_t h = hash_bytes(s, n) & k->mask;; h = (h + 1) & k->mask) {
        int32_t id = k->table[h];

        if (id < 0)
            return -1;
        if (k->len[id] == n && !memcmp(k->piece[id], s, n))
            return id;
    }
}

static int parse_byte_piece(const char *p, int n)
{
    unsigned v;
    char tail;

    if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>')
        return -1;
    if (sscanf(p + 3, "%2x%c", &v, &tail) != 2 || tail != '>')
        return -1;
    return (int)v;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */

typedef struct sym {
    int start, len;   /* byte span in the working buffer */
    int prev, next;   /* neighbours, -1 at the ends */
    int32_t id;
    bool fallback;    /* a byte-fallback token: never merges */
    bool alive;
} sym;

typedef struct cand {
    float score;
    int start;        /* left symbol's offset: the tie-break */
    int l, r, len;
    int32_t id;
} cand;

static bool cand_before(const cand *a, const cand *b)
{
    return a->score > b->score || (a->score == b->score && a->start < b->start);
}

static void heap_push(cand *h, int *n, cand c)
{
    int i = (*n)++;

    while (i > 0 && cand_before(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, int *n)
{
    cand top = h[0], last = h[--(*n)];
    int i = 0;

    for (;;) {
        int c = 2 * i + 1;

        if (c >= *n)
            break;
        if (c + 1 < *n && cand_before(&h[c + 1], &h[c]))
            c++;
        if (!cand_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void try_pair(const l2c_tok *k, const char *buf, const sym *s, int l,
                     cand *heap, int *nh)
{
    int r;
    int32_t id;

    if (l < 0 || (r = s[l].next) < 0 || s[l].fallback || s[r].fallback)
        return;
    id = lookup(k, buf + s[l].start, s[l].len + s[r].len);
    if (id >= 0)
        heap_push(heap, nh, (cand){ k->score[id], s[l].start, l, r,
                                    s[l].len + s[r].len, id });
}

/* Splits buf[0..n) into code points (input is valid UTF-8: the front end
 * checked), each a known piece or byte-fallback tokens. */
static int initial_symbols(const l2c_tok *k, const char *buf, int n, sym *s)
{
    int ns = 0;

    for (int i = 0; i < n;) {
        unsigned char c = (unsigned char)buf[i];
        int cl = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        int32_t id = lookup(k, buf + i, cl);

        if (id >= 0) {
            s[ns] = (sym){ i, cl, ns - 1, ns + 1, id, false, true };
            ns++;
        } else {
            for (int b = 0; b < cl; b++) {
                int32_t bid = k->byte_id[(unsigned char)buf[i + b]];

                s[ns] = (sym){ i + b, 1, ns - 1, ns + 1,
                               bid >= 0 ? bid : L2C_UNK, true, true };
                ns++;
            }
        }
        i += cl;
    }
    if (ns)
        s[ns - 1].next = -1;
    return ns;
}

/* BPE over one stretch of plain text; appends to out[*count..cap). */
static int encode_plain(const l2c_tok *k, const char *text, size_t len,
                        bool prefix, int32_t *out, int cap, int *count)
{
    int n = (int)len + (prefix ? 1 : 0), ns, nh = 0;
    char *buf = malloc((size_t)n + 1);
    sym *s = malloc(((size_t)n + 1) * sizeof(*s));
    cand *heap = malloc(((size_t)n + 1) * 2 * sizeof(*heap));
    int rc = -ENOMEM;

    if (!buf || !s || !heap)
        goto out;
    if (prefix)
        buf[0] = ' ';
    memcpy(buf + (prefix ? 1 : 0), text, len);
    ns = initial_symbols(k, buf, n, s);
    for (int i = 0; i + 1 < ns; i++)
        try_pair(k, buf, s, i, heap, &nh);
    /* The heap never outgrows 2n: it starts with < n entries and each merge
     * (at most n - 1 of them) pushes at most two. Stale entries fail the
     * span check below: a side died or grew since the pair was queued. */
    while (nh) {
        cand c = heap_pop(heap, &nh);
        sym *l = &s[c.l], *r = &s[c.r];

        if (!l->alive || !r->alive || l->next != c.r ||
            l->len + r->len != c.len)
            continue;
        l->len = c.len;
        l->id = c.id;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = c.l;
        r->alive = false;
        try_pair(k, buf, s, l->prev, heap, &nh);
        try_pair(k, buf, s, c.l, heap, &nh);
    }
    for (int i = ns ? 0 : -1; i >= 0; i = s[i].next) {
        if (*count < cap)
            out[*count] = s[i].id;
        (*count)++;
    }
    rc = 0;
out:
    free(buf);
    free(s);
    free(heap);
    return rc;
}

/* With parse_special, the literal texts "<s>" and "</s>" become BOS and EOS;
 * the dummy prefix goes only before text at the very start. */
static int l2c_encode(const eng_tokenizer *t, const char *text, size_t len,
                      bool parse_special, int32_t *out, int cap, int *ret_n)
{
    const l2c_tok *k = t->impl;
    size_t i = 0, seg = 0;
    int count = 0, rc;

    while (parse_special && i < len) {
        int32_t special = -1;
        size_t sl = 0;

        if (len - i >= 3 && !memcmp(text + i, "<s>", 3))
            special = L2C_BOS, sl = 3;
        else if (len - i >= 4 && !memcmp(text + i, "</s>", 4))
            special = L2C_EOS, sl = 4;
        if (special < 0) {
            i++;
            continue;
        }
        if (i > seg && (rc = encode_plain(k, text + seg, i - seg, seg == 0,
                                          out, cap, &count)))
            return rc;
        if (count < cap)
            out[count] = special;
        count++;
        i += sl;
        seg = i;
    }
    if (len > seg &&
        (rc = encode_plain(k, text + seg, len - seg, seg == 0, out, cap,
                           &count)))
        return rc;
    *ret_n = count;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */

static int l2c_piece(const eng_tokenizer *t, int32_t prev, int32_t id,
                     const char **ret_bytes)
{
    const l2c_tok *k = t->impl;
    const char *p;
    int n;

    if (id == L2C_UNK || id == L2C_BOS || id == L2C_EOS) {
        *ret_bytes = "";
        return 0;
    }
    if (k->byte_of[id] >= 0) {
        *ret_bytes = &k->bytes[k->byte_of[id]];
        return 1;
    }
    p = k->piece[id];
    n = k->len[id];
    if ((prev == L2C_BOS || prev < 0) && n > 0 && p[0] == ' ')
        p++, n--;
    *ret_bytes = p;
    return n;
}

static void l2c_free(void *impl)
{
    l2c_tok *k = impl;

    if (!k)
        return;
    free(k->blob);
    free(k->piece);
    free(k->len);
    free(k->score);
    free(k->byte_of);
    free(k->table);
    free(k);
}

static const eng_tok_ops l2c_ops = {
    .encode = l2c_encode,
    .piece = l2c_piece,
    .free_impl = l2c_free,
};

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

static int read_file(const char *path, char **ret, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    int rc = -EIO;

    if (!f)
        return errno == ENOENT ? -ENOENT : -EIO;
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
        goto out;
    if (n > (64l << 20)) /* a tokenizer.bin is kilobytes; refuse junk */
        goto out;
    buf = malloc(n ? n : 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    if (fread(buf, 1, n, f) != (size_t)n) {
        free(buf);
        goto out;
    }
    *ret = buf;
    *ret_len = n;
    rc = 0;
out:
    fclose(f);
    return rc;
}

/* Number of complete entries in the file (for vocab_size <= 0). */
static int count_entries(const char *file, size_t n)
{
    size_t off = 4;
    int v = 0;

    while (n - off >= 8) {
        int32_t l;

        memcpy(&l, file + off + 4, 4);
        if (l < 0 || (size_t)l > n - off - 8)
            break;
        off += 8 + (size_t)l;
        v++;
    }
    return v;
}

/* Parses entries from file bytes into k (pieces point into k->blob, which
 * takes over the buffer). vocab_size <= 0 reads every entry. */
static int parse_entries(l2c_tok *k, char *file, size_t n, int vocab_size)
{
    size_t off = 4;
    int v;

    k->blob = file;
    if (n < 4)
        return -EIO;
    k->n_vocab = vocab_size > 0 ? vocab_size : count_entries(file, n);
    if (k->n_vocab <= L2C_EOS)
        return -EIO;
    k->piece = malloc((size_t)k->n_vocab * sizeof(*k->piece));
    k->len = malloc((size_t)k->n_vocab * sizeof(*k->len));
    k->score = malloc((size_t)k->n_vocab * sizeof(*k->score));
    if (!k->piece || !k->len || !k->score)
        return -ENOMEM;
    for (v = 0; v < k->n_vocab; v++) {
        int32_t l;

        if (n - off < 8)
            return -EIO;
        memcpy(&k->score[v], file + off, 4);
        memcpy(&l, file + off + 4, 4);
        off += 8;
        if (l < 0 || (size_t)l > n - off)
            return -EIO;
        k->piece[v] = file + off;
        k->len[v] = l;
        off += (size_t)l;
    }
    return 0;
}

static int build_index(l2c_tok *k)
{
    uint32_t size = 16;

    while (size < 2u * (uint32_t)k->n_vocab)
        size *= 2;
    k->mask = size - 1;
    k->table = malloc(size * sizeof(*k->table));
    k->byte_of = malloc((size_t)k->n_vocab * sizeof(*k->byte_of));
    if (!k->table || !k->byte_of)
        return -ENOMEM;
    memset(k->table, 0xff, size * sizeof(*k->table));
    for (int b = 0; b < 256; b++) {
        k->byte_id[b] = -1;
        k->bytes[b] = (char)b;
    }
    for (int id = 0; id < k->n_vocab; id++) {
        int b = parse_byte_piece(k->piece[id], k->len[id]);
        uint32_t h;

        k->byte_of[id] = (int16_t)b;
        if (b >= 0 && k->byte_id[b] < 0)
            k->byte_id[b] = id;
        /* Control and byte tokens never come out of a merge. */
        if (b >= 0 || id <= L2C_EOS || k->len[id] == 0)
            continue;
        if (lookup(k, k->piece[id], k->len[id]) >= 0)
            continue; /* duplicate piece: the lower id wins */
        if (k->len[id] > k->max_len)
            k->max_len = k->len[id];
        for (h = hash_bytes(k->piece[id], k->len[id]) & k->mask;
             k->table[h] >= 0; h = (h + 1) & k->mask)
            ;
        k->table[h] = id;
    }
    return 0;
}

int eng_tokenizer_load_llama2c(const char *path, int vocab_size,
                               eng_tokenizer **ret_tok, char *err,
                               size_t errlen)
{
    l2c_tok *k = calloc(1, sizeof(*k));
    eng_tokenizer *t;
    char *file = NULL;
    size_t n = 0;
    int rc;

    if (!k)
        return -ENOMEM;
    if ((rc = read_file(path, &file, &n))) {
        if (err && errlen)
            snprintf(err, errlen, "cannot read %s", path);
        goto fail;
    }
    /* Lookups compare lengths against max_len, so it must be 0 until the
     * index is built; the header's own value is only advisory. */
    if ((rc = parse_entries(k, file, n, vocab_size)) || (rc = build_index(k))) {
        if (err && errlen)
            snprintf(err, errlen, "%s: not a llama2.c tokenizer.bin", path);
        goto fail;
    }
    t = eng_tokenizer_wrap(&l2c_ops, k, k->n_vocab, L2C_BOS, L2C_EOS);
    if (!t) {
        rc = -ENOMEM;
        goto fail;
    }
    *ret_tok = t;
    return 0;
fail:
    if (!k->blob)
        free(file);
    l2c_free(k);
    return rc;
}
