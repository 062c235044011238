/* SPDX-License-Identifier: MIT */
/*
 * safetensors.c - mmap reader and atomic writer of safetensors files (the
 * format is described in safetensors.h).
 *
 * The reader parses the JSON header with cJSON and distrusts every number
 * in it: the header length against the file size, each data_offsets pair
 * against the data region, each byte count against dtype x shape, and the
 * data region's end against the file's end, so a truncated (torn) file or
 * a hostile header gives -EIO rather than an out-of-bounds read. The writer
 * prints its header by hand, in the caller's tensor order, so its output
 * bytes depend on nothing but its inputs.
 */
#include "safetensors.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header longer than this is not a model we would load. */
#define ST_MAX_HEADER (100u << 20)

uint64_t eng_fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static const struct {
    const char *name;
    eng_dtype dt;
    int size;
} st_dtypes[] = {
    {"F32", ENG_DT_F32, 4},
    {"F16", ENG_DT_F16, 2},
    {"BF16", ENG_DT_BF16, 2},
};

/* Element size of the dtypes we do not compute with but must bound-check. */
static int other_dtype_size(const char *s)
{
    static const struct { const char *n; int sz; } o[] = {
        {"F64", 8}, {"I64", 8}, {"U64", 8}, {"I32", 4}, {"U32", 4},
        {"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1},
        {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof o / sizeof *o; i++)
        if (!strcmp(o[i].n, s))
            return o[i].sz;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */

void eng_st_close(eng_st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->t);
    free(f->meta_key);
    free(f->meta_val);
    if (f->map)
        munmap(f->map, f->map_len);
    free(f);
}

static int parse_meta(eng_st_file *f, const cJSON *m)
{
    int n = cJSON_GetArraySize(m);
    f->meta_key = calloc((size_t)n + 1, sizeof(char *));
    f->meta_val = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_key || !f->meta_val)
        return -ENOMEM;
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->string)
            return -EIO;
        f->meta_key[f->n_meta] = strdup(e->string);
        f->meta_val[f->n_meta] = strdup(e->valuestring);
        f->n_meta++;
        if (!f->meta_key[f->n_meta - 1] || !f->meta_val[f->n_meta - 1])
            return -ENOMEM;
    }
    return 0;
}

/* Fills t from one header entry; data_len is the data region's size. */
static int parse_tensor(eng_st_tensor *t, const cJSON *e, const uint8_t *data,
                        uint64_t data_len, uint64_t *ret_end)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
        cJSON_GetArraySize(off) != 2 ||
        cJSON_GetArraySize(sh) > ENG_ST_MAX_DIMS ||
        strlen(dt->valuestring) >= sizeof t->dtype_name)
        return -EIO;
    strcpy(t->dtype_name, dt->valuestring);
    int esize = other_dtype_size(t->dtype_name);
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (!strcmp(st_dtypes[i].name, t->dtype_name)) {
            t->known = true;
            t->dtype = st_dtypes[i].dt;
            esize = st_dtypes[i].size;
        }
    if (!esize)
        return -EIO;
    uint64_t numel = 1;
    t->ndim = 0;
    for (const cJSON *d = sh->child; d; d = d->next) {
        double v = d->valuedouble;
        if (!cJSON_IsNumber(d) || v < 0 || v > 9.0e15 ||
            v != (double)(int64_t)v)
            return -EIO;
        uint64_t dim = (uint64_t)v;
        t->shape[t->ndim++] = (int64_t)dim;
        if (dim && numel > UINT64_MAX / 16 / dim) /* no overflow below */
            return -EIO;
        numel *= dim;
    }
    double b = cJSON_GetArrayItem(off, 0)->valuedouble;
    double en = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) || b < 0 || en < b ||
        en > (double)data_len)
        return -EIO;
    if ((uint64_t)en - (uint64_t)b != numel * (uint64_t)esize)
        return -EIO;
    t->data = data + (uint64_t)b;
    t->nbytes = (size_t)((uint64_t)en - (uint64_t)b);
    *ret_end = (uint64_t)en;
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const eng_st_tensor *x = a, *y = b;
    return (x->data > y->data) - (x->data < y->data);
}

static int parse_header(eng_st_file *f, const char *json, size_t len,
                        const uint8_t *data, uint64_t data_len)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    int rc = 0;
    uint64_t max_end = 0;
    if (!root || !cJSON_IsObject(root)) {
        rc = -EIO;
        goto out;
    }
    f->t = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof(*f->t));
    if (!f->t) {
        rc = -ENOMEM;
        goto out;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string || !cJSON_IsObject(e)) {
            rc = -EIO;
            goto out;
        }
        if (!strcmp(e->string, "__metadata__")) {
            if ((rc = parse_meta(f, e)))
                goto out;
            continue;
        }
        eng_st_tensor *t = &f->t[f->n];
        uint64_t end;
        if (!(t->name = strdup(e->string))) {
            rc = -ENOMEM;
            goto out;
        }
        f->n++;
        if ((rc = parse_tensor(t, e, data, data_len, &end)))
            goto out;
        max_end = end > max_end ? end : max_end;
    }
    /* The data region must end where the file ends: catches truncation. */
    if (max_end != data_len)
        rc = -EIO;
    qsort(f->t, (size_t)f->n, sizeof(*f->t), cmp_offset);
out:
    cJSON_Delete(root);
    return rc;
}

