/* SPDX-License-Identifier: MIT */
/*
 * gguf_meta.c - GGUF header and metadata reader (see gguf_meta.h).
 *
 * One pass over the key/value section with a cursor that refuses to move
 * past the end of the buffer: every read goes through cur_take(), which
 * checks the remaining length first. Values are not copied; each gguf_kv
 * records where its payload lies so getters can decode it later. String
 * arrays are walked once at parse time (to find where they end), so later
 * walks by gguf_arr_strings() cannot fail.
 */
#include "gguf_meta.h"
#include "err.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Arrays of arrays nest at most this deep (the format allows it; nobody
 * uses more than one level, and a bound keeps recursion safe). */
#define GGUF_MAX_DEPTH 4

typedef struct cursor {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

static const uint8_t *cur_take(cursor *c, uint64_t n)
{
    if (n > (uint64_t)(c->end - c->p))
        return NULL;
    const uint8_t *q = c->p;
    c->p += n;
    return q;
}

static int cur_u32(cursor *c, uint32_t *v)
{
    const uint8_t *q = cur_take(c, 4);
    if (!q)
        return -EIO;
    memcpy(v, q, 4);
    return 0;
}

static int cur_u64(cursor *c, uint64_t *v)
{
    const uint8_t *q = cur_take(c, 8);
    if (!q)
        return -EIO;
    memcpy(v, q, 8);
    return 0;
}

static int cur_str(cursor *c, gguf_str *s)
{
    uint64_t len;
    if (cur_u64(c, &len) < 0)
        return -EIO;
    const uint8_t *q = cur_take(c, len);
    if (!q)
        return -EIO;
    s->ptr = (const char *)q;
    s->len = len;
    return 0;
}

size_t gguf_type_size(gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

const char *gguf_type_name(gguf_type t)
{
    static const char *const names[GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str",
        "arr", "u64", "i64", "f64",
    };
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "?";
}

/* Skips one value of type t (its payload only). */
static int skip_value(cursor *c, gguf_type t, int depth)
{
    size_t sz = gguf_type_size(t);
    if (sz)
        return cur_take(c, sz) ? 0 : -EIO;
    if (t == GGUF_TYPE_STRING) {
        gguf_str s;
        return cur_str(c, &s);
    }
    if (t != GGUF_TYPE_ARRAY || depth >= GGUF_MAX_DEPTH)
        return -EIO;
    uint32_t et;
    uint64_t n;
    if (cur_u32(c, &et) < 0 || cur_u64(c, &n) < 0 || et >= GGUF_TYPE_COUNT)
        return -EIO;
    size_t esz = gguf_type_size((gguf_type)et);
    if (esz) {
        if (n > (uint64_t)(c->end - c->p) / esz)
            return -EIO;
        c->p += n * esz;
        return 0;
    }
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, (gguf_type)et, depth + 1) < 0)
            return -EIO;
    return 0;
}

static int parse_kv(cursor *c, gguf_kv *kv)
{
    uint32_t t;
    if (cur_str(c, &kv->key) < 0 || cur_u32(c, &t) < 0 ||
        t >= GGUF_TYPE_COUNT)
        return -EIO;
    kv->type = (gguf_type)t;
    kv->arr_type = GGUF_TYPE_COUNT;
    kv->n = 1;
    if (kv->type == GGUF_TYPE_ARRAY) {
        uint32_t et;
        if (cur_u32(c, &et) < 0 || cur_u64(c, &kv->n) < 0 ||
            et >= GGUF_TYPE_COUNT)
            return -EIO;
        kv->arr_type = (gguf_type)et;
        /* rewind so skip_value re-reads the array header it expects */
        c->p -= 12;
        kv->data = c->p + 12;
    } else {
        kv->data = c->p;
    }
    if (skip_value(c, kv->type, 0) < 0)
        return -EIO;
    kv->data_len = (size_t)(c->p - kv->data);
    return 0;
}

