/* SPDX-License-Identifier: MIT */
/*
 * test_finetune.c - finetuning teaches stories260K something it does not do.
 *
 * examples/zog.jsonl holds 240 stories whose hero is always a dragon named
 * Zog. The test holds 40 of them out, LoRA-trains on the other 200 with the
 * engine's defaults, and measures what a user would: the training loss and
 * the held-out loss fall, and over N sampled generations (temperature 0.8,
 * seeds 1..N) from "Once upon a time" the tuned model writes about Zog far
 * more often than the base model does.
 */
#include "engine/engine.h"
#include "tests/engine/test_util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_HELD 40
#define N_SAMPLES 24

/* Reads examples/zog.jsonl into tokenized examples (the test's own tiny
 * JSONL reader: the engine itself never parses JSON requests). */
static int load_examples(const char *path, const eng_tokenizer *tok,
                         eng_example **ret, int *ret_n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    eng_example *ex = NULL;
    int n = 0, cap = 0;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        if (!o)
            continue;
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(o, "prompt"));
        const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(o, "completion"));
        if (p && c) {
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                ex = realloc(ex, (size_t)cap * sizeof *ex);
            }
            eng_record r = { .kind = ENG_REC_COMPLETION, .prompt = p,
                             .completion = c };
            if (eng_example_from_record(tok, &r, 256, &ex[n]) == 0)
                n++;
        }
        cJSON_Delete(o);
    }
    fclose(f);
    *ret = ex;
    *ret_n = n;
    return 0;
}

/* How many of N sampled stories mention Zog. */
static int count_zog(eng_model *m, const eng_adapter *a,
                     const eng_tokenizer *tok)
{
    int hits = 0;
    for (int s = 1; s <= N_SAMPLES; s++) {
        eng_sample_params sp;
        eng_sample_params_default(&sp);
        sp.temperature = 0.8f;
        sp.top_p = 0.95f;
        sp.max_tokens = 48;
        sp.seed = (uint64_t)s;
        sp.n_threads = 1;
        eng_generation g;
        char err[256];
        if (eng_generate(m, a, tok, "Once upon a time", &sp, NULL, NULL, NULL,
                         &g, err, sizeof err) != 0) {
            CHECK(0, "generate: %s", err);
            continue;
        }
        if (g.text && strstr(g.text, "Zog"))
            hits++;
        if (s <= 2)
            printf("  %s sample %d: %.90s\n", a ? "tuned" : "base ", s,
                   g.text ? g.text : "");
        eng_generation_done(&g);
    }
    return hits;
}

static bool no_abort(void *u) { (void)u; return false; }

int main(void)
{
    char dpath[1024], err[256] = "";
    eng_model *m = NULL;
    eng_tokenizer *tok = NULL;
    if (load_stories260K(&m, &tok))
        return 1;
    test_path(dpath, sizeof dpath, "examples/zog.jsonl");
    eng_example *ex = NULL;
    int n = 0;
    if (load_examples(dpath, tok, &ex, &n) != 0 || n < 200) {
        fprintf(stderr, "cannot read %s (%d examples)\n", dpath, n);
        return 1;
    }
    int n_train = n - N_HELD;
    const eng_example *held = ex + n_train;

    eng_train_params p;
    eng_train_params_default(&p);
    p.epochs = 3;
    p.seed = 42;
    p.n_threads = 1;
    eng_trainer *t = NULL;
    if (eng_trainer_new(m, &p, ex, n_train, &t, err, sizeof err) != 0) {
        fprintf(stderr, "trainer: %s\n", err);
        return 1;
    }
    float held0 = 0, acc0 = 0, held1 = 0, acc1 = 0;
    CHECK(eng_trainer_evaluate(t, held, N_HELD, &held0, &acc0) == 0,
          "evaluate before");

    /* Train step by step to see the training loss of the first and last
     * steps. */
    eng_hooks h = { .abort = no_abort };
    eng_progress first = {0}, last = {0};
    int total = eng_trainer_total_steps(t);
    for (int s = 0; s < total; s++) {
        eng_progress pr;
        int rc = eng_trainer_step(t, &h, &pr);
        CHECK(rc == 0, "step %d: %d", s, rc);
        if (rc)
            break;
        if (s == 0)
            first = pr;
        last = pr;
    }
    CHECK(eng_trainer_evaluate(t, held, N_HELD, &held1, &acc1) == 0,
          "evaluate after");
    printf("train loss %.3f -> %.3f over %d steps; held-out loss %.3f -> "
           "%.3f, accuracy %.3f -> %.3f\n", first.train_loss,
           last.train_loss, total, held0, held1, acc0, acc1);
    CHECK(last.train_loss < 0.5f * first.train_loss,
          "training loss did not fall enough: %.3f -> %.3f",
          first.train_loss, last.train_loss);
    CHECK(held1 < 0.5f * held0, "held-out loss did not fall enough: "
          "%.3f -> %.3f", held0, held1);
    CHECK(acc1 > acc0 + 0.1f, "held-out accuracy did not rise: %.3f -> %.3f",
          acc0, acc1);

    eng_adapter *a = eng_adapter_ref(eng_trainer_adapter(t));
    int base_hits = count_zog(m, NULL, tok);
    int tuned_hits = count_zog(m, a, tok);
    printf("stories mentioning Zog out of %d samples: base %d, tuned %d\n",
           N_SAMPLES, base_hits, tuned_hits);
    CHECK(tuned_hits >= N_SAMPLES / 2 && tuned_hits >= 4 * base_hits + 4,
          "tuned model wrote about Zog only %d/%d times", tuned_hits,
          N_SAMPLES);
    CHECK(base_hits <= N_SAMPLES / 8, "base model wrote about Zog %d/%d times",
          base_hits, N_SAMPLES);

    eng_adapter_unref(a);
    eng_trainer_free(t);
    for (int i = 0; i < n; i++)
        eng_example_done(&ex[i]);
    free(ex);
    eng_tokenizer_unref(tok);
    eng_model_unref(m);
    return test_done("finetune");
}
