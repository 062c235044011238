/* SPDX-License-Identifier: MIT */
/*
 * test_model_formats.c - the same random weights loaded from Hugging Face
 * folders (F32, F16, BF16, sharded) and GGUF files (F32, F16, BF16, Q8_0,
 * Q4_0, Q4_K, Q6_K) give the logits of a PyTorch reference forward pass.
 *
 * tests/engine/make_models.py (run with /usr/bin/python3, which needs
 * python3-torch and python3-numpy; the test skips with 77 without them)
 * writes the models, reference logits for every position of a fixed token
 * sequence, and a manifest:
 *   model <path> <ref> <tol>  the engine's logits vs refs/<ref>.f32
 *   pair <a> <b> <tol>        two files of the same weights vs each other
 *   rpair <a> <b> <tol>       the same, relative to the largest logit
 * The engine's logits come from the inference session one token at a time
 * (every position, through the KV cache), and the last position is checked
 * again from one batched prefill. Then malformed inputs must fail with a
 * message naming the problem, and LoRA training on bases kept in BF16, Q8_0
 * and Q4_K must lower the loss. Last, models with real tokenizers from
 * ../shared/tokenizers (Qwen3 byte-level BPE, TinyLlama SentencePiece): the
 * HF folder and the GGUF agree, and the GGUF's converted tokenizer encodes
 * llama.cpp's own tokenizer test strings (tests/data/tokenizers) exactly.
 */
#include "engine/engine.h"
#include "engine/session.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOK 64

static char dir[200];
static int32_t tokens[MAX_TOK];
static int n_tokens;

static eng_model *load(const char *rel)
{
    char path[512], err[256] = "";
    eng_model *m = NULL;

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    int rc = eng_model_load(path, &m, err, sizeof err);

    CHECK(rc == 0, "load %s: %d %s", rel, rc, err);
    return rc ? NULL : m;
}

/* Logits [n_tokens, vocab] one token at a time; the last row is compared
 * with a batched prefill of the whole sequence. */
static float *logits_of(eng_model *m, const char *rel)
{
    int V = eng_model_config(m)->vocab_size;
    float *out = malloc(sizeof(float) * (size_t)V * n_tokens);
    eng_session *s = NULL;
    double d = 0;

    if (!out || eng_session_new(m, n_tokens, n_tokens, &s)) {
        CHECK(0, "session for %s", rel);
        free(out);
        return NULL;
    }
    for (int i = 0; i < n_tokens; i++) {
        int rc = eng_session_eval(s, &tokens[i], 1);

        CHECK(rc == 0, "eval %s token %d: %d", rel, i, rc);
        memcpy(out + (size_t)i * V, s->logits, sizeof(float) * V);
    }
    eng_session_reset(s);
    CHECK(eng_session_eval(s, tokens, n_tokens) == 0, "prefill %s", rel);
    for (int v = 0; v < V; v++)
        d = fmax(d, fabs(s->logits[v] - out[(size_t)(n_tokens - 1) * V + v]));
    CHECK(d <= 1e-4, "%s: prefill vs step-by-step last logits differ by %g",
          rel, d);
    eng_session_free(s);
    return out;
}

static void check_model(const char *rel, const char *ref, double tol)
{
    char path[512];
    eng_model *m = load(rel);
    float *got, *want;
    size_t n;
    FILE *fp;

    if (!m)
        return;
    n = (size_t)eng_model_config(m)->vocab_size * n_tokens;
    got = logits_of(m, rel);
    want = malloc(n * sizeof(float));
    snprintf(path, sizeof path, "%s/refs/%s.f32", dir, ref);
    fp = fopen(path, "rb");
    CHECK(fp && want && fread(want, sizeof(float), n, fp) == n,
          "reading %s", path);
    if (fp)
        fclose(fp);
    if (got && want) {
        double d = max_diff(got, want, n);

        printf("%-36s vs torch %-18s max |diff| %.2e (tol %.0e)\n", rel, ref,
               d, tol);
        CHECK(d <= tol, "%s: logits differ from the reference by %g", rel, d);
    }
    free(got);
    free(want);
    eng_model_unref(m);
}

