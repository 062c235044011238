/* SPDX-License-Identifier: MIT */
/*
 * test_batch.c - batched inference (engine/batch.c, engine/rowmm.c).
 *
 *  - eng_k_rowmm against the naive matmul, and the bits of a row against
 *    the row count, its place in the batch and the thread count (f32, bf16);
 *  - the batched forward against the session forward (the OpenBLAS path),
 *    with adapters, within float tolerance;
 *  - the promise of issue #6: greedy decoding of many requests over a mix of
 *    adapters (none, shared, distinct; prompts short, long and longer than a
 *    GEMM chunk), each alone (a batch of one) and all batched with requests
 *    joining and leaving between steps, gives the same tokens and the same
 *    logits to the bit, on stories260K and on a random model with 16-lane
 *    rows, with 1 and 2 threads;
 *  - argument errors.
 */
#include "engine/batch.h"
#include "engine/session.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* ---- rowmm ---------------------------------------------------------------- */

static void test_rowmm(void)
{
    /* the last five are thin (LoRA's B: rows x rank) */
    int shapes[][2] = { { 37, 172 }, { 64, 64 }, { 100, 576 }, { 9, 8 },
                        { 40, 8 }, { 33, 24 }, { 17, 16 }, { 50, 32 },
                        { 20, 3 } };

    for (int si = 0; si < 9; si++) {
        int rows = shapes[si][0], cols = shapes[si][1], nmax = 19;
        float *w = malloc((size_t)rows * cols * sizeof(float));
        uint16_t *wb = malloc((size_t)rows * cols * sizeof(uint16_t));
        float *x = malloc((size_t)nmax * cols * sizeof(float));
        float *ref = malloc((size_t)nmax * rows * sizeof(float));
        float *y = malloc((size_t)nmax * rows * sizeof(float));
        float *one = malloc((size_t)rows * sizeof(float));

        for (int i = 0; i < rows * cols; i++) {
            w[i] = frand();
            wb[i] = eng_k_f32_to_bf16(w[i]);
        }
        for (int i = 0; i < nmax * cols; i++)
            x[i] = frand();
        for (int dt = 0; dt < 2; dt++) {
            eng_tensor W = { dt ? ENG_DT_BF16 : ENG_DT_F32, rows, cols,
                             dt ? (void *)wb : (void *)w };
            double maxd = 0;

            eng_k_matmul_naive(ref, x, &W, nmax, 0);
            eng_set_threads(2);
            eng_k_rowmm(y, rows, x, cols, &W, nmax, 1.0f, 0);
            for (int i = 0; i < nmax * rows; i++)
                maxd = fmax(maxd, fabs(y[i] - ref[i]));
            CHECK(maxd < 1e-4 * cols);
            /* every element is eng_k_dot's reference order, to the bit */
            if (dt == 0)
                for (int r = 0; r < nmax; r++)
                    for (int o = 0; o < rows; o++) {
                        float d = eng_k_dot(x + (size_t)r * cols,
                                            w + (size_t)o * cols, cols);

                        CHECK(!memcmp(&d, &y[(size_t)r * rows + o],
                                      sizeof d));
                    }
            /* every row, alone, threads 1 and 2: the same bits */
            for (int th = 1; th <= 2; th++) {
                eng_set_threads(th);
                for (int r = 0; r < nmax; r++) {
                    eng_k_rowmm(one, rows, x + (size_t)r * cols, cols, &W, 1,
                                1.0f, 0);
                    CHECK(!memcmp(one, y + (size_t)r * rows,
                                  rows * sizeof(float)));
                }
                /* any prefix length */
                for (int n = 1; n <= nmax; n += 5) {
                    eng_k_rowmm(ref, rows, x, cols, &W, n, 1.0f, 0);
                    CHECK(!memcmp(ref, y, (size_t)n * rows * sizeof(float)));
                }
            }
            /* alpha and accumulate: out + alpha * d */
            memcpy(ref, y, (size_t)rows * sizeof(float));
            eng_k_rowmm(ref, rows, x, cols, &W, 1, 0.5f, 1);
            for (int o = 0; o < rows; o++)
                CHECK(ref[o] == y[o] + 0.5f * y[o]);
        }
        free(w), free(wb), free(x), free(ref), free(y), free(one);
    }
}

