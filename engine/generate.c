/* SPDX-License-Identifier: MIT */
/*
 * generate.c - text generation: sampling, stop strings and UTF-8-safe
 * streaming over an eng_session.
 *
 * The loop: prefill the prompt in one eval (GEMMs), then repeatedly sample a
 * token from the last logits, turn it into bytes, and feed it back (one-row
 * eval, GEMVs). Every buffer (session, candidate list, text) is allocated
 * before the first token; the text buffer only grows by doubling if the
 * initial guess of 8 bytes per token is exceeded.
 *
 * Text handling. Token bytes go through a small UTF-8 assembler: complete
 * characters are appended to the text, an incomplete trailing sequence waits
 * for the next token, and bytes that can never form a valid character become
 * U+FFFD, so the text (and every streamed piece) is valid UTF-8 and never
 * splits a character. Text reaches the callback only once it cannot be the
 * start of a stop string: the longest suffix that is a proper prefix of some
 * stop string is held back until later tokens settle it. When a stop string
 * appears, the text before it is emitted and the generation ends there; the
 * stop string itself is not part of the output.
 *
 * Sampling. Temperature 0 is greedy (the first maximum, as llama2.c). With a
 * temperature the logits are scaled and softmaxed, then top-k keeps the k
 * most likely tokens, top-p the smallest set whose mass reaches p (the
 * order Hugging Face applies them), and a seeded xorshift generator draws
 * from what is left, so a seed reproduces a generation exactly.
 *
 * Log-probabilities. With a token hook, every generated token is reported
 * with its log-probability under the raw distribution (log softmax of the
 * logits, temperature 1) and the top_logprobs most likely alternatives,
 * before its text is streamed. Sampling never reads what this computes, so
 * outputs are the same with or without the hook.
 */
#include "session.h"
#include "err.h"
#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eng_sample_params_default(eng_sample_params *p)
{
    memset(p, 0, sizeof(*p));
    p->max_tokens = 64;
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->top_k = 0;
    p->stop_at_eos = true;
    p->n_threads = 1;
}

void eng_generation_done(eng_generation *g)
{
    if (!g)
        return;
    free(g->text);
    g->text = NULL;
}

/* ------------------------------------------------------------------------ */
/* Sampling                                                                  */

