/* SPDX-License-Identifier: MIT */
/*
 * tar.c - a small POSIX ustar writer (as an api_stream) and reader.
 *
 * An archive is a sequence of 512-byte blocks: per file a header block
 * (name, octal mode/size/mtime, checksum, type '0', magic "ustar\0" "00")
 * then the file's bytes padded to a block, and two zero blocks at the end.
 * Sizes of 8 GiB and more (a merged model) use GNU's base-256 size field
 * (first byte 0x80, big-endian binary), which GNU tar, bsdtar and Python's
 * tarfile read. The writer streams: the response reads files from disk
 * block by block, so an archive of a large model is never held in memory.
 */
#include "api/models-impl.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAR_BLOCK 512

typedef struct tar_stream {
    api_tar_file *files;
    uint64_t *sizes;
    int n, cur;
    int phase;            /* 0 header, 1 data, 2 padding, 3 trailer, 4 end */
    FILE *f;
    uint64_t left;        /* bytes left in the current phase */
    char hdr[TAR_BLOCK];
    size_t hdr_pos;
    char *remove_dir;
} tar_stream;

static void octal(char *dst, size_t width, uint64_t v)
{
    /* width - 1 digits and a NUL */
    dst[width - 1] = '\0';
    for (size_t i = width - 1; i-- > 0;) {
        dst[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

static void make_header(char *h, const char *name, uint64_t size)
{
    memset(h, 0, TAR_BLOCK);
    snprintf(h, 100, "%s", name);
    octal(h + 100, 8, 0644);
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    if (size < ((uint64_t)1 << 33)) {
        octal(h + 124, 12, size);
    } else {
        h[124] = (char)0x80;
        for (int i = 11; i >= 4; i--, size >>= 8)
            h[124 + i] = (char)(size & 0xff);
    }
    octal(h + 136, 12, (uint64_t)time(NULL));
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    snprintf(h + 265, 32, "tuna");
    snprintf(h + 297, 32, "tuna");
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < TAR_BLOCK; i++)
        sum += (unsigned char)h[i];
    octal(h + 148, 7, sum);
    h[155] = ' ';
}

/* Moves to the next phase; returns false at the end. */
static void next_phase(tar_stream *s)
{
    switch (s->phase) {
    case 0:
        s->phase = 1;
        s->left = s->sizes[s->cur];
        return;
    case 1:
        if (s->f)
            fclose(s->f);
        s->f = NULL;
        s->phase = 2;
        s->left = (TAR_BLOCK - s->sizes[s->cur] % TAR_BLOCK) % TAR_BLOCK;
        return;
    case 2:
        s->cur++;
        s->phase = s->cur < s->n ? 0 : 3;
        s->hdr_pos = 0;
        s->left = s->phase == 3 ? 2 * TAR_BLOCK : TAR_BLOCK;
        if (s->phase == 0)
            make_header(s->hdr, s->files[s->cur].name, s->sizes[s->cur]);
        return;
    default:
        s->phase = 4;
    }
}

static ssize_t tar_read(void *ctx, char *buf, size_t max)
{
    tar_stream *s = ctx;
    size_t out = 0;
    while (out < max && s->phase < 4) {
        if (s->left == 0) {
            next_phase(s);
            continue;
        }
        size_t k = max - out < s->left ? max - out : (size_t)s->left;
        if (s->phase == 0) {
            memcpy(buf + out, s->hdr + s->hdr_pos, k);
            s->hdr_pos += k;
        } else if (s->phase == 1) {
            if (!s->f && !(s->f = fopen(s->files[s->cur].path, "rb")))
                return -1;
            size_t got = fread(buf + out, 1, k, s->f);
            if (got == 0)
                return -1; /* the file shrank: end the response early */
            k = got;
        } else {
            memset(buf + out, 0, k);
        }
        out += k;
        s->left -= k;
    }
    return out > 0 ? (ssize_t)out : -1;
}

void api_rmdir_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[2048];
    if (!d)
        return;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void tar_free(void *ctx)
{
    tar_stream *s = ctx;
    if (s->f)
        fclose(s->f);
    if (s->remove_dir)
        api_rmdir_files(s->remove_dir);
    free(s->remove_dir);
    free(s->files);
    free(s->sizes);
    free(s);
}

int api_tar_stream(const api_tar_file *files, int n, const char *remove_dir,
                   api_stream *ret)
{
    tar_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->files = malloc((size_t)(n ? n : 1) * sizeof(*files));
    s->sizes = calloc((size_t)(n ? n : 1), sizeof(*s->sizes));
    s->remove_dir = remove_dir ? strdup(remove_dir) : NULL;
    if (!s->files || !s->sizes || (remove_dir && !s->remove_dir)) {
        tar_free(s);
        return -ENOMEM;
    }
    memcpy(s->files, files, (size_t)n * sizeof(*files));
    s->n = n;
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(files[i].path, &st) < 0) {
            int e = -errno;
            tar_free(s);
            return e;
        }
        s->sizes[i] = (uint64_t)st.st_size;
    }
    if (n > 0) {
        make_header(s->hdr, s->files[0].name, s->sizes[0]);
        s->left = TAR_BLOCK;
    } else {
        s->phase = 3;
        s->left = 2 * TAR_BLOCK;
    }
    ret->read = tar_read;
    ret->free = tar_free;
    ret->ctx = s;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */

static bool parse_size(const char *f, uint64_t *ret)
{
    uint64_t v = 0;
    if ((unsigned char)f[0] == 0x80) {
        for (int i = 4; i < 12; i++)
            v = v << 8 | (unsigned char)f[i];
        *ret = v;
        return true;
    }
    int i = 0;
    while (i < 12 && f[i] == ' ')
        i++;
    for (; i < 12 && f[i] >= '0' && f[i] <= '7'; i++)
        v = v * 8 + (uint64_t)(f[i] - '0');
    if (i < 12 && f[i] != '\0' && f[i] != ' ')
        return false;
    *ret = v;
    return true;
}

static bool checksum_ok(const unsigned char *h)
{
    unsigned sum = 0;
    uint64_t want;
    for (int i = 0; i < TAR_BLOCK; i++)
        sum += (i >= 148 && i < 156) ? ' ' : h[i];
    char f[12] = { 0 };
    memcpy(f, h + 148, 8);
    return parse_size(f, &want) && want == sum;
}

int api_tar_extract(const char *buf, size_t len, const char *const *want,
                    int n_want, const char *dir, char *err, size_t errlen)
{
    size_t pos = 0;
    int found = 0;
    while (pos + TAR_BLOCK <= len) {
        const unsigned char *h = (const unsigned char *)buf + pos;
        bool zero = true;
        for (int i = 0; i < TAR_BLOCK && zero; i++)
            zero = h[i] == 0;
        if (zero)
            return found;
        uint64_t size;
        char name[300];
        if (!checksum_ok(h) || !parse_size((const char *)h + 124, &size) ||
            size > len - pos - TAR_BLOCK) {
            snprintf(err, errlen, "not a tar archive, or a damaged one "
                     "(at byte %zu)", pos);
            return -EINVAL;
        }
        /* ustar: prefix "/" name */
        if (h[345] && !memcmp(h + 257, "ustar", 5))
            snprintf(name, sizeof(name), "%.155s/%.100s", (const char *)h + 345,
                     (const char *)h);
        else
            snprintf(name, sizeof(name), "%.100s", (const char *)h);
        const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
        pos += TAR_BLOCK;
        if (h[156] == '0' || h[156] == '\0') {
            for (int i = 0; i < n_want; i++) {
                if (strcmp(base, want[i]) != 0)
                    continue;
                char path[2048];
                snprintf(path, sizeof(path), "%s/%s", dir, want[i]);
                FILE *f = fopen(path, "wb");
                if (!f || fwrite(buf + pos, 1, size, f) != size) {
                    if (f)
                        fclose(f);
                    snprintf(err, errlen, "cannot write %s", want[i]);
                    return -EIO;
                }
                if (fclose(f) != 0)
                    return -EIO;
                found++;
            }
        }
        pos += (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
    }
    return found;
}