/* ---- adapters ---------------------------------------------------------- */

static eng_adapter *make_adapter(const eng_model *m, int rank,
                                 unsigned targets, float b_std)
{
    const eng_config *c = &m->cfg;
    eng_adapter *a = calloc(1, sizeof(*a));
    size_t n = 0;
    float *p;

    atomic_init(&a->refs, 1);
    a->rank = rank;
    a->alpha = 2.0f * rank;
    a->scale = 2.0f;
    a->targets = targets;
    a->n_layers = c->n_layers;
    a->lora = calloc((size_t)c->n_layers * ENG_T_COUNT, sizeof(*a->lora));
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++)
            if (targets & (1u << t)) {
                int in, out;

                eng_target_shape(c, t, &in, &out);
                n += (size_t)rank * (in + out);
            }
    a->data = p = malloc(n * sizeof(float));
    a->n_floats = n;
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++) {
            eng_lora *lo = eng_adapter_at(a, l, t);

            if (!(targets & (1u << t)))
                continue;
            eng_target_shape(c, t, &lo->in, &lo->out);
            lo->A = p, p += (size_t)rank * lo->in;
            lo->B = p, p += (size_t)lo->out * rank;
            for (int i = 0; i < rank * lo->in; i++)
                lo->A[i] = frand() / sqrtf((float)lo->in);
            for (int i = 0; i < lo->out * rank; i++)
                lo->B[i] = frand() * b_std;
        }
    return a;
}

/* ---- batched vs session forward ------------------------------------------ */

static void test_vs_session(eng_model *m, eng_adapter *ad, const char *name)
{
    const eng_config *c = eng_model_config(m);
    int V = c->vocab_size, lens[] = { 1, 5, 40 };
    eng_batch *b = NULL;

    CHECK(eng_batch_new(m, 4, &b) == 0);
    for (int k = 0; k < 3; k++) {
        int n = lens[k];
        int32_t ids[40];
        eng_session *s1 = NULL, *s2 = NULL;
        eng_batch_item it;

        for (int i = 0; i < n; i++)
            ids[i] = (int32_t)(i * 37 + k) % V;
        CHECK(eng_session_new(m, 64, 64, &s1) == 0);
        CHECK(eng_session_new(m, 64, 1, &s2) == 0);
        eng_session_set_adapter(s1, ad);
        eng_session_set_adapter(s2, ad);
        CHECK(eng_session_eval(s1, ids, n) == 0);
        it = (eng_batch_item){ s2, ids, n };
        CHECK(eng_batch_eval(b, &it, 1) == 0);
        CHECK(eng_session_n_past(s2) == n);
        double d = max_diff(s1->logits, eng_session_logits(s2), V);
        if (!(d < 2e-3))
            fprintf(stderr, "%s: prompt %d: batch vs session %g\n", name, n, d);
        CHECK(d < 2e-3);
        /* and a decode step */
        CHECK(eng_session_eval(s1, ids, 1) == 0);
        it = (eng_batch_item){ s2, ids, 1 };
        CHECK(eng_batch_eval(b, &it, 1) == 0);
        CHECK(max_diff(s1->logits, eng_session_logits(s2), V) < 2e-3);
        eng_session_free(s1);
        eng_session_free(s2);
    }
    eng_batch_free(b);
}

/* ---- alone vs batched ---------------------------------------------------- */

enum { NREQ = 9, GEN = 12, MAXP = 300 };

