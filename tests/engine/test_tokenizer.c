/* SPDX-License-Identifier: MIT */
/*
 * test_tokenizer.c - the llama2.c tokenizer on the embedded tok512.bin.
 *
 * The heap-based BPE in tokenizer_llama2c.c is checked against a transcript
 * of llama2.c run.c's quadratic encoder (re-implemented here from the file
 * format, independently of the engine), on fixed and on random strings.
 * Round trips cover ASCII, multi-byte UTF-8, emoji (byte fallback) and the
 * empty string; invalid UTF-8 must be refused.
 */
#include "engine/engine.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- run.c's encoder, verbatim in spirit ---------------------------------- */

static char **rv;    /* vocab strings, NUL-terminated */
static float *rs;
static int rn;

static int ref_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned maxlen;

    if (!f || fread(&maxlen, 4, 1, f) != 1)
        return -1;
    rn = 512;
    rv = calloc(rn, sizeof(*rv));
    rs = calloc(rn, sizeof(*rs));
    for (int i = 0; i < rn; i++) {
        int len;

        if (fread(&rs[i], 4, 1, f) != 1 || fread(&len, 4, 1, f) != 1)
            return -1;
        rv[i] = calloc(len + 1, 1);
        if (fread(rv[i], 1, len, f) != (size_t)len)
            return -1;
    }
    fclose(f);
    return 0;
}

static int ref_lookup(const char *s)
{
    /* run.c skips nothing here, but its sorted vocab finds the one real
     * entry; control/byte pieces never match plain text anyway. */
    for (int i = 3; i < rn; i++)
        if (!strcmp(rv[i], s) && strncmp(rv[i], "<0x", 3))
            return i;
    return -1;
}

static int ref_encode(const char *text, int *tokens)
{
    char buf[64];
    size_t blen = 0;
    int n = 0;

    if (text[0])
        tokens[n++] = ref_lookup(" ");
    for (const char *c = text; *c; c++) {
        if ((*c & 0xC0) != 0x80)
            blen = 0;
        buf[blen++] = *c;
        buf[blen] = 0;
        if ((*(c + 1) & 0xC0) == 0x80 && blen < 4)
            continue;
        int id = ref_lookup(buf);
        if (id != -1) {
            tokens[n++] = id;
        } else {
            for (size_t i = 0; i < blen; i++)
                tokens[n++] = (unsigned char)buf[i] + 3;
        }
        blen = 0;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_idx = -1;

        for (int i = 0; i < n - 1; i++) {
            char cat[64];
            snprintf(cat, sizeof(cat), "%s%s", rv[tokens[i]], rv[tokens[i + 1]]);
            int id = ref_lookup(cat);
            if (id != -1 && rs[id] > best) {
                best = rs[id];
                best_id = id;
                best_idx = i;
            }
        }
        if (best_idx == -1)
            break;
        tokens[best_idx] = best_id;
        for (int i = best_idx + 1; i < n - 1; i++)
            tokens[i] = tokens[i + 1];
        n--;
    }
    return n;
}

/* ---- tests --------------------------------------------------------------- */

static void check_same_as_runc(const eng_tokenizer *t, const char *s)
{
    int32_t ids[4096];
    int ref[4096], n = 0, rn_ = ref_encode(s, ref);
    int rc = eng_tokenizer_encode(t, s, strlen(s), false, false, ids, 4096, &n);

    CHECK(rc == 0);
    CHECK(n == rn_);
    for (int i = 0; i < n && i < rn_; i++)
        if (ids[i] != ref[i]) {
            fprintf(stderr, "mismatch at %d for \"%s\": %d vs %d\n", i, s,
                    ids[i], ref[i]);
            failures++;
            break;
        }
}

static void check_round_trip(const eng_tokenizer *t, const char *s)
{
    int32_t ids[4096];
    char *back = NULL;
    int n = 0;

    CHECK(eng_tokenizer_encode(t, s, strlen(s), true, false, ids, 4096, &n) == 0);
    CHECK(n >= 1 && ids[0] == 1);
    CHECK(eng_tokenizer_decode(t, ids, n, &back) == 0);
    if (back && strcmp(back, s)) {
        fprintf(stderr, "round trip: \"%s\" -> \"%s\"\n", s, back);
        failures++;
    }
    free(back);
}

