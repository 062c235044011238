/* SPDX-License-Identifier: MIT */
/*
 * model_ram.c - measures the memory a base model costs: peak resident set
 * of loading it (any format eng_model_load takes) plus one forward pass of
 * n tokens, minus the process's resident set before the load. Weights are
 * memory-mapped, so their pages count once the forward has touched them.
 * Used for the table in docs/models.md; not a test.
 *
 *   model_ram PATH [n_tokens [touch]]
 * prints: params, peak RSS before/after, bytes per parameter, wall time.
 * With "touch", every page of the weight mapping is read after the forward:
 * the steady state of a server whose prompts have used the whole vocabulary
 * (one forward only brings in the embedding rows of its own tokens).
 */
#include "engine/engine.h"
#include "engine/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long rss_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;

    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmHWM: %ld kB", &v) == 1)
            break;
    if (fp)
        fclose(fp);
    return v;
}

int main(int argc, char **argv)
{
    char err[256] = "";
    eng_model *m = NULL;
    eng_session *s = NULL;
    int n = argc > 2 ? atoi(argv[2]) : 16;
    int32_t *ids;
    struct timespec t0, t1;

    if (argc < 2 || n < 1) {
        fprintf(stderr, "usage: %s PATH [n_tokens]\n", argv[0]);
        return 2;
    }
    eng_set_threads(1);
    long before = rss_kib();

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (eng_model_load(argv[1], &m, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    long loaded = rss_kib();
    const eng_config *c = eng_model_config(m);

    ids = calloc((size_t)n, sizeof(*ids));
    for (int i = 0; i < n && ids; i++)
        ids[i] = (int32_t)((i * 7919) % c->vocab_size);
    if (!ids || eng_session_new(m, n, n, &s) || eng_session_eval(s, ids, n)) {
        fprintf(stderr, "forward failed\n");
        return 1;
    }
    if (argc > 3 && !strcmp(argv[3], "touch") && m->map) {
        volatile unsigned char sink = 0;
        long page = sysconf(_SC_PAGESIZE);

        for (size_t o = 0; o < m->map_len; o += (size_t)page)
            sink ^= ((const unsigned char *)m->map)[o];
        (void)sink;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long peak = rss_kib();
    int64_t p = eng_model_n_params(m);

    printf("%s params=%lld base_kib=%ld load_kib=%ld peak_kib=%ld "
           "bytes_per_param=%.3f seconds=%.2f\n", argv[1], (long long)p,
           before, loaded - before, peak - before,
           (double)(peak - before) * 1024.0 / (double)p,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    eng_session_free(s);
    eng_model_unref(m);
    free(ids);
    return 0;
}