typedef struct req {
    int32_t prompt[MAXP];
    int n_prompt;
    const eng_adapter *a;
    int join;                 /* step at which it joins the batch */
    int32_t out[GEN];
    float *logits;            /* (GEN, V): the logits each token came from */
} req;

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;

    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Runs reqs alone (one batch of one per request) when alone, else all in
 * one batch with joins at their step; fills out/logits. */
static void run_reqs(eng_model *m, req *rq, int n, bool alone,
                     int32_t (*out)[GEN], float *logits)
{
    const eng_config *c = eng_model_config(m);
    int V = c->vocab_size, done[NREQ] = { 0 }, ctx = MAXP + GEN + 1;
    eng_session *s[NREQ] = { 0 };
    eng_batch *b = NULL;
    int32_t last[NREQ];

    CHECK(eng_batch_new(m, alone ? 1 : 4, &b) == 0); /* 4: split forwards */
    for (int i = 0; i < n; i++) {
        CHECK(eng_session_new(m, ctx, 1, &s[i]) == 0);
        CHECK(eng_session_set_adapter(s[i], rq[i].a) == 0);
    }
    for (int step = 0;; step++) {
        eng_batch_item items[NREQ];
        int k = 0, active = 0;

        for (int i = 0; i < n; i++) {
            if (done[i] >= GEN)
                continue;
            active++;
            if (!alone && step < rq[i].join)
                continue;
            if (done[i] == 0 && eng_session_n_past(s[i]) == 0)
                items[k++] = (eng_batch_item){ s[i], rq[i].prompt,
                                               rq[i].n_prompt };
            else
                items[k++] = (eng_batch_item){ s[i], &last[i], 1 };
        }
        if (!active)
            break;
        if (alone) {
            for (int j = 0; j < k; j++)
                CHECK(eng_batch_eval(b, &items[j], 1) == 0);
        } else if (k) {
            CHECK(eng_batch_eval(b, items, k) == 0);
        }
        for (int j = 0; j < k; j++) {
            int i;

            for (i = 0; i < n && s[i] != items[j].s; i++)
                ;
            const float *lg = eng_session_logits(s[i]);
            memcpy(logits + ((size_t)i * GEN + done[i]) * V, lg,
                   (size_t)V * sizeof(float));
            last[i] = argmax(lg, V);
            out[i][done[i]++] = last[i];
        }
    }
    for (int i = 0; i < n; i++)
        eng_session_free(s[i]);
    eng_batch_free(b);
}

