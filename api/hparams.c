/* SPDX-License-Identifier: MIT */
/*
 * hparams.c - job hyperparameters: one table of names, types, ranges and
 * defaults, used to validate user input (JSON body or query string), to fill
 * in defaults for the stored job, and to turn the stored JSON back into
 * eng_train_params for the job runner.
 *
 * The stored form is a JSON object with every key of the table present, so a
 * job shows exactly what it trains with. target_modules is stored as an array
 * of PEFT module names ("q_proj", ...).
 */
#include "api/api-impl.h"

#include <errno.h>
#include <math.h>
#include <string.h>

typedef enum { HP_INT, HP_NUM, HP_BOOL, HP_SCHED, HP_TARGETS } hp_type;

typedef struct hp_spec {
    const char *name;
    hp_type type;
    double min, max, def;
} hp_spec;

#define SEED_MAX 9007199254740991.0 /* 2^53 - 1: exact in a JSON number */

static const hp_spec specs[] = {
    { "epochs", HP_INT, 1, 100, 3 },
    { "learning_rate", HP_NUM, 1e-8, 1.0, 1e-3 },
    { "batch_size", HP_INT, 1, 256, 4 },
    { "grad_accum", HP_INT, 1, 256, 1 },
    { "lora_rank", HP_INT, 1, 256, 8 },
    { "lora_alpha", HP_NUM, 1e-3, 4096, 16 },
    { "lora_dropout", HP_NUM, 0, 0.9, 0 },
    { "max_seq_len", HP_INT, 8, 1 << 20, 256 },
    { "warmup_steps", HP_INT, 0, 1000000, 0 },
    { "seed", HP_INT, 0, SEED_MAX, 42 },
    { "weight_decay", HP_NUM, 0, 1, 0 },
    { "lr_schedule", HP_SCHED, 0, 0, 0 },
    { "min_lr_ratio", HP_NUM, 0, 1, 0.1 },
    { "max_grad_norm", HP_NUM, 0, 1e6, 1.0 },
    { "packing", HP_BOOL, 0, 0, 0 },
    { "full_finetune", HP_BOOL, 0, 0, 0 },
    { "target_modules", HP_TARGETS, 0, 0, 0 },
    { "validation_split", HP_NUM, 0, 0.5, 0 },
    /* validation, checkpoints, early stopping (0 = automatic / off) */
    { "eval_every", HP_INT, 0, 1000000, 0 },
    { "checkpoint_every", HP_INT, 0, 1000000, 0 },
    { "keep_checkpoints", HP_INT, 1, 1000, 2 },
    { "early_stopping_patience", HP_INT, 0, 1000, 0 },
};

#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

const char *const api_hparam_names[] = {
    "epochs", "learning_rate", "batch_size", "grad_accum", "lora_rank",
    "lora_alpha", "lora_dropout", "max_seq_len", "warmup_steps", "seed",
    "weight_decay", "lr_schedule", "min_lr_ratio", "max_grad_norm", "packing",
    "full_finetune", "target_modules", "validation_split", "eval_every",
    "checkpoint_every", "keep_checkpoints", "early_stopping_patience", NULL,
};

const char *const api_hparam_auto_names[] = {
    "epochs", "learning_rate", "batch_size", NULL,
};

static const char *const schedules[] = { "cosine", "linear", "constant" };

static const struct {
    const char *name;
    unsigned bit;
} modules[] = {
    { "q_proj", ENG_TARGET_Q },       { "k_proj", ENG_TARGET_K },
    { "v_proj", ENG_TARGET_V },       { "o_proj", ENG_TARGET_O },
    { "gate_proj", ENG_TARGET_GATE }, { "up_proj", ENG_TARGET_UP },
    { "down_proj", ENG_TARGET_DOWN },
};

#define N_MODULES (sizeof(modules) / sizeof(modules[0]))

/* Model-dependent upper bounds. */
typedef struct hp_limits {
    int max_seq_len;
    int max_rank;
} hp_limits;

/* ------------------------------------------------------------------------ */
/* Target modules                                                            */

