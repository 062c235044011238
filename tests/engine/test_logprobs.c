/* SPDX-License-Identifier: MIT */
/*
 * test_logprobs.c - the generation token hook (eng_hooks.token): one call
 * per counted token, log-probabilities equal to a log softmax of the
 * session's logits computed here independently, top alternatives sorted
 * with the greedy choice first, and outputs (greedy and seeded sampling)
 * byte-identical with and without the hook.
 */
#include "engine/session.h"
#include "engine/tokenizer.h"
#include "tests/engine/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static eng_model *model;
static eng_tokenizer *tok;

enum { MAX_REC = 512 };

typedef struct record {
    int n;
    int32_t id[MAX_REC], prev[MAX_REC];
    float lp[MAX_REC];
    eng_token_prob top[MAX_REC][ENG_MAX_TOP_LOGPROBS];
    int n_top[MAX_REC];
    bool bad_index;
} record;

static void on_token(void *user, const eng_token_info *t)
{
    record *r = user;

    if (t->index != r->n)
        r->bad_index = true;
    if (r->n >= MAX_REC)
        return;
    r->id[r->n] = t->id;
    r->prev[r->n] = t->prev;
    r->lp[r->n] = t->logprob;
    r->n_top[r->n] = t->n_top;
    memcpy(r->top[r->n], t->top, (size_t)t->n_top * sizeof(*t->top));
    r->n++;
}

static int gen(const char *prompt, eng_sample_params *sp, record *r,
               eng_generation *g)
{
    eng_hooks h = { .token = on_token, .user = r };
    char err[256] = "";
    int rc = eng_generate(model, NULL, tok, prompt, sp, NULL, NULL,
                          r ? &h : NULL, g, err, sizeof(err));

    if (rc)
        fprintf(stderr, "generate: %s\n", err);
    return rc;
}

/* The log softmax of the logits after prompt + the first k generated
 * tokens, recomputed with a fresh session. */
static double ref_logprob(const int32_t *ids, int n, int32_t want)
{
    eng_session *s = NULL;
    double mx = -INFINITY, sum = 0.0, lp = NAN;

    if (eng_session_new(model, n + 1, n, &s) || eng_session_eval(s, ids, n))
        goto out;
    for (int i = 0; i < eng_model_config(model)->vocab_size; i++)
        mx = fmax(mx, s->logits[i]);
    for (int i = 0; i < eng_model_config(model)->vocab_size; i++)
        sum += exp(s->logits[i] - mx);
    lp = s->logits[want] - mx - log(sum);
out:
    eng_session_free(s);
    return lp;
}

static void test_greedy(void)
{
    eng_sample_params sp;
    eng_generation plain = { 0 }, hooked = { 0 };
    static record r;
    int32_t ids[600];
    int n = 0;

    eng_sample_params_default(&sp);
    sp.temperature = 0.0f;
    sp.max_tokens = 48;
    sp.top_logprobs = 5;
    CHECK(gen("Once upon a time", &sp, NULL, &plain) == 0);
    CHECK(gen("Once upon a time", &sp, &r, &hooked) == 0);
    CHECK(plain.text && hooked.text && !strcmp(plain.text, hooked.text));
    CHECK(!r.bad_index);
    CHECK(r.n == hooked.completion_tokens);
    for (int i = 0; i < r.n; i++) {
        CHECK(r.n_top[i] == 5);
        CHECK(r.top[i][0].id == r.id[i]);     /* greedy: the top token */
        CHECK(r.top[i][0].logprob == r.lp[i]);
        CHECK(r.lp[i] <= 0.0f);
        for (int j = 1; j < r.n_top[i]; j++)
            CHECK(r.top[i][j - 1].logprob >= r.top[i][j].logprob);
    }
    /* Every token's logprob matches an independent log softmax. */
    CHECK(eng_tokenizer_encode(tok, "Once upon a time", 16, true, false, ids,
                               64, &n) == 0);
    for (int i = 0; i < r.n && i < 12; i++) {
        CHECK(i == 0 ? r.prev[i] == ids[n - 1] : r.prev[i] == r.id[i - 1]);
        CHECK(fabs(ref_logprob(ids, n, r.id[i]) - r.lp[i]) < 1e-4);
        ids[n++] = r.id[i];
    }
    eng_generation_done(&plain);
    eng_generation_done(&hooked);
}

static void test_sampled(void)
{
    eng_sample_params sp;
    eng_generation plain = { 0 }, hooked = { 0 };
    static record r;
    double psum = 0.0;

    eng_sample_params_default(&sp);
    sp.temperature = 0.9f;
    sp.top_p = 0.9f;
    sp.seed = 7;
    sp.max_tokens = 64;
    sp.top_logprobs = ENG_MAX_TOP_LOGPROBS;
    CHECK(gen("Lily", &sp, NULL, &plain) == 0);
    CHECK(gen("Lily", &sp, &r, &hooked) == 0);
    CHECK(plain.text && hooked.text && !strcmp(plain.text, hooked.text));
    CHECK(plain.completion_tokens == hooked.completion_tokens);
    CHECK(r.n == hooked.completion_tokens);
    for (int i = 0; i < r.n; i++) {
        CHECK(r.n_top[i] == ENG_MAX_TOP_LOGPROBS);
        CHECK(r.lp[i] <= r.top[i][0].logprob);
        psum = 0.0;
        for (int j = 0; j < r.n_top[i]; j++)
            psum += exp(r.top[i][j].logprob);
        CHECK(psum <= 1.0 + 1e-4);
    }
    eng_generation_done(&plain);
    eng_generation_done(&hooked);

    /* top_logprobs 0: the chosen token only. */
    memset(&r, 0, sizeof(r));
    sp.top_logprobs = 0;
    sp.max_tokens = 8;
    CHECK(gen("Lily", &sp, &r, &hooked) == 0);
    CHECK(r.n == hooked.completion_tokens);
    for (int i = 0; i < r.n; i++)
        CHECK(r.n_top[i] == 0);
    eng_generation_done(&hooked);
}

int main(void)
{
    eng_set_threads(1);
    if (load_stories260K(&model, &tok))
        return 1;
    test_greedy();
    test_sampled();
    eng_tokenizer_unref(tok);
    eng_model_unref(model);
    return test_done("logprobs");
}
