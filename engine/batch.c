/* SPDX-License-Identifier: MIT */
/*
 * batch.c - one forward over several sessions of one base model, each with
 * its own KV cache and LoRA adapter (see batch.h).
 *
 * A call sorts its items into two kinds. A long prompt (>= GEMM_ROWS rows)
 * runs alone, in chunks of CHUNK rows. Everything else (decode steps,
 * short prompts) is laid out as rows of one block, grouped by adapter, and
 * runs together: per layer
 *
 *   xb = rmsnorm(x)                               (R, dim)
 *   q, k, v = xb W^T (+ bias) (+ scale (xb A^T) B^T per adapter group)
 *   rope(q, k) at each row's own position; k, v rows into their caches
 *   per sequence, row and head: softmax(q K^T / sqrt(hd)) V   (own cache)
 *   x += att Wo^T (+ LoRA) ; xb = rmsnorm(x)
 *   x += (silu(xb Wg^T) * xb Wu^T) Wd^T          (each + LoRA)
 *
 * with every linear an eng_k_rowmm over all R rows (the weights stream once
 * per step for the whole batch; the projections of one input, q, k and v
 * or gate and up, share one call on the pool with their LoRA products:
 * project_n), and finally the LM head over the last row
 * of every sequence at once. Each row is computed in a fixed order however
 * many rows there are (rowmm.c), attention included (one row at a time,
 * eng_k_dot, then a softmax and a V sum in key order), so a sequence's
 * logits never depend on its neighbours.
 *
 * Why not OpenBLAS for prompts: its sgemm results for a row depend on the
 * row count (sgemv for one row, other kernels for more) and, measured here,
 * on its thread count, which a training job in the same process may set;
 * so a prompt's bits would depend on the load. rowmm's do not.
 *
 * Attention and the per-sequence work split over rowmm's pool by (row,
 * KV head) pairs.
 */
#include "batch.h"
#include "session.h"
#include "rowmm.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { GEMM_ROWS = ENG_BATCH_GEMM_ROWS, CHUNK = ENG_BATCH_CHUNK };

/* One sequence's rows within a forward. */
typedef struct seg {
    eng_session *s;
    const int32_t *ids;
    int n;          /* rows */
    int r0;         /* first row in the block */
    int p0;         /* position of the first row */
} seg;

/* Consecutive rows on one adapter (the segments are sorted by adapter). */
typedef struct group {
    const eng_adapter *a;
    int r0, n;
} group;

struct eng_batch {
    eng_model *m;
    int max_seqs, rows;           /* capacities */
    int lora_cap;                 /* rank capacity of lora_tmp */
    seg *segs;                    /* (max_seqs) */
    const eng_batch_item **order; /* (max_seqs) items sorted by adapter */
    group *groups;                /* (max_seqs) */
    int *pos;                     /* (rows) */
    float *x, *xb, *q, *k, *v;    /* (rows, dim|max(dim,q)|q_dim|kv|kv) */
    float *hb, *hb2;              /* (rows, hidden) */
    float *lora_tmp;              /* 3 x (rows, lora_cap) */
    float *scores;                /* (threads, ctx_max) */
    float *logits;                /* (max_seqs, vocab) */
    int n_score_bufs;
    float *block;
};

static int imax(int a, int b) { return a > b ? a : b; }

/* ------------------------------------------------------------------------ */
/* Session accessors (the struct is engine-internal)                        */

int eng_session_n_past(const eng_session *s) { return s->n_past; }
int eng_session_ctx(const eng_session *s) { return s->ctx; }
const float *eng_session_logits(const eng_session *s) { return s->logits; }