/* "q" or "q_proj" (or "all") -> bits; 0 when unknown. */
static unsigned module_bits(const char *s, size_t n)
{
    if (n == 3 && strncmp(s, "all", 3) == 0)
        return ENG_TARGET_ALL;
    for (size_t i = 0; i < N_MODULES; i++) {
        size_t short_len = strlen(modules[i].name) - 5; /* minus "_proj" */
        if ((n == strlen(modules[i].name) &&
             strncmp(s, modules[i].name, n) == 0) ||
            (n == short_len && strncmp(s, modules[i].name, n) == 0))
            return modules[i].bit;
    }
    return 0;
}

/* A comma-separated string or an array of strings -> bits. */
static int parse_targets(const cJSON *it, unsigned *ret)
{
    unsigned bits = 0;
    if (cJSON_IsString(it)) {
        const char *p = it->valuestring;
        while (*p) {
            size_t n = strcspn(p, ",");
            unsigned b = module_bits(p, n);
            if (!b)
                return -EINVAL;
            bits |= b;
            p += n + (p[n] == ',');
        }
    } else if (cJSON_IsArray(it)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, it) {
            unsigned b = cJSON_IsString(e)
                             ? module_bits(e->valuestring, strlen(e->valuestring))
                             : 0;
            if (!b)
                return -EINVAL;
            bits |= b;
        }
    } else {
        return -EINVAL;
    }
    if (!bits)
        return -EINVAL;
    *ret = bits;
    return 0;
}

static cJSON *targets_json(unsigned bits)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < N_MODULES; i++)
        if (bits & modules[i].bit)
            cJSON_AddItemToArray(a, cJSON_CreateString(modules[i].name));
    return a;
}

/* ------------------------------------------------------------------------ */
/* Validation                                                                */

static bool is_auto_name(const char *name)
{
    for (int i = 0; api_hparam_auto_names[i]; i++)
        if (!strcmp(api_hparam_auto_names[i], name))
            return true;
    return false;
}

static int check_one(const hp_spec *s, const cJSON *it, const hp_limits *lim,
                     cJSON *out, char *msg, size_t mlen)
{
    double max = s->max;
    if (strcmp(s->name, "max_seq_len") == 0 && lim->max_seq_len > 0)
        max = lim->max_seq_len;
    if (strcmp(s->name, "lora_rank") == 0 && lim->max_rank > 0 &&
        lim->max_rank < max)
        max = lim->max_rank;
    switch (s->type) {
    case HP_INT:
    case HP_NUM: {
        if (it && cJSON_IsString(it) && !strcmp(it->valuestring, "auto") &&
            is_auto_name(s->name)) {
            cJSON_AddStringToObject(out, s->name, "auto");
            return 0;
        }
        double d = it ? it->valuedouble : s->def;
        if (it && (!cJSON_IsNumber(it) || !isfinite(d) ||
                   (s->type == HP_INT && d != floor(d)))) {
            snprintf(msg, mlen, "%s must be %s%s", s->name,
                     s->type == HP_INT ? "an integer" : "a number",
                     is_auto_name(s->name) ? " or \"auto\"" : "");
            return -EINVAL;
        }
        if (d < s->min || d > max) {
            snprintf(msg, mlen, "%s must be between %g and %g", s->name,
                     s->min, max);
            return -EINVAL;
        }
        cJSON_AddNumberToObject(out, s->name, d);
        return 0;
    }
    case HP_BOOL:
        if (it && !cJSON_IsBool(it)) {
            snprintf(msg, mlen, "%s must be true or false", s->name);
            return -EINVAL;
        }
        cJSON_AddBoolToObject(out, s->name, it ? cJSON_IsTrue(it) : false);
        return 0;
    case HP_SCHED:
        for (size_t i = 0; i < 3; i++) {
            if (!it || (cJSON_IsString(it) &&
                        strcmp(it->valuestring, schedules[i]) == 0)) {
                cJSON_AddStringToObject(out, s->name, schedules[i]);
                return 0;
            }
        }
        snprintf(msg, mlen, "%s must be \"cosine\", \"linear\" or \"constant\"",
                 s->name);
        return -EINVAL;
    case HP_TARGETS: {
        unsigned bits = ENG_TARGET_DEFAULT;
        if (it && parse_targets(it, &bits) < 0) {
            snprintf(msg, mlen, "%s must list modules among q, k, v, o, gate, "
                     "up, down (or \"all\")", s->name);
            return -EINVAL;
        }
        cJSON_AddItemToObject(out, s->name, targets_json(bits));
        return 0;
    }
    }
    return -EINVAL;
}

