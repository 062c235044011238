/* SPDX-License-Identifier: MIT */
/*
 * train.c - the trainer: data plan, forward and backward over the model,
 * AdamW with warmup and cosine/linear decay, global-norm clipping and
 * gradient accumulation.
 *
 * Design. eng_trainer_new does every allocation: it copies the examples,
 * builds the whole plan (per-epoch shuffled order, micro-batches, optimizer
 * steps) from the seed alone, and carves every activation and scratch
 * buffer from one block sized by batch_size * max_seq_len tokens. A step
 * then runs without allocating. Only frozen-weight *inputs* get gradients
 * (dX through each linear); base weights get none unless full finetuning,
 * where the trainer copies the model into its own f32 block and trains it.
 *
 * A micro-batch is a flat token list (see train_impl.h): with padding, one
 * segment per example and batch_size examples; with packing, as many
 * examples as fit in batch_size * max_seq_len tokens. Per layer we keep
 * the inputs the backward cannot cheaply recompute (residual stream, q/k/v
 * after RoPE, attention output, gate and up); the normalized inputs, the
 * SwiGLU product and the attention probabilities are recomputed.
 *
 * Determinism: data order comes from (seed, epoch), dropout masks from a
 * hash of (seed, step, micro-batch, layer, target, element), and all
 * arithmetic is sequential or inside BLAS with a fixed thread count, so a
 * seed and a thread count fix every bit of the result.
 */
#include "train_impl.h"
#include "err.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void eng_train_params_default(eng_train_params *p)
{
    *p = (eng_train_params){
        .lora_rank = 8, .lora_alpha = 16.0f, .lora_dropout = 0.0f,
        .targets = ENG_TARGET_DEFAULT, .epochs = 3, .batch_size = 4,
        .grad_accum = 1, .max_seq_len = 256, .learning_rate = 1e-3f,
        .warmup_steps = 0, .schedule = ENG_SCHED_COSINE, .min_lr_ratio = 0.1f,
        .weight_decay = 0.0f, .beta1 = 0.9f, .beta2 = 0.999f,
        .adam_eps = 1e-8f, .max_grad_norm = 1.0f, .packing = false,
        .seed = 42, .n_threads = 1,
    };
}