int gguf_meta_parse(const void *buf, size_t size, gguf_meta **ret, char *err,
                    size_t errlen)
{
    cursor c = { buf, (const uint8_t *)buf + size };
    const uint8_t *magic = cur_take(&c, 4);
    if (!magic || memcmp(magic, "GGUF", 4) != 0) {
        eng_err(err, errlen, "not a GGUF file (bad magic)");
        return -EIO;
    }
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (cur_u32(&c, &version) < 0 || cur_u64(&c, &n_tensors) < 0 ||
        cur_u64(&c, &n_kv) < 0) {
        eng_err(err, errlen, "GGUF header truncated");
        return -EIO;
    }
    if (version != 2 && version != 3) {
        eng_err(err, errlen, "unsupported GGUF version %u", version);
        return -EIO;
    }
    /* each kv takes at least 8 (key len) + 4 (type) + 1 bytes */
    if (n_kv > size / 13) {
        eng_err(err, errlen, "GGUF kv count %llu exceeds the file",
                (unsigned long long)n_kv);
        return -EIO;
    }
    gguf_meta *m = calloc(1, sizeof(*m));
    gguf_kv *kv = calloc(n_kv ? n_kv : 1, sizeof(*kv));
    if (!m || !kv) {
        free(m);
        free(kv);
        return -ENOMEM;
    }
    m->kv = kv;
    for (uint64_t i = 0; i < n_kv; i++) {
        if (parse_kv(&c, &kv[i]) < 0) {
            eng_err(err, errlen, "GGUF metadata entry %llu is corrupt",
                    (unsigned long long)i);
            free(kv);
            free(m);
            return -EIO;
        }
    }
    m->version = version;
    m->n_tensors = n_tensors;
    m->n_kv = n_kv;
    m->tensor_info_offset = (size_t)(c.p - (const uint8_t *)buf);
    m->base = buf;
    m->size = size;
    m->alignment = GGUF_DEFAULT_ALIGNMENT;
    uint64_t al;
    if (gguf_meta_get_u64(m, "general.alignment", &al) == 0) {
        if (al == 0 || al > (1u << 20) || (al & (al - 1))) {
            eng_err(err, errlen, "bad general.alignment %llu",
                    (unsigned long long)al);
            free(kv);
            free(m);
            return -EIO;
        }
        m->alignment = (uint32_t)al;
    }
    *ret = m;
    return 0;
}

int gguf_meta_open(const char *path, gguf_meta **ret, char *err,
                   size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        eng_err(err, errlen, "%s: %s", path, strerror(e));
        return e == ENOENT ? -ENOENT : -EIO;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < 24) {
        close(fd);
        eng_err(err, errlen, "%s: not a GGUF file (too small)", path);
        return -EIO;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        eng_err(err, errlen, "%s: mmap failed", path);
        return -EIO;
    }
    gguf_meta *m;
    int rc = gguf_meta_parse(map, size, &m, err, errlen);
    if (rc < 0) {
        munmap(map, size);
        return rc;
    }
    m->map = map;
    *ret = m;
    return 0;
}

void gguf_meta_free(gguf_meta *m)
{
    if (!m)
        return;
    if (m->map)
        munmap(m->map, m->size);
    free(m->kv);
    free(m);
}

bool gguf_str_eq(gguf_str s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

char *gguf_str_dup(gguf_str s)
{
    if (s.len >= SIZE_MAX)
        return NULL;
    char *p = malloc((size_t)s.len + 1);
    if (!p)
        return NULL;
    memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = '\0';
    return p;
}

const gguf_kv *gguf_meta_find(const gguf_meta *m, const char *key)
{
    for (uint64_t i = 0; i < m->n_kv; i++)
        if (gguf_str_eq(m->kv[i].key, key))
            return &m->kv[i];
    return NULL;
}

/* A numeric value in every form the getters want; is_int tells integer
 * from float, neg a negative integer. */
typedef struct num {
    gguf_type type;
    int64_t iv;
    uint64_t uv;
    double fv;
    bool is_int, neg;
} num;

/* Decodes a numeric scalar at p. */
static int decode_num(gguf_type t, const uint8_t *p, num *n)
{
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32;
            int32_t i32; float f32; uint64_t u64; int64_t i64; double f64; } u;
    size_t sz = gguf_type_size(t);
    if (!sz)
        return -EINVAL;
    memcpy(&u, p, sz);
    n->type = t;
    n->is_int = true;
    n->neg = false;
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: n->uv = u.u8; break;
    case GGUF_TYPE_UINT16: n->uv = u.u16; break;
    case GGUF_TYPE_UINT32: n->uv = u.u32; break;
    case GGUF_TYPE_UINT64: n->uv = u.u64; break;
    case GGUF_TYPE_INT8: n->iv = u.i8; goto sgn;
    case GGUF_TYPE_INT16: n->iv = u.i16; goto sgn;
    case GGUF_TYPE_INT32: n->iv = u.i32; goto sgn;
    case GGUF_TYPE_INT64: n->iv = u.i64; goto sgn;
    case GGUF_TYPE_FLOAT32: n->fv = u.f32; n->is_int = false; return 0;
    case GGUF_TYPE_FLOAT64: n->fv = u.f64; n->is_int = false; return 0;
    default: return -EINVAL;
    }
    n->iv = (int64_t)n->uv; /* the i64 getter refuses values above INT64_MAX */
    n->fv = (double)n->uv;
    return 0;