/* relative: the bound is tol * max |logit of a| (quantized vs exact). */
static void check_pair(const char *a, const char *b, double tol, bool relative)
{
    eng_model *ma = load(a), *mb = load(b);
    float *la = ma ? logits_of(ma, a) : NULL;
    float *lb = mb ? logits_of(mb, b) : NULL;

    if (la && lb) {
        const eng_config *ca = eng_model_config(ma), *cb = eng_model_config(mb);
        size_t n = (size_t)ca->vocab_size * n_tokens;
        double d = max_diff(la, lb, n), scale = 0;

        for (size_t i = 0; i < n; i++)
            scale = fmax(scale, fabs(la[i]));
        if (relative)
            d /= scale;

        CHECK(ca->vocab_size == cb->vocab_size && ca->dim == cb->dim &&
              ca->n_layers == cb->n_layers && ca->head_dim == cb->head_dim &&
              ca->tied_embeddings == cb->tied_embeddings &&
              ca->qkv_bias == cb->qkv_bias, "%s / %s: configs differ", a, b);
        printf("%-36s vs %-30s max |diff|%s %.2e (tol %.0e)\n", a, b,
               relative ? "/max|logit|" : "", d, tol);
        CHECK(d <= tol, "%s vs %s: logits differ by %g", a, b, d);
    }
    free(la);
    free(lb);
    eng_model_unref(ma);
    eng_model_unref(mb);
}

/* ------------------------------------------------------------------------ */

static void check_configs(void)
{
    eng_model *m;
    const eng_config *c;

    if ((m = load("mistral/hf-f32"))) {
        c = eng_model_config(m);
        CHECK(!strcmp(c->arch, "mistral") && c->head_dim == 32 &&
              c->n_kv_heads == 1 && !c->tied_embeddings &&
              c->rope_style == ENG_ROPE_HALF &&
              c->rope_scaling == ENG_ROPE_SCALING_LINEAR &&
              c->rope_factor == 2.0f, "mistral hf config");
        eng_model_unref(m);
    }
    if ((m = load("mistral/mistral-f32.gguf"))) {
        c = eng_model_config(m);
        CHECK(!strcmp(c->arch, "llama") && c->head_dim == 32 &&
              c->rope_style == ENG_ROPE_INTERLEAVED &&
              c->rope_scaling == ENG_ROPE_SCALING_LINEAR, "mistral gguf config");
        eng_model_unref(m);
    }
    if ((m = load("qwen2/qwen2-q8_0.gguf"))) {
        c = eng_model_config(m);
        CHECK(!strcmp(c->arch, "qwen2") && c->qkv_bias && c->tied_embeddings &&
              c->rope_style == ENG_ROPE_HALF && c->max_seq_len == 512 &&
              fabsf(c->norm_eps - 1e-6f) < 1e-12f, "qwen2 gguf config");
        eng_model_unref(m);
    }
    if ((m = load("llama-untied/hf-bf16"))) {
        c = eng_model_config(m);
        CHECK(c->rope_scaling == ENG_ROPE_SCALING_LLAMA3 &&
              c->rope_orig_max_pos == 32 && !c->tied_embeddings &&
              eng_model_n_params(m) > 0, "llama3 hf config");
        eng_model_unref(m);
    }
}

/* Mean next-token cross-entropy of ids[1..n) from the inference session. */
static float session_loss(eng_model *m, const int32_t *ids, int n)
{
    int V = eng_model_config(m)->vocab_size;
    eng_session *s = NULL;
    double sum = 0;

    if (eng_session_new(m, n, n, &s))
        return NAN;
    for (int i = 0; i + 1 < n; i++) {
        double mx = -INFINITY, z = 0;

        if (eng_session_eval(s, &ids[i], 1))
            sum = NAN;
        for (int v = 0; v < V; v++)
            mx = fmax(mx, s->logits[v]);
        for (int v = 0; v < V; v++)
            z += exp(s->logits[v] - mx);
        sum += mx + log(z) - s->logits[ids[i + 1]];
    }
    eng_session_free(s);
    return (float)(sum / (n - 1));
}