/* Validates obj (may be NULL) into a new object with every default filled.
 * On error *ret is untouched and field/msg say why. */
static int hp_check(const cJSON *obj, const hp_limits *lim, cJSON **ret,
                    char *field, size_t flen, char *msg, size_t mlen)
{
    const cJSON *it;
    if (obj && !cJSON_IsObject(obj)) {
        snprintf(field, flen, "hyperparameters");
        snprintf(msg, mlen, "hyperparameters must be an object");
        return -EINVAL;
    }
    cJSON_ArrayForEach(it, obj) {
        size_t i = 0;
        while (i < N_SPECS && strcmp(specs[i].name, it->string) != 0)
            i++;
        if (i == N_SPECS) {
            snprintf(field, flen, "%s", it->string);
            snprintf(msg, mlen, "unknown hyperparameter \"%.64s\"", it->string);
            return -EINVAL;
        }
    }
    cJSON *out = cJSON_CreateObject();
    if (!out) {
        snprintf(msg, mlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < N_SPECS; i++) {
        it = obj ? cJSON_GetObjectItemCaseSensitive(obj, specs[i].name) : NULL;
        if (it && cJSON_IsNull(it))
            it = NULL;
        if (check_one(&specs[i], it, lim, out, msg, mlen) < 0) {
            snprintf(field, flen, "%s", specs[i].name);
            cJSON_Delete(out);
            return -EINVAL;
        }
    }
    *ret = out;
    return 0;
}

cJSON *api_hparams_validate(api_call *c, const cJSON *obj, const eng_model *m)
{
    hp_limits lim = { .max_seq_len = c->ctx->limits.max_seq_len };
    if (m) {
        const eng_config *cfg = eng_model_config(m);
        if (cfg->max_seq_len > 0 && cfg->max_seq_len < lim.max_seq_len)
            lim.max_seq_len = cfg->max_seq_len;
        lim.max_rank = cfg->dim;
    }
    if (obj && !cJSON_IsObject(obj)) {
        api_error(c->res, 400, "invalid_parameter",
                  "hyperparameters must be an object", -1, "hyperparameters");
        return NULL;
    }
    char field[96] = "", msg[200];
    cJSON *out = NULL;
    int r = hp_check(obj, &lim, &out, field, sizeof(field), msg, sizeof(msg));
    if (r == -ENOMEM)
        api_error(c->res, 503, "out_of_memory", msg, -1, NULL);
    else if (r < 0)
        api_error(c->res, 400, "invalid_parameter", msg, -1, field);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Stored JSON -> engine                                                     */

static double num(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k)->valuedouble;
}

int api_hparams_to_engine(const char *json, eng_train_params *ret,
                          double *ret_validation_split, char *err,
                          size_t errlen)
{
    cJSON *in = json ? cJSON_Parse(json) : NULL;
    if (json && !in) {
        snprintf(err, errlen, "hyperparameters are not valid JSON");
        return -EINVAL;
    }
    /* the list of values "auto" chose, kept in the stored job */
    cJSON_DeleteItemFromObjectCaseSensitive(in, "auto");
    hp_limits lim = { 0 };
    char field[96], msg[200];
    cJSON *o = NULL;
    int r = hp_check(in, &lim, &o, field, sizeof(field), msg, sizeof(msg));
    cJSON_Delete(in);
    if (r < 0) {
        snprintf(err, errlen, "%s", msg);
        return r;
    }
    eng_train_params p;
    eng_train_params_default(&p);
    p.epochs = (int)num(o, "epochs");
    p.learning_rate = (float)num(o, "learning_rate");
    p.batch_size = (int)num(o, "batch_size");
    p.grad_accum = (int)num(o, "grad_accum");
    p.lora_rank = (int)num(o, "lora_rank");
    p.lora_alpha = (float)num(o, "lora_alpha");
    p.lora_dropout = (float)num(o, "lora_dropout");
    p.max_seq_len = (int)num(o, "max_seq_len");
    p.warmup_steps = (int)num(o, "warmup_steps");
    p.seed = (uint64_t)num(o, "seed");
    p.weight_decay = (float)num(o, "weight_decay");
    p.min_lr_ratio = (float)num(o, "min_lr_ratio");
    p.max_grad_norm = (float)num(o, "max_grad_norm");
    p.packing = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "packing"));
    p.full_finetune =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "full_finetune"));
    const char *sched =
        cJSON_GetObjectItemCaseSensitive(o, "lr_schedule")->valuestring;
    p.schedule = strcmp(sched, "linear") == 0     ? ENG_SCHED_LINEAR
                 : strcmp(sched, "constant") == 0 ? ENG_SCHED_CONSTANT
                                                  : ENG_SCHED_COSINE;
    parse_targets(cJSON_GetObjectItemCaseSensitive(o, "target_modules"),
                  &p.targets);
    if (ret_validation_split)
        *ret_validation_split = num(o, "validation_split");
    cJSON_Delete(o);
    *ret = p;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* "auto"                                                                    */