static int check_params(const eng_train_params *p)
{
    if (!p->full_finetune &&
        (p->lora_rank < 1 || p->lora_rank > 1024 || !(p->lora_alpha > 0) ||
         !(p->lora_dropout >= 0 && p->lora_dropout < 1) || !p->targets ||
         (p->targets & ~ENG_TARGET_ALL)))
        return -EINVAL;
    if (p->epochs < 1 || p->epochs > 100000 || p->batch_size < 1 ||
        p->grad_accum < 1 || p->max_seq_len < 2 ||
        (int64_t)p->batch_size * p->max_seq_len > (1 << 24) ||
        !(p->learning_rate > 0) || p->warmup_steps < 0 ||
        (unsigned)p->schedule > ENG_SCHED_CONSTANT ||
        !(p->min_lr_ratio >= 0 && p->min_lr_ratio <= 1) ||
        !(p->weight_decay >= 0) || !(p->beta1 >= 0 && p->beta1 < 1) ||
        !(p->beta2 >= 0 && p->beta2 < 1) || !(p->adam_eps > 0) ||
        !(p->max_grad_norm >= 0) || p->n_threads < 0 || p->n_threads > 1024)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Trainable parameters                                                      */

/* Full finetuning: an f32 copy of every weight in one block, matrices
 * first (decayed), then norms and biases (not decayed, as Hugging Face's
 * Trainer does). */
static float *copy_tensor(float *p, eng_tensor *dst, const eng_tensor *src)
{
    dst->dtype = ENG_DT_F32;
    dst->rows = src->rows;
    dst->cols = src->cols;
    dst->data = p;
    if (p)
        for (int r = 0; r < src->rows; r++)
            eng_k_row_f32(src, r, p + (size_t)r * src->cols);
    return p ? p + (size_t)src->rows * src->cols : NULL;
}

static size_t tensor_floats(const eng_tensor *t)
{
    return t->data ? (size_t)t->rows * t->cols : 0;
}

/* Lays out (p == NULL: counts) the copy; returns floats, sets *n_mat. */
static size_t own_layout(eng_model *own, const eng_model *b, float *p,
                         size_t *n_mat)
{
    size_t n = 0;
#define TAKE(dst, src)                                                        \
    do {                                                                      \
        if ((src)->data) {                                                    \
            copy_tensor(p ? p + n : NULL, (dst), (src));                      \
            n += tensor_floats(src);                                          \
        }                                                                     \
    } while (0)
    TAKE(&own->tok_emb, &b->tok_emb);
    if (!b->cfg.tied_embeddings)
        TAKE(&own->lm_head, &b->lm_head);
    for (int l = 0; l < b->cfg.n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++)
            TAKE(eng_layer_target(&own->layers[l], t),
                 eng_layer_target(&b->layers[l], t));
    *n_mat = n;
    for (int l = 0; l < b->cfg.n_layers; l++) {
        TAKE(&own->layers[l].attn_norm, &b->layers[l].attn_norm);
        TAKE(&own->layers[l].ffn_norm, &b->layers[l].ffn_norm);
        TAKE(&own->layers[l].bq, &b->layers[l].bq);
        TAKE(&own->layers[l].bk, &b->layers[l].bk);
        TAKE(&own->layers[l].bv, &b->layers[l].bv);
    }
    TAKE(&own->final_norm, &b->final_norm);
#undef TAKE
    return n;
}

static int own_model_new(eng_trainer *t)
{
    eng_model *own = NULL;
    size_t n_mat, n;
    int rc = eng_model_alloc(&t->base->cfg, &own);
    if (rc)
        return rc;
    n = own_layout(own, t->base, NULL, &n_mat);
    if (!(own->owned = eng_alloc_huge(n * sizeof(float)))) {
        eng_model_unref(own);
        return -ENOMEM;
    }
    own_layout(own, t->base, own->owned, &n_mat);
    if ((rc = eng_model_finish(own))) {
        eng_model_unref(own);
        return rc;
    }
    t->m = own;
    t->param = own->owned;
    t->n_param = n;
    t->n_decay = n_mat;
    return 0;
}

/* Gradient slot of a trainable tensor (full finetune), or NULL. */
static float *grad_of(const eng_trainer *t, const eng_tensor *w)
{
    if (!t->p.full_finetune || !w || !w->data)
        return NULL;
    return t->grad + ((const float *)w->data - t->param);
}

float *tr_params(eng_trainer *t, size_t *ret_n)
{
    *ret_n = t->n_param;
    return t->param;
}

float *tr_grads(eng_trainer *t)
{
    return t->grad;
}

void tr_zero_grads(eng_trainer *t)
{
    memset(t->grad, 0, t->n_param * sizeof(float));
}

/* ------------------------------------------------------------------------ */
/* Examples and plan                                                         */

static int masked_count(const eng_example *e)
{
    int n = 0;
    for (int i = 1; i < e->n; i++)
        n += e->mask[i] != 0;
    return n;
}

/* Copies the examples that have something to learn, truncated to
 * max_seq_len, into one block. */
static int copy_examples(eng_trainer *t, const eng_example *ex, int n)
{
    size_t tok = 0;
    int keep = 0, L = t->p.max_seq_len;
    for (int i = 0; i < n; i++) {
        if (!ex[i].ids || !ex[i].mask || ex[i].n < 0)
            return -EINVAL;
        for (int j = 0; j < ex[i].n; j++)
            if (ex[i].ids[j] < 0 || ex[i].ids[j] >= t->c.vocab_size)
                return -EINVAL;
        eng_example v = ex[i];
        v.n = v.n < L ? v.n : L;
        if (masked_count(&v)) {
            tok += (size_t)v.n;
            keep++;
        }
    }
    if (!keep)
        return -EINVAL;
    t->ex = calloc((size_t)keep, sizeof(*t->ex));
    t->ex_block = malloc(tok * (sizeof(int32_t) + 1) + 1);
    if (!t->ex || !t->ex_block)
        return -ENOMEM;
    int32_t *ids = t->ex_block;
    uint8_t *mask = (uint8_t *)(ids + tok);
    for (int i = 0; i < n; i++) {
        eng_example v = ex[i];
        v.n = v.n < L ? v.n : L;
        if (!masked_count(&v))
            continue;
        eng_example *d = &t->ex[t->n_ex++];
        d->ids = ids;
        d->mask = mask;
        d->n = v.n;
        d->truncated = ex[i].truncated || v.n < ex[i].n;
        memcpy(ids, v.ids, sizeof(int32_t) * (size_t)v.n);
        for (int j = 0; j < v.n; j++)
            mask[j] = v.mask[j] != 0;
        ids += v.n;
        mask += v.n;
    }
    return 0;
}

/* Shuffles each epoch's order and cuts it into micro-batches and steps. */
static int build_plan(eng_trainer *t)
{
    int n = t->n_ex, E = t->p.epochs, cap = t->cap;
    uint64_t h = ENG_FNV_INIT;
    t->order = malloc(sizeof(int) * (size_t)n * E);
    t->micro = malloc(sizeof(tr_micro) * (size_t)n * E);
    t->steps = malloc(sizeof(tr_step) * (size_t)n * E);
    if (!t->order || !t->micro || !t->steps)
        return -ENOMEM;
    for (int e = 0; e < E; e++) {
        int *o = t->order + (size_t)e * n;
        uint64_t s = eng_mix64(t->p.seed ^ (0x5eedull * (uint64_t)(e + 1)));
        for (int i = 0; i < n; i++)
            o[i] = i;
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(eng_splitmix64(&s) % (uint64_t)(i + 1));
            int x = o[i];
            o[i] = o[j];
            o[j] = x;
        }
        int first_micro = t->n_micro;
        for (int i = 0; i < n;) {
            tr_micro *mb = &t->micro[t->n_micro++];
            int tok = 0;
            *mb = (tr_micro){.epoch = e, .first = i};
            while (i < n && mb->count < (t->p.packing ? n : t->p.batch_size) &&
                   tok + t->ex[o[i]].n <= cap) {
                tok += t->ex[o[i]].n;
                mb->n_masked += masked_count(&t->ex[o[i]]);
                mb->count++;
                i++;
            }
        }
        for (int i = first_micro; i < t->n_micro; i += t->p.grad_accum) {
            tr_step *st = &t->steps[t->n_steps++];
            *st = (tr_step){.first_micro = i, .epoch = e};
            for (int j = i; j < t->n_micro && j < i + t->p.grad_accum; j++) {
                st->n_micro++;
                st->n_masked += t->micro[j].n_masked;
            }
        }
    }
    h = eng_fnv1a(h, t->order, sizeof(int) * (size_t)n * E);
    for (int i = 0; i < n; i++) {
        h = eng_fnv1a(h, t->ex[i].ids, sizeof(int32_t) * (size_t)t->ex[i].n);
        h = eng_fnv1a(h, t->ex[i].mask, (size_t)t->ex[i].n);
    }
    t->plan_hash =
        eng_fnv1a(h, t->micro, sizeof(tr_micro) * (size_t)t->n_micro);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */

typedef struct carve {
    char *base;
    size_t off;
} carve;

static void *take(carve *c, size_t bytes)
{
    size_t o = (c->off + 63) & ~(size_t)63; /* cache-line aligned */
    c->off = o + bytes;
    return c->base ? c->base + o : NULL;
}

#define TAKE_F(c, n) ((float *)take((c), sizeof(float) * (size_t)(n)))

/* Assigns every buffer (c->base == NULL: only measures). */
static void layout_buffers(eng_trainer *t, carve *c)
{
    const eng_config *k = &t->c;
    size_t N = (size_t)t->cap, D = (size_t)k->dim, H = (size_t)k->hidden_dim;
    size_t Q = (size_t)k->n_heads * k->head_dim;
    size_t KV = (size_t)k->n_kv_heads * k->head_dim;
    size_t T = (size_t)t->p.max_seq_len;
    size_t r = t->ad ? (size_t)t->ad->rank : 0, V = (size_t)k->vocab_size;
    size_t wmax = D > Q ? D : Q;
    wmax = wmax > H ? wmax : H;
    for (int l = 0; l <= k->n_layers; l++)
        t->x[l] = TAKE_F(c, N * D);
    for (int l = 0; l < k->n_layers; l++) {
        tr_act *a = &t->act[l];
        a->rs1 = TAKE_F(c, N);
        a->rs2 = TAKE_F(c, N);
        a->q = TAKE_F(c, N * Q);
        a->att = TAKE_F(c, N * Q);
        a->k = TAKE_F(c, N * KV);
        a->v = TAKE_F(c, N * KV);
        a->xm = TAKE_F(c, N * D);
        a->g = TAKE_F(c, N * H);
        a->u = TAKE_F(c, N * H);
        for (int tt = 0; tt < ENG_T_COUNT; tt++)
            a->lu[tt] = t->ad && eng_adapter_at(t->ad, l, tt)->A
                            ? TAKE_F(c, N * r) : NULL;
    }
    t->rsf = TAKE_F(c, N);
    t->xn = TAKE_F(c, N * D);
    t->h = TAKE_F(c, N * H);
    t->dres = TAKE_F(c, N * D);
    t->dxn = TAKE_F(c, N * D);
    t->dq = TAKE_F(c, N * Q);
    t->datt = TAKE_F(c, N * Q);
    t->dk = TAKE_F(c, N * KV);
    t->dv = TAKE_F(c, N * KV);
    t->dh = TAKE_F(c, N * H);
    t->dg = TAKE_F(c, N * H);
    t->du = TAKE_F(c, N * H);
    t->drop_w = wmax;
    t->drop = t->p.lora_dropout > 0 ? TAKE_F(c, N * wmax) : NULL;
    t->dr = TAKE_F(c, N * (r ? r : 1));
    t->rope_cs = TAKE_F(c, T * (size_t)k->head_dim);
    /* LM-head chunks: 12 Mi logits (48 MiB) per worker, 256 rows at vocab
     * 49152; single-threaded sgemm runs (256 x 49152 x 576) at 96-98
     * GFLOP/s here, 170 rows at 89-91, 85 rows at 77-81 */
    size_t C = ((size_t)3 << 22) / V;
    C = C < 1 ? 1 : C > N ? N : C;
    for (int w = 0; w < t->n_ws; w++) {
        tr_ws *ws = &t->ws[w];
        ws->t = t;
        ws->S = TAKE_F(c, T * T);
        ws->dP = TAKE_F(c, T * T);
        ws->segs = take(c, sizeof(tr_seg) * N);
        ws->ce.chunk = (int)C;
        ws->ce.logits = TAKE_F(c, C * V);
        ws->ce.xc = TAKE_F(c, C * D);
        ws->ce.dxc = TAKE_F(c, C * D);
        ws->ce.rows = take(c, sizeof(int) * C);
        ws->grad = w ? TAKE_F(c, t->n_param) : t->grad;
    }
    t->b_ids = take(c, sizeof(int32_t) * N);
    t->b_tgt = take(c, sizeof(int32_t) * N);
    t->b_pos = take(c, sizeof(int) * N);
    t->b_segs = take(c, sizeof(tr_seg) * N);
}

static int alloc_buffers(eng_trainer *t)
{
    carve c = {0};
    /* LoRA gradients are small enough to keep one block per worker; full
     * finetuning runs whole micro-batches on BLAS's threads */
    t->n_ws = 1;
    if (!t->p.full_finetune && t->p.n_threads > 1 &&
        (t->p.batch_size > 1 || t->p.packing))
        t->n_ws = t->p.n_threads < TR_MAX_WS ? t->p.n_threads : TR_MAX_WS;
    t->x = calloc((size_t)t->c.n_layers + 1, sizeof(*t->x));
    t->act = calloc((size_t)t->c.n_layers, sizeof(*t->act));
    if (!t->x || !t->act)
        return -ENOMEM;
    layout_buffers(t, &c);
    t->block_bytes = c.off + 64;
    /* calloc: untouched capacity (short batches) costs no resident memory */
    if (!(t->block = calloc(1, t->block_bytes)))
        return -ENOMEM;
    c.base = (char *)(((uintptr_t)t->block + 63) & ~(uintptr_t)63);
    c.off = 0;
    layout_buffers(t, &c);
    for (int w = 0; w < t->n_ws; w++)
        t->ws[w].ce.E = &t->m->lm_head;
    eng_k_rope_table(t->rope_cs, t->p.max_seq_len, t->c.head_dim,
                     t->m->rope_inv_freq);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Micro-batches                                                             */

static int batch_build_idx(eng_trainer *t, const eng_example *ex,
                           const int *idx, int n, tr_batch *b)
{
    int tok = 0, ns = 0, max_len = 0;
    for (int i = 0; i < n; i++) {
        const eng_example *e = &ex[idx ? idx[i] : i];
        int len = e->n < t->p.max_seq_len ? e->n : t->p.max_seq_len;
        if (len <= 0)
            continue;
        if (tok + len > t->cap)
            return -EINVAL;
        for (int j = 0; j < len; j++) {
            if (e->ids[j] < 0 || e->ids[j] >= t->c.vocab_size)
                return -EINVAL;
            t->b_ids[tok + j] = e->ids[j];
            t->b_pos[tok + j] = j;
            t->b_tgt[tok + j] =
                j + 1 < len && e->mask[j + 1] ? e->ids[j + 1] : -1;
        }
        t->b_segs[ns++] = (tr_seg){tok, len};
        tok += len;
        max_len = len > max_len ? len : max_len;
    }
    *b = (tr_batch){
        .n = tok, .ids = t->b_ids, .pos = t->b_pos, .tgt = t->b_tgt,
        .segs = t->b_segs, .n_segs = ns, .max_len = max_len,
        .loss_scale = 1.0f,
    };
    return 0;
}

int tr_batch_build(eng_trainer *t, const eng_example *ex, int n,
                   tr_batch *ret)
{
    return batch_build_idx(t, ex, NULL, n, ret);
}

/* ------------------------------------------------------------------------ */
/* Forward and backward                                                      */

static tr_lin make_lin(const tr_ws *w, int l, int tt, int want_grad)
{
    const eng_trainer *t = w->t;
    const tr_batch *b = &w->b;
    eng_layer *L = &t->m->layers[l];
    tr_lin lin = {.W = eng_layer_target(L, tt)};
    if (t->c.qkv_bias && tt <= ENG_T_V) {
        lin.b = tt == ENG_T_Q ? &L->bq : tt == ENG_T_K ? &L->bk : &L->bv;
        if (want_grad)
            lin.db = grad_of(t, lin.b);
    }
    if (want_grad)
        lin.dW = grad_of(t, lin.W);
    const eng_lora *lo = t->ad ? eng_adapter_at(t->ad, l, tt) : NULL;
    if (lo && lo->A) {
        lin.A = lo->A;
        lin.B = lo->B;
        lin.r = t->ad->rank;
        lin.scale = t->ad->scale;
        /* dropout only in training micro-batches (drop_seed != 0) */
        lin.dropout = b->drop_seed ? t->p.lora_dropout : 0.0f;
        /* the mask of element i of the whole micro-batch is hashed from
         * drop_seed + i: a slice starting at row r0 starts at r0 * in */
        lin.drop_seed = eng_mix64(b->drop_seed ^ (uint64_t)(l * 8 + tt + 1)) +
                        (uint64_t)w->r0 * (uint64_t)lin.W->cols;
        if (want_grad) {
            lin.dA = w->grad + (lo->A - t->ad->data);
            lin.dB = w->grad + (lo->B - t->ad->data);
        }
    }
    return lin;
}

/* Row pointers of a worker's slice. */
#define ROWS(p, width) ((p) + (size_t)w->r0 * (size_t)(width))

/* Layer l's saved activations, at the worker's rows. */
static tr_act act_rows(const tr_ws *w, int l)
{
    const eng_config *c = &w->t->c;
    const tr_act *a = &w->t->act[l];
    int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    int r = w->t->ad ? w->t->ad->rank : 0;
    tr_act s = {
        ROWS(a->rs1, 1), ROWS(a->rs2, 1), ROWS(a->q, Q), ROWS(a->att, Q),
        ROWS(a->k, KV), ROWS(a->v, KV), ROWS(a->xm, c->dim),
        ROWS(a->g, c->hidden_dim), ROWS(a->u, c->hidden_dim), {0},
    };
    for (int tt = 0; tt < ENG_T_COUNT; tt++)
        s.lu[tt] = a->lu[tt] ? ROWS(a->lu[tt], r) : NULL;
    return s;
}

static void layer_fwd(tr_ws *w, int l)
{
    eng_trainer *t = w->t;
    const tr_batch *b = &w->b;
    const eng_config *c = &t->c;
    eng_layer *L = &t->m->layers[l];
    tr_act a = act_rows(w, l);
    int N = b->n, D = c->dim;
    tr_attn_dims dims = {c->n_heads, c->n_kv_heads, c->head_dim};
    const float *x = ROWS(t->x[l], D);
    float *y = ROWS(t->x[l + 1], D), *xn = ROWS(t->xn, D);
    float *h = ROWS(t->h, c->hidden_dim);
    float *drop = t->drop ? ROWS(t->drop, t->drop_w) : NULL;
    tr_lin lin;

    eng_k_rmsnorm(xn, x, &L->attn_norm, N, D, c->norm_eps, a.rs1);
    lin = make_lin(w, l, ENG_T_Q, 0);
    tr_lin_fwd(&lin, a.q, xn, N, a.lu[ENG_T_Q], drop);
    lin = make_lin(w, l, ENG_T_K, 0);
    tr_lin_fwd(&lin, a.k, xn, N, a.lu[ENG_T_K], drop);
    lin = make_lin(w, l, ENG_T_V, 0);
    tr_lin_fwd(&lin, a.v, xn, N, a.lu[ENG_T_V], drop);
    eng_k_rope_cs(a.q, N, c->n_heads, c->head_dim, b->pos, t->rope_cs,
                  c->rope_style, 0);
    eng_k_rope_cs(a.k, N, c->n_kv_heads, c->head_dim, b->pos, t->rope_cs,
                  c->rope_style, 0);
    tr_attn_fwd(a.att, a.q, a.k, a.v, b->segs, b->n_segs, &dims, w->S);
    lin = make_lin(w, l, ENG_T_O, 0);
    tr_lin_fwd(&lin, a.xm, a.att, N, a.lu[ENG_T_O], drop);
    for (size_t i = 0; i < (size_t)N * D; i++)
        a.xm[i] += x[i];                                    /* residual */

    eng_k_rmsnorm(xn, a.xm, &L->ffn_norm, N, D, c->norm_eps, a.rs2);
    lin = make_lin(w, l, ENG_T_GATE, 0);
    tr_lin_fwd(&lin, a.g, xn, N, a.lu[ENG_T_GATE], drop);
    lin = make_lin(w, l, ENG_T_UP, 0);
    tr_lin_fwd(&lin, a.u, xn, N, a.lu[ENG_T_UP], drop);
    eng_k_swiglu(h, a.g, a.u, (size_t)N * c->hidden_dim);
    lin = make_lin(w, l, ENG_T_DOWN, 0);
    tr_lin_fwd(&lin, y, h, N, a.lu[ENG_T_DOWN], drop);
    for (size_t i = 0; i < (size_t)N * D; i++)
        y[i] += a.xm[i];                                    /* residual */
}

/* On entry dres = dL/dx[l+1]; on return dL/dx[l]. With LoRA the gradient
 * below layer 0's q, k and v projections reaches no parameter, so layer 0
 * skips it (dX of those three and the first norm's backward). */
static void layer_bwd(tr_ws *w, int l)
{
    eng_trainer *t = w->t;
    const tr_batch *b = &w->b;
    const eng_config *c = &t->c;
    eng_layer *L = &t->m->layers[l];
    tr_act a = act_rows(w, l);
    int N = b->n, D = c->dim, H = c->hidden_dim;
    int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    size_t NH = (size_t)N * H;
    tr_attn_dims dims = {c->n_heads, c->n_kv_heads, c->head_dim};
    float *xn = ROWS(t->xn, D), *h = ROWS(t->h, H), *dres = ROWS(t->dres, D);
    float *dxn = ROWS(t->dxn, D), *dh = ROWS(t->dh, H), *dg = ROWS(t->dg, H);
    float *du = ROWS(t->du, H), *datt = ROWS(t->datt, Q);
    float *dq = ROWS(t->dq, Q), *dk = ROWS(t->dk, KV), *dv = ROWS(t->dv, KV);
    float *drop = t->drop ? ROWS(t->drop, t->drop_w) : NULL;
    float *dr = ROWS(t->dr, t->ad ? t->ad->rank : 1);
    const float *x = ROWS(t->x[l], D);
    int need_dx = l > 0 || t->p.full_finetune;
    tr_lin lin;

    /* MLP: recompute h and the normalized input, then back through them */
    eng_k_swiglu(h, a.g, a.u, NH);
    lin = make_lin(w, l, ENG_T_DOWN, 1);
    tr_lin_bwd(&lin, dh, dres, h, a.lu[ENG_T_DOWN], N, 0, drop, dr);
    tr_swiglu_bwd(dg, du, dh, a.g, a.u, NH);
    eng_k_rmsnorm(xn, a.xm, &L->ffn_norm, N, D, c->norm_eps, NULL);
    lin = make_lin(w, l, ENG_T_GATE, 1);
    tr_lin_bwd(&lin, dxn, dg, xn, a.lu[ENG_T_GATE], N, 0, drop, dr);
    lin = make_lin(w, l, ENG_T_UP, 1);
    tr_lin_bwd(&lin, dxn, du, xn, a.lu[ENG_T_UP], N, 1, drop, dr);
    tr_rmsnorm_bwd(dres, dxn, a.xm, a.rs2, &L->ffn_norm,
                   grad_of(t, &L->ffn_norm), N, D, 1);

    /* attention */
    lin = make_lin(w, l, ENG_T_O, 1);
    tr_lin_bwd(&lin, datt, dres, a.att, a.lu[ENG_T_O], N, 0, drop, dr);
    tr_attn_bwd(dq, dk, dv, datt, a.q, a.k, a.v, b->segs, b->n_segs, &dims,
                w->S, w->dP);
    eng_k_rope_cs(dq, N, c->n_heads, c->head_dim, b->pos, t->rope_cs,
                  c->rope_style, 1);
    eng_k_rope_cs(dk, N, c->n_kv_heads, c->head_dim, b->pos, t->rope_cs,
                  c->rope_style, 1);
    eng_k_rmsnorm(xn, x, &L->attn_norm, N, D, c->norm_eps, NULL);
    lin = make_lin(w, l, ENG_T_Q, 1);
    tr_lin_bwd(&lin, need_dx ? dxn : NULL, dq, xn, a.lu[ENG_T_Q], N, 0, drop,
               dr);
    lin = make_lin(w, l, ENG_T_K, 1);
    tr_lin_bwd(&lin, need_dx ? dxn : NULL, dk, xn, a.lu[ENG_T_K], N, 1, drop,
               dr);
    lin = make_lin(w, l, ENG_T_V, 1);
    tr_lin_bwd(&lin, need_dx ? dxn : NULL, dv, xn, a.lu[ENG_T_V], N, 1, drop,
               dr);
    if (need_dx)
        tr_rmsnorm_bwd(dres, dxn, x, a.rs1, &L->attn_norm,
                       grad_of(t, &L->attn_norm), N, D, 1);
}

/* The whole forward (and backward) of one worker's rows. */
static void ws_run(tr_ws *w)
{
    eng_trainer *t = w->t;
    const tr_batch *b = &w->b;
    const eng_config *c = &t->c;
    int N = b->n, D = c->dim, Ln = c->n_layers;
    float *xn = ROWS(t->xn, D), *dxn = ROWS(t->dxn, D);
    for (int r = 0; r < N; r++)                             /* embedding */
        eng_k_row_f32(&t->m->tok_emb, b->ids[r],
                      ROWS(t->x[0], D) + (size_t)r * D);
    for (int l = 0; l < Ln; l++)
        layer_fwd(w, l);
    eng_k_rmsnorm(xn, ROWS(t->x[Ln], D), &t->m->final_norm, N, D,
                  c->norm_eps, ROWS(t->rsf, 1));
    w->ce.dE = w->want_grad ? grad_of(t, &t->m->lm_head) : NULL;
    tr_ce_run(&w->ce, xn, w->want_grad ? dxn : NULL, b->tgt, N,
              b->loss_scale, &w->loss, &w->correct);
    if (!w->want_grad)
        return;
    tr_rmsnorm_bwd(ROWS(t->dres, D), dxn, ROWS(t->x[Ln], D),
                   ROWS(t->rsf, 1), &t->m->final_norm,
                   grad_of(t, &t->m->final_norm), N, D, 0);
    for (int l = Ln - 1; l >= 0; l--)
        layer_bwd(w, l);
    float *dE = grad_of(t, &t->m->tok_emb);
    for (int r = 0; dE && r < N; r++) {
        float *g = dE + (size_t)b->ids[r] * D;
        for (int i = 0; i < D; i++)
            g[i] += t->dres[(size_t)r * D + i];
    }
}

static void *ws_thread(void *arg)
{
    ws_run(arg);
    return NULL;
}

/* Cuts b into up to t->n_ws slices of whole segments with about equal
 * token counts; returns the count (1: run it whole). */
static int ws_split(eng_trainer *t, const tr_batch *b)
{
    int n = t->n_ws < b->n_segs ? t->n_ws : b->n_segs, s = 0;
    if (n < 2)
        return 1;
    int start[TR_MAX_WS + 1], biggest = 0;
    for (int k = 0; k < n; k++) {
        /* slice k ends at the segment boundary nearest (k+1) n_tok / n */
        long goal = (long)b->n * (k + 1) / n;
        int s0 = s;
        start[k] = b->segs[s].start;
        s++;
        while (s < b->n_segs - (n - 1 - k) &&
               labs((long)b->segs[s].start + b->segs[s].len - goal) <=
                   labs((long)b->segs[s].start - goal))
            s++;
        if (k == n - 1)
            s = b->n_segs;
        tr_ws *w = &t->ws[k];
        int end = s < b->n_segs ? b->segs[s].start : b->n;
        w->r0 = start[k];
        w->b = *b;
        w->b.n = end - start[k];
        w->b.ids = b->ids + w->r0;
        w->b.pos = b->pos + w->r0;
        w->b.tgt = b->tgt + w->r0;
        w->b.n_segs = s - s0;
        w->b.segs = w->segs;
        w->b.max_len = 0;
        for (int j = s0; j < s; j++) {
            w->segs[j - s0] = (tr_seg){b->segs[j].start - w->r0,
                                       b->segs[j].len};
            if (b->segs[j].len > w->b.max_len)
                w->b.max_len = b->segs[j].len;
        }
        biggest = w->b.n > biggest ? w->b.n : biggest;
    }
    /* a lopsided cut (one long example) is slower than BLAS's threads */
    if ((long)biggest * n > (long)b->n * 13 / 10)
        return 1;
    return n;
}

int tr_forward_backward(eng_trainer *t, const tr_batch *b, int want_grad,
                        double *ret_loss, int *ret_correct)
{
    if (b->n <= 0) {
        *ret_loss = 0.0;
        *ret_correct = 0;
        return 0;
    }
    int n = ws_split(t, b), rc = 0, threads = eng_k_get_threads();
    pthread_t th[TR_MAX_WS];
    if (n == 1) {
        tr_ws *w = &t->ws[0];
        w->r0 = 0;
        w->b = *b;
        w->want_grad = want_grad;
        ws_run(w);
        *ret_loss = w->loss;
        *ret_correct = w->correct;
        return 0;
    }
    /* n workers on single-threaded BLAS: as many busy threads as cores */
    eng_k_set_threads(1);
    for (int k = 0; k < n; k++) {
        t->ws[k].want_grad = want_grad;
        if (k && want_grad)
            memset(t->ws[k].grad, 0, t->n_param * sizeof(float));
    }
    int started = 1;
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, ws_thread, &t->ws[started]))
            break;
    for (int k = started; k < n; k++) /* no thread: run it here */
        ws_run(&t->ws[k]);
    ws_run(&t->ws[0]);
    for (int k = 1; k < started; k++)
        pthread_join(th[k], NULL);
    eng_k_set_threads(threads);
    double loss = 0.0;
    int correct = 0;
    for (int k = 0; k < n; k++) {
        loss += t->ws[k].loss;
        correct += t->ws[k].correct;
        if (k && want_grad)
            for (size_t i = 0; i < t->n_param; i++)
                t->grad[i] += t->ws[k].grad[i];
    }
    *ret_loss = loss;
    *ret_correct = correct;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */

int eng_trainer_new(eng_model *m, const eng_train_params *p,
                    const eng_example *train, int n_train, eng_trainer **ret,
                    char *err, size_t errlen)
{
    eng_trainer *t = NULL;
    int rc;
    if (!m || !p || (!train && n_train) || n_train < 0)
        return -EINVAL;
    if ((rc = check_params(p))) {
        eng_err(err, errlen, "invalid training parameters");
        return rc;
    }
    if (!(t = calloc(1, sizeof(*t))))
        return -ENOMEM;
    t->p = *p;
    if (t->p.n_threads == 0)
        t->p.n_threads = 1;
    t->base = eng_model_ref(m);
    t->c = m->cfg;
    t->cap = p->batch_size * p->max_seq_len;
    if ((rc = copy_examples(t, train, n_train))) {
        eng_err(err, errlen, "%s",
                rc == -ENOMEM ? "out of memory"
                              : "no usable training examples (bad token ids "
                                "or no loss tokens)");
        goto out;
    }
    if (p->full_finetune) {
        rc = own_model_new(t);
    } else {
        t->m = eng_model_ref(m);
        rc = eng_adapter_new(m, p->lora_rank, p->lora_alpha, p->targets,
                             p->seed, &t->ad);
        if (!rc) {
            t->ad->dropout = p->lora_dropout;
            t->param = t->ad->data;
            t->n_param = t->n_decay = t->ad->n_floats;
        }
    }
    if (rc)
        goto out;
    t->grad = calloc(t->n_param, sizeof(float));
    t->m1 = calloc(t->n_param, sizeof(float));
    t->m2 = calloc(t->n_param, sizeof(float));
    if (!t->grad || !t->m1 || !t->m2) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = build_plan(t)) || (rc = alloc_buffers(t))) {
        eng_err(err, errlen, "out of memory for the training buffers");
        goto out;
    }
    *ret = t;
    t = NULL;
