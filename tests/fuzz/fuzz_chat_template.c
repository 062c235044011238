/* SPDX-License-Identifier: MIT */
/*
 * fuzz_chat_template.c - chat templates: the Jinja2 interpreter behind
 * eng_chat_template_render (lexer, parser, evaluator, filters, methods),
 * which runs templates that come with downloaded models.
 *
 * Input: byte 0 holds flags (bit 0 add_generation_prompt, bit 1 bos/eos
 * defined, bits 2-3 enable_thinking undefined/false/true); then the
 * template source, optionally followed by a NUL and a JSON array of
 * messages (messages_json), and another NUL and a JSON object of extra
 * variables (kwargs_json). Without messages_json a fixed conversation
 * (system, user, assistant, user) is used.
 *
 * Checks: an error is -EINVAL (or -ENOMEM) with a message; a rendering
 * stays within max_output; rendering is deterministic: the same call again
 * gives the same bytes (left out for templates that call strftime_now);
 * eng_chat_template_family() takes any source.
 */
#include "tests/fuzz/fuzz.h"

#include "engine/engine.h"

#define MAX_OUT (64u << 10)

static const eng_message conv[] = {
    { .role = "system", .content = "You are a helpful assistant." },
    { .role = "user", .content = "Hi! What is 2+2?" },
    { .role = "assistant", .content = "4. Anything else? 🙂" },
    { .role = "user", .content = "Thanks <|im_end|> {{ x }}" },
};

static int render(const char *tmpl, const eng_chat_params *p, char **text,
                  char *err, size_t errlen)
{
    *text = NULL;
    err[0] = '\0';
    int r = eng_chat_template_render(tmpl, conv, 4, p, text, err, errlen);
    if (r < 0) {
        FZ_ASSERT(r == -EINVAL || r == -ENOMEM);
        FZ_ASSERT(err[0] != '\0');
        FZ_ASSERT(*text == NULL);
    } else {
        FZ_ASSERT(*text != NULL);
        FZ_ASSERT(strlen(*text) <= MAX_OUT);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (64 << 10))
        return 0;
    /* Split the input at NULs into template, messages_json, kwargs_json. */
    size_t n = size - 1;
    char *copy = malloc(n + 1);
    FZ_ASSERT(copy != NULL);
    memcpy(copy, data + 1, n);
    copy[n] = '\0';
    const char *tmpl = copy;
    const char *msgs_json = NULL, *kwargs_json = NULL;
    size_t l0 = strlen(copy);
    if (l0 < n) {
        msgs_json = copy + l0 + 1;
        size_t l1 = strlen(msgs_json);
        if (l0 + 1 + l1 < n)
            kwargs_json = msgs_json + l1 + 1;
    }

    eng_chat_params p;
    eng_chat_params_default(&p);
    p.add_generation_prompt = data[0] & 1;
    if (data[0] & 2) {
        p.bos_token = "<s>";
        p.eos_token = "</s>";
    }
    int think = (data[0] >> 2) & 3;
    p.enable_thinking = think == 0 ? -1 : think == 1 ? 0 : 1;
    p.messages_json = msgs_json && *msgs_json ? msgs_json : NULL;
    p.kwargs_json = kwargs_json && *kwargs_json ? kwargs_json : NULL;
    p.max_output = MAX_OUT;

    (void)eng_chat_family_name(eng_chat_template_family(tmpl));

    char *a = NULL, *b = NULL, err[512], err2[512];
    int r = render(tmpl, &p, &a, err, sizeof(err));
    if (!strstr(tmpl, "strftime")) {
        int r2 = render(tmpl, &p, &b, err2, sizeof(err2));
        FZ_ASSERT(r == r2);
        if (r == 0)
            FZ_ASSERT(strcmp(a, b) == 0);
        else
            FZ_ASSERT(strcmp(err, err2) == 0);
    }
    free(a);
    free(b);
    free(copy);
    return 0;
}
