/* SPDX-License-Identifier: MIT */
/*
 * test_util.h - what the engine tests share: the checks of tests/check.h,
 * paths under the source root and whole files, stories260K's model and
 * tokenizer, max_diff.
 *
 * Only the tests include this file; everything is static.
 */
#ifndef TUNA_TESTS_ENGINE_TEST_UTIL_H
#define TUNA_TESTS_ENGINE_TEST_UTIL_H

#include "engine/engine.h"
#include "tests/check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline const char *test_root(void)
{
    const char *root = getenv("TUNA_SOURCE_ROOT");
    return root ? root : ".";
}

/* "<source root>/<rel>" in buf (rel a printf format). */
__attribute__((format(printf, 3, 4))) static inline char *
test_path(char *buf, size_t cap, const char *rel, ...)
{
    va_list ap;
    int n = snprintf(buf, cap, "%s/", test_root());

    va_start(ap, rel);
    if (n >= 0 && (size_t)n < cap)
        vsnprintf(buf + n, cap - n, rel, ap);
    va_end(ap);
    return buf;
}

/* The whole file, NUL-terminated (its length in *len when len is not
 * NULL), or NULL. */
static inline char *test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;
    char *s;

    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (!s)
        return NULL;
    s[n] = '\0';
    if (len)
        *len = (size_t)n;
    return s;
}

/* models/stories260K: the model into *m (when m is not NULL) and its
 * tokenizer into *t (when t is not NULL); says why and returns -1 when one
 * does not load. */
static inline int load_stories260K(eng_model **m, eng_tokenizer **t)
{
    char path[1024], err[256] = "";

    test_path(path, sizeof path, "models/stories260K/stories260K.bin");
    if (m && eng_model_load_llama2c(path, m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    test_path(path, sizeof path, "models/stories260K/tok512.bin");
    if (t && eng_tokenizer_load_llama2c(path, 512, t, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

/* The largest |a[i] - b[i]|. */
static inline double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0;

    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

#endif