out:
    eng_trainer_free(t);
    return rc;
}

void eng_trainer_free(eng_trainer *t)
{
    if (!t)
        return;
    eng_adapter_unref(t->ad);
    eng_model_unref(t->m);
    eng_model_unref(t->base);
    free(t->grad);
    free(t->m1);
    free(t->m2);
    free(t->ex);
    free(t->ex_block);
    free(t->order);
    free(t->micro);
    free(t->steps);
    free(t->block);
    free(t->x);
    free(t->act);
    free(t);
}

int eng_trainer_total_steps(const eng_trainer *t)
{
    return t->n_steps;
}

int eng_trainer_step_index(const eng_trainer *t)
{
    return t->step;
}

eng_adapter *eng_trainer_adapter(eng_trainer *t)
{
    return t->ad;
}

eng_model *eng_trainer_model(eng_trainer *t)
{
    return t->m;
}

/* ------------------------------------------------------------------------ */
/* Optimizer                                                                 */

static float lr_at(const eng_trainer *t, int step)
{
    const eng_train_params *p = &t->p;
    float peak = p->learning_rate, lo = peak * p->min_lr_ratio;
    if (step < p->warmup_steps)
        return peak * (float)(step + 1) / (float)p->warmup_steps;
    if (p->schedule == ENG_SCHED_CONSTANT)
        return peak;
    int span = t->n_steps - p->warmup_steps - 1;
    double x = span > 0 ? (double)(step - p->warmup_steps) / span : 1.0;
    x = x > 1.0 ? 1.0 : x;
    if (p->schedule == ENG_SCHED_LINEAR)
        return (float)(peak - (peak - lo) * x);
    return (float)(lo + (peak - lo) * 0.5 * (1.0 + cos(M_PI * x)));
}

