/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - helpers shared by the fuzz targets in tests/fuzz/.
 *
 * Every target is one LLVMFuzzerTestOneInput() that libFuzzer (or AFL++, or
 * standalone_main.c replaying a corpus under `meson test`) calls with one
 * input. The helpers here give a target:
 *
 *  - a private scratch directory, made once per process under /dev/shm (so
 *    the fsyncs of the store and the dataset writer cost nothing) and
 *    removed at exit;
 *  - FZ_ASSERT, which aborts (a crash the fuzzer saves) when a round-trip
 *    or response invariant does not hold.
 * The api targets add fuzz_api.h (a service environment for api_dispatch).
 *
 * Only the tests include this file; everything is static.
 */
#ifndef TUNA_TESTS_FUZZ_H
#define TUNA_TESTS_FUZZ_H

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TUNA_FUZZ_SOURCE_ROOT
#define TUNA_FUZZ_SOURCE_ROOT "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_ASSERT(cond)                                                      \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__,  \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Scratch directory                                                         */

static char fz_dir_path[256];

static inline void fz_rm_rf(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", path);
}

static inline void fz_dir_cleanup(void)
{
    if (fz_dir_path[0])
        fz_rm_rf(fz_dir_path);
    fz_dir_path[0] = '\0';
}

/* The process's scratch directory (created on first use). */
static inline const char *fz_dir(void)
{
    if (fz_dir_path[0])
        return fz_dir_path;
    struct stat st;
    const char *base = getenv("TUNA_FUZZ_TMPDIR");
    if (!base && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
        access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    if (!base)
        base = getenv("TMPDIR");
    if (!base)
        base = "/tmp";
    snprintf(fz_dir_path, sizeof(fz_dir_path), "%s/tuna-fuzz-XXXXXX", base);
    if (!mkdtemp(fz_dir_path)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fz_dir_cleanup);
    return fz_dir_path;
}

/* Writes data to <scratch>/<name> (replacing it); the path goes to buf. */
static inline void fz_write_file(const char *name, const void *data,
                                 size_t size, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", fz_dir(), name);
    FILE *f = fopen(buf, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz: write scratch file");
        abort();
    }
}

/* A NUL-terminated malloc'd copy of data (embedded NULs cut it short). */
static inline char *fz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

static inline const char *fz_source_root(void)
{
    const char *r = getenv("TUNA_SOURCE_ROOT");
    return r && *r ? r : TUNA_FUZZ_SOURCE_ROOT;
}

#endif
