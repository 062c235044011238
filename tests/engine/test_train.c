/* SPDX-License-Identifier: MIT */
/*
 * test_train.c - the trainer end to end on a tiny random model:
 *  - training on a small learnable dataset makes train and held-out loss
 *    fall (LoRA and full finetuning);
 *  - the same seed and thread count give byte-identical adapter files,
 *    with dropout and packing on; another seed gives other bytes;
 *  - a checkpoint saved mid-run and loaded into a fresh trainer continues
 *    bit-exactly; torn and altered checkpoints load as -EIO and leave the
 *    trainer untouched; other data is refused with -EINVAL;
 *  - adapters round-trip through PEFT-named safetensors + adapter_config;
 *  - gradient accumulation of 2 x 2 equals one batch of 4;
 *  - the abort hook cancels a step.
 */
#include "engine/safetensors.h"
#include "engine/train_impl.h"
#include "tests/engine/test_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { VOCAB = 64, LEN = 20, N_TRAIN = 32, N_TEST = 8 };

static eng_model *tiny_model(void)
{
    eng_config cfg = {
        .dim = 48, .hidden_dim = 96, .n_layers = 2, .n_heads = 4,
        .n_kv_heads = 2, .head_dim = 12, .vocab_size = VOCAB,
        .max_seq_len = 64, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
        .rope_style = ENG_ROPE_HALF, .tied_embeddings = true,
    };
    eng_model *m = NULL;
    CHECK(eng_model_new_random(&cfg, 3, 0.2f, &m) == 0);
    return m;
}

/* Learnable data: runs a, a+3, a+6, ... (mod VOCAB) of varying length;
 * the first 3 tokens are the prompt (no loss). */
static int32_t ids_buf[N_TRAIN + N_TEST][LEN];
static uint8_t mask_buf[N_TRAIN + N_TEST][LEN];
static eng_example exs[N_TRAIN + N_TEST];

static void make_data(void)
{
    uint64_t s = 99;
    for (int i = 0; i < N_TRAIN + N_TEST; i++) {
        int a = (int)(eng_splitmix64(&s) % VOCAB);
        int n = LEN - (int)(eng_splitmix64(&s) % 8);
        for (int j = 0; j < n; j++) {
            ids_buf[i][j] = (a + 3 * j) % VOCAB;
            mask_buf[i][j] = j >= 3;
        }
        exs[i] = (eng_example){ids_buf[i], mask_buf[i], n, false};
    }
}

static eng_train_params base_params(void)
{
    eng_train_params p;
    eng_train_params_default(&p);
    p.targets = ENG_TARGET_ALL;
    p.learning_rate = 1e-2f;
    p.epochs = 6;
    p.batch_size = 4;
    p.max_seq_len = 32;
    p.warmup_steps = 3;
    p.n_threads = 2;
    return p;
}

static void test_loss_falls(int full)
{
    eng_model *m = tiny_model();
    eng_train_params p = base_params();
    eng_trainer *t;
    char err[128];
    float l0, l1, a0, a1;
    p.full_finetune = full;
    if (full)
        p.learning_rate = 3e-3f;
    CHECK(eng_trainer_new(m, &p, exs, N_TRAIN, &t, err, sizeof err) == 0);
    CHECK(eng_trainer_evaluate(t, exs + N_TRAIN, N_TEST, &l0, &a0) == 0);
    eng_progress first = {0}, last = {0};
    CHECK(eng_trainer_step(t, NULL, &first) == 0);
    CHECK(eng_trainer_run(t, NULL) == 0);
    CHECK(eng_trainer_step_index(t) == eng_trainer_total_steps(t));
    CHECK(eng_trainer_evaluate(t, exs, N_TRAIN, &l1, &a1) == 0);
    last.train_loss = l1;
    CHECK(eng_trainer_evaluate(t, exs + N_TRAIN, N_TEST, &l1, &a1) == 0);
    printf("%s: held-out loss %.3f -> %.3f, accuracy %.2f -> %.2f "
           "(train loss %.3f -> %.3f, %d steps)\n",
           full ? "full finetune" : "LoRA", l0, l1, a0, a1, first.train_loss,
           last.train_loss, eng_trainer_total_steps(t));
    CHECK(l1 < 0.5f * l0);
    CHECK(last.train_loss < 0.5f * first.train_loss);
    CHECK(a1 > a0 + 0.3f);
    CHECK(full ? eng_trainer_adapter(t) == NULL : eng_trainer_adapter(t) != NULL);
    eng_trainer_free(t);
    eng_model_unref(m);
}

