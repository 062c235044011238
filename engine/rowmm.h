/* SPDX-License-Identifier: MIT */
/*
 * rowmm.h - rowmm.c's helpers beyond kernels.h, for the batched forward.
 */
#ifndef TUNA_ENGINE_ROWMM_H
#define TUNA_ENGINE_ROWMM_H

#include <stddef.h>

/* out[t] = eng_k_dot(q, k + t * ldk, n) * scale for t < T, to the bit (the
 * same fixed order), 16 rows at a time: attention scores over a KV cache. */
void eng_k_dots(float *out, const float *q, const float *k, size_t ldk,
                int T, int n, float scale);

/* out[i] = sum over t < T of p[t] * v_t[i] for i < n, v_t = v + t * ldv:
 * each element from 0 by fmaf(p[t], v_t[i], .) in ascending t, the same
 * bits on every path (attention's weighted sum of values). The sums stay
 * in registers: a loop through memory waited on each store. */
void eng_k_wsum(float *out, const float *p, const float *v, size_t ldv,
                int T, int n);

#endif
