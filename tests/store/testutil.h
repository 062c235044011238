/* SPDX-License-Identifier: MIT */
/*
 * testutil.h - checks for the store tests. They stay on in release builds
 * (NDEBUG turns assert() off, these never), print where they failed, and
 * exit non-zero. Each test works in a fresh temporary directory, removed at
 * exit unless a check failed (so the database can be inspected).
 */
#ifndef TUNA_TEST_STORE_UTIL_H
#define TUNA_TEST_STORE_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    exit(1); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (a), b_ = (b); if (a_ != b_) { \
    fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, \
            __LINE__, #a, a_, #b, b_); exit(1); } } while (0)
#define CHECK_EQ_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (!a_ || !b_ || strcmp(a_, b_)) { \
    fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, \
            __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
    exit(1); } } while (0)
#define CHECK_NEAR(a, b) do { double a_ = (a), b_ = (b); \
    if (!(fabs(a_ - b_) <= 1e-9 * (1 + fabs(b_)))) { \
    fprintf(stderr, "%s:%d: %s == %.17g, expected %.17g\n", __FILE__, \
            __LINE__, #a, a_, b_); exit(1); } } while (0)
#define CHECK_OK(expr) CHECK_EQ_INT((expr), 0)

static char test_dir[256];

static inline void test_dir_remove(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", test_dir);
}

/* Creates the test's temporary directory; returns path/name in buf. */
static inline void test_dir_init(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(test_dir, sizeof(test_dir), "%s/tuna-store-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(test_dir) != NULL);
}

static inline void test_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", test_dir, name);
}

/* Call at the end of main: the checks passed, so the files can go. */
static inline int test_done(const char *name)
{
    test_dir_remove();
    printf("%s: ok\n", name);
    return 0;
}

#endif