/* Global-norm clip then AdamW (decoupled weight decay, bias corrected). */
static float adamw(eng_trainer *t, float lr, int step)
{
    const eng_train_params *p = &t->p;
    double ss = 0.0;
    for (size_t i = 0; i < t->n_param; i++)
        ss += (double)t->grad[i] * t->grad[i];
    float norm = (float)sqrt(ss), clip = 1.0f;
    if (p->max_grad_norm > 0 && norm > p->max_grad_norm)
        clip = p->max_grad_norm / (norm + 1e-6f);
    float b1 = p->beta1, b2 = p->beta2;
    float c1 = 1.0f / (1.0f - powf(b1, (float)(step + 1)));
    float c2 = 1.0f / (1.0f - powf(b2, (float)(step + 1)));
    float decay = 1.0f - lr * p->weight_decay;
    for (size_t i = 0; i < t->n_param; i++) {
        float g = t->grad[i] * clip;
        float m = t->m1[i] = b1 * t->m1[i] + (1.0f - b1) * g;
        float v = t->m2[i] = b2 * t->m2[i] + (1.0f - b2) * g * g;
        if (i < t->n_decay)
            t->param[i] *= decay;
        t->param[i] -= lr * (m * c1) / (sqrtf(v * c2) + p->adam_eps);
    }
    return norm;
}

