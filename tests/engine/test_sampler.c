/* SPDX-License-Identifier: MIT */
/*
 * test_sampler.c - generate.c's statics: the sampler (top-k, top-p,
 * temperature, frequencies) and the streaming text assembler (characters
 * split across tokens, invalid bytes, stop strings that span pieces).
 * Includes the .c to reach them (the library's copy is then not linked).
 */
#include "engine/generate.c"
#include "tests/engine/test_util.h"

#include <stdio.h>

static void test_sampler(void)
{
    enum { V = 100, N = 20000 };
    float logits[V];
    cand c[V];
    int count[V];
    uint64_t rng;
    eng_sample_params sp;

    /* probabilities 0.4, 0.3, 0.2, 0.1 and the rest ~0 */
    for (int i = 0; i < V; i++)
        logits[i] = -1e4f;
    logits[7] = logf(0.4f);
    logits[3] = logf(0.3f);
    logits[50] = logf(0.2f);
    logits[99] = logf(0.1f);
    eng_sample_params_default(&sp);
    rng_seed(&rng, 1);

    sp.temperature = 0.0f;
    CHECK(sample(logits, V, &sp, c, &rng) == 7);

    sp.temperature = 1.0f;
    memset(count, 0, sizeof(count));
    for (int i = 0; i < N; i++)
        count[sample(logits, V, &sp, c, &rng)]++;
    CHECK(abs(count[7] - 8000) < 400 && abs(count[3] - 6000) < 400);
    CHECK(abs(count[50] - 4000) < 400 && abs(count[99] - 2000) < 300);

    sp.top_p = 0.5f; /* 0.4 < 0.5 <= 0.4 + 0.3: tokens 7 and 3 */
    memset(count, 0, sizeof(count));
    for (int i = 0; i < N; i++)
        count[sample(logits, V, &sp, c, &rng)]++;
    CHECK(count[7] + count[3] == N);
    CHECK(abs(count[7] - N * 4 / 7) < 400);

    sp.top_p = 1.0f;
    sp.top_k = 3;
    memset(count, 0, sizeof(count));
    for (int i = 0; i < N; i++)
        count[sample(logits, V, &sp, c, &rng)]++;
    CHECK(count[7] + count[3] + count[50] == N && count[50] > 0);
    CHECK(abs(count[7] - N * 4 / 9) < 400);

    /* top-k on many near-equal logits picks exactly the k largest */
    for (int i = 0; i < V; i++)
        logits[i] = (float)((i * 37) % V) * 0.01f; /* a permutation */
    sp.top_k = 10;
    sp.temperature = 5.0f;
    for (int i = 0; i < 2000; i++) {
        int32_t id = sample(logits, V, &sp, c, &rng);
        CHECK(logits[id] >= 0.895f);
    }
}

typedef struct sink {
    char buf[256];
    size_t len;
    int calls;
    bool bad;
} sink;

static bool collect(void *user, const char *t, size_t n)
{
    sink *s = user;

    /* a piece never ends inside a character */
    if (n && ((unsigned char)t[n - 1] >= 0xC0))
        s->bad = true;
    if (n && ((unsigned char)t[0] & 0xC0) == 0x80)
        s->bad = true;
    memcpy(s->buf + s->len, t, n);
    s->len += n;
    s->buf[s->len] = 0;
    s->calls++;
    return true;
}

static void feed(gen_text *g, const char *const *pieces, int n)
{
    for (int i = 0; i < n && !g->stopped; i++)
        CHECK(text_token(g, pieces[i], (int)strlen(pieces[i])) == 0);
    CHECK(text_flush(g) == 0);
}

static void test_text(void)
{
    eng_sample_params sp;
    sink s = { 0 };
    gen_text g = { 0 };
    /* U+1F409 DRAGON as four separate byte tokens, then "é" split */
    const char *dragon[] = { "a ", "\xf0", "\x9f", "\x90", "\x89", " \xc3",
                             "\xa9", "!" };
    const char *broken[] = { "x", "\xf0\x9f", "y", "\xff", "\xc3" };
    const char *stop[] = { "<|end|>", "\xf0\x9f\x90\x89!" };

    eng_sample_params_default(&sp);
    g = (gen_text){ .sp = &sp, .cb = collect, .user = &s, .cap = 4 };
    g.buf = malloc(g.cap);
    feed(&g, dragon, 8);
    CHECK(!s.bad && !strcmp(s.buf, "a \xf0\x9f\x90\x89 \xc3\xa9!"));
    CHECK(g.len == s.len && !memcmp(g.buf, s.buf, s.len));
    free(g.buf);

    /* broken sequences become U+FFFD, the rest survives */
    memset(&s, 0, sizeof(s));
    g = (gen_text){ .sp = &sp, .cb = collect, .user = &s, .cap = 8 };
    g.buf = malloc(g.cap);
    feed(&g, broken, 5);
    CHECK(!strcmp(s.buf, "x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd"));
    free(g.buf);

    /* a stop string arriving piece by piece is never shown */
    {
        const char *pieces[] = { "Hi", " <|", "en", "d|", "> more" };
        memset(&s, 0, sizeof(s));
        sp.stop = stop;
        sp.n_stop = 2;
        g = (gen_text){ .sp = &sp, .cb = collect, .user = &s, .cap = 8 };
        g.buf = malloc(g.cap);
        feed(&g, pieces, 5);
        CHECK(g.stopped && !strcmp(s.buf, "Hi ") && g.emitted == 3);
        free(g.buf);
    }
    /* a false start is released once it cannot match any more */
    {
        const char *pieces[] = { "a<|e", "x|>" };
        memset(&s, 0, sizeof(s));
        g = (gen_text){ .sp = &sp, .cb = collect, .user = &s, .cap = 8 };
        g.buf = malloc(g.cap);
        CHECK(text_token(&g, pieces[0], 4) == 0);
        CHECK(!strcmp(s.buf, "a"));
        feed(&g, pieces + 1, 1);
        CHECK(!g.stopped && !strcmp(s.buf, "a<|ex|>"));
        free(g.buf);
    }
    /* a multi-byte stop string split over byte tokens */
    {
        const char *pieces[] = { "a ", "\xf0", "\x9f", "\x90", "\x89", "!",
                                 " z" };
        memset(&s, 0, sizeof(s));
        g = (gen_text){ .sp = &sp, .cb = collect, .user = &s, .cap = 8 };
        g.buf = malloc(g.cap);
        feed(&g, pieces, 7);
        CHECK(g.stopped && !strcmp(s.buf, "a ") && s.calls == 1);
        free(g.buf);
    }
}

int main(void)
{
    test_sampler();
    test_text();
    return test_done("sampler");
}