/* LoRA on a frozen base kept in its stored dtype: the loss must fall. */
static void check_training(const char *rel)
{
    enum { N_EX = 4, LEN = 12 };
    int32_t ids[N_EX][LEN];
    uint8_t mask[N_EX][LEN];
    eng_example ex[N_EX];
    eng_train_params p;
    eng_trainer *t = NULL;
    eng_model *m = load(rel);
    float before = 0, after = 0, acc;
    char err[256] = "";
    int rc, V;

    if (!m)
        return;
    V = eng_model_config(m)->vocab_size;
    for (int e = 0; e < N_EX; e++) {
        for (int i = 0; i < LEN; i++) {
            ids[e][i] = (int32_t)((e * 31 + i * 17 + 3) % V);
            mask[e][i] = i > 0;
        }
        ex[e] = (eng_example){ ids[e], mask[e], LEN, false };
    }
    eng_train_params_default(&p);
    p.epochs = 10;
    p.batch_size = 2;
    p.max_seq_len = LEN;
    p.learning_rate = 1e-2f;
    p.n_threads = 1;
    p.targets = ENG_TARGET_ALL;
    float ce = session_loss(m, ids[0], LEN);

    rc = eng_trainer_new(m, &p, ex, N_EX, &t, err, sizeof err);
    CHECK(rc == 0, "trainer on %s: %d %s", rel, rc, err);
    if (!rc) {
        float first;

        /* The trainer's forward and the inference session agree. */
        CHECK(eng_trainer_evaluate(t, ex, 1, &first, &acc) == 0, "eval");
        CHECK(fabsf(first - ce) <= 1e-4f * fmaxf(1.0f, ce),
              "%s: trainer loss %g, session loss %g", rel, first, ce);
        CHECK(eng_trainer_evaluate(t, ex, N_EX, &before, &acc) == 0, "eval");
        CHECK(eng_trainer_run(t, NULL) == 0, "train %s", rel);
        CHECK(eng_trainer_evaluate(t, ex, N_EX, &after, &acc) == 0, "eval");
        printf("%-36s trainer %.5f = session %.5f; LoRA loss %.3f -> %.3f\n",
               rel, first, ce, before, after);
        CHECK(after < 0.8f * before, "%s: loss %g -> %g did not fall", rel,
              before, after);
    }
    eng_trainer_free(t);
    eng_model_unref(m);
}

/* Encodes every string of a llama.cpp tokenizer test (.inp strings split by
 * "\n__ggml_vocab_test__\n", .out one line of ids each) with t. */
static void check_llamacpp_vocab_test(const eng_tokenizer *t, const char *inp,
                                      const char *out, const char *what)
{
    const char *sep = "\n__ggml_vocab_test__\n";
    char *text = NULL, line[16384], got[16384];
    size_t cap = 0;
    FILE *fi = fopen(inp, "rb"), *fo = fopen(out, "r");
    int ok = 0, bad = 0;
    ssize_t n = fi ? getdelim(&text, &cap, '\0', fi) : -1;

    CHECK(n > 0 && fo, "reading %s / %s", inp, out);
    for (char *p = text, *e; n > 0 && (e = strstr(p, sep)); p = e + strlen(sep)) {
        int32_t ids[2048];
        int k = 0;
        size_t o = 0;

        *e = '\0';
        if (!fgets(line, sizeof line, fo))
            break;
        line[strcspn(line, "\n")] = '\0';
        got[0] = '\0';
        if (eng_tokenizer_encode(t, p, strlen(p), false, false, ids, 2048, &k) ||
            k > 2048)
            k = 0;
        for (int i = 0; i < k && o < sizeof got; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, " %d", ids[i]);
        if (strcmp(got, line) && bad++ < 3)
            printf("  [%s]\n   got %s\n  want %s\n", p, got, line);
        ok += !strcmp(got, line);
    }
    printf("%-36s tokenizer: %d of %d llama.cpp encodings\n", what, ok,
           ok + bad);
    CHECK(bad == 0 && ok > 0, "%s: %d strings encode differently", what, bad);
    free(text);
    if (fi)
        fclose(fi);
    if (fo)
        fclose(fo);
}

/* A small model with a real tokenizer: the HF folder (tokenizer files) and
 * the GGUF (tokenizer.ggml.* written by make_models.py) hold the same
 * weights; the GGUF tokenizer must encode as llama.cpp does. */