/* ------------------------------------------------------------------------ */

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = test_slurp(a, &na), *y = test_slurp(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static char tmpdir[256];

static void path_in(char *buf, const char *a, const char *b)
{
    snprintf(buf, 512, "%s/%s%s%s", tmpdir, a, b ? "/" : "", b ? b : "");
}

static void train_and_save(uint64_t seed, int steps, const char *name)
{
    eng_model *m = tiny_model();
    eng_train_params p = base_params();
    eng_trainer *t;
    char dir[512];
    p.seed = seed;
    p.lora_dropout = 0.1f;
    p.packing = true;
    p.epochs = 2;
    CHECK(eng_trainer_new(m, &p, exs, N_TRAIN, &t, NULL, 0) == 0);
    for (int i = 0; i < steps; i++)
        CHECK(eng_trainer_step(t, NULL, NULL) == 0);
    path_in(dir, name, NULL);
    CHECK(eng_adapter_save(eng_trainer_adapter(t), dir, "tiny-random", NULL,
                           0) == 0);
    eng_trainer_free(t);
    eng_model_unref(m);
}

static void test_determinism(void)
{
    char a[512], b[512], c[512];
    train_and_save(5, 4, "det1");
    train_and_save(5, 4, "det2");
    train_and_save(6, 4, "det3");
    path_in(a, "det1", "adapter_model.safetensors");
    path_in(b, "det2", "adapter_model.safetensors");
    path_in(c, "det3", "adapter_model.safetensors");
    CHECK(same_file(a, b));
    CHECK(!same_file(a, c));
    path_in(a, "det1", "adapter_config.json");
    path_in(b, "det2", "adapter_config.json");
    CHECK(same_file(a, b));
    printf("determinism: same seed gives identical adapter files\n");
}

/* ------------------------------------------------------------------------ */

static void test_adapter_roundtrip(void)
{
    eng_model *m = tiny_model();
    eng_adapter *a, *b;
    char dir[512], path[512], err[256];
    eng_st_file *f;
    CHECK(eng_adapter_new(m, 4, 8.0f, ENG_TARGET_DEFAULT, 1, &a) == 0);
    for (size_t i = 0; i < a->n_floats; i++) /* make B nonzero too */
        a->data[i] = (float)i * 1e-3f;
    path_in(dir, "rt", NULL);
    CHECK(eng_adapter_save(a, dir, "tiny", err, sizeof err) == 0);
    CHECK(eng_adapter_load(m, dir, &b, err, sizeof err) == 0);
    CHECK(b->rank == 4 && b->alpha == 8.0f && b->targets == ENG_TARGET_DEFAULT);
    CHECK(b->n_floats == a->n_floats &&
          !memcmp(a->data, b->data, a->n_floats * sizeof(float)));
    CHECK(eng_adapter_bytes(b) >= b->n_floats * sizeof(float));
    path_in(path, "rt", "adapter_model.safetensors");
    CHECK(eng_st_open(path, &f, err, sizeof err) == 0);
    const eng_st_tensor *t =
        eng_st_find(f, "base_model.model.model.layers.1.self_attn.k_proj."
                       "lora_A.weight");
    CHECK(t && t->ndim == 2 && t->shape[0] == 4 && t->shape[1] == 48);
    t = eng_st_find(f, "base_model.model.model.layers.0.self_attn.k_proj."
                       "lora_B.weight");
    CHECK(t && t->shape[0] == 24 && t->shape[1] == 4); /* kv heads: 2 x 12 */
    CHECK(!eng_st_find(f, "base_model.model.model.layers.0.mlp.up_proj."
                          "lora_A.weight"));
    CHECK(f->n == 2 * 4 * 2);
    eng_st_close(f);
    size_t n;
    path_in(path, "rt", "adapter_config.json");
    char *cfg = test_slurp(path, &n);
    CHECK(cfg && strstr(cfg, "\"peft_type\":\t\"LORA\"") &&
          strstr(cfg, "\"task_type\":\t\"CAUSAL_LM\"") &&
          strstr(cfg, "\"q_proj\"") && strstr(cfg, "\"o_proj\"") &&
          strstr(cfg, "\"base_model_name_or_path\":\t\"tiny\"") &&
          strstr(cfg, "\"bias\":\t\"none\""));
    free(cfg);
    /* another model shape is refused */
    eng_config other = m->cfg;
    other.dim = 32;
    other.head_dim = 8;
    eng_model *m2;
    CHECK(eng_model_new_random(&other, 1, 0.1f, &m2) == 0);
    CHECK(eng_adapter_load(m2, dir, &b, err, sizeof err) == 0 ? (eng_adapter_unref(b), 0) : 1);
    path_in(dir, "missing", NULL);
    CHECK(eng_adapter_load(m, dir, &b, err, sizeof err) == -ENOENT);
    eng_model_unref(m2);
    eng_adapter_unref(a);
    eng_adapter_unref(b);
    eng_model_unref(m);
}

/* ------------------------------------------------------------------------ */

static eng_trainer *ckpt_trainer(eng_model *m, int n_ex)
{
    eng_train_params p = base_params();
    eng_trainer *t = NULL;
    p.grad_accum = 2;
    p.lora_dropout = 0.05f;
    p.epochs = 2;
    p.weight_decay = 0.01f;
    CHECK(eng_trainer_new(m, &p, exs, n_ex, &t, NULL, 0) == 0);
    return t;
}

static void corrupt(const char *path, long off, int truncate_it)
{
    size_t n;
    char *b = test_slurp(path, &n);
    FILE *f = fopen(path, "wb");
    if (truncate_it) {
        fwrite(b, 1, n - 100, f);
    } else {
        b[off < 0 ? (long)n + off : off] ^= 0x10;
        fwrite(b, 1, n, f);
    }
    fclose(f);
    free(b);
}

static void test_checkpoint(void)
{
    eng_model *m = tiny_model();
    eng_trainer *full = ckpt_trainer(m, N_TRAIN), *half = ckpt_trainer(m, N_TRAIN);
    eng_trainer *resumed = ckpt_trainer(m, N_TRAIN);
    char dir[512], file[512], err[256];
    int total = eng_trainer_total_steps(full);
    CHECK(total == 2 * (N_TRAIN / 4 / 2));
    CHECK(eng_trainer_run(full, NULL) == 0);
    for (int i = 0; i < total / 2; i++)
        CHECK(eng_trainer_step(half, NULL, NULL) == 0);
    path_in(dir, "ckpt", NULL);
    CHECK(eng_trainer_save_checkpoint(half, dir, err, sizeof err) == 0);
    CHECK(eng_trainer_load_checkpoint(resumed, dir, err, sizeof err) == 0);
    CHECK(eng_trainer_step_index(resumed) == total / 2);
    CHECK(eng_trainer_run(resumed, NULL) == 0);
    size_t n;
    float *pa = tr_params(full, &n), *pb = tr_params(resumed, &n);
    CHECK(!memcmp(pa, pb, n * sizeof(float)));
    CHECK(!memcmp(full->m2, resumed->m2, n * sizeof(float)));
    printf("checkpoint: resume after %d of %d steps is bit-exact\n",
           total / 2, total);

    /* other data: refused, trainer untouched */
    eng_trainer *other = ckpt_trainer(m, N_TRAIN - 4);
    CHECK(eng_trainer_load_checkpoint(other, dir, err, sizeof err) == -EINVAL);
    CHECK(eng_trainer_step_index(other) == 0);
    eng_trainer_free(other);

    /* altered data, altered header, torn file: -EIO, trainer untouched */
    path_in(file, "ckpt", "checkpoint.safetensors");
    eng_trainer *fresh = ckpt_trainer(m, N_TRAIN);
    float *pf = tr_params(fresh, &n), *copy = malloc(n * sizeof(float));
    memcpy(copy, pf, n * sizeof(float));
    corrupt(file, -5, 0);
    CHECK(eng_trainer_load_checkpoint(fresh, dir, err, sizeof err) == -EIO);
    CHECK(eng_trainer_save_checkpoint(half, dir, err, sizeof err) == 0);
    corrupt(file, 20, 0);
    CHECK(eng_trainer_load_checkpoint(fresh, dir, err, sizeof err) == -EIO);
    CHECK(eng_trainer_save_checkpoint(half, dir, err, sizeof err) == 0);
    corrupt(file, 0, 1);
    CHECK(eng_trainer_load_checkpoint(fresh, dir, err, sizeof err) == -EIO);
    CHECK(eng_trainer_step_index(fresh) == 0);
    CHECK(!memcmp(copy, pf, n * sizeof(float)));
    /* no temp files left behind by the atomic writes */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "ls %s/ckpt | grep -q tmp", tmpdir);
    CHECK(system(tmp) != 0);
    free(copy);
    eng_trainer_free(fresh);
    eng_trainer_free(full);
    eng_trainer_free(half);
    eng_trainer_free(resumed);
    eng_model_unref(m);
}