typedef struct cand {
    float p;
    int32_t id;
} cand;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static float rng_unit(uint64_t *s)
{
    return (rng_next(s) >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
}

static void rng_seed(uint64_t *s, uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    *s = (z ^ (z >> 31)) | 1; /* xorshift state must be non-zero */
}

static int32_t argmax(const float *x, int n)
{
    return eng_k_argmax(x, n);
}

static int cand_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;

    if (x->p != y->p)
        return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Moves the k largest candidates to the front (unordered): quickselect. */
static void select_top(cand *c, int n, int k)
{
    int lo = 0, hi = n - 1;

    while (lo < hi) {
        cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;

        while (i <= j) {
            while (cand_desc(&c[i], &pivot) < 0)
                i++;
            while (cand_desc(&c[j], &pivot) > 0)
                j--;
            if (i <= j) {
                cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

static int32_t sample(const float *logits, int V, const eng_sample_params *sp,
                      cand *c, uint64_t *rng)
{
    float mx = -INFINITY, sum = 0.0f, r, acc = 0.0f;
    int n = V;

    if (!(sp->temperature > 0.0f))
        return argmax(logits, V);
    for (int i = 0; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < V; i++) {
        c[i].p = expf((logits[i] - mx) / sp->temperature);
        c[i].id = i;
        sum += c[i].p;
    }
    if (sp->top_k > 0 && sp->top_k < n) {
        select_top(c, n, sp->top_k);
        n = sp->top_k;
        sum = 0.0f;
        for (int i = 0; i < n; i++)
            sum += c[i].p;
    }
    if (sp->top_p > 0.0f && sp->top_p < 1.0f) {
        /* Candidates below (1-p)/(n-1) of the mass can never be inside the
         * nucleus (llama2.c's trick): drop them before sorting. */
        float cut = (1.0f - sp->top_p) / (float)(n > 1 ? n - 1 : 1) * sum;
        int m = 0;

        for (int i = 0; i < n; i++)
            if (c[i].p >= cut)
                c[m++] = c[i];
        n = m > 0 ? m : n;
        qsort(c, n, sizeof(*c), cand_desc);
        for (m = 0; m < n; m++) {
            acc += c[m].p;
            if (acc >= sp->top_p * sum) {
                m++;
                break;
            }
        }
        n = m < n ? m : n;
        sum = acc;
    }
    r = rng_unit(rng) * sum;
    acc = 0.0f;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc)
            return c[i].id;
    }
    return c[n - 1].id; /* rounding left r == sum */
}

/* ------------------------------------------------------------------------ */
/* Log-probabilities (the token hook)                                        */

/* Reports token id sampled from logits (V) to the token hook: its log
 * softmax at temperature 1, and the k most likely tokens, found by
 * insertion into a small sorted array (one pass; ties keep the lower id
 * first, as argmax does, so a greedy token is always top[0]). */
static void report_token(const float *logits, int V, int32_t id, int32_t prev,
                         int index, int k, const eng_hooks *h)
{
    eng_token_prob top[ENG_MAX_TOP_LOGPROBS];
    eng_token_info info;
    float mx = -INFINITY, lse;
    double sum = 0.0;
    int n = 0;

    for (int i = 0; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < V; i++)
        sum += expf(logits[i] - mx);
    lse = mx + (float)log(sum);
    k = k < 0 ? 0 : k > ENG_MAX_TOP_LOGPROBS ? ENG_MAX_TOP_LOGPROBS : k;
    for (int i = 0; i < V && k > 0; i++) {
        float l = logits[i];
        int j;

        if (n == k && !(l > top[n - 1].logprob))
            continue;
        j = n < k ? n++ : k - 1;
        while (j > 0 && top[j - 1].logprob < l) {
            top[j] = top[j - 1];
            j--;
        }
        top[j].id = i;
        top[j].logprob = l;
    }
    for (int j = 0; j < n; j++)
        top[j].logprob -= lse;
    info.id = id;
    info.prev = prev;
    info.logprob = logits[id] - lse;
    info.top = top;
    info.n_top = n;
    info.index = index;
    h->token(h->user, &info);
}

/* ------------------------------------------------------------------------ */
/* Text: UTF-8 assembly, stop strings, streaming                             */

typedef struct gen_text {
    char *buf;              /* valid UTF-8 so far */
    size_t len, cap;
    unsigned char raw[4];   /* an incomplete character waiting for bytes */
    int nraw, need;
    size_t emitted;         /* bytes handed to the callback */
    const eng_sample_params *sp;
    eng_token_cb cb;
    void *user;
    bool stopped;           /* a stop string matched or cb said stop */
} gen_text;

static int text_put(gen_text *g, const void *p, size_t n)
{
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap * 2 > g->len + n + 1 ? g->cap * 2 : g->len + n + 1;
        char *b = realloc(g->buf, cap);

        if (!b)
            return -ENOMEM;
        g->buf = b;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, p, n);
    g->len += n;
    return 0;
}

static int text_replacement(gen_text *g)
{
    g->nraw = 0;
    return text_put(g, "\xEF\xBF\xBD", 3);
}

/* RFC 3629 ranges: the second byte's bounds depend on the lead. */
static bool cont_ok(const unsigned char *raw, int i, unsigned char b)
{
    unsigned lo = 0x80, hi = 0xBF;

    if (i == 1) {
        if (raw[0] == 0xE0) lo = 0xA0;
        if (raw[0] == 0xED) hi = 0x9F;
        if (raw[0] == 0xF0) lo = 0x90;
        if (raw[0] == 0xF4) hi = 0x8F;
    }
    return b >= lo && b <= hi;
}

static int text_byte(gen_text *g, unsigned char b)
{
    int rc;

    if (g->nraw) {
        if (cont_ok(g->raw, g->nraw, b)) {
            g->raw[g->nraw++] = b;
            if (g->nraw < g->need)
                return 0;
            g->nraw = 0;
            return text_put(g, g->raw, g->need);
        }
        if ((rc = text_replacement(g))) /* broken sequence; b starts anew */
            return rc;
    }
    if (b < 0x80)
        return text_put(g, &b, 1);
    if (b >= 0xC2 && b <= 0xF4) {
        g->raw[0] = b;
        g->nraw = 1;
        g->need = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        return 0;
    }
    return text_put(g, "\xEF\xBF\xBD", 3);
}

/* Earliest stop string at or after `emitted` (earlier ones were ruled out
 * when that text was emitted). Returns its offset or -1. */
static long find_stop(const gen_text *g)
{
    long best = -1;

    for (int i = 0; i < g->sp->n_stop; i++) {
        const char *st = g->sp->stop[i];
        size_t sl = st ? strlen(st) : 0;
        const char *hit;

        if (!sl)
            continue;
        hit = memmem(g->buf + g->emitted, g->len - g->emitted, st, sl);
        if (hit && (best < 0 || hit - g->buf < best))
            best = hit - g->buf;
    }
    return best;
}

/* Length of the longest suffix of the unemitted text that a stop string
 * starts with (it might still become that stop string). */
static size_t stop_holdback(const gen_text *g)
{
    size_t pending = g->len - g->emitted, hold = 0;

    for (int i = 0; i < g->sp->n_stop; i++) {
        const char *st = g->sp->stop[i];
        size_t sl = st ? strlen(st) : 0;

        for (size_t k = sl - (sl > 0); k > hold; k--)
            if (k <= pending && !memcmp(g->buf + g->len - k, st, k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

static void text_emit(gen_text *g, size_t upto)
{
    /* Never cut inside a character (a stop string could start with a
     * continuation byte). */
    while (upto > g->emitted && upto < g->len &&
           ((unsigned char)g->buf[upto] & 0xC0) == 0x80)
        upto--;
    if (upto <= g->emitted)
        return;
    if (g->cb && !g->cb(g->user, g->buf + g->emitted, upto - g->emitted))
        g->stopped = true;
    g->emitted = upto;
}

/* Adds one token's bytes, then emits what is settled. */
static int text_token(gen_text *g, const char *p, int n)
{
    long stop;
    int rc;

    for (int i = 0; i < n; i++)
        if ((rc = text_byte(g, (unsigned char)p[i])))
            return rc;
    stop = g->sp->n_stop ? find_stop(g) : -1;
    if (stop >= 0) {
        g->len = (size_t)stop;
        text_emit(g, g->len);
        g->stopped = true;
        return 0;
    }
    text_emit(g, g->len - (g->sp->n_stop ? stop_holdback(g) : 0));
    return 0;
}

/* End of generation without a stop string: an incomplete character becomes
 * U+FFFD, held-back text turned out not to be a stop, so emit all. */
static int text_flush(gen_text *g)
{
    int rc;

    if (g->nraw && (rc = text_replacement(g)))
        return rc;
    if (!g->stopped)
        text_emit(g, g->len);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Generation                                                                */

static int check_params(const eng_model *m, const eng_sample_params *sp,
                        int n_ids, char *err, size_t errlen)
{
    if (n_ids <= 0) {
        eng_err(err, errlen, "empty prompt");
        return -EINVAL;
    }
    if (n_ids > m->cfg.max_seq_len) {
        eng_err(err, errlen, "prompt longer than the model's context");
        return -EINVAL;
    }
    if (sp->max_tokens < 0 || sp->temperature < 0 || !isfinite(sp->temperature) ||
        sp->top_p < 0 || sp->top_p > 1 || sp->top_k < 0 || sp->n_stop < 0 ||
        (sp->n_stop > 0 && !sp->stop)) {
        eng_err(err, errlen, "invalid sampling parameters");
        return -EINVAL;
    }
    return 0;
}

typedef struct gen_run {
    eng_session *s;
    cand *cands;
    gen_text text;
    uint64_t rng;
    int completion_tokens;
    eng_finish finish;
} gen_run;

/* The token loop: sample, stream, feed back, until a stop condition. */
static int gen_loop(gen_run *g, const eng_tokenizer *t, int32_t prev,
                    const eng_sample_params *sp, const eng_hooks *h)
{
    const eng_config *c = &g->s->model->cfg;
    int rc;

    g->finish = ENG_FINISH_LENGTH;
    while (g->completion_tokens < sp->max_tokens) {
        const char *piece;
        int32_t next;
        int k;

        if (h && h->abort && h->abort(h->user))
            return -ECANCELED;
        next = sample(g->s->logits, c->vocab_size, sp, g->cands, &g->rng);
        if (sp->stop_at_eos && next == t->eos_id) {
            g->finish = ENG_FINISH_STOP;
            return 0;
        }
        g->completion_tokens++;
        if (h && h->token)
            report_token(g->s->logits, c->vocab_size, next, prev,
                         g->completion_tokens - 1, sp->top_logprobs, h);
        k = next < t->vocab_size ? eng_tokenizer_piece(t, prev, next, &piece)
                                 : 0; /* model vocab padded past the tokenizer */
        if (k > 0 && (rc = text_token(&g->text, piece, k)))
            return rc;
        if (g->text.stopped) {
            g->finish = ENG_FINISH_STOP;
            return 0;
        }
        if (g->completion_tokens == sp->max_tokens || g->s->n_past == g->s->ctx)
            return 0;
        if ((rc = eng_session_eval(g->s, &next, 1)))
            return rc;
        prev = next;
    }
    return 0;
}

int eng_generate_ids(eng_model *m, const eng_adapter *a,
                     const eng_tokenizer *t, const int32_t *ids, int n_ids,
                     const eng_sample_params *sp_in, eng_token_cb cb,
                     void *user, const eng_hooks *h, eng_generation *ret,
                     char *err, size_t errlen)
{
    eng_sample_params sp;
    gen_run g = { 0 };
    int64_t ctx;
    int rc;

    if (!m || !t || (!ids && n_ids) || !ret)
        return -EINVAL;
    if (sp_in)
        sp = *sp_in;
    else
        eng_sample_params_default(&sp);
    if ((rc = check_params(m, &sp, n_ids, err, errlen)))
        return rc;
    ctx = (int64_t)n_ids + sp.max_tokens;
    if (ctx > m->cfg.max_seq_len)
        ctx = m->cfg.max_seq_len;
    if (sp.n_threads > 0)
        eng_k_set_threads(sp.n_threads);
    rng_seed(&g.rng, sp.seed);
    g.text.sp = &sp;
    g.text.cb = cb;
    g.text.user = user;
    g.text.cap = (size_t)sp.max_tokens * 8 + 64;
    g.text.buf = malloc(g.text.cap);
    g.cands = malloc((size_t)m->cfg.vocab_size * sizeof(*g.cands));
    if (!g.text.buf || !g.cands) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = eng_session_new(m, (int)ctx, n_ids < 512 ? n_ids : 512, &g.s)) ||
        (rc = eng_session_set_adapter(g.s, a))) {
        eng_err(err, errlen, "%s", rc == -EINVAL ? "adapter does not fit the model"
                                           : "out of memory");
        goto out;
    }
    if ((rc = eng_session_eval(g.s, ids, n_ids))) {
        eng_err(err, errlen, "prompt token out of range");
        goto out;
    }
    if ((rc = gen_loop(&g, t, ids[n_ids - 1], &sp, h)) ||
        (rc = text_flush(&g.text)))
        goto out;
    if (g.text.stopped)
        g.finish = ENG_FINISH_STOP;
    g.text.buf[g.text.emitted] = '\0';
    ret->text = g.text.buf;
    ret->finish = g.finish;
    ret->prompt_tokens = n_ids;
    ret->completion_tokens = g.completion_tokens;
    g.text.buf = NULL;
out:
    if (rc == -ECANCELED)
        eng_err(err, errlen, "generation cancelled");
    eng_session_free(g.s);
    free(g.cands);
    free(g.text.buf);
    return rc;
}

int eng_generate(eng_model *m, const eng_adapter *a, const eng_tokenizer *t,
                 const char *prompt, const eng_sample_params *sp,
                 eng_token_cb cb, void *user, const eng_hooks *h,
                 eng_generation *ret, char *err, size_t errlen)
{
    size_t len = prompt ? strlen(prompt) : 0;
    int32_t *ids;
    int n = 0, cap, rc;

    if (!m || !t || !ret)
        return -EINVAL;
    if (len > (size_t)m->cfg.max_seq_len * 64) {
        eng_err(err, errlen, "prompt longer than the model's context");
        return -EINVAL;
    }
    /* A first guess of one token per byte (plus BOS and a dummy prefix)
     * fits SentencePiece-style tokenizers; a second pass covers the rest. */
    cap = (int)len + 2;
    for (;;) {
        ids = malloc((size_t)cap * sizeof(*ids));
        if (!ids)
            return -ENOMEM;
        rc = eng_tokenizer_encode(t, prompt ? prompt : "", len,
                                  t->add_bos_default, false, ids, cap, &n);
        if (rc || n <= cap)
            break;
        free(ids);
        cap = n;
    }
    if (rc)
        eng_err(err, errlen, "prompt is not valid UTF-8");
    else
        rc = eng_generate_ids(m, a, t, ids, n, sp, cb, user, h, ret, err,
                              errlen);
    free(ids);
    return rc;
}

int eng_prompt_encode(const eng_tokenizer *t, const char *text, size_t len,
                      bool parse_special, int32_t **ret_ids, int *ret_n)
{
    bool bos = t && t->add_bos_default;
    int32_t *ids = NULL;
    int n = 0, cap, rc;

    if (!t || (!text && len) || !ret_ids || !ret_n)
        return -EINVAL;
    if (bos && parse_special && t->bos_id >= 0) {
        const char *p;
        int k = eng_tokenizer_piece(t, -1, t->bos_id, &p);

        bos = !(k > 0 && (size_t)k <= len && !memcmp(text, p, (size_t)k));
    }
    cap = (int)(len < (1u << 28) ? len : (1u << 28)) + 2;
    for (;;) {
        ids = malloc((size_t)cap * sizeof(*ids));
        if (!ids)
            return -ENOMEM;
        rc = eng_tokenizer_encode(t, text ? text : "", len, bos, parse_special,
                                  ids, cap, &n);
        if (rc || n <= cap)
            break;
        free(ids);
        cap = n;
    }
    if (rc) {
        free(ids);
        return rc;
    }
    *ret_ids = ids;
    *ret_n = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Step-by-step sequences for continuous batching (decode.h)                 */

#include "decode.h"
#include "kernels.h"

struct eng_seq {
    eng_session *s;
    const eng_tokenizer *t;
    eng_sample_params sp;
    int32_t *ids;
    int n_ids, fed, pending;      /* prompt tokens evaluated / in flight */
    int32_t prev, next;
    cand *cands;
    float *lg;                    /* masked logits (constraint) */
    gen_text text;
    uint64_t rng;
    int completion_tokens;
    eng_constrain *c;
    bool logprobs, ended;
    eng_finish finish;
    void (*token)(void *user, const eng_token_info *info);
    void (*done)(void *user, eng_finish finish, int prompt_tokens,
                 int completion_tokens);
    void *user;
};

int eng_seq_new(eng_model *m, const eng_seq_params *p, eng_seq **ret,
                char *err, size_t errlen)
{
    eng_seq *q;
    int64_t ctx;
    int rc;

    if (!m || !p || !p->tok || !ret || (!p->ids && p->n_ids) ||
        !p->schema != !p->vocab)
        return -EINVAL;
    if ((rc = check_params(m, &p->sp, p->n_ids, err, errlen)))
        return rc;
    for (int i = 0; i < p->n_ids; i++)
        if (p->ids[i] < 0 || p->ids[i] >= m->cfg.vocab_size) {
            eng_err(err, errlen, "prompt token out of range");
            return -EINVAL;
        }
    if (!(q = calloc(1, sizeof(*q))))
        return -ENOMEM;
    q->t = p->tok;
    q->sp = p->sp;
    q->n_ids = p->n_ids;
    q->prev = p->ids[p->n_ids - 1];
    q->logprobs = p->logprobs && p->token;
    q->token = p->token;
    q->done = p->done;
    q->user = p->user;
    rng_seed(&q->rng, q->sp.seed);
    q->text.sp = &q->sp;
    q->text.cb = p->text;
    q->text.user = p->user;
    q->text.cap = (size_t)(q->sp.max_tokens < 4096 ? q->sp.max_tokens : 4096)
                  * 8 + 64;
    q->text.buf = malloc(q->text.cap);
    q->ids = malloc((size_t)p->n_ids * sizeof(*q->ids));
    q->cands = malloc((size_t)m->cfg.vocab_size * sizeof(*q->cands));
    if (p->schema)
        q->lg = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    rc = -ENOMEM;
    if (!q->text.buf || !q->ids || !q->cands || (p->schema && !q->lg))
        goto fail;
    memcpy(q->ids, p->ids, (size_t)p->n_ids * sizeof(*q->ids));
    if (p->schema &&
        (rc = eng_constrain_new(p->schema, p->vocab, ENG_JSON_WS_NONE, &q->c)))
        goto fail;
    ctx = (int64_t)p->n_ids + q->sp.max_tokens;
    if (ctx > m->cfg.max_seq_len)
        ctx = m->cfg.max_seq_len;
    if ((rc = eng_session_new(m, (int)ctx, 1, &q->s)))
        goto fail;
    if ((rc = eng_session_set_adapter(q->s, p->adapter))) {
        eng_err(err, errlen, "%s", rc == -EINVAL ? "adapter does not fit the model"
                                           : "out of memory");
        goto fail;
    }
    *ret = q;
    return 0;
fail:
    if (rc == -ENOMEM)
        eng_err(err, errlen, "out of memory");
    eng_seq_free(q);
    return rc;
}

void eng_seq_free(eng_seq *q)
{
    if (!q)
        return;
    eng_session_free(q->s);
    eng_constrain_free(q->c);
    free(q->ids);
    free(q->cands);
    free(q->lg);
    free(q->text.buf);
    free(q);
}

bool eng_seq_ended(const eng_seq *q) { return q->ended; }
eng_session *eng_seq_session(eng_seq *q) { return q->s; }
bool eng_seq_prefilled(const eng_seq *q) { return q->fed == q->n_ids; }

bool eng_seq_next(eng_seq *q, int max_rows, eng_batch_item *item)
{
    if (q->ended)
        return false;
    if (q->fed < q->n_ids) {
        int k = q->n_ids - q->fed;

        if (max_rows > 0 && k > max_rows)
            k = max_rows;
        *item = (eng_batch_item){ q->s, q->ids + q->fed, k };
        q->pending = k;
    } else {
        *item = (eng_batch_item){ q->s, &q->next, 1 };
        q->pending = 0;
    }
    return true;
}

static int seq_end(eng_seq *q, eng_finish finish)
{
    int rc;

    if (q->text.stopped)
        finish = ENG_FINISH_STOP;
    if ((rc = text_flush(&q->text)))
        return rc;
    q->ended = true;
    q->finish = finish;
    if (q->done)
        q->done(q->user, finish, q->n_ids, q->completion_tokens);
    return 0;
}

int eng_seq_after(eng_seq *q)
{
    const eng_config *c = &q->s->model->cfg;
    const float *logits, *use;
    const char *piece;
    int32_t next;
    int k, rc, V = c->vocab_size;

    if (q->ended)
        return 0;
    q->fed += q->pending;
    q->pending = 0;
    if (q->fed < q->n_ids)
        return 1;
    if (q->completion_tokens >= q->sp.max_tokens)
        return (rc = seq_end(q, ENG_FINISH_LENGTH)) ? rc : 0;
    use = logits = eng_session_logits(q->s);
    if (q->c) {
        int left = q->sp.max_tokens - q->completion_tokens;
        int room = q->s->ctx - q->s->n_past + 1;

        memcpy(q->lg, logits, (size_t)V * sizeof(float));
        if (eng_constrain_mask(q->c, q->lg, V, left < room ? left : room) <= 0)
            return (rc = seq_end(q, ENG_FINISH_LENGTH)) ? rc : 0;
        use = q->lg;
    }
    next = sample(use, V, &q->sp, q->cands, &q->rng);
    if (q->sp.stop_at_eos && next == q->t->eos_id)
        return (rc = seq_end(q, ENG_FINISH_STOP)) ? rc : 0;
    if (q->c && eng_constrain_accept(q->c, next) < 0)
        return (rc = seq_end(q, ENG_FINISH_LENGTH)) ? rc : 0;
    q->completion_tokens++;
    if (q->logprobs) {
        eng_hooks h = { .token = q->token, .user = q->user };

        report_token(logits, V, next, q->prev, q->completion_tokens - 1,
                     q->sp.top_logprobs, &h);
    }
    k = next < q->t->vocab_size ? eng_tokenizer_piece(q->t, q->prev, next,
                                                      &piece)
                                : 0;
    if (k > 0 && (rc = text_token(&q->text, piece, k)))
        return rc;
    if (q->text.stopped || (q->c && eng_constrain_done(q->c)))
        return (rc = seq_end(q, ENG_FINISH_STOP)) ? rc : 0;
    if (q->completion_tokens == q->sp.max_tokens || q->s->n_past == q->s->ctx)
        return (rc = seq_end(q, ENG_FINISH_LENGTH)) ? rc : 0;
    q->prev = q->next = next;
    return 1;
}

int eng_seq_step(eng_batch *b, eng_seq **seqs, int n, int max_rows)
{
    eng_batch_item stack[32], *items = stack;
    eng_seq *who_stack[32], **who = who_stack;
    int m = 0, going = 0, rc;

    if (n > 32) {
        items = malloc((size_t)n * sizeof(*items));
        who = malloc((size_t)n * sizeof(*who));
        if (!items || !who) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (int i = 0; i < n; i++)
        if (eng_seq_next(seqs[i], max_rows, &items[m]))
            who[m++] = seqs[i];
    if (m && (rc = eng_batch_eval(b, items, m)) < 0)
        goto out;
    for (int i = 0; i < m; i++) {
        if ((rc = eng_seq_after(who[i])) < 0)
            goto out;
        going += rc;
    }
    rc = going;
out:
    if (items != stack)
        free(items);
    if (who != who_stack)
        free(who);
    return rc;
}

void eng_seq_set_threads(int n)
{
    eng_k_set_pool_threads(n);
}
