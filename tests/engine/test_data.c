/* SPDX-License-Identifier: MIT */
/*
 * test_data.c - records to tokens and loss masks (data.c) on tok512.bin:
 * completion, text and chat records, the prompt/completion boundary (clean
 * and straddling), the default chat template, truncation and bad input.
 */
#include "engine/engine.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static eng_tokenizer *tok;

/* Text of the tokens with mask m (pieces decoded in context). */
static void masked_text(const eng_example *ex, int m, char *out, size_t cap)
{
    size_t len = 0;

    for (int i = 0; i < ex->n; i++) {
        const char *p;
        int k = eng_tokenizer_piece(tok, i ? ex->ids[i - 1] : -1, ex->ids[i], &p);
        if (ex->mask[i] != m || k <= 0 || len + k >= cap)
            continue;
        memcpy(out + len, p, k);
        len += k;
    }
    out[len] = 0;
}

static void test_completion(void)
{
    eng_record r = { .kind = ENG_REC_COMPLETION, .prompt = "Once upon a time",
                     .completion = ", there was a dragon named Zog." };
    eng_example ex = { 0 };
    int32_t pids[64];
    int np = 0, ones = 0;
    char buf[512];

    CHECK(eng_example_from_record(tok, &r, 256, &ex) == 0);
    CHECK(eng_tokenizer_encode(tok, r.prompt, strlen(r.prompt), true, false,
                               pids, 64, &np) == 0);
    CHECK(ex.n > np + 1 && !ex.truncated);
    CHECK(ex.ids[0] == 1 && ex.ids[ex.n - 1] == 2 && ex.mask[ex.n - 1] == 1);
    /* clean boundary: the prompt's own tokens, unmasked, then the rest */
    for (int i = 0; i < np; i++)
        CHECK(ex.ids[i] == pids[i] && ex.mask[i] == 0);
    for (int i = np; i < ex.n; i++)
        ones += ex.mask[i];
    CHECK(ones == ex.n - np);
    masked_text(&ex, 1, buf, sizeof(buf));
    CHECK(!strcmp(buf, r.completion));
    masked_text(&ex, 0, buf, sizeof(buf));
    CHECK(!strcmp(buf, r.prompt));
    /* one dummy space only: the completion's "," follows "time" directly */
    {
        char *all = NULL;
        CHECK(eng_tokenizer_decode(tok, ex.ids, ex.n, &all) == 0);
        CHECK(all && !strcmp(all, "Once upon a time, there was a dragon named Zog."));
        free(all);
    }
    eng_example_done(&ex);

    /* straddling boundary: "ti" + "me" is one token, and it gets loss */
    r.prompt = "Once upon a ti";
    r.completion = "me, there was";
    CHECK(eng_example_from_record(tok, &r, 256, &ex) == 0);
    masked_text(&ex, 1, buf, sizeof(buf));
    printf("straddle: loss on \"%s\"\n", buf);
    CHECK(strstr(buf, "me, there was") != NULL);
    masked_text(&ex, 0, buf, sizeof(buf));
    CHECK(!strncmp(buf, "Once upon a", 11));
    eng_example_done(&ex);

    /* input/output style with empty prompt: everything but BOS has loss */
    r.prompt = "";
    r.completion = "Zog";
    CHECK(eng_example_from_record(tok, &r, 256, &ex) == 0);
    CHECK(ex.mask[0] == 0);
    for (int i = 1; i < ex.n; i++)
        CHECK(ex.mask[i] == 1);
    eng_example_done(&ex);
}

static void test_text_and_truncation(void)
{
    eng_record r = { .kind = ENG_REC_TEXT,
                     .text = "Zog the dragon liked to fly over the hills." };
    eng_example ex = { 0 };

    CHECK(eng_example_from_record(tok, &r, 0, &ex) == 0);
    CHECK(ex.n > 5 && ex.ids[0] == 1 && ex.mask[0] == 0);
    CHECK(ex.ids[ex.n - 1] == 2);
    for (int i = 1; i < ex.n; i++)
        CHECK(ex.mask[i] == 1);
    CHECK(!ex.truncated);
    eng_example_done(&ex);

    CHECK(eng_example_from_record(tok, &r, 5, &ex) == 0);
    CHECK(ex.n == 5 && ex.truncated && ex.ids[4] != 2);
    eng_example_done(&ex);

    r.text = "bad \xc0\xaf";
    CHECK(eng_example_from_record(tok, &r, 0, &ex) == -EINVAL);
}

static void test_chat(void)
{
    eng_message m[] = {
        { "system", "Be brief." },
        { "user", "Who is Zog?" },
        { "assistant", "A dragon." },
        { "user", "Where?" },
        { "assistant", "In the hills." },
    };
    eng_record r = { .kind = ENG_REC_CHAT, .messages = m, .n_messages = 5 };
    eng_example ex = { 0 };
    char *s = NULL, buf[512];

    CHECK(eng_chat_render_default(m, 2, true, &s) == 0);
    CHECK(s && !strcmp(s, "<|system|>\nBe brief.<|end|>\n<|user|>\nWho is "
                          "Zog?<|end|>\n<|assistant|>\n"));
    free(s);
    CHECK(eng_chat_render_default(m, 3, false, &s) == 0);
    {
        const char *tail = "<|assistant|>\nA dragon.<|end|>\n";
        CHECK(s && strlen(s) > strlen(tail) &&
              !strcmp(s + strlen(s) - strlen(tail), tail));
    }
    free(s);

    CHECK(eng_example_from_record(tok, &r, 512, &ex) == 0);
    masked_text(&ex, 1, buf, sizeof(buf));
    printf("chat: loss on \"%s\"\n", buf);
    CHECK(!strcmp(buf, "A dragon.<|end|>In the hills.<|end|>"));
    CHECK(ex.ids[ex.n - 1] == 2 && ex.mask[ex.n - 1] == 1);
    eng_example_done(&ex);

    m[0].role = "wizard";
    CHECK(eng_example_from_record(tok, &r, 512, &ex) == -EINVAL);
    CHECK(eng_chat_render_default(m, 1, false, &s) == -EINVAL);
}

int main(void)
{
    if (load_stories260K(NULL, &tok))
        return 1;
    test_completion();
    test_text_and_truncation();
    test_chat();
    eng_tokenizer_unref(tok);
    return test_done("data");
}
