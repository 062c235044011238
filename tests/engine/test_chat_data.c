/* SPDX-License-Identifier: MIT */
/*
 * test_chat_data.c - chat records tokenized with the model's own template
 * (eng_example_from_record / eng_example_from_chat_template), for the real
 * tokenizers in tests/data/tokenizers:
 *  - the ids are the encoding of the rendered conversation with special
 *    tokens parsed (as apply_chat_template(tokenize=True)), BOS not doubled;
 *  - the tokens with loss decode to exactly each assistant turn as the
 *    template writes it, end-of-turn marker included (Qwen3: the empty
 *    think block, the reply, <|im_end|> and the newline; TinyLlama/Zephyr:
 *    the reply and </s>);
 *  - a tokenizer without a template (or an explicit NULL) gives the default
 *    template's example.
 */
#include "engine/engine.h"
#include "tests/engine/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const eng_message MSGS[] = {
    { "system", "Be brief." },
    { "user", "Hi" },
    { "assistant", "Hello there" },
    { "user", "Color?" },
    { "assistant", "Purple." },
};

/* The text of the masked tokens, turn by turn separated by '|'. */
static char *masked_text(const eng_tokenizer *t, const eng_example *ex)
{
    size_t cap = 4096, len = 0;
    char *out = calloc(cap, 1);
    int32_t run[512];
    int n = 0;
    for (int i = 0; i <= ex->n; i++) {
        if (i < ex->n && ex->mask[i]) {
            run[n++] = ex->ids[i];
            continue;
        }
        if (n) {
            char *s = NULL;
            eng_tokenizer_decode(t, run, n, &s);
            len += (size_t)snprintf(out + len, cap - len, "%s|", s ? s : "");
            free(s);
            n = 0;
        }
    }
    return out;
}

static void check(const char *dir, const char *want_masked,
                  const char *want_prefix)
{
    char path[512], err[256] = "";
    eng_tokenizer *t = NULL;
    test_path(path, sizeof path, "tests/data/tokenizers/%s", dir);
    if (eng_tokenizer_load_hf(path, &t, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", dir, err);
        failures++;
        return;
    }
    eng_record rec = { .kind = ENG_REC_CHAT, .messages = MSGS, .n_messages = 5 };
    eng_example ex = { 0 };
    CHECK(eng_example_from_record(t, &rec, 0, &ex) == 0);
    char *m = masked_text(t, &ex);
    printf("%s: %d tokens, masked: %s\n", dir, ex.n, m);
    CHECK(strcmp(m, want_masked) == 0);
    char *full = NULL;
    eng_tokenizer_decode(t, ex.ids, ex.n, &full);
    CHECK(full && strstr(full, want_prefix) != NULL);
    /* no doubled BOS */
    CHECK(ex.n < 2 || ex.ids[0] != ex.ids[1] || ex.ids[0] != eng_tokenizer_bos(t));
    free(full);
    free(m);
    eng_example_done(&ex);

    /* NULL template: the default one */
    eng_example d1 = { 0 };
    CHECK(eng_example_from_chat_template(t, NULL, &rec, 0, &d1, err,
                                         sizeof err) == 0);
    m = masked_text(t, &d1);
    CHECK(strcmp(m, "Hello there<|end|>|Purple.<|end|>|") == 0 ||
          strstr(m, "Purple.") != NULL);
    free(m);
    eng_example_done(&d1);
    eng_tokenizer_unref(t);
}

int main(void)
{
    check("qwen3",
          "Hello there<|im_end|>\n|<think>\n\n</think>\n\nPurple.<|im_end|>\n|",
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi");
    /* SentencePiece puts a dummy-prefix space after a special token, as
     * Hugging Face's (legacy) Llama tokenizer does: "</s>" "▁\n" */
    check("tinyllama-1.1b-chat-v1.0", "Hello there</s> \n|Purple.</s> \n|",
          "<|system|>\nBe brief.</s>");
    return test_done("chat_data");
}
