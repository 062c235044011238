/* SPDX-License-Identifier: MIT */
/*
 * check.h - the checks of the C unit tests (tests/engine, tests/api): CHECK
 * counts a failure and says where (and, given a printf-style message after
 * the condition, what) instead of aborting, so one run reports every
 * failed check; test_done is the last line of a test's main.
 *
 * Only the tests include this file; everything is static.
 */
#ifndef TUNA_TESTS_CHECK_H
#define TUNA_TESTS_CHECK_H

#include <stdarg.h>
#include <stdio.h>

/* CHECK(c) hands test_fail an empty format: meant, not a mistake. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

static int failures;

__attribute__((format(printf, 4, 5))) static inline void
test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: CHECK(%s) failed", file, line, cond);
    if (*fmt) {
        fputs(": ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    failures++;
}

/* CHECK(cond) or CHECK(cond, "printf format", args...) */
#define CHECK(c, ...)                                                        \
    do {                                                                     \
        if (!(c))                                                            \
            test_fail(__FILE__, __LINE__, #c, "" __VA_ARGS__);               \
    } while (0)

/* The end of main: "<name>: ok", or the number of failed checks; the exit
 * status. */
static inline int test_done(const char *name)
{
    if (failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#endif
