/* SPDX-License-Identifier: MIT */
/*
 * gguf_meta.h - engine-internal reader of a GGUF file's header and metadata
 * key/value pairs (versions 2 and 3, little-endian). It stops where the
 * tensor infos start and says where that is, so a model loader can go on
 * from there; it does not read tensors itself.
 *
 * Layout read (all integers little-endian):
 *   magic "GGUF", u32 version (2 or 3), u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 type, value }
 *   string = u64 length + bytes (not NUL-terminated)
 *   array  = u32 element type + u64 count + count elements (arrays of
 *            arrays are allowed and skipped correctly)
 * Version 1 (u32 counts) is refused. Every length is checked against the
 * buffer size before it is used, so a truncated or hostile file gives -EIO,
 * never a read past the end.
 *
 * Ownership: gguf_meta_open() maps the file (read-only, private) and the
 * gguf_meta owns the mapping; gguf_meta_parse() borrows the caller's buffer,
 * which must outlive the gguf_meta. Every gguf_str and array pointer points
 * into the buffer and lives as long as the gguf_meta. A parsed gguf_meta is
 * immutable and may be read from any number of threads.
 */
#ifndef TUNA_ENGINE_GGUF_META_H
#define TUNA_ENGINE_GGUF_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

#define GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the buffer: len bytes at ptr, not NUL-terminated. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;       /* value type */
    gguf_type arr_type;   /* element type when type == GGUF_TYPE_ARRAY */
    uint64_t n;           /* element count (arrays); 1 otherwise */
    const uint8_t *data;  /* the value (scalars, a string's length field) or
                           * the first array element */
    size_t data_len;      /* bytes of the value / all elements */
} gguf_kv;

typedef struct gguf_meta {
    uint32_t version;
    uint64_t n_tensors;
    uint64_t n_kv;
    gguf_kv *kv;               /* n_kv entries in file order */
    size_t tensor_info_offset; /* byte offset of the first tensor info */
    uint32_t alignment;        /* general.alignment or 32 */
    const uint8_t *base;       /* the whole buffer */
    size_t size;
    void *map;                 /* owned mapping (gguf_meta_open), or NULL */
} gguf_meta;

/* Maps and parses a file. -ENOENT missing, -EIO not GGUF / corrupt /
 * unsupported version, -ENOMEM. */
int gguf_meta_open(const char *path, gguf_meta **ret, char *err,
                   size_t errlen);
/* Parses a buffer the caller keeps alive (borrowed). */
int gguf_meta_parse(const void *buf, size_t size, gguf_meta **ret, char *err,
                    size_t errlen);
/* Frees the table and unmaps an owned mapping. Accepts NULL. */
void gguf_meta_free(gguf_meta *m);

/* The entry with this key, or NULL. */
const gguf_kv *gguf_meta_find(const gguf_meta *m, const char *key);

/* Typed getters: 0 on success, -ENOENT when the key is absent, -EINVAL when
 * it has an incompatible type. Integer getters accept any integer type (and
 * bool) whose value fits; gguf_meta_get_f64 accepts floats and integers. */
int gguf_meta_get_u64(const gguf_meta *m, const char *key, uint64_t *ret);
int gguf_meta_get_i64(const gguf_meta *m, const char *key, int64_t *ret);
int gguf_meta_get_f64(const gguf_meta *m, const char *key, double *ret);
int gguf_meta_get_bool(const gguf_meta *m, const char *key, bool *ret);
int gguf_meta_get_str(const gguf_meta *m, const char *key, gguf_str *ret);
/* An array entry: *ret_kv points at it (type checked against elem_type
 * unless elem_type is GGUF_TYPE_COUNT, meaning any). */
int gguf_meta_get_arr(const gguf_meta *m, const char *key, gguf_type elem_type,
                      const gguf_kv **ret_kv);

/* Array element access (i < kv->n is the caller's job; asserted).
 * Numeric elements of any numeric type are converted. */
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);
/* Fills out[0..kv->n) with the strings of a string array (sequential walk,
 * bounds were checked at parse time). -EINVAL if not a string array. */
int gguf_arr_strings(const gguf_kv *kv, gguf_str *out);

/* malloc'd NUL-terminated copy of s (NULL on ENOMEM). */
char *gguf_str_dup(gguf_str s);
bool gguf_str_eq(gguf_str s, const char *cstr);
/* Size in bytes of one element of a fixed-size type, 0 for string/array. */
size_t gguf_type_size(gguf_type t);
const char *gguf_type_name(gguf_type t);

#endif