/* ------------------------------------------------------------------------ */
/* Steps                                                                     */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool aborted(const eng_hooks *h)
{
    return h && h->abort && h->abort(h->user);
}

int eng_trainer_step(eng_trainer *t, const eng_hooks *h, eng_progress *ret)
{
    if (t->step >= t->n_steps)
        return -EINVAL;
    if (aborted(h))
        return -ECANCELED;
    const tr_step *st = &t->steps[t->step];
    double t0 = now_s(), loss = 0.0;
    int64_t tokens = 0;
    eng_k_set_threads(t->p.n_threads);
    tr_zero_grads(t);
    for (int i = 0; i < st->n_micro; i++) {
        const tr_micro *mb = &t->micro[st->first_micro + i];
        tr_batch b;
        double l;
        int hits;
        if (i && aborted(h))
            return -ECANCELED; /* grads are rebuilt by the next step */
        int rc = batch_build_idx(t, t->ex,
                                 t->order + (size_t)mb->epoch * t->n_ex +
                                     mb->first,
                                 mb->count, &b);
        if (rc)
            return rc;
        b.loss_scale = 1.0f / (float)st->n_masked;
        b.drop_seed = eng_mix64(t->p.seed ^ ((uint64_t)t->step << 20) ^
                                (uint64_t)i) | 1;
        tr_forward_backward(t, &b, 1, &l, &hits);
        loss += l;
        tokens += b.n;
    }
    float lr = lr_at(t, t->step);
    float norm = adamw(t, lr, t->step);
    t->step++;
    t->tokens_seen += tokens;
    double dt = now_s() - t0;
    eng_progress pr = {
        .step = t->step, .total_steps = t->n_steps, .epoch = st->epoch + 1,
        .train_loss = (float)(loss / st->n_masked), .lr = lr,
        .grad_norm = norm, .tokens_per_second = dt > 0 ? tokens / dt : 0.0,
        .tokens_seen = t->tokens_seen,
    };
    if (h && h->progress)
        h->progress(h->user, &pr);
    if (ret)
        *ret = pr;
    return 0;
}

