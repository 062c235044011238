/* SPDX-License-Identifier: MIT */
/*
 * fuzz_multipart.c - multipart/form-data part extraction
 * (api_multipart_extract) and the Content-Type parameter reader it is fed
 * by (api_header_param).
 *
 * Input: the first line (up to LF) is a Content-Type header value, e.g.
 *     multipart/form-data; boundary=XyZ
 * and the rest is the body. The boundary comes out of that header exactly
 * as api/datasets.c gets it; a header without one gives the boundary
 * "fuzzb" so the body is still exercised.
 *
 * Checks: the extracted part is never longer than the body; and when the
 * part named "file" was extracted, re-serialising it into a fresh,
 * well-formed multipart body (same boundary, other parts around it) and
 * extracting again gives the same bytes and file name (a round trip; a part
 * that contains its own delimiter cannot be framed and is skipped).
 */
#include "tests/fuzz/fuzz_api.h"

#include "api/api-impl.h"

static int extract(const char *body, size_t len, const char *boundary,
                   char **ret, size_t *ret_len, char *fn, size_t fnlen)
{
    FILE *in = len ? fmemopen((void *)body, len, "rb")
                   : fopen("/dev/null", "rb");
    FZ_ASSERT(in != NULL);
    char *out_buf = NULL;
    size_t out_len = 0;
    FILE *out = open_memstream(&out_buf, &out_len);
    FZ_ASSERT(out != NULL);
    char err[160] = "";
    int r = api_multipart_extract(in, boundary, "file", out, fn, fnlen, err,
                                  sizeof(err));
    fclose(in);
    FZ_ASSERT(fclose(out) == 0);
    if (r < 0)
        FZ_ASSERT(err[0] != '\0');
    *ret = out_buf;
    *ret_len = out_len;
    return r;
}

static void roundtrip(const char *boundary, const char *part, size_t plen,
                      const char *fn)
{
    char delim[160];
    int dl = snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
    if (memmem(part, plen, delim, (size_t)dl) || memmem(part, plen, delim + 2,
                                                       (size_t)dl - 2))
        return;
    /* The file name is written quoted; one with a quote or a line break
     * cannot be written that way. */
    if (strpbrk(fn, "\"\r\n"))
        return;
    char *body = NULL;
    size_t blen = 0;
    FILE *w = open_memstream(&body, &blen);
    FZ_ASSERT(w != NULL);
    fprintf(w, "preamble\r\n--%s\r\n"
               "Content-Disposition: form-data; name=\"other\"\r\n\r\n"
               "x\r\n--%s\r\n"
               "Content-Disposition: form-data; name=\"file\"; "
               "filename=\"%s\"\r\nContent-Type: application/jsonl\r\n\r\n",
            boundary, boundary, fn);
    fwrite(part, 1, plen, w);
    fprintf(w, "\r\n--%s--\r\nepilogue", boundary);
    FZ_ASSERT(fclose(w) == 0);

    char *again = NULL, fn2[256] = "";
    size_t alen = 0;
    int r = extract(body, blen, boundary, &again, &alen, fn2, sizeof(fn2));
    FZ_ASSERT(r == 0);
    FZ_ASSERT(alen == plen && memcmp(again, part, plen) == 0);
    FZ_ASSERT(strcmp(fn, fn2) == 0);
    free(again);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return 0;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hlen = nl ? (size_t)(nl - data) : size;
    char *ct = fz_strndup(data, hlen);
    const char *body = nl ? (const char *)nl + 1 : "";
    size_t blen = nl ? size - hlen - 1 : 0;

    char boundary[128];
    (void)api_content_type_is(ct, "multipart/form-data");
    if (!api_header_param(ct, "boundary", boundary, sizeof(boundary)))
        snprintf(boundary, sizeof(boundary), "fuzzb");

    char *part = NULL, fn[256] = "";
    size_t plen = 0;
    int r = extract(body, blen, boundary, &part, &plen, fn, sizeof(fn));
    FZ_ASSERT(plen <= blen);
    if (r == 0)
        roundtrip(boundary, part, plen, fn);
    free(part);
    free(ct);
    return 0;
}
