/* SPDX-License-Identifier: MIT */
/*
 * fuzz_dataset_jsonl.c - the streaming JSONL dataset parser of the api
 * (api_dataset_ingest, then api_dataset_load_examples as the job runner
 * reads it), on a temporary data dir and store.
 *
 * Input: the dataset bytes, as an upload body.
 *
 * Checks:
 *  - a rejection names a status in 400..599, a code and a message, and a
 *    line that is -1 or within the input;
 *  - an accepted dataset has 1..max_rows rows and a known format, and its
 *    stored file (the normalised lines: no BOM, CR or blank lines) is the
 *    re-serialisation: ingested again it is accepted with the same rows,
 *    tokens, format, byte count and SHA-256 (systemd-style round trip);
 *  - the stored file loads for training with one example per row.
 * Both rows and files are deleted afterwards.
 */
#include "tests/fuzz/fuzz_api.h"

#include "api/api-impl.h"

static int ingest(api_ctx *ctx, FILE *in, store_dataset *d, api_ds_error *e)
{
    memset(e, 0, sizeof(*e));
    return api_dataset_ingest(ctx, in, "fuzz.jsonl", d, e);
}

static void drop(api_ctx *ctx, const store_dataset *d)
{
    char path[1024];
    api_dataset_path(ctx->data_dir, d->id, path, sizeof(path));
    FZ_ASSERT(store_dataset_delete(ctx->db, d->id) == 0);
    unlink(path);
}

static void check_accepted(api_ctx *ctx, const store_dataset *d, size_t size)
{
    char path[1024];
    FZ_ASSERT(d->rows >= 1 && d->rows <= ctx->limits.max_rows);
    FZ_ASSERT(!strcmp(d->format, "completion") || !strcmp(d->format, "chat") ||
              !strcmp(d->format, "text"));
    FZ_ASSERT(d->bytes >= 2 * d->rows && (size_t)d->bytes <= size + 1);
    FZ_ASSERT(strlen(d->sha256) == 64);

    /* Round trip: the stored file is accepted as it is, unchanged. */
    api_dataset_path(ctx->data_dir, d->id, path, sizeof(path));
    FILE *f = fopen(path, "rb");
    FZ_ASSERT(f != NULL);
    store_dataset d2;
    api_ds_error e2;
    int r = ingest(ctx, f, &d2, &e2);
    fclose(f);
    if (r < 0)
        fprintf(stderr, "re-ingest failed: %s\n", e2.message);
    FZ_ASSERT(r == 0);
    FZ_ASSERT(d2.rows == d->rows && d2.tokens == d->tokens &&
              d2.bytes == d->bytes);
    FZ_ASSERT(!strcmp(d2.format, d->format));
    FZ_ASSERT(!strcmp(d2.sha256, d->sha256));
    drop(ctx, &d2);

    /* Training reads it back, one example per row. */
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    FZ_ASSERT(api_registry_get_base(ctx->models, api_default_base(ctx), &m,
                                    &t) == 0);
    eng_example *ex = NULL;
    int n = 0, trunc = 0;
    char err[256];
    r = api_dataset_load_examples(path, t, 128, &ex, &n, &trunc, err,
                                  sizeof(err));
    if (r < 0)
        fprintf(stderr, "load_examples failed: %s\n", err);
    FZ_ASSERT(r == 0);
    FZ_ASSERT(n == d->rows && trunc >= 0 && trunc <= n);
    for (int i = 0; i < n; i++)
        FZ_ASSERT(ex[i].n >= 0 && ex[i].n <= 128);
    api_examples_free(ex, n);
    eng_tokenizer_unref(t);
    eng_model_unref(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (512 << 10))
        return 0;
    api_ctx *ctx = fz_env_get();
    FILE *in = size ? fmemopen((void *)data, size, "rb")
                    : fopen("/dev/null", "rb");
    FZ_ASSERT(in != NULL);
    store_dataset d;
    api_ds_error e;
    int r = ingest(ctx, in, &d, &e);
    fclose(in);
    if (r < 0) {
        FZ_ASSERT(e.status >= 400 && e.status <= 599);
        FZ_ASSERT(e.code != NULL && e.message[0] != '\0');
        FZ_ASSERT(e.line == -1 || (e.line >= 1 && (size_t)e.line <= size + 1));
        return 0;
    }
    check_accepted(ctx, &d, size);
    drop(ctx, &d);
    return 0;
}
