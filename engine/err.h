/* SPDX-License-Identifier: MIT */
/*
 * err.h - the engine's one way of filling a caller's error buffer: every
 * API call that can fail on outside input takes (char *err, size_t errlen)
 * and says what and where in it. Only files inside engine/ include this.
 */
#ifndef TUNA_ENGINE_ERR_H
#define TUNA_ENGINE_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* printf into err (truncated to errlen); nothing when err is NULL or
 * errlen 0. */
__attribute__((format(printf, 3, 4))) static inline void
eng_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#endif
