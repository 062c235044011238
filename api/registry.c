/* SPDX-License-Identifier: MIT */
/*
 * registry.c - base models by name and job adapters by folder, each loaded
 * once and shared (refcounted) by every request and job.
 *
 * Base models are loaded at api_registry_new(): the embedded stories260K
 * always, models under models_dir later (scan_models_dir is the hook).
 * Adapters are loaded on first use, outside the lock (loading reads files);
 * if two threads race, the first one cached wins and the other is dropped.
 * The cache is unbounded for now: an LRU under a memory budget comes with
 * multi-adapter serving.
 */
#include "api/api-impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define API_EMBEDDED_NAME "stories260K"

typedef struct base_entry {
    char name[128];
    eng_model *m;
    eng_tokenizer *t;
} base_entry;

typedef struct adapter_entry {
    char dir[1024];
    const eng_model *m;
    eng_adapter *a;
} adapter_entry;

struct api_registry {
    pthread_mutex_t mu;
    base_entry *bases;
    int n_bases;
    adapter_entry *adapters;
    int n_adapters, cap_adapters;
    char *models_dir;
};

static int add_base(api_registry *r, const char *name, eng_model *m,
                    eng_tokenizer *t)
{
    base_entry *b = realloc(r->bases, (size_t)(r->n_bases + 1) * sizeof(*b));
    if (!b)
        return -ENOMEM;
    r->bases = b;
    b = &r->bases[r->n_bases++];
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->m = m;
    b->t = t;
    return 0;
}

static int load_embedded(api_registry *r, const char *dir, char *err,
                         size_t errlen)
{
    char path[1024], e2[256] = "";
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    snprintf(path, sizeof(path), "%s/stories260K.bin", dir);
    int rc = eng_model_load_llama2c(path, &m, e2, sizeof(e2));
    if (rc == 0) {
        int vocab = eng_model_config(m)->vocab_size;
        snprintf(path, sizeof(path), "%s/tok512.bin", dir);
        rc = eng_tokenizer_load_llama2c(path, vocab < 0 ? -vocab : vocab, &t,
                                        e2, sizeof(e2));
    }
    if (rc == 0)
        rc = add_base(r, API_EMBEDDED_NAME, m, t);
    if (rc < 0) {
        snprintf(err, errlen, "cannot load the embedded model from %s: %s", dir,
                 e2[0] ? e2 : strerror(-rc));
        eng_model_unref(m);
        eng_tokenizer_unref(t);
    }
    return rc;
}

/* Hook: base models from models_dir (safetensors/GGUF) come in a later
 * issue. Nothing to do yet; the folder is remembered. */
static int scan_models_dir(api_registry *r, char *err, size_t errlen)
{
    (void)r;
    (void)err;
    (void)errlen;
    return 0;
}

int api_registry_new(const char *embedded_dir, const char *models_dir,
                     api_registry **ret, char *err, size_t errlen)
{
    api_registry *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    pthread_mutex_init(&r->mu, NULL);
    int rc = 0;
    if (models_dir && !(r->models_dir = strdup(models_dir)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = load_embedded(r, embedded_dir ? embedded_dir : "models/stories260K",
                           err, errlen);
    if (rc == 0)
        rc = scan_models_dir(r, err, errlen);
    if (rc < 0) {
        api_registry_free(r);
        return rc;
    }
    *ret = r;
    return 0;
}

void api_registry_free(api_registry *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_bases; i++) {
        eng_model_unref(r->bases[i].m);
        eng_tokenizer_unref(r->bases[i].t);
    }
    for (int i = 0; i < r->n_adapters; i++)
        eng_adapter_unref(r->adapters[i].a);
    free(r->bases);
    free(r->adapters);
    free(r->models_dir);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int api_registry_get_base(api_registry *r, const char *name,
                          eng_model **ret_model, eng_tokenizer **ret_tok)
{
    if (!r || !name)
        return -ENOENT;
    int rc = -ENOENT;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_bases; i++) {
        if (strcmp(r->bases[i].name, name) == 0) {
            *ret_model = eng_model_ref(r->bases[i].m);
            *ret_tok = eng_tokenizer_ref(r->bases[i].t);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static eng_adapter *find_adapter(api_registry *r, const eng_model *m,
                                 const char *dir)
{
    for (int i = 0; i < r->n_adapters; i++)
        if (r->adapters[i].m == m && strcmp(r->adapters[i].dir, dir) == 0)
            return r->adapters[i].a;
    return NULL;
}

/* Caches a (takes the caller's ref); returns the cached adapter, which is a
 * when it was not there yet. */
static eng_adapter *cache_adapter(api_registry *r, const eng_model *m,
                                  const char *dir, eng_adapter *a)
{
    eng_adapter *have = find_adapter(r, m, dir);
    if (have)
        return have;
    if (r->n_adapters == r->cap_adapters) {
        int nc = r->cap_adapters ? 2 * r->cap_adapters : 8;
        adapter_entry *e = realloc(r->adapters, (size_t)nc * sizeof(*e));
        if (!e)
            return NULL;
        r->adapters = e;
        r->cap_adapters = nc;
    }
    adapter_entry *e = &r->adapters[r->n_adapters++];
    snprintf(e->dir, sizeof(e->dir), "%s", dir);
    e->m = m;
    e->a = a;
    return a;
}

int api_registry_get_adapter(api_registry *r, eng_model *m, const char *dir,
                             eng_adapter **ret, char *err, size_t errlen)
{
    pthread_mutex_lock(&r->mu);
    eng_adapter *a = find_adapter(r, m, dir);
    if (a)
        *ret = eng_adapter_ref(a);
    pthread_mutex_unlock(&r->mu);
    if (a)
        return 0;
    eng_adapter *loaded = NULL;
    int rc = eng_adapter_load(m, dir, &loaded, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&r->mu);
    a = cache_adapter(r, m, dir, loaded);
    if (a)
        *ret = eng_adapter_ref(a);
    pthread_mutex_unlock(&r->mu);
    if (a != loaded)
        eng_adapter_unref(loaded);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

int api_registry_list(api_registry *r, const char ***ret_names, int *ret_n)
{
    pthread_mutex_lock(&r->mu);
    const char **names = malloc((size_t)(r->n_bases + 1) * sizeof(*names));
    int n = r->n_bases;
    for (int i = 0; names && i < n; i++)
        names[i] = r->bases[i].name;
    pthread_mutex_unlock(&r->mu);
    if (!names)
        return -ENOMEM;
    *ret_names = names;
    *ret_n = n;
    return 0;
}

const char *api_default_base(api_ctx *ctx)
{
    (void)ctx;
    return API_EMBEDDED_NAME;
}

void api_limits_default(api_limits *l)
{
    l->max_body_bytes = (size_t)64 << 20;
    l->max_rows = 100000;
    l->max_seq_len = 2048;
    l->max_gen_tokens = 2048;
    l->max_prompts = 64;
}

void api_job_dir(const char *data_dir, const char *job_id, char *buf,
                 size_t len)
{
    snprintf(buf, len, "%s/jobs/%s", data_dir, job_id);
}

void api_job_adapter_dir(const char *data_dir, const char *job_id, char *buf,
                         size_t len)
{
    snprintf(buf, len, "%s/jobs/%s/adapter", data_dir, job_id);
}
