/* SPDX-License-Identifier: MIT */
/*
 * lora.c - LoRA adapters: creation, PEFT-compatible save and load, refs.
 *
 * An adapter holds, for each layer and each targeted linear W [out, in], a
 * pair A [rank, in] and B [out, rank]; the adapted layer computes
 * y = x W^T + scale * (x A^T) B^T with scale = alpha / rank. Every A and B
 * lives in one float block (a->data) in a fixed order (layer, then target
 * q, k, v, o, gate, up, down, A before B), which is also the order of the
 * trainer's gradient and optimizer arrays.
 *
 * On disk an adapter is a folder as Hugging Face PEFT writes it:
 * adapter_model.safetensors with tensors named
 *   base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight
 * (mlp.gate_proj etc. for the MLP) and adapter_config.json. Both files are
 * written atomically, the weights first, so a folder whose config exists
 * has complete weights.
 */
#include "model.h"
#include "err.h"
#include "safetensors.h"
#include "train_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const target_module[ENG_T_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};

void eng_lora_tensor_name(char *buf, size_t n, int layer, int t, int is_b)
{
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight",
             layer, t <= ENG_T_O ? "self_attn" : "mlp", target_module[t],
             is_b ? 'B' : 'A');
}

/* Allocates the adapter shell and its one data block (zeroed). */
static int adapter_alloc(const eng_config *c, int rank, float alpha,
                         unsigned targets, eng_adapter **ret)
{
    eng_adapter *a;
    size_t n = 0;
    if (rank <= 0 || !(alpha > 0) || !targets || (targets & ~ENG_TARGET_ALL))
        return -EINVAL;
    for (int t = 0; t < ENG_T_COUNT; t++) {
        int in, out;
        eng_target_shape(c, t, &in, &out);
        if (targets & (1u << t))
            n += (size_t)rank * ((size_t)in + (size_t)out);
    }
    n *= (size_t)c->n_layers;
    if (!(a = calloc(1, sizeof(*a))))
        return -ENOMEM;
    a->lora = calloc((size_t)c->n_layers * ENG_T_COUNT, sizeof(*a->lora));
    a->data = calloc(n, sizeof(float));
    if (!a->lora || !a->data) {
        free(a->lora);
        free(a->data);
        free(a);
        return -ENOMEM;
    }
    atomic_init(&a->refs, 1);
    a->rank = rank;
    a->alpha = alpha;
    a->scale = alpha / (float)rank;
    a->targets = targets;
    a->n_layers = c->n_layers;
    a->n_floats = n;
    float *p = a->data;
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++) {
            eng_lora *lo = eng_adapter_at(a, l, t);
            if (!(targets & (1u << t)))
                continue;
            eng_target_shape(c, t, &lo->in, &lo->out);
            lo->A = p;
            p += (size_t)rank * lo->in;
            lo->B = p;
            p += (size_t)lo->out * rank;
        }
    *ret = a;
    return 0;
}

int eng_adapter_new(const eng_model *m, int rank, float alpha,
                    unsigned targets, uint64_t seed, eng_adapter **ret)
{
    eng_adapter *a;
    uint64_t s = seed ^ 0x4c6f5241ull; /* "LoRA": its own stream */
    int rc = adapter_alloc(&m->cfg, rank, alpha, targets, &a);
    if (rc)
        return rc;
    /* A ~ U(-1/sqrt(in), 1/sqrt(in)): PEFT's kaiming_uniform_(a=sqrt(5)).
     * B stays 0, so the adapted model equals the base at step 0. */
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++) {
            eng_lora *lo = eng_adapter_at(a, l, t);
            if (!lo->A)
                continue;
            float bound = 1.0f / sqrtf((float)lo->in);
            for (size_t i = 0; i < (size_t)rank * lo->in; i++)
                lo->A[i] = (2.0f * eng_rand_unit(&s) - 1.0f) * bound;
        }
    *ret = a;
    return 0;
}

eng_adapter *eng_adapter_ref(eng_adapter *a)
{
    if (a)
        atomic_fetch_add(&a->refs, 1);
    return a;
}