/* Total passes over examples that "auto" epochs aims to stay within. */
#define AUTO_TARGET_EPOCHS 3
#define AUTO_MIN_PASSES 100
#define AUTO_MAX_PASSES 25000
#define AUTO_MAX_EPOCHS 25

/* Near 3 epochs; more for small datasets (at least ~100 example passes),
 * fewer for large ones (at most ~25,000), always 1 to 25. */
static int auto_epochs(int64_t n)
{
    if (n < 1)
        n = 1;
    int64_t e = AUTO_TARGET_EPOCHS;
    if (n * e < AUTO_MIN_PASSES)
        e = (AUTO_MIN_PASSES + n - 1) / n;
    else if (n * e > AUTO_MAX_PASSES)
        e = AUTO_MAX_PASSES / n;
    return (int)(e < 1 ? 1 : e > AUTO_MAX_EPOCHS ? AUTO_MAX_EPOCHS : e);
}

/* LoRA learning rates that work fall slowly with model size: about 2e-4 at
 * 1B parameters, 1e-4 at 7B, 1e-3 around 1M; scaled as N^-1/4 and kept in
 * [5e-5, 3e-3]. Full finetuning takes a tenth of it. */
double api_hparams_auto_lr(const eng_model *m, bool full_finetune)
{
    double n = m ? (double)eng_model_n_params(m) : 1e9;
    if (n < 1e4)
        n = 1e4;
    double lr = 2e-4 * pow(1e9 / n, 0.25);
    lr = lr < 5e-5 ? 5e-5 : lr > 3e-3 ? 3e-3 : lr;
    if (full_finetune)
        lr /= 10;
    /* two significant digits: a value people can read and type again */
    double scale = pow(10, floor(log10(lr)) - 1);
    return round(lr / scale) * scale;
}

/* Larger micro-batches for small models (cheap activations), fewer for
 * large ones; never more than the training rows. */
static int auto_batch(const eng_model *m, int64_t n_train)
{
    double n = m ? (double)eng_model_n_params(m) : 1e9;
    int b = n < 5e7 ? 8 : n < 1e9 ? 4 : n < 5e9 ? 2 : 1;
    if (n_train >= 1 && b > n_train)
        b = (int)n_train;
    return b;
}

static bool is_auto(const cJSON *hp, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(hp, name);
    return cJSON_IsString(it) && !strcmp(it->valuestring, "auto");
}

int api_hparams_resolve_auto(cJSON *hp, const eng_model *m, int64_t n_train)
{
    cJSON *chosen = cJSON_CreateArray();
    if (!chosen)
        return -ENOMEM;
    bool full = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(hp,
                                                              "full_finetune"));
    for (int i = 0; api_hparam_auto_names[i]; i++) {
        const char *name = api_hparam_auto_names[i];
        if (!is_auto(hp, name))
            continue;
        double v = !strcmp(name, "epochs") ? auto_epochs(n_train)
                   : !strcmp(name, "batch_size") ? auto_batch(m, n_train)
                                                 : api_hparams_auto_lr(m, full);
        cJSON_ReplaceItemInObjectCaseSensitive(hp, name,
                                               cJSON_CreateNumber(v));
        cJSON_AddItemToArray(chosen, cJSON_CreateString(name));
    }
    if (cJSON_GetArraySize(chosen) == 0) {
        cJSON_Delete(chosen);
        return 0;
    }
    cJSON_AddItemToObject(hp, "auto", chosen);
    return 0;
}