int eng_trainer_run(eng_trainer *t, const eng_hooks *h)
{
    while (t->step < t->n_steps) {
        int rc = eng_trainer_step(t, h, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

int eng_trainer_evaluate(eng_trainer *t, const eng_example *ex, int n,
                         float *ret_loss, float *ret_accuracy)
{
    double loss = 0.0;
    int64_t count = 0, correct = 0;
    if (!ex || n < 0)
        return -EINVAL;
    eng_k_set_threads(t->p.n_threads);
    for (int i = 0; i < n;) {
        int k = 0, tok = 0, rc;
        while (i + k < n && k < t->p.batch_size) {
            int len = ex[i + k].n < t->p.max_seq_len ? ex[i + k].n
                                                     : t->p.max_seq_len;
            if (tok + len > t->cap)
                break;
            tok += len;
            k++;
        }
        tr_batch b;
        if ((rc = batch_build_idx(t, ex + i, NULL, k, &b)))
            return rc;
        for (int j = 0; j < b.n; j++)
            count += b.tgt[j] >= 0;
        double l;
        int hits;
        tr_forward_backward(t, &b, 0, &l, &hits);
        loss += l;
        correct += hits;
        i += k;
    }
    if (!count)
        return -EINVAL;
    *ret_loss = (float)(loss / count);
    if (ret_accuracy)
        *ret_accuracy = (float)correct / (float)count;
    return 0;
}