void eng_adapter_unref(eng_adapter *a)
{
    if (!a || atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    size_t big = a->n_floats * sizeof(float);
    free(a->lora);
    free(a->data);
    free(a);
    /* An unloaded adapter's memory goes back to the system: glibc keeps
     * freed heap blocks (and raises its mmap threshold after freeing a
     * mapped one), so a large free is followed by a trim. */
    if (big >= ((size_t)1 << 20))
        malloc_trim(0);
}

size_t eng_adapter_bytes(const eng_adapter *a)
{
    return a ? sizeof(*a) + a->n_floats * sizeof(float) +
                   (size_t)a->n_layers * ENG_T_COUNT * sizeof(eng_lora)
             : 0;
}

/* ------------------------------------------------------------------------ */
/* Save                                                                      */

/* Fills out[] with the adapter's tensors in data-block order; names are
 * written into names (n_tensors * 96 bytes). Returns the count. */
int eng_adapter_tensors(const eng_adapter *a, eng_st_out *out, char *names)
{
    int n = 0;
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++) {
            const eng_lora *lo = eng_adapter_at(a, l, t);
            if (!lo->A)
                continue;
            for (int b = 0; b < 2; b++, n++) {
                char *name = names + (size_t)n * 96;
                eng_lora_tensor_name(name, 96, l, t, b);
                out[n] = (eng_st_out){
                    .name = name, .dtype = ENG_DT_F32, .ndim = 2,
                    .shape = {b ? lo->out : a->rank, b ? a->rank : lo->in},
                    .data = b ? lo->B : lo->A,
                };
            }
        }
    return n;
}

int eng_adapter_n_tensors(const eng_adapter *a)
{
    int n = 0;
    for (int t = 0; t < ENG_T_COUNT; t++)
        n += (a->targets >> t) & 1;
    return 2 * n * a->n_layers;
}

static char *config_json(const eng_adapter *a, const char *base_name)
{
    cJSON *o = cJSON_CreateObject(), *tm = cJSON_CreateArray();
    char *s = NULL;
    if (!o || !tm)
        goto out;
    for (int t = 0; t < ENG_T_COUNT; t++)
        if (a->targets & (1u << t))
            cJSON_AddItemToArray(tm, cJSON_CreateString(target_module[t]));
    cJSON_AddStringToObject(o, "base_model_name_or_path",
                            base_name ? base_name : "");
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddBoolToObject(o, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(o, "inference_mode", 1);
    cJSON_AddNumberToObject(o, "lora_alpha", a->alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", a->dropout);
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", a->rank);
    cJSON_AddItemToObject(o, "target_modules", tm);
    tm = NULL;
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    s = cJSON_Print(o);
out:
    cJSON_Delete(o);
    cJSON_Delete(tm);
    return s;
}

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0755) == 0 || errno == EEXIST)
        return 0;
    return errno == ENOENT ? -ENOENT : -EIO;
}

int eng_adapter_save(const eng_adapter *a, const char *dir,
                     const char *base_name, char *err, size_t errlen)
{
    int n = eng_adapter_n_tensors(a), rc;
    eng_st_out *t = calloc((size_t)n, sizeof(*t));
    char *names = malloc((size_t)n * 96), *cfg = config_json(a, base_name);
    char path[4096];
    static const char *const meta[] = {"format", "pt"};
    if (!t || !names || !cfg) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = make_dir(dir))) {
        eng_err(err, errlen, "%s: cannot create directory", dir);
        goto out;
    }
    eng_adapter_tensors(a, t, names);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if ((rc = eng_st_write(path, t, n, meta, 1, err, errlen)))
        goto out;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    const void *parts[] = {cfg, "\n"};
    size_t lens[] = {strlen(cfg), 1};
    if ((rc = eng_write_atomic(path, parts, lens, 2)))
        eng_err(err, errlen, "%s: write failed", path);
out:
    free(t);
    free(names);
    free(cfg);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Load                                                                      */

static int read_small_file(const char *path, char **ret)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n;
    if (!f)
        return errno == ENOENT ? -ENOENT : -EIO;
    /* An adapter config is a few hundred bytes; 1 MiB bounds hostile ones. */
    if (!(buf = malloc((1 << 20) + 1))) {
        fclose(f);
        return -ENOMEM;
    }
    n = fread(buf, 1, 1 << 20, f);
    int bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -EIO;
    }
    buf[n] = '\0';
    *ret = buf;
    return 0;
}