static void test_alone_vs_batched(eng_model *m, const char *name)
{
    const eng_config *c = eng_model_config(m);
    int V = c->vocab_size;
    eng_adapter *a1 = make_adapter(m, 4, ENG_TARGET_ALL, 0.05f);
    eng_adapter *a2 = make_adapter(m, 8, ENG_TARGET_DEFAULT, 0.05f);
    eng_adapter *a3 = make_adapter(m, 2, ENG_TARGET_Q | ENG_TARGET_DOWN, 0.1f);
    const eng_adapter *mix[NREQ] = { NULL, a1, a2, a1, NULL, a3, a2, a1, a3 };
    int plen[NREQ] = { 3, 1, 17, 7, 40, 2, MAXP, 15, 16 };
    int joins[NREQ] = { 0, 0, 0, 2, 3, 3, 5, 6, 6 };
    static req rq[NREQ];
    int32_t out_a[NREQ][GEN], out_b[NREQ][GEN];
    float *la = malloc((size_t)NREQ * GEN * V * sizeof(float));
    float *lb = malloc((size_t)NREQ * GEN * V * sizeof(float));

    test_vs_session(m, NULL, name);
    test_vs_session(m, a1, name);
    for (int i = 0; i < NREQ; i++) {
        rq[i].n_prompt = plen[i];
        for (int t = 0; t < plen[i]; t++)
            rq[i].prompt[t] = (int32_t)((t * 131 + i * 17 + 1) % V);
        rq[i].a = mix[i];
        rq[i].join = joins[i];
    }
    for (int th = 1; th <= 2; th++) {
        int same_tok = 0, same_bits = 0;

        eng_set_threads(th);
        run_reqs(m, rq, NREQ, true, out_a, la);
        eng_set_threads(3 - th); /* batched with the other thread count */
        run_reqs(m, rq, NREQ, false, out_b, lb);
        for (int i = 0; i < NREQ; i++) {
            same_tok += !memcmp(out_a[i], out_b[i], sizeof(out_a[i]));
            for (int g = 0; g < GEN; g++)
                if (memcmp(la + ((size_t)i * GEN + g) * V, lb + ((size_t)i * GEN + g) * V, (size_t)V * 4)) {
                    if (getenv("DBG")) fprintf(stderr, "req %d first diff at step %d: %g\n", i, g, max_diff(la + ((size_t)i * GEN + g) * V, lb + ((size_t)i * GEN + g) * V, V));
                    break;
                }
            same_bits += !memcmp(la + (size_t)i * GEN * V,
                                 lb + (size_t)i * GEN * V,
                                 (size_t)GEN * V * sizeof(float));
        }
        printf("%s: alone (%d thread%s) vs batched: %d/%d token streams, "
               "%d/%d logit streams identical\n", name, th, th > 1 ? "s" : "",
               same_tok, NREQ, same_bits, NREQ);
        CHECK(same_tok == NREQ);
        CHECK(same_bits == NREQ);
    }
    /* the adapters matter: a1's stream differs from the base's */
    {
        req two[2] = { rq[4], rq[4] };
        int32_t o[NREQ][GEN];

        two[1].a = a1;
        run_reqs(m, two, 2, false, o, la);
        CHECK(memcmp(la, la + (size_t)GEN * V, (size_t)GEN * V * 4) != 0);
    }
    eng_adapter_unref(a1);
    eng_adapter_unref(a2);
    eng_adapter_unref(a3);
    free(la);
    free(lb);
}

static void test_errors(eng_model *m)
{
    eng_batch *b = NULL;
    eng_session *s = NULL, *t = NULL;
    int32_t ids[4] = { 1, 2, 3, 4 }, bad = 1 << 20;
    eng_batch_item it[2];

    CHECK(eng_batch_new(m, 0, &b) == -EINVAL);
    CHECK(eng_batch_new(m, 2, &b) == 0);
    CHECK(eng_session_new(m, 4, 1, &s) == 0);
    CHECK(eng_session_new(m, 4, 1, &t) == 0);
    it[0] = (eng_batch_item){ s, ids, 4 };
    it[1] = (eng_batch_item){ s, ids, 1 };
    CHECK(eng_batch_eval(b, it, 2) == -EINVAL); /* repeated session */
    it[1] = (eng_batch_item){ t, &bad, 1 };
    CHECK(eng_batch_eval(b, it, 2) == -EINVAL);
    CHECK(eng_session_n_past(s) == 0);          /* nothing ran */
    it[1] = (eng_batch_item){ t, ids, 0 };
    CHECK(eng_batch_eval(b, it, 2) == -EINVAL);
    CHECK(eng_batch_eval(b, it, 1) == 0);
    CHECK(eng_batch_eval(b, it, 1) == -ENOSPC);
    CHECK(eng_batch_eval(b, NULL, 0) == 0);
    eng_session_free(s);
    eng_session_free(t);
    eng_batch_free(b);
}

/* ---- pinned weights ---------------------------------------------------- */

/* Last-row logits of a short prompt (a batch of one). */
static void prompt_logits(eng_model *m, float *out)
{
    int32_t ids[5] = { 1, 403, 407, 261, 378 };
    eng_batch *b = NULL;
    eng_session *s = NULL;

    CHECK(eng_batch_new(m, 1, &b) == 0 && eng_session_new(m, 16, 1, &s) == 0);
    if (b && s) {
        eng_batch_item it = { s, ids, 5 };

        CHECK(eng_batch_eval(b, &it, 1) == 0);
        memcpy(out, eng_session_logits(s),
               (size_t)eng_model_config(m)->vocab_size * sizeof(float));
    }
    eng_session_free(s);
    eng_batch_free(b);
}