int eng_st_open(const char *path, eng_st_file **ret, char *err, size_t errlen)
{
    eng_st_file *f = NULL;
    struct stat st;
    uint64_t hlen = 0;
    int rc, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? -ENOENT : -EIO;
        eng_err(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        rc = -ENOMEM;
        goto out;
    }
    if (fstat(fd, &st) || st.st_size < 8) {
        rc = -EIO;
        eng_err(err, errlen, "%s: too short for safetensors", path);
        goto out;
    }
    f->map_len = (size_t)st.st_size;
    f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = -EIO;
        eng_err(err, errlen, "%s: mmap: %s", path, strerror(errno));
        goto out;
    }
    const uint8_t *p = f->map;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > ST_MAX_HEADER || hlen > f->map_len - 8) {
        rc = -EIO;
        eng_err(err, errlen, "%s: bad safetensors header length", path);
        goto out;
    }
    rc = parse_header(f, (const char *)p + 8, (size_t)hlen, p + 8 + hlen,
                      f->map_len - 8 - hlen);
    if (rc) {
        eng_err(err, errlen,
                rc == -ENOMEM ? "%s: out of memory"
                              : "%s: corrupt or truncated safetensors",
                path);
        goto out;
    }
    *ret = f;
    f = NULL;
out:
    close(fd);
    eng_st_close(f);
    return rc;
}

const eng_st_tensor *eng_st_find(const eng_st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

const char *eng_st_meta(const eng_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_key[i], key))
            return f->meta_val[i];
    return NULL;
}

int64_t eng_st_numel(const eng_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if ((size_t)(slash - path) >= sizeof dir)
        return -EINVAL;
    else if (slash == path)
        strcpy(dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) ? -errno : 0;
    close(fd);
    return rc;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int eng_write_atomic(const char *path, const void *const *parts,
                     const size_t *lens, int n_parts)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    int rc = 0, fd;
    if (!tmp)
        return -ENOMEM;
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    if ((fd = mkstemp(tmp)) < 0) {
        rc = errno == ENOENT ? -ENOENT : -EIO;
        free(tmp);
        return rc;
    }
    for (int i = 0; i < n_parts && !rc; i++)
        rc = write_all(fd, parts[i], lens[i]);
    if (!rc && fsync(fd))
        rc = -errno;
    if (close(fd) && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path))
        rc = -errno;
    if (rc)
        unlink(tmp);
    else
        rc = fsync_dir_of(path);
    free(tmp);
    /* Callers care about "failed to write", not which syscall failed. */
    return rc == -ENOMEM || rc == -ENOENT || rc == 0 ? rc : -EIO;
}

/* Appends JSON-escaped s to buf (which has room: 6 bytes per input byte). */
static size_t json_str(char *buf, const char *s)
{
    size_t n = 0;
    buf[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)sprintf(buf + n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    return n;
}

static int dtype_bytes(eng_dtype dt, const char **ret_name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (st_dtypes[i].dt == dt) {
            *ret_name = st_dtypes[i].name;
            return st_dtypes[i].size;
        }
    return 0;
}

int eng_st_write(const char *path, const eng_st_out *t, int n,
                 const char *const *meta, int n_meta, char *err,
                 size_t errlen)
{
    size_t cap = 64, hlen = 0, off = 0;
    int rc = 0;
    for (int i = 0; i < n; i++)
        cap += 6 * strlen(t[i].name) + 80 + 24 * (size_t)t[i].ndim;
    for (int i = 0; i < 2 * n_meta; i++)
        cap += 6 * strlen(meta[i]) + 8;
    char *h = malloc(cap + 8);
    const void **parts = calloc((size_t)n + 2, sizeof(*parts));
    size_t *lens = calloc((size_t)n + 2, sizeof(*lens));
    if (!h || !parts || !lens) {
        rc = -ENOMEM;
        goto out;
    }
    h[hlen++] = '{';
    if (n_meta) {
        hlen += (size_t)sprintf(h + hlen, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            hlen += json_str(h + hlen, meta[2 * i]);
            h[hlen++] = ':';
            hlen += json_str(h + hlen, meta[2 * i + 1]);
            h[hlen++] = i + 1 < n_meta ? ',' : '}';
        }
    }
    for (int i = 0; i < n; i++) {
        const char *dname;
        int64_t numel = 1;
        int es = dtype_bytes(t[i].dtype, &dname);
        if (!es || t[i].ndim < 0 || t[i].ndim > ENG_ST_MAX_DIMS) {
            rc = -EINVAL;
            eng_err(err, errlen, "%s: unsupported tensor %s", path, t[i].name);
            goto out;
        }
        if (hlen > 1)
            h[hlen++] = ',';
        hlen += json_str(h + hlen, t[i].name);
        hlen += (size_t)sprintf(h + hlen, ":{\"dtype\":\"%s\",\"shape\":[",
                                dname);
        for (int d = 0; d < t[i].ndim; d++) {
            hlen += (size_t)sprintf(h + hlen, d ? ",%lld" : "%lld",
                                    (long long)t[i].shape[d]);
            numel *= t[i].shape[d];
        }
        size_t nb = (size_t)numel * (size_t)es;
        hlen += (size_t)sprintf(h + hlen, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + nb);
        parts[i + 2] = t[i].data;
        lens[i + 2] = nb;
        off += nb;
    }
    h[hlen++] = '}';
    while ((hlen + 8) % 8) /* pad so the data region is 8-byte aligned */
        h[hlen++] = ' ';
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    parts[0] = len8;
    lens[0] = 8;
    parts[1] = h;
    lens[1] = hlen;
    rc = eng_write_atomic(path, parts, lens, n + 2);
    if (rc)
        eng_err(err, errlen, "%s: write failed (%s)", path, strerror(-rc));
out:
    free(h);
    free(parts);
    free(lens);
    return rc;
}