/* ------------------------------------------------------------------------ */

static void test_accumulation(void)
{
    eng_model *m = tiny_model();
    eng_train_params p = base_params();
    eng_trainer *a, *b;
    eng_progress pa, pb;
    p.epochs = 1;
    p.max_grad_norm = 0;
    CHECK(eng_trainer_new(m, &p, exs, 8, &a, NULL, 0) == 0);
    p.batch_size = 2;
    p.grad_accum = 2;
    CHECK(eng_trainer_new(m, &p, exs, 8, &b, NULL, 0) == 0);
    CHECK(eng_trainer_total_steps(a) == 2 && eng_trainer_total_steps(b) == 2);
    CHECK(eng_trainer_step(a, NULL, &pa) == 0);
    CHECK(eng_trainer_step(b, NULL, &pb) == 0);
    CHECK(fabsf(pa.train_loss - pb.train_loss) < 1e-5f * pa.train_loss);
    CHECK(fabsf(pa.grad_norm - pb.grad_norm) < 1e-4f * pa.grad_norm);
    printf("accumulation: 4x1 loss %.6f norm %.6f, 2x2 loss %.6f norm %.6f\n",
           pa.train_loss, pa.grad_norm, pb.train_loss, pb.grad_norm);
    eng_trainer_free(a);
    eng_trainer_free(b);
    eng_model_unref(m);
}