/* eng_model_pin: the weights leave the file mapping for memory of their
 * own, nothing else changes (logits to the bit), and only once. */
static void test_pin(const char *path)
{
    eng_model *m = NULL;
    char err[256] = "";
    float *before, *after;
    int V;

    if (eng_model_load_llama2c(path, &m, err, sizeof(err))) {
        CHECK(!"stories260K loads");
        return;
    }
    V = eng_model_config(m)->vocab_size;
    before = calloc((size_t)V, sizeof(float));
    after = calloc((size_t)V, sizeof(float));
    prompt_logits(m, before);
    CHECK(m->map != NULL && m->pinned == NULL);
    CHECK(eng_model_pin(m, 1000) == 0); /* larger than max_bytes: stays */
    CHECK(m->map != NULL);
    CHECK(eng_model_pin(m, SIZE_MAX) == 1);
    CHECK(m->map == NULL && m->pinned != NULL);
    CHECK(m->tok_emb.data >= m->pinned &&
          (char *)m->layers[0].wq.data > (char *)m->pinned);
    CHECK(eng_model_pin(m, SIZE_MAX) == 0); /* nothing mapped any more */
    prompt_logits(m, after);
    CHECK(!memcmp(before, after, (size_t)V * sizeof(float)));
    free(before);
    free(after);
    eng_model_unref(m);
}

int main(void)
{
    char path[1024], err[256] = "";
    eng_model *model = NULL, *rnd = NULL;
    eng_config c = { 0 };

    test_rowmm();
    test_path(path, sizeof(path), "models/stories260K/stories260K.bin");
    if (eng_model_load_llama2c(path, &model, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    test_errors(model);
    test_pin(path);
    test_alone_vs_batched(model, "stories260K");
    /* 16-lane rows, GQA, a hidden size with a tail, half RoPE, biases */
    c.dim = 128, c.hidden_dim = 344, c.n_layers = 3, c.n_heads = 4;
    c.n_kv_heads = 2, c.head_dim = 32, c.vocab_size = 700;
    c.max_seq_len = 512, c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    c.rope_style = ENG_ROPE_HALF, c.qkv_bias = true;
    snprintf(c.arch, sizeof(c.arch), "qwen2");
    CHECK(eng_model_new_random(&c, 5, 0.05f, &rnd) == 0);
    if (rnd)
        test_alone_vs_batched(rnd, "random 128x344");
    eng_model_unref(rnd);
    /* the same shape with every linear stored in bf16: a part of a
     * projection sees its rows at a 2-byte row stride */
    rnd = NULL;
    CHECK(eng_model_new_random(&c, 6, 0.05f, &rnd) == 0);
    if (rnd) {
        uint16_t *bufs[64];
        int nb = 0;

        for (int l = 0; l < c.n_layers; l++)
            for (int t = 0; t < ENG_T_COUNT && nb < 64; t++) {
                eng_tensor *W = eng_layer_target(&rnd->layers[l], t);
                size_t n = (size_t)W->rows * W->cols;
                uint16_t *h = malloc(n * sizeof(*h));

                for (size_t i = 0; h && i < n; i++)
                    h[i] = eng_k_f32_to_bf16(((const float *)W->data)[i]);
                if (!h)
                    continue;
                W->dtype = ENG_DT_BF16;
                W->data = h;
                bufs[nb++] = h;
            }
        test_alone_vs_batched(rnd, "random 128x344 bf16");
        eng_model_unref(rnd);
        while (nb > 0)
            free(bufs[--nb]);
    }
    eng_model_unref(model);
    return test_done("batch");
}
