/* SPDX-License-Identifier: MIT */
/*
 * sha256.h - FIPS 180-4 SHA-256, streaming (init, update, final). Used to
 * fingerprint stored datasets. Private to api/.
 */
#ifndef TUNA_API_SHA256_H
#define TUNA_API_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct api_sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t buf[64];
    size_t n;
} api_sha256;

void api_sha256_init(api_sha256 *s);
void api_sha256_update(api_sha256 *s, const void *data, size_t len);
/* Writes 64 lowercase hex digits and a NUL into hex. */
void api_sha256_final_hex(api_sha256 *s, char hex[65]);

#endif