size_t eng_session_bytes(const eng_session *s)
{
    const eng_config *c = &s->model->cfg;
    size_t B = (size_t)s->max_batch, q_dim = (size_t)c->n_heads * c->head_dim;
    size_t kv = (size_t)c->n_layers * s->ctx * c->n_kv_heads * c->head_dim;

    return sizeof(*s) + sizeof(float) *
           (2 * kv + B * ((size_t)c->dim + imax(c->dim, (int)q_dim) + q_dim +
                          2 * (size_t)c->hidden_dim + s->ctx) +
            c->vocab_size + B * s->lora_cap);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */

enum { MAX_SCORE_BUFS = 64 };

int eng_batch_new(eng_model *m, int max_seqs, eng_batch **ret)
{
    const eng_config *c = &m->cfg;
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    size_t R, n;
    eng_batch *b;
    float *p;

    if (!m || max_seqs <= 0 || !ret)
        return -EINVAL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->max_seqs = max_seqs;
    b->rows = imax(CHUNK, max_seqs * (GEMM_ROWS - 1));
    b->n_score_bufs = MAX_SCORE_BUFS;
    R = (size_t)b->rows;
    n = R * ((size_t)c->dim + imax(c->dim, q_dim) + q_dim + 2 * kv_dim +
             2 * (size_t)c->hidden_dim) +
        (size_t)b->n_score_bufs * c->max_seq_len +
        (size_t)max_seqs * c->vocab_size;
    b->block = malloc(n * sizeof(float));
    b->segs = calloc((size_t)max_seqs, sizeof(*b->segs));
    b->groups = calloc((size_t)max_seqs, sizeof(*b->groups));
    b->order = calloc((size_t)max_seqs, sizeof(*b->order));
    b->pos = calloc(R, sizeof(*b->pos));
    if (!b->block || !b->segs || !b->groups || !b->order || !b->pos) {
        eng_batch_free(b);
        return -ENOMEM;
    }
    p = b->block;
    b->x = p, p += R * c->dim;
    b->xb = p, p += R * imax(c->dim, q_dim);
    b->q = p, p += R * q_dim;
    b->k = p, p += R * kv_dim;
    b->v = p, p += R * kv_dim;
    b->hb = p, p += R * c->hidden_dim;
    b->hb2 = p, p += R * c->hidden_dim;
    b->scores = p, p += (size_t)b->n_score_bufs * c->max_seq_len;
    b->logits = p;
    b->m = eng_model_ref(m);
    *ret = b;
    return 0;
}

void eng_batch_free(eng_batch *b)
{
    if (!b)
        return;
    eng_model_unref(b->m);
    free(b->block);
    free(b->lora_tmp);
    free(b->segs);
    free(b->groups);
    free(b->order);
    free(b->pos);
    free(b);
}

static int ensure_lora(eng_batch *b, int rank)
{
    float *t;

    if (rank <= b->lora_cap)
        return 0;
    /* one (rows, rank) block per projection of a project_n call (<= 3) */
    t = malloc((size_t)3 * b->rows * rank * sizeof(float));
    if (!t)
        return -ENOMEM;
    free(b->lora_tmp);
    b->lora_tmp = t;
    b->lora_cap = rank;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Building blocks                                                           */

/* A forward over segs[0..n_segs): rows r0.. of the block. */
typedef struct fwd {
    eng_batch *b;
    const eng_config *c;
    seg *segs;
    int n_segs, R;
    int l;                        /* current layer (attention jobs) */
    group *groups;                /* rows with an adapter, by adapter */
    int n_groups;
} fwd;

/* One projection of a layer: y (R, W.rows) (+)= x W^T (+ bias) (+ each
 * adapter group's scale (x A^T) B^T), in that order. */
typedef struct proj {
    int t;                        /* target (ENG_T_*) */
    float *y;
    int acc;
    const eng_tensor *W, *bias;   /* bias NULL when absent */
    float *tmp;                   /* (R, lora_cap): x A^T of adapter rows */
    int off;                      /* first row in the job's row space */
} proj;

/* Projections of one input x, computed by one pool call: their output rows
 * laid end to end, split into parts. Each part computes its rows of the
 * base product, then the bias, then the adapters' B products for the same
 * rows, so every element gets exactly the operations, in the order, of the
 * three steps done one after the other: rowmm's bits do not depend on the
 * rows a call covers. One call instead of one per step and per adapter
 * group keeps both cores busy (the B products are thin) and waits once. */
typedef struct proj_job {
    const fwd *f;
    const float *x;
    proj *p;
    int n, total;
} proj_job;

/* Rows [lo, hi) of W as a tensor of its own (rows are stored whole). */
static eng_tensor rows_view(const eng_tensor *W, int lo, int hi)
{
    eng_tensor v = *W;

    v.rows = hi - lo;
    v.data = (char *)W->data + (size_t)lo * eng_dtype_row_bytes(W->dtype,
                                                                 W->cols);
    return v;
}

/* Output rows [lo, hi) of projection p. Runs inside a pool part, so its
 * eng_k_rowmm calls find the pool busy and run on this thread alone. */
static void proj_rows(const proj_job *j, const proj *p, int lo, int hi)
{
    const fwd *f = j->f;
    const eng_tensor *W = p->W;
    int out = W->rows, in = W->cols, R = f->R;
    eng_tensor v = rows_view(W, lo, hi);

    eng_k_rowmm(p->y + lo, (size_t)out, j->x, (size_t)in, &v, R, 1.0f,
                p->acc);
    if (p->bias)
        for (int r = 0; r < R; r++)
            for (int o = lo; o < hi; o++)
                p->y[(size_t)r * out + o] += eng_k_get(p->bias, o);
    for (int i = 0; i < f->n_groups; i++) {
        const group *g = &f->groups[i];
        const eng_lora *lo_ = eng_adapter_at(g->a, f->l, p->t);

        if (!lo_->A)
            continue;
        eng_tensor B = { ENG_DT_F32, hi - lo, g->a->rank,
                         lo_->B + (size_t)lo * g->a->rank };

        eng_k_rowmm(p->y + (size_t)g->r0 * out + lo, (size_t)out,
                    p->tmp + (size_t)g->r0 * f->b->lora_cap,
                    (size_t)f->b->lora_cap, &B, g->n, g->a->scale, 1);
    }
}

static void proj_part(void *arg, int part, int n_parts)
{
    const proj_job *j = arg;
    int a = (int)((int64_t)j->total * part / n_parts / 16 * 16);
    int b = part + 1 == n_parts ? j->total
            : (int)((int64_t)j->total * (part + 1) / n_parts / 16 * 16);

    for (int i = 0; i < j->n; i++) {
        const proj *p = &j->p[i];
        int lo = a > p->off ? a - p->off : 0;
        int hi = b - p->off < p->W->rows ? b - p->off : p->W->rows;

        if (lo < hi)
            proj_rows(j, p, lo, hi);
    }
}

/* x A^T for projection u / n_groups, group u % n_groups: into its tmp. */
typedef struct lora_a_job {
    const fwd *f;
    const float *x;
    const proj *p;
} lora_a_job;

static void lora_a_unit(const lora_a_job *j, int u, int n_groups)
{
    const fwd *f = j->f;
    const proj *p = &j->p[u / n_groups];
    const group *g = &f->groups[u % n_groups];
    const eng_lora *lo = eng_adapter_at(g->a, f->l, p->t);
    size_t cap = (size_t)f->b->lora_cap;

    if (!lo->A)
        return;
    eng_tensor A = { ENG_DT_F32, g->a->rank, lo->in, lo->A };

    eng_k_rowmm(p->tmp + (size_t)g->r0 * cap, cap,
                j->x + (size_t)g->r0 * lo->in, (size_t)lo->in, &A, g->n,
                1.0f, 0);
}

static void lora_a_part(void *arg, int part, int n_parts)
{
    const lora_a_job *j = arg;

    (void)n_parts;
    lora_a_unit(j, part, j->f->n_groups);
}

/* The adapters' x A^T for the n projections p, before their parts need
 * them: one (projection, group) product per part, so the pool shares them
 * (a decode step's are thin and read their A from memory); a single one
 * (one adapter) is split by rows instead, inside eng_k_rowmm. */
static void lora_a(const fwd *f, const float *x, const proj *p, int n)
{
    lora_a_job j = { f, x, p };
    int units = n * f->n_groups;

    if (units == 1)
        lora_a_unit(&j, 0, 1);
    else if (units > 1)
        eng_k_parallel_on(lora_a_part, &j, units, eng_k_pool_threads());
}

/* The n projections of x (targets t[i] into y[i], accumulating when
 * acc[i]); tmp holds n (R, lora_cap) blocks for the adapters' x A^T. */
static void project_n(const fwd *f, const float *x, int n, const int *t,
                      float *const *y, const int *acc)
{
    eng_batch *b = f->b;
    eng_layer *L = &b->m->layers[f->l];
    proj p[4];
    proj_job j = { f, x, p, n, 0 };
    double macs = 0;
    int threads = eng_k_pool_threads(), parts;

    for (int i = 0; i < n; i++) {
        const eng_tensor *bias = t[i] == ENG_T_Q ? &L->bq :
                                 t[i] == ENG_T_K ? &L->bk :
                                 t[i] == ENG_T_V ? &L->bv : NULL;

        p[i] = (proj){ t[i], y[i], acc[i], eng_layer_target(L, t[i]),
                       bias && bias->data ? bias : NULL,
                       b->lora_tmp + (size_t)i * b->rows * b->lora_cap,
                       j.total };
        j.total += p[i].W->rows;
        macs += (double)p[i].W->rows * p[i].W->cols * f->R;
    }
    lora_a(f, x, p, n);
    /* parts of about 2^19 multiply-adds (at least one per thread, at most
     * 8 per thread), as eng_k_rowmm splits one product */
    parts = (int)(macs / (1 << 19));
    if (parts > threads * 8)
        parts = threads * 8;
    if (parts > j.total / 16)
        parts = j.total / 16;
    if (macs < 65536.0 || threads < 2)
        parts = 1;
    if (parts < threads && parts > 1)
        parts = threads;
    if (parts < 1)
        parts = 1;
    eng_k_parallel_on(proj_part, &j, parts, threads);
}

/* out (hd) = softmax(q . K_t * scale, t < T) V for one query row and head:
 * scores by eng_k_dots (eng_k_dot's bits, 16 keys at a time), the V sum by
 * eng_k_wsum (in key order): one fixed order per element. */
static void attend(const float *q, const float *K, const float *V, int T,
                   int hd, int kv_dim, float scale, float *p, float *out)
{
    eng_k_dots(p, q, K, (size_t)kv_dim, T, hd, scale);
    eng_k_softmax(p, T);
    eng_k_wsum(out, p, V, (size_t)kv_dim, T, hd);
}

/* Where row r's keys and values for KV head g start in its session's cache
 * (layer f->l), and how many positions it attends to. */
static void unit_kv(const fwd *f, int *si, int r, int g, const float **K,
                    const float **V, int *T)
{
    const eng_config *c = f->c;
    int kv_dim = c->n_kv_heads * c->head_dim;
    const seg *sg;
    size_t off;

    while (r >= f->segs[*si].r0 + f->segs[*si].n)
        (*si)++;
    sg = &f->segs[*si];
    off = (size_t)f->l * sg->s->ctx * kv_dim + (size_t)g * c->head_dim;
    *K = sg->s->k_cache + off;
    *V = sg->s->v_cache + off;
    *T = sg->p0 + (r - sg->r0) + 1;
}

/* Asks for the T rows of hd floats (stride ld) ahead of their use. */
static void prefetch_rows(const float *p, int T, int hd, int ld)
{
    for (int t = 0; t < T; t++)
        for (int i = 0; i < hd; i += 16)
            __builtin_prefetch(p + (size_t)t * ld + i, 0, 3);
}

/* Attention job part: (row, KV head) units split evenly over the parts;
 * a unit runs the query heads that share the KV head, so its keys and
 * values come from memory once. The caches of a decode step are cold (the
 * weights streamed through the caches since the last layer), so the next
 * unit's rows are prefetched while this one runs. Each (row, head) is
 * computed the same way whatever the split. */
static void attention_part(void *arg, int part, int n_parts)
{
    const fwd *f = arg;
    const eng_config *c = f->c;
    eng_batch *b = f->b;
    int hd = c->head_dim, KVH = c->n_kv_heads, q_dim = c->n_heads * hd;
    int kv_dim = KVH * hd, group = c->n_heads / KVH;
    int64_t total = (int64_t)f->R * KVH;
    int64_t u0 = total * part / n_parts, u1 = total * (part + 1) / n_parts;
    float scale = 1.0f / sqrtf((float)hd);
    float *p = b->scores + (size_t)part * c->max_seq_len;
    int si = 0, sn = 0;
    const float *K, *V, *nK = NULL, *nV = NULL;
    int T, nT = 0;

    if (u0 >= u1)
        return;
    unit_kv(f, &si, (int)(u0 / KVH), (int)(u0 % KVH), &K, &V, &T);
    for (int64_t u = u0; u < u1; u++) {
        int r = (int)(u / KVH), g = (int)(u % KVH);

        if (u + 1 < u1) {
            sn = si;
            unit_kv(f, &sn, (int)((u + 1) / KVH), (int)((u + 1) % KVH),
                    &nK, &nV, &nT);
            prefetch_rows(nK, nT, hd, kv_dim);
            prefetch_rows(nV, nT, hd, kv_dim);
        }
        for (int h = g * group; h < (g + 1) * group; h++)
            attend(b->q + (size_t)r * q_dim + h * hd, K, V, T, hd, kv_dim,
                   scale, p, b->xb + (size_t)r * q_dim + h * hd);
        if (u + 1 < u1) {
            si = sn;
            K = nK, V = nV, T = nT;
        }
    }
}

static void attention(fwd *f)
{
    const eng_config *c = f->c;
    int parts = eng_k_pool_threads();
    double work = 0;

    for (int i = 0; i < f->n_segs; i++)
        work += (double)f->segs[i].n * (f->segs[i].p0 + f->segs[i].n);
    work *= (double)c->n_heads * c->head_dim;
    if (parts > f->b->n_score_bufs)
        parts = f->b->n_score_bufs;
    if (work < 65536.0 || parts > f->R * c->n_kv_heads)
        parts = 1;
    eng_k_parallel(attention_part, f, parts);
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                   */

static void layer_forward(fwd *f, int l)
{
    const eng_config *c = f->c;
    eng_batch *b = f->b;
    eng_layer *L = &b->m->layers[l];
    int hd = c->head_dim, kv_dim = c->n_kv_heads * hd, R = f->R;

    f->l = l;
    /* attention block */
    eng_k_rmsnorm(b->xb, b->x, &L->attn_norm, R, c->dim, c->norm_eps, NULL);
    {
        static const int t[3] = { ENG_T_Q, ENG_T_K, ENG_T_V };
        static const int acc[3] = { 0, 0, 0 };
        float *y[3] = { b->q, b->k, b->v };

        project_n(f, b->xb, 3, t, y, acc);
    }
    eng_k_rope(b->q, R, c->n_heads, hd, b->pos, b->m->rope_inv_freq,
               c->rope_style, 0);
    eng_k_rope(b->k, R, c->n_kv_heads, hd, b->pos, b->m->rope_inv_freq,
               c->rope_style, 0);
    for (int i = 0; i < f->n_segs; i++) {
        const seg *sg = &f->segs[i];
        size_t off = ((size_t)l * sg->s->ctx + sg->p0) * kv_dim;
        size_t len = (size_t)sg->n * kv_dim * sizeof(float);

        memcpy(sg->s->k_cache + off, b->k + (size_t)sg->r0 * kv_dim, len);
        memcpy(sg->s->v_cache + off, b->v + (size_t)sg->r0 * kv_dim, len);
    }
    attention(f);
    {
        static const int t[1] = { ENG_T_O }, acc[1] = { 1 };
        float *y[1] = { b->x };

        project_n(f, b->xb, 1, t, y, acc);
    }

    /* MLP block */
    eng_k_rmsnorm(b->xb, b->x, &L->ffn_norm, R, c->dim, c->norm_eps, NULL);
    {
        static const int t[2] = { ENG_T_GATE, ENG_T_UP }, acc[2] = { 0, 0 };
        float *y[2] = { b->hb, b->hb2 };

        project_n(f, b->xb, 2, t, y, acc);
    }
    /* row by row: the vectorized body and its scalar tail round the exp
     * polynomial differently, so one call over R rows would make a row's
     * bits depend on where it starts */
    for (int r = 0; r < R; r++) {
        size_t o = (size_t)r * c->hidden_dim;

        eng_k_swiglu(b->hb + o, b->hb + o, b->hb2 + o, (size_t)c->hidden_dim);
    }
    {
        static const int t[1] = { ENG_T_DOWN }, acc[1] = { 1 };
        float *y[1] = { b->x };

        project_n(f, b->hb, 1, t, y, acc);
    }
}

/* Runs f's rows through every layer; with logits, the LM head over each
 * segment's last row into its session. */
static void forward(fwd *f, bool want_logits)
{
    const eng_config *c = f->c;
    eng_batch *b = f->b;
    int V = c->vocab_size;

    f->groups = b->groups;
    f->n_groups = 0;
    for (int i = 0; i < f->n_segs;) {
        const eng_adapter *a = f->segs[i].s->adapter;
        int k = i + 1;

        while (k < f->n_segs && f->segs[k].s->adapter == a)
            k++;
        if (a)
            f->groups[f->n_groups++] = (group){
                a, f->segs[i].r0,
                f->segs[k - 1].r0 + f->segs[k - 1].n - f->segs[i].r0 };
        i = k;
    }

    for (int i = 0; i < f->n_segs; i++) {
        seg *sg = &f->segs[i];

        for (int r = 0; r < sg->n; r++) {
            eng_k_row_f32(&b->m->tok_emb, sg->ids[r],
                          b->x + (size_t)(sg->r0 + r) * c->dim);
            b->pos[sg->r0 + r] = sg->p0 + r;
        }
    }
    for (int l = 0; l < c->n_layers; l++)
        layer_forward(f, l);
    for (int i = 0; i < f->n_segs; i++)
        f->segs[i].s->n_past += f->segs[i].n;
    if (!want_logits)
        return;
    for (int i = 0; i < f->n_segs; i++) {
        const seg *sg = &f->segs[i];

        eng_k_rmsnorm(b->xb + (size_t)i * c->dim,
                      b->x + (size_t)(sg->r0 + sg->n - 1) * c->dim,
                      &b->m->final_norm, 1, c->dim, c->norm_eps, NULL);
    }
    eng_k_rowmm(b->logits, (size_t)V, b->xb, (size_t)c->dim, &b->m->lm_head,
                f->n_segs, 1.0f, 0);
    for (int i = 0; i < f->n_segs; i++)
        memcpy(f->segs[i].s->logits, b->logits + (size_t)i * V,
               (size_t)V * sizeof(float));
}

/* A long prompt: chunks of CHUNK rows, alone (it would crowd the block). */
static void run_long(eng_batch *b, const eng_batch_item *it)
{
    fwd f = { b, &b->m->cfg, b->segs, 1, 0, 0, NULL, 0 };

    for (int done = 0; done < it->n;) {
        int k = it->n - done < CHUNK ? it->n - done : CHUNK;

        b->segs[0] = (seg){ it->s, it->ids + done, k, 0, it->s->n_past };
        f.R = k;
        forward(&f, done + k == it->n);
        done += k;
    }
}

static int adapter_cmp(const void *x, const void *y)
{
    const eng_adapter *a = (*(const eng_batch_item *const *)x)->s->adapter;
    const eng_adapter *c = (*(const eng_batch_item *const *)y)->s->adapter;

    return a == c ? 0 : (uintptr_t)a < (uintptr_t)c ? -1 : 1;
}

/* Short items order[0..n): rows side by side, as many per forward as fit. */
static void run_short(eng_batch *b, const eng_batch_item **order, int n)
{
    fwd f = { b, &b->m->cfg, b->segs, 0, 0, 0, NULL, 0 };

    qsort(order, (size_t)n, sizeof(*order), adapter_cmp);
    for (int i = 0; i < n;) {
        f.n_segs = 0;
        f.R = 0;
        while (i < n && f.n_segs < b->max_seqs &&
               f.R + order[i]->n <= b->rows) {
            const eng_batch_item *it = order[i++];

            b->segs[f.n_segs++] = (seg){ it->s, it->ids, it->n, f.R,
                                         it->s->n_past };
            f.R += it->n;
        }
        forward(&f, true);
    }
}

static int check_items(eng_batch *b, const eng_batch_item *items, int n)
{
    int vocab = b->m->cfg.vocab_size;

    for (int i = 0; i < n; i++) {
        const eng_batch_item *it = &items[i];

        if (!it->s || it->s->model != b->m || it->n < 1 || !it->ids)
            return -EINVAL;
        if (it->n > it->s->ctx - it->s->n_past)
            return -ENOSPC;
        for (int k = 0; k < it->n; k++)
            if (it->ids[k] < 0 || it->ids[k] >= vocab)
                return -EINVAL;
        for (int j = 0; j < i; j++)
            if (items[j].s == it->s)
                return -EINVAL;
        if (it->s->adapter && ensure_lora(b, it->s->adapter->rank))
            return -ENOMEM;
    }
    return 0;
}

int eng_batch_eval(eng_batch *b, const eng_batch_item *items, int n_items)
{
    int rc, n_short = 0;

    if (!b || (!items && n_items) || n_items < 0)
        return -EINVAL;
    if ((rc = check_items(b, items, n_items)))
        return rc;
    for (int i = 0; i < n_items; i++) {
        if (items[i].n >= GEMM_ROWS) {
            run_long(b, &items[i]);
            continue;
        }
        b->order[n_short++] = &items[i];
        if (n_short == b->max_seqs) {
            run_short(b, b->order, n_short);
            n_short = 0;
        }
    }
    if (n_short)
        run_short(b, b->order, n_short);
    return 0;
}
