/* SPDX-License-Identifier: MIT */
/*
 * safetensors.h - engine-internal reader and writer of the safetensors
 * format (Hugging Face), used for adapters, checkpoints and base models.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"key": "string", ...},
 *    "name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [b, e]},
 *    ...}
 * (padded with spaces to a multiple of 8), then the data region; offsets are
 * relative to the start of the data region.
 *
 * The reader memory-maps the file read-only and checks every tensor's
 * offsets and byte size against its dtype and shape, and that the data
 * region ends exactly at the end of the file (a torn write fails with
 * -EIO). The writer writes a temporary file in the target directory, fsyncs
 * it, renames it over the target and fsyncs the directory, so readers see
 * the old file or the new one, never a mix.
 */
#ifndef TUNA_ENGINE_SAFETENSORS_H
#define TUNA_ENGINE_SAFETENSORS_H

#include "kernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENG_ST_MAX_DIMS 8

typedef struct eng_st_tensor {
    char *name;
    char dtype_name[8];     /* as in the file: "F32", "BF16", "I64", ... */
    bool known;             /* dtype maps to an eng_dtype (F32/F16/BF16) */
    eng_dtype dtype;        /* valid when known */
    int ndim;
    int64_t shape[ENG_ST_MAX_DIMS];
    const void *data;       /* into the mapping; borrowed until close */
    size_t nbytes;
} eng_st_tensor;

typedef struct eng_st_file {
    void *map;
    size_t map_len;
    int n;                  /* tensors, in data-offset order */
    eng_st_tensor *t;
    int n_meta;
    char **meta_key, **meta_val;
} eng_st_file;

/* Opens and validates path. -ENOENT missing, -EIO malformed or torn,
 * -ENOMEM. */
int eng_st_open(const char *path, eng_st_file **ret, char *err, size_t errlen);
void eng_st_close(eng_st_file *f);
/* Tensor by name, or NULL. */
const eng_st_tensor *eng_st_find(const eng_st_file *f, const char *name);
/* __metadata__ value by key (borrowed), or NULL. */
const char *eng_st_meta(const eng_st_file *f, const char *key);
/* Number of elements of t (product of its shape). */
int64_t eng_st_numel(const eng_st_tensor *t);

/* One tensor to write (borrowed data). */
typedef struct eng_st_out {
    const char *name;
    eng_dtype dtype;        /* F32, F16 or BF16 */
    int ndim;
    int64_t shape[ENG_ST_MAX_DIMS];
    const void *data;
} eng_st_out;

/* Writes tensors (in the given order) and metadata key/value pairs
 * (meta[2i], meta[2i+1]) to path atomically. The output is a function of
 * the inputs alone, so equal inputs give byte-identical files. */
int eng_st_write(const char *path, const eng_st_out *t, int n,
                 const char *const *meta, int n_meta, char *err,
                 size_t errlen);

/* Writes the concatenation of parts[i] (lens[i] bytes each) to path
 * atomically: temp file in the same directory, fsync, rename, fsync of the
 * directory. Shared by adapter_config.json and the writer above. */
int eng_write_atomic(const char *path, const void *const *parts,
                     const size_t *lens, int n_parts);

/* FNV-1a 64 over bytes, chained through h (start with ENG_FNV_INIT). */
#define ENG_FNV_INIT 0xcbf29ce484222325ull
uint64_t eng_fnv1a(uint64_t h, const void *p, size_t n);

#endif