/* Parses adapter_config.json into rank, alpha, targets, scale rule. */
static int parse_config(const char *text, int *r, float *alpha, float *drop,
                        unsigned *targets, int *rslora)
{
    cJSON *o = cJSON_Parse(text);
    int rc = -EINVAL;
    if (!o)
        return -EIO;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(o, "peft_type");
    const cJSON *jr = cJSON_GetObjectItemCaseSensitive(o, "r");
    const cJSON *ja = cJSON_GetObjectItemCaseSensitive(o, "lora_alpha");
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(o, "lora_dropout");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(o, "target_modules");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "use_rslora");
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA") ||
        !cJSON_IsNumber(jr) || jr->valuedouble < 1 || jr->valuedouble > 4096 ||
        !cJSON_IsNumber(ja) || !(ja->valuedouble > 0) || !cJSON_IsArray(tm))
        goto out;
    *r = (int)jr->valuedouble;
    *alpha = (float)ja->valuedouble;
    *drop = cJSON_IsNumber(jd) ? (float)jd->valuedouble : 0.0f;
    *rslora = cJSON_IsTrue(rs);
    *targets = 0;
    for (const cJSON *e = tm->child; e; e = e->next) {
        int t = 0;
        if (!cJSON_IsString(e))
            goto out;
        while (t < ENG_T_COUNT && strcmp(e->valuestring, target_module[t]))
            t++;
        if (t == ENG_T_COUNT)
            goto out; /* a module we cannot adapt */
        *targets |= 1u << t;
    }
    rc = *targets ? 0 : -EINVAL;
out:
    cJSON_Delete(o);
    return rc;
}

/* Copies tensor st (F32/F16/BF16, shape rows x cols) into dst. */
static int copy_tensor(const eng_st_tensor *st, int rows, int cols, float *dst)
{
    if (!st || !st->known || st->ndim != 2 || st->shape[0] != rows ||
        st->shape[1] != cols)
        return -EINVAL;
    eng_tensor v = {st->dtype, rows, cols, (void *)st->data};
    for (int i = 0; i < rows; i++)
        eng_k_row_f32(&v, i, dst + (size_t)i * cols);
    return 0;
}

static int load_weights(eng_adapter *a, const eng_st_file *f, char *err,
                        size_t errlen)
{
    char name[96];
    int n_lora = 0;
    for (int i = 0; i < f->n; i++)
        n_lora += strstr(f->t[i].name, ".lora_") != NULL;
    if (n_lora != eng_adapter_n_tensors(a)) {
        eng_err(err, errlen, "adapter has %d LoRA tensors, model needs %d",
                n_lora, eng_adapter_n_tensors(a));
        return -EINVAL;
    }
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < ENG_T_COUNT; t++) {
            eng_lora *lo = eng_adapter_at(a, l, t);
            if (!lo->A)
                continue;
            eng_lora_tensor_name(name, sizeof name, l, t, 0);
            if (copy_tensor(eng_st_find(f, name), a->rank, lo->in, lo->A))
                goto bad;
            eng_lora_tensor_name(name, sizeof name, l, t, 1);
            if (copy_tensor(eng_st_find(f, name), lo->out, a->rank, lo->B))
                goto bad;
        }
    return 0;
bad:
    eng_err(err, errlen, "%s: missing or wrong shape for this model", name);
    return -EINVAL;
}

int eng_adapter_load(const eng_model *m, const char *dir, eng_adapter **ret,
                     char *err, size_t errlen)
{
    char path[4096], *text = NULL;
    eng_adapter *a = NULL;
    eng_st_file *f = NULL;
    int r, rslora, rc;
    float alpha, drop;
    unsigned targets;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if ((rc = read_small_file(path, &text))) {
        eng_err(err, errlen, "%s: cannot read", path);
        goto out;
    }
    if ((rc = parse_config(text, &r, &alpha, &drop, &targets, &rslora))) {
        eng_err(err, errlen, "%s: not a LoRA config we support", path);
        goto out;
    }
    if ((rc = adapter_alloc(&m->cfg, r, alpha, targets, &a)))
        goto out;
    a->dropout = drop;
    if (rslora)
        a->scale = alpha / sqrtf((float)r);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if ((rc = eng_st_open(path, &f, err, errlen)))
        goto out;
    if ((rc = load_weights(a, f, err, errlen)))
        goto out;
    *ret = a;
    a = NULL;
out:
    eng_st_close(f);
    eng_adapter_unref(a);
    free(text);
    return rc;
}