sgn:
    n->neg = n->iv < 0;
    n->uv = (uint64_t)n->iv;
    n->fv = (double)n->iv;
    return 0;
}

/* The entry under key if it has type t: -ENOENT absent, -EINVAL other. */
static int get_typed(const gguf_meta *m, const char *key, gguf_type t,
                     const gguf_kv **ret)
{
    const gguf_kv *kv = gguf_meta_find(m, key);
    if (!kv)
        return -ENOENT;
    if (kv->type != t)
        return -EINVAL;
    *ret = kv;
    return 0;
}

/* The numeric scalar under key, decoded. */
static int get_num(const gguf_meta *m, const char *key, num *ret)
{
    const gguf_kv *kv = gguf_meta_find(m, key);
    if (!kv)
        return -ENOENT;
    if (!gguf_type_size(kv->type))
        return -EINVAL;
    return decode_num(kv->type, kv->data, ret);
}

int gguf_meta_get_u64(const gguf_meta *m, const char *key, uint64_t *ret)
{
    num n;
    int rc = get_num(m, key, &n);
    if (rc < 0)
        return rc;
    if (!n.is_int || n.neg)
        return -EINVAL;
    *ret = n.uv;
    return 0;
}

int gguf_meta_get_i64(const gguf_meta *m, const char *key, int64_t *ret)
{
    num n;
    int rc = get_num(m, key, &n);
    if (rc < 0)
        return rc;
    if (!n.is_int || (!n.neg && n.uv > INT64_MAX))
        return -EINVAL;
    *ret = n.iv;
    return 0;
}

int gguf_meta_get_f64(const gguf_meta *m, const char *key, double *ret)
{
    num n;
    int rc = get_num(m, key, &n);
    if (rc < 0)
        return rc;
    if (n.type == GGUF_TYPE_BOOL)
        return -EINVAL;
    *ret = n.fv;
    return 0;
}

int gguf_meta_get_bool(const gguf_meta *m, const char *key, bool *ret)
{
    const gguf_kv *kv;
    int rc = get_typed(m, key, GGUF_TYPE_BOOL, &kv);
    if (rc < 0)
        return rc;
    *ret = kv->data[0] != 0;
    return 0;
}

int gguf_meta_get_str(const gguf_meta *m, const char *key, gguf_str *ret)
{
    const gguf_kv *kv;
    int rc = get_typed(m, key, GGUF_TYPE_STRING, &kv);
    if (rc < 0)
        return rc;
    uint64_t len;
    memcpy(&len, kv->data, 8);
    ret->ptr = (const char *)kv->data + 8;
    ret->len = len;
    return 0;
}

int gguf_meta_get_arr(const gguf_meta *m, const char *key, gguf_type elem_type,
                      const gguf_kv **ret_kv)
{
    const gguf_kv *kv;
    int rc = get_typed(m, key, GGUF_TYPE_ARRAY, &kv);
    if (rc < 0)
        return rc;
    if (elem_type != GGUF_TYPE_COUNT && kv->arr_type != elem_type)
        return -EINVAL;
    *ret_kv = kv;
    return 0;
}

/* Element i of a numeric array, decoded. */
static int arr_num(const gguf_kv *kv, uint64_t i, num *ret)
{
    assert(kv->type == GGUF_TYPE_ARRAY && i < kv->n);
    size_t sz = gguf_type_size(kv->arr_type);
    assert(sz);
    return decode_num(kv->arr_type, kv->data + i * sz, ret);
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i)
{
    num n;
    if (arr_num(kv, i, &n) < 0)
        return 0.0;
    return n.fv;
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i)
{
    num n;
    if (arr_num(kv, i, &n) < 0)
        return 0;
    if (n.is_int)
        return n.iv;
    /* Casting NaN or a float out of range is undefined: saturate. */
    if (!(n.fv > -9223372036854775808.0 && n.fv < 9223372036854775808.0))
        return n.fv > 0 ? INT64_MAX : n.fv < 0 ? INT64_MIN : 0;
    return (int64_t)n.fv;
}

int gguf_arr_strings(const gguf_kv *kv, gguf_str *out)
{
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING)
        return -EINVAL;
    cursor c = { kv->data, kv->data + kv->data_len };
    for (uint64_t i = 0; i < kv->n; i++)
        if (cur_str(&c, &out[i]) < 0)
            return -EIO; /* cannot happen: checked at parse time */
    return 0;
}