static void check_tokenized(const char *root, const char *name,
                            const char *vocab_test)
{
    char tokdir[512], cmd[2048], rel[256], inp[512], out[512], err[256] = "";
    eng_tokenizer *t = NULL;

    snprintf(tokdir, sizeof tokdir, "%s/../shared/tokenizers/%s", root, name);
    if (access(tokdir, R_OK)) {
        printf("%-36s skipped: %s not found\n", name, tokdir);
        return;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/engine/make_models.py "
             "--tokenizer %s %s %s", root, tokdir, name, dir);
    if (system(cmd)) {
        CHECK(0, "%s", cmd);
        return;
    }
    snprintf(rel, sizeof rel, "%s/%s-bf16.gguf", name, name);
    snprintf(cmd, sizeof cmd, "%s/hf-bf16", name);
    check_pair(cmd, rel, 1e-4, false);
    snprintf(cmd, sizeof cmd, "%s/%s", dir, rel);
    int rc = eng_tokenizer_load_gguf(cmd, &t, err, sizeof err);

    CHECK(rc == 0, "tokenizer of %s: %d %s", rel, rc, err);
    if (rc)
        return;
    snprintf(inp, sizeof inp, "%s/tests/data/tokenizers/llama.cpp-tests/"
             "ggml-vocab-%s.gguf.inp", root, vocab_test);
    snprintf(out, sizeof out, "%s/tests/data/tokenizers/llama.cpp-tests/"
             "ggml-vocab-%s.gguf.out", root, vocab_test);
    check_llamacpp_vocab_test(t, inp, out, rel);
    eng_tokenizer_unref(t);
}

/* eng_model_load hands a file without the GGUF magic to llama2.c. */
static void check_detect_llama2c(const char *root)
{
    char path[512], err[256] = "";
    eng_model *m = NULL;
    int rc;

    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", root);
    rc = eng_model_load(path, &m, err, sizeof err);
    CHECK(rc == 0 && eng_model_config(m)->dim == 64 &&
          eng_model_config(m)->rope_style == ENG_ROPE_INTERLEAVED,
          "stories260K via eng_model_load: %d %s", rc, err);
    eng_model_unref(m);
}

/* A copy of llama-tied/hf-f32 whose config.json went through sed expr. */
static void variant(const char *name, const char *expr)
{
    char cmd[2048];

    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/%s && cp %s/llama-tied/hf-f32/model.safetensors "
             "%s/%s/ && sed '%s' %s/llama-tied/hf-f32/config.json "
             "> %s/%s/config.json", dir, name, dir, dir, name, expr, dir, dir,
             name);
    CHECK(system(cmd) == 0, "%s", cmd);
}

/* Loading must fail with rc and a message containing needle. */
static void expect_fail(const char *rel, int rc_want, const char *needle)
{
    char path[512], err[256] = "";
    eng_model *m = NULL;
    int rc;

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    rc = eng_model_load(path, &m, err, sizeof err);
    CHECK(rc == rc_want && strstr(err, needle),
          "%s: got %d \"%s\", want %d \"...%s...\"", rel, rc, err, rc_want,
          needle);
    printf("%-36s refused: %s\n", rel, err);
    eng_model_unref(m);
}

