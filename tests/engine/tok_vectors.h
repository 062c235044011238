/* SPDX-License-Identifier: MIT */
/*
 * tok_vectors.h - test helpers shared by the tokenizer tests: reading
 * llama.cpp's ggml-vocab-*.gguf.inp/.out test vectors and checking a
 * tokenizer against them, plus decode(encode(s)) round trips.
 */
#ifndef TUNA_TESTS_TOK_VECTORS_H
#define TUNA_TESTS_TOK_VECTORS_H

#include "engine/engine.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tv_checked;

static void tv_print_ids(const char *what, const int32_t *ids, int n)
{
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Encodes s and compares with want[0..nw). Returns true when equal. */
static bool tv_expect(const eng_tokenizer *t, const char *label,
                      const char *s, size_t len, bool add_bos,
                      bool parse_special, const int32_t *want, int nw)
{
    int32_t ids[4096];
    int n = -1;
    int rc = eng_tokenizer_encode(t, s, len, add_bos, parse_special, ids,
                                  4096, &n);
    tv_checked++;
    bool ok = rc == 0 && n == nw && !memcmp(ids, want, sizeof(*ids) * nw);
    if (!ok) {
        failures++;
        fprintf(stderr, "%s: mismatch for \"%.*s\" (rc %d)\n", label,
                (int)(len > 80 ? 80 : len), s, rc);
        if (rc == 0)
            tv_print_ids("got ", ids, n > 4096 ? 4096 : n);
        tv_print_ids("want", want, nw);
    }
    return ok;
}

/* decode(encode(s)) == s; returns true when it holds. */
static bool tv_roundtrip(const eng_tokenizer *t, const char *label,
                         const char *s, size_t len, bool add_bos,
                         bool parse_special, bool report)
{
    int cap = (int)len * 2 + 8;
    int32_t *ids = malloc(sizeof(*ids) * cap);
    int n = 0;
    char *back = NULL;
    bool ok = eng_tokenizer_encode(t, s, len, add_bos, parse_special, ids,
                                   cap, &n) == 0 && n <= cap &&
              eng_tokenizer_decode(t, ids, n, &back) == 0 &&
              strlen(back) == len && !memcmp(back, s, len);
    if (!ok && report) {
        failures++;
        fprintf(stderr, "%s: round trip failed for \"%.*s\" -> \"%s\"\n",
                label, (int)(len > 80 ? 80 : len), s, back ? back : "(null)");
    }
    free(back);
    free(ids);
    return ok;
}

/* Runs one llama.cpp .inp/.out pair: every input encoded without BOS and
 * without special-token parsing, as llama.cpp's test-tokenizer-0 does. */
static int tv_run_vectors(const eng_tokenizer *t, const char *label,
                          const char *base)
{
    char pi[1024], po[1024];
    test_path(pi, sizeof(pi), "tests/data/tokenizers/llama.cpp-tests/%s.inp",
              base);
    test_path(po, sizeof(po), "tests/data/tokenizers/llama.cpp-tests/%s.out",
              base);
    char *inp = test_slurp(pi, NULL), *out = test_slurp(po, NULL);
    CHECK(inp && out);
    if (!inp || !out) {
        free(inp);
        free(out);
        return 0;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *s = inp, *o = out;
    int cases = 0;
    for (;;) {
        char *e = strstr(s, sep);
        char *oe = strchr(o, '\n');
        if (!e || !oe)
            break;
        int32_t want[4096];
        int nw = 0;
        for (char *p = o; p < oe;) {
            char *q;
            long v = strtol(p, &q, 10);
            if (q == p)
                break;
            want[nw++] = (int32_t)v;
            p = q;
        }
        tv_expect(t, label, s, (size_t)(e - s), false, false, want, nw);
        cases++;
        s = e + sizeof(sep) - 1;
        o = oe + 1;
    }
    free(inp);
    free(out);
    return cases;
}

#endif