static bool abort_now(void *user)
{
    return ++*(int *)user > 1;
}

static void test_abort_and_errors(void)
{
    eng_model *m = tiny_model();
    eng_train_params p = base_params();
    eng_trainer *t;
    int calls = 0;
    eng_hooks h = {.abort = abort_now, .user = &calls};
    CHECK(eng_trainer_new(m, &p, exs, N_TRAIN, &t, NULL, 0) == 0);
    CHECK(eng_trainer_step(t, &h, NULL) == 0);
    CHECK(eng_trainer_run(t, &h) == -ECANCELED);
    CHECK(eng_trainer_step_index(t) == 1);
    eng_trainer_free(t);
    p.lora_rank = 0;
    CHECK(eng_trainer_new(m, &p, exs, N_TRAIN, &t, NULL, 0) == -EINVAL);
    p = base_params();
    uint8_t none[LEN] = {0};
    eng_example e = {ids_buf[0], none, 10, false};
    CHECK(eng_trainer_new(m, &p, &e, 1, &t, NULL, 0) == -EINVAL);
    eng_model_unref(m);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tuna-test-train-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    make_data();
    test_loss_falls(0);
    test_loss_falls(1);
    test_determinism();
    test_adapter_roundtrip();
    test_checkpoint();
    test_accumulation();
    test_abort_and_errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd))
        failures++;
    return test_done("train");
}