static void check_errors(void)
{
    char cmd[1024];

    /* config.json says 4 layers; the weights have 2. */
    variant("bad-layers", "s/\"num_hidden_layers\": 2/\"num_hidden_layers\": 4/");
    expect_fail("bad-layers", -EINVAL, "model.layers.2.");
    /* A different intermediate size: a shape error naming the tensor. */
    variant("bad-shape", "s/\"intermediate_size\": 192/\"intermediate_size\": 128/");
    expect_fail("bad-shape", -EINVAL, "expected [128, 64]");
    /* Untied head declared but lm_head.weight absent. */
    variant("bad-head", "s/\"tie_word_embeddings\": true/\"tie_word_embeddings\": false/");
    expect_fail("bad-head", -EINVAL, "lm_head.weight missing");
    /* Unsupported architecture. */
    variant("bad-arch", "s/LlamaForCausalLM/GPT2LMHeadModel/");
    expect_fail("bad-arch", -EINVAL, "architecture not supported");
    /* rope_scaling of a type we do not implement. */
    variant("bad-rope", "s/\"rope_theta\": 10000.0/\"rope_theta\": 10000.0, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}/");
    expect_fail("bad-rope", -EINVAL, "yarn");
    /* A truncated GGUF and a directory without config.json. */
    snprintf(cmd, sizeof cmd, "head -c 3000 %s/qwen2/qwen2-f32.gguf > "
             "%s/trunc.gguf && mkdir -p %s/empty", dir, dir, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    expect_fail("trunc.gguf", -EIO, "");
    expect_fail("empty", -ENOENT, "config.json");
}

/* Damaged GGUF headers and truncations: every load returns (an error or a
 * model), none crashes or reads outside the file (run under ASan in CI). */
static void check_mutations(const char *rel)
{
    char path[512], mut[512], err[256];
    unsigned char *buf = NULL;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    FILE *fp;
    long n = -1;
    int loaded = 0;

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    snprintf(mut, sizeof mut, "%s/mutated.gguf", dir);
    fp = fopen(path, "rb");
    if (fp && !fseek(fp, 0, SEEK_END) && (n = ftell(fp)) > 0 &&
        !fseek(fp, 0, SEEK_SET) && (buf = malloc((size_t)n)) &&
        fread(buf, 1, (size_t)n, fp) != (size_t)n)
        n = -1;
    if (fp)
        fclose(fp);
    CHECK(n > 4096, "reading %s", path);
    for (int i = 0; n > 4096 && i < 200; i++) {
        size_t len = (size_t)n;
        unsigned char *b = malloc(len);
        eng_model *m = NULL;

        if (!b)
            break;
        memcpy(b, buf, len);
        for (int k = 0; k < 1 + i % 8; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b[x % 4096] = (unsigned char)(x >> 32);
        }
        if (i % 4 == 0)
            len = (size_t)(x >> 8) % len;
        fp = fopen(mut, "wb");
        CHECK(fp && fwrite(b, 1, len, fp) == len, "writing %s", mut);
        if (fp)
            fclose(fp);
        free(b);
        if (eng_model_load(mut, &m, err, sizeof err) == 0)
            loaded++;
        eng_model_unref(m);
    }
    printf("%-36s 200 damaged copies: %d still load, none crash\n", rel,
           loaded);
    free(buf);
}

/* ------------------------------------------------------------------------ */

static int read_manifest(void)
{
    char path[512], line[512], a[200], b[200];
    double tol;
    FILE *fp;

    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    if (!(fp = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, fp)) {
        if (!strncmp(line, "tokens ", 7)) {
            char *p = line + 7, *end;

            for (n_tokens = 0; n_tokens < MAX_TOK; n_tokens++) {
                long v = strtol(p, &end, 10);

                if (end == p)
                    break;
                tokens[n_tokens] = (int32_t)v;
                p = end;
            }
        } else if (sscanf(line, "model %199s %199s %lf", a, b, &tol) == 3) {
            check_model(a, b, tol);
        } else if (sscanf(line, "pair %199s %199s %lf", a, b, &tol) == 3) {
            check_pair(a, b, tol, false);
        } else if (sscanf(line, "rpair %199s %199s %lf", a, b, &tol) == 3) {
            check_pair(a, b, tol, true);
        }
    }
    fclose(fp);
    return 0;
}

int main(void)
{
    const char *root = test_root();
    const char *tmp = getenv("TMPDIR");
    char cmd[1024];

    if (system("/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null")) {
        printf("SKIP: /usr/bin/python3 lacks torch/numpy (apt install "
               "python3-torch python3-numpy)\n");
        return 77;
    }
    snprintf(dir, sizeof dir, "%s/tuna-models-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/engine/make_models.py %s", root, dir);
    if (system(cmd)) {
        printf("FAIL: make_models.py\n");
        return 1;
    }
    eng_set_threads(1);
    check_detect_llama2c(root);
    if (read_manifest())
        CHECK(0, "no manifest");
    CHECK(n_tokens > 0, "no tokens in the manifest");
    check_configs();
    check_errors();
    check_mutations("qwen2/qwen2-q8_0.gguf");
    check_tokenized(root, "qwen3", "qwen2");
    check_tokenized(root, "tinyllama-1.1b-chat-v1.0", "llama-spm");
    check_training("llama-tied/hf-bf16");
    check_training("mistral/hf-f32");
    check_training("qwen2/qwen2-q8_0.gguf");
    check_training("llama-k/llama-k-q4_k.gguf");
    if (!failures) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd))
            printf("warning: could not remove %s\n", dir);
    } else {
        printf("models left in %s\n", dir);
    }
    return test_done("model_formats");
}