static void random_strings(const eng_tokenizer *t)
{
    static const char *alphabet[] = {
        "a", "e", "t", "h", " ", " ", "o", "n", "s", "d", "L", "i", "l", "y",
        ".", ",", "\n", "'", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x90\x89",
        "!", "the", " was", "ing", "0", "Z", "<", "|", ">",
    };
    unsigned s = 12345;

    for (int iter = 0; iter < 300; iter++) {
        char buf[512] = "";
        size_t len = 0;
        int k = (s = s * 1103515245u + 12345u) % 40;

        for (int j = 0; j < k; j++) {
            const char *a;

            s = s * 1103515245u + 12345u;
            a = alphabet[((s >> 8) & 0xffff) %
                         (sizeof(alphabet) / sizeof(*alphabet))];
            if (len + strlen(a) + 1 >= sizeof(buf))
                break;
            strcpy(buf + len, a);
            len += strlen(a);
        }
        check_same_as_runc(t, buf);
        check_round_trip(t, buf);
    }
}

int main(void)
{
    char path[1024], err[256] = "";
    eng_tokenizer *t = NULL;
    int32_t ids[64];
    int n = -1;

    test_path(path, sizeof path, "models/stories260K/tok512.bin");
    CHECK(eng_tokenizer_load_llama2c(path, 512, &t, err, sizeof(err)) == 0);
    if (!t || ref_load(path)) {
        fprintf(stderr, "cannot load %s: %s\n", path, err);
        return 1;
    }
    CHECK(eng_tokenizer_vocab_size(t) == 512);
    CHECK(eng_tokenizer_bos(t) == 1 && eng_tokenizer_eos(t) == 2);

    /* Fixed strings against run.c. */
    static const char *fixed[] = {
        "Once upon a time", "Once upon a time, there was a little girl named Lily.",
        "hello  world", " leading", "trailing ", "\n\nnew\nlines\n",
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80!", "a", " ",
        "<|user|>\nHi\n<|assistant|>\n",
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(*fixed); i++) {
        check_same_as_runc(t, fixed[i]);
        check_round_trip(t, fixed[i]);
    }
    random_strings(t);

    /* The empty string is BOS alone, or nothing. */
    CHECK(eng_tokenizer_encode(t, "", 0, true, false, ids, 64, &n) == 0 && n == 1);
    CHECK(eng_tokenizer_encode(t, "", 0, false, false, ids, 64, &n) == 0 && n == 0);
    check_round_trip(t, "");

    /* An emoji has no piece: four byte-fallback tokens (id = byte + 3). */
    CHECK(eng_tokenizer_encode(t, "\xf0\x9f\x90\x89", 4, false, false, ids, 64,
                               &n) == 0);
    CHECK(n == 5 && ids[1] == 0xf0 + 3 && ids[4] == 0x89 + 3);

    /* Truncation reports the full count. */
    CHECK(eng_tokenizer_encode(t, "Once upon a time", 16, true, false, ids, 2,
                               &n) == 0 && n > 2 && ids[0] == 1);

    /* Special tokens only when asked. */
    CHECK(eng_tokenizer_encode(t, "a</s>", 5, false, true, ids, 64, &n) == 0);
    CHECK(n >= 2 && ids[n - 1] == 2);
    CHECK(eng_tokenizer_encode(t, "a</s>", 5, false, false, ids, 64, &n) == 0);
    CHECK(n > 2 && ids[n - 1] != 2);

    /* Invalid UTF-8 is refused. */
    static const char *bad[] = { "\xc3\x28", "\xed\xa0\x80", "\xc0\xaf",
                                 "ab\xe2\x82", "\xf5\x80\x80\x80", "\xff" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        CHECK(eng_tokenizer_encode(t, bad[i], strlen(bad[i]), true, false, ids,
                                   64, &n) == -EINVAL);

    /* piece(): the dummy space goes after BOS, stays mid-text. */
    {
        const char *p;
        int32_t once = -1;
        CHECK(eng_tokenizer_encode(t, "Once", 4, false, false, ids, 64, &n) == 0);
        once = ids[0];
        int k = eng_tokenizer_piece(t, 1, once, &p);
        CHECK(k > 0 && p[0] != ' ');
        k = eng_tokenizer_piece(t, 100, once, &p);
        CHECK(k > 0 && p[0] == ' ');
        CHECK(eng_tokenizer_piece(t, 100, 13, &p) == 1 && p[0] == '\n');
        CHECK(eng_tokenizer_piece(t, 100, 512, &p) == -EINVAL);
    }

    eng_tokenizer_unref(t);
    return test_done("tokenizer");
}
