/* SPDX-License-Identifier: MIT */
/*
 * test_safetensors.c - the safetensors writer and reader: round trip of
 * tensors and metadata, byte-identical rewrites, and -EIO (never a crash
 * or an out-of-bounds read) for truncated files, hostile header lengths,
 * offsets past the end, sizes that disagree with dtype x shape, and
 * non-JSON headers.
 */
#include "engine/safetensors.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[256];

/* Writes a raw file: 8-byte length, header text, data bytes. */
static void write_raw(const char *hdr, uint64_t hlen, const void *data,
                      size_t n)
{
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 8; i++)
        fputc((int)(hlen >> (8 * i)) & 0xff, f);
    fwrite(hdr, 1, strlen(hdr), f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static int open_rc(void)
{
    eng_st_file *f = NULL;
    int rc = eng_st_open(path, &f, NULL, 0);
    eng_st_close(f);
    return rc;
}

static void test_roundtrip(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3f80, 0x4000, 0xc040}; /* bf16 1, 2, -3 */
    eng_st_out t[2] = {
        {.name = "w\"eird\\name", .dtype = ENG_DT_F32, .ndim = 2,
         .shape = {2, 3}, .data = a},
        {.name = "b", .dtype = ENG_DT_BF16, .ndim = 1, .shape = {3},
         .data = b},
    };
    const char *meta[] = {"format", "pt", "step", "12"};
    eng_st_file *f;
    CHECK(eng_st_write(path, t, 2, meta, 2, NULL, 0) == 0);
    CHECK(eng_st_open(path, &f, NULL, 0) == 0);
    CHECK(f->n == 2 && f->n_meta == 2);
    CHECK(!strcmp(eng_st_meta(f, "step"), "12"));
    const eng_st_tensor *x = eng_st_find(f, "w\"eird\\name");
    CHECK(x && x->dtype == ENG_DT_F32 && x->ndim == 2 && x->shape[1] == 3 &&
          !memcmp(x->data, a, sizeof a) && eng_st_numel(x) == 6);
    x = eng_st_find(f, "b");
    CHECK(x && x->dtype == ENG_DT_BF16 && x->nbytes == 6);
    CHECK(((uintptr_t)f->t[0].data & 7) == 0); /* data region 8-aligned */
    eng_st_close(f);
    /* rewriting the same inputs gives the same bytes */
    FILE *fp = fopen(path, "rb");
    char one[512], two[512];
    size_t n1 = fread(one, 1, sizeof one, fp);
    fclose(fp);
    CHECK(eng_st_write(path, t, 2, meta, 2, NULL, 0) == 0);
    fp = fopen(path, "rb");
    size_t n2 = fread(two, 1, sizeof two, fp);
    fclose(fp);
    CHECK(n1 == n2 && !memcmp(one, two, n1));
}

static void test_bad_files(void)
{
    float d[4] = {0};
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                     "\"data_offsets\":[0,16]}}";
    write_raw(ok, strlen(ok), d, 16);
    CHECK(open_rc() == 0);
    write_raw(ok, strlen(ok), d, 12); /* torn: data cut short */
    CHECK(open_rc() == -EIO);
    write_raw(ok, strlen(ok), d, 16);
    truncate(path, 30); /* torn inside the header */
    CHECK(open_rc() == -EIO);
    write_raw(ok, (uint64_t)1 << 62, d, 16); /* hostile length */
    CHECK(open_rc() == -EIO);
    /* offsets past the end, a size that disagrees with dtype x shape, a
     * shape whose size overflows, negative offsets, an unknown dtype, not
     * JSON: each header (before the same 16 data bytes) is refused */
    static const char *const bad[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,1600]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,16]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,"
        "4294967296],\"data_offsets\":[0,16]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,-8]}}",
        "{\"a\":{\"dtype\":\"F99\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_raw(bad[i], strlen(bad[i]), d, 16);
        CHECK(open_rc() == -EIO, "header %s", bad[i]);
    }
    unlink(path);
    CHECK(open_rc() == -ENOENT);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/tuna-test-st-%d.safetensors",
             (int)getpid());
    test_roundtrip();
    test_bad_files();
    unlink(path);
    return test_done("safetensors");
}
