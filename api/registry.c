/* SPDX-License-Identifier: MIT */
/*
 * registry.c - base models by name and job adapters by folder, each loaded
 * once and shared (refcounted) by every request and job.
 *
 * Base models: the embedded stories260K always, and with --models-dir M
 * every subfolder of M holding a config.json (a Hugging Face model named
 * after the folder) and every M/<name>.gguf (named <name>). Listing must
 * stay cheap with many big models, so a model is only probed when found
 * (eng_model_probe reads its config or metadata, not its weights) and
 * loaded, with its tokenizer, on first use; a loaded model stays cached.
 * A model that fails to probe or load is kept in the list with the reason,
 * so GET /models says what is wrong with it. api_registry_rescan() reads M
 * again: new entries are added, vanished ones dropped (a request or job
 * holding one keeps its references until it is done).
 *
 * Entries are heap objects in a pointer array, so a pointer stays valid
 * while the lock is dropped. Loading happens outside the lock (it reads
 * files); if two threads load the same model at once, the first to finish
 * is cached and the other's copy dropped.
 *
 * Adapters are loaded on first use, outside the lock, cached by folder:
 * a least-recently-used set under a memory budget
 * (api_registry_set_adapter_budget, tunad --adapter-cache-bytes). Past
 * the budget the least recently used adapters leave the cache; requests
 * holding one keep their reference and its memory is freed when the last
 * of them ends (eng_adapter_unref trims the heap). An evicted adapter is
 * read again from disk on its next use.
 *
 * LoRA adapters loaded by name (POST /v1/load_lora_adapter) are a table of
 * name -> (base, folder); serving one goes through the same cache.
 */
#include "api/models-impl.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define API_EMBEDDED_NAME "stories260K"

typedef struct base_entry {
    api_model_entry e;       /* name, path, probe, status */
    bool embedded;
    bool is_gguf;
    bool seen;               /* found by the current scan */
    eng_model *m;            /* NULL until first use */
    eng_tokenizer *t;
    char tok_path[1024];     /* embedded model's tokenizer */
} base_entry;

typedef struct adapter_entry {
    char dir[1024];
    const eng_model *m;
    eng_adapter *a;
    size_t bytes;
    uint64_t used;           /* LRU clock */
} adapter_entry;

typedef struct lora_entry {
    char name[128];
    char base[128];
    char dir[1024];
} lora_entry;

struct api_registry {
    pthread_mutex_t mu;
    base_entry **bases;
    int n_bases, cap_bases;
    adapter_entry *adapters;
    int n_adapters, cap_adapters;
    size_t adapter_budget, adapter_bytes;
    int weights;                  /* API_WEIGHTS_* */
    uint64_t clock;
    lora_entry *loras;
    int n_loras;
    char *models_dir;
};

bool api_model_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > 100 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static void entry_free(base_entry *b)
{
    if (!b)
        return;
    eng_model_unref(b->m);
    eng_tokenizer_unref(b->t);
    free(b);
}

static base_entry *find_base(api_registry *r, const char *name)
{
    for (int i = 0; i < r->n_bases; i++)
        if (strcmp(r->bases[i]->e.name, name) == 0)
            return r->bases[i];
    return NULL;
}

/* Takes ownership of b. */
static int add_base(api_registry *r, base_entry *b)
{
    if (r->n_bases == r->cap_bases) {
        int nc = r->cap_bases ? 2 * r->cap_bases : 8;
        base_entry **p = realloc(r->bases, (size_t)nc * sizeof(*p));
        if (!p) {
            entry_free(b);
            return -ENOMEM;
        }
        r->bases = p;
        r->cap_bases = nc;
    }
    r->bases[r->n_bases++] = b;
    return 0;
}

static base_entry *entry_new(const char *name, const char *path)
{
    base_entry *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    snprintf(b->e.name, sizeof(b->e.name), "%s", name);
    snprintf(b->e.path, sizeof(b->e.path), "%s", path);
    b->seen = true;
    return b;
}

/* Probes b's files (config/metadata only) and records the outcome. */
static void entry_probe(base_entry *b)
{
    char err[256] = "";
    int rc = eng_model_probe(b->e.path, &b->e.info, err, sizeof(err));
    b->e.ok = rc == 0;
    if (rc)
        snprintf(b->e.error, sizeof(b->e.error), "%s",
                 err[0] ? err : strerror(-rc));
}

static int load_embedded(api_registry *r, const char *dir, char *err,
                         size_t errlen)
{
    char path[1024], e2[256] = "";
    base_entry *b;
    snprintf(path, sizeof(path), "%s/stories260K.bin", dir);
    if (!(b = entry_new(API_EMBEDDED_NAME, path)))
        return -ENOMEM;
    b->embedded = true;
    snprintf(b->tok_path, sizeof(b->tok_path), "%s/tok512.bin", dir);
    int rc = eng_model_load_llama2c(path, &b->m, e2, sizeof(e2));
    if (rc == 0) {
        int vocab = eng_model_config(b->m)->vocab_size;
        rc = eng_tokenizer_load_llama2c(b->tok_path, vocab < 0 ? -vocab : vocab,
                                        &b->t, e2, sizeof(e2));
    }
    if (rc == 0)
        rc = eng_model_probe(path, &b->e.info, e2, sizeof(e2));
    if (rc < 0) {
        snprintf(err, errlen, "cannot load the embedded model from %s: %s", dir,
                 e2[0] ? e2 : strerror(-rc));
        entry_free(b);
        return rc;
    }
    b->e.ok = b->e.loaded = true;
    return add_base(r, b);
}

/* Name of a models_dir entry, or false when it is not a model. */
static bool model_name(const char *dir, const char *fname, char *name,
                       size_t len, bool *ret_gguf)
{
    char path[2048];
    struct stat st;
    size_t n = strlen(fname);
    snprintf(path, sizeof(path), "%s/%s", dir, fname);
    if (fname[0] == '.' || stat(path, &st) < 0)
        return false;
    if (S_ISDIR(st.st_mode)) {
        snprintf(path, sizeof(path), "%s/%s/config.json", dir, fname);
        if (access(path, R_OK) < 0)
            return false;
        snprintf(name, len, "%s", fname);
        *ret_gguf = false;
    } else if (S_ISREG(st.st_mode) && n > 5 &&
               strcmp(fname + n - 5, ".gguf") == 0) {
        snprintf(name, len, "%.*s", (int)(n - 5), fname);
        *ret_gguf = true;
    } else {
        return false;
    }
    return api_model_name_valid(name);
}

/* Marks every entry of models_dir seen; adds the new ones. Called with the
 * lock held; probing reads a few small files per new model. */
static int scan_models_dir(api_registry *r, int *ret_added)
{
    DIR *d;
    struct dirent *de;
    int added = 0, rc = 0;
    if (!r->models_dir)
        return 0;
    if (!(d = opendir(r->models_dir)))
        return -errno;
    while (rc == 0 && (de = readdir(d))) {
        char name[128], path[2048];
        bool gguf;
        if (!model_name(r->models_dir, de->d_name, name, sizeof(name), &gguf))
            continue;
        snprintf(path, sizeof(path), "%s/%s", r->models_dir, de->d_name);
        base_entry *b = find_base(r, name);
        if (b) {
            /* same name twice (folder x and x.gguf): the first one stays */
            if (strcmp(b->e.path, path) == 0)
                b->seen = true;
            continue;
        }
        if (!(b = entry_new(name, path))) {
            rc = -ENOMEM;
            break;
        }
        b->is_gguf = gguf;
        entry_probe(b);
        if ((rc = add_base(r, b)) == 0)
            added++;
    }
    closedir(d);
    if (ret_added)
        *ret_added = added;
    return rc;
}

int api_registry_new(const char *embedded_dir, const char *models_dir,
                     api_registry **ret, char *err, size_t errlen)
{
    api_registry *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    pthread_mutex_init(&r->mu, NULL);
    r->adapter_budget = (size_t)1 << 30;
    int rc = 0;
    if (models_dir && !(r->models_dir = strdup(models_dir)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = load_embedded(r, embedded_dir ? embedded_dir : "models/stories260K",
                           err, errlen);
    if (rc == 0 && (rc = scan_models_dir(r, NULL)) < 0)
        snprintf(err, errlen, "cannot read the models folder %s: %s",
                 models_dir, strerror(-rc));
    if (rc < 0) {
        api_registry_free(r);
        return rc;
    }
    *ret = r;
    return 0;
}

int api_registry_rescan(api_registry *r, int *ret_added, int *ret_removed)
{
    int removed = 0, rc;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_bases; i++)
        r->bases[i]->seen = r->bases[i]->embedded;
    rc = scan_models_dir(r, ret_added);
    if (rc == 0) {
        int k = 0;
        for (int i = 0; i < r->n_bases; i++) {
            if (r->bases[i]->seen) {
                r->bases[k++] = r->bases[i];
            } else {
                entry_free(r->bases[i]); /* holders keep their refs */
                removed++;
            }
        }
        r->n_bases = k;
    }
    pthread_mutex_unlock(&r->mu);
    if (ret_removed)
        *ret_removed = removed;
    return rc;
}

void api_registry_free(api_registry *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_bases; i++)
        entry_free(r->bases[i]);
    for (int i = 0; i < r->n_adapters; i++)
        eng_adapter_unref(r->adapters[i].a);
    free(r->bases);
    free(r->adapters);
    free(r->loras);
    free(r->models_dir);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Loads a models_dir entry's weights and tokenizer (no lock held), the
 * weights moved into memory as the weights mode says. */
static int load_files(const char *path, bool gguf, int weights,
                      eng_model **ret_m, eng_tokenizer **ret_t, char *err,
                      size_t errlen)
{
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    int rc = gguf ? eng_model_load_gguf(path, &m, err, errlen)
                  : eng_model_load_hf(path, &m, err, errlen);
    if (rc == 0 && weights != API_WEIGHTS_MMAP) {
        size_t avail = eng_mem_available();

        rc = eng_model_pin(m, weights == API_WEIGHTS_MEMORY ? SIZE_MAX
                              : avail == SIZE_MAX ? avail : avail / 2);
        if (rc < 0)
            snprintf(err, errlen, "out of memory copying the weights "
                     "(--weights mmap keeps them mapped)");
        else
            rc = 0;
    }
    if (rc == 0)
        rc = gguf ? eng_tokenizer_load_gguf(path, &t, err, errlen)
                  : eng_tokenizer_load_hf(path, &t, err, errlen);
    if (rc == 0 && eng_tokenizer_vocab_size(t) > eng_model_config(m)->vocab_size) {
        snprintf(err, errlen, "the tokenizer has %d tokens, the model %d",
                 eng_tokenizer_vocab_size(t), eng_model_config(m)->vocab_size);
        rc = -EINVAL;
    }
    if (rc < 0) {
        eng_model_unref(m);
        eng_tokenizer_unref(t);
        return rc;
    }
    *ret_m = m;
    *ret_t = t;
    return 0;
}

/* The entry's model with refs taken, when loaded; false otherwise. Lock
 * held. */
static bool take_loaded(base_entry *b, eng_model **ret_m, eng_tokenizer **ret_t)
{
    if (!b || !b->m)
        return false;
    *ret_m = eng_model_ref(b->m);
    *ret_t = eng_tokenizer_ref(b->t);
    return true;
}

int api_registry_get_base_err(api_registry *r, const char *name,
                              eng_model **ret_model, eng_tokenizer **ret_tok,
                              char *err, size_t errlen)
{
    char path[2048], e2[256] = "";
    bool gguf = false;
    int rc = 0, weights;
    if (!r || !name)
        return -ENOENT;
    pthread_mutex_lock(&r->mu);
    base_entry *b = find_base(r, name);
    if (take_loaded(b, ret_model, ret_tok)) {
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    weights = r->weights;
    if (!b) {
        rc = -ENOENT;
    } else if (!b->e.ok) {
        snprintf(err, errlen, "%s", b->e.error);
        rc = -EINVAL;
    } else {
        snprintf(path, sizeof(path), "%s", b->e.path);
        gguf = b->is_gguf;
    }
    pthread_mutex_unlock(&r->mu);
    if (rc < 0)
        return rc;

    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    rc = load_files(path, gguf, weights, &m, &t, e2, sizeof(e2));
    pthread_mutex_lock(&r->mu);
    b = find_base(r, name);
    if (rc == 0 && b && !b->m) {
        b->m = m;             /* first load to finish is cached */
        b->t = t;
        b->e.loaded = true;
        m = NULL;
        t = NULL;
    } else if (rc < 0 && rc != -ENOMEM && b) {
        b->e.ok = false;      /* broken files: listed with the reason */
        snprintf(b->e.error, sizeof(b->e.error), "%s",
                 e2[0] ? e2 : strerror(-rc));
    }
    if (rc == 0 && !take_loaded(b, ret_model, ret_tok)) {
        /* dropped by a rescan meanwhile: serve the copy just loaded */
        *ret_model = m;
        *ret_tok = t;
        m = NULL;
        t = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    eng_model_unref(m);
    eng_tokenizer_unref(t);
    if (rc < 0) {
        snprintf(err, errlen, "%s", e2[0] ? e2 : strerror(-rc));
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    return 0;
}

int api_registry_get_base(api_registry *r, const char *name,
                          eng_model **ret_model, eng_tokenizer **ret_tok)
{
    char err[256];
    return api_registry_get_base_err(r, name, ret_model, ret_tok, err,
                                     sizeof(err));
}

int api_registry_snapshot(api_registry *r, api_model_entry **ret, int *ret_n)
{
    pthread_mutex_lock(&r->mu);
    int n = r->n_bases;
    api_model_entry *e = malloc((size_t)(n ? n : 1) * sizeof(*e));
    for (int i = 0; e && i < n; i++)
        e[i] = r->bases[i]->e;
    pthread_mutex_unlock(&r->mu);
    if (!e)
        return -ENOMEM;
    *ret = e;
    *ret_n = n;
    return 0;
}

int api_registry_entry(api_registry *r, const char *name, api_model_entry *ret)
{
    pthread_mutex_lock(&r->mu);
    base_entry *b = find_base(r, name);
    if (b)
        *ret = b->e;
    pthread_mutex_unlock(&r->mu);
    return b ? 0 : -ENOENT;
}

static eng_adapter *find_adapter(api_registry *r, const eng_model *m,
                                 const char *dir)
{
    for (int i = 0; i < r->n_adapters; i++)
        if (r->adapters[i].m == m && strcmp(r->adapters[i].dir, dir) == 0) {
            r->adapters[i].used = ++r->clock;
            return r->adapters[i].a;
        }
    return NULL;
}

/* Drops cache entry i (holders keep their references). Lock held. */
static void drop_adapter(api_registry *r, int i)
{
    r->adapter_bytes -= r->adapters[i].bytes;
    eng_adapter_unref(r->adapters[i].a);
    r->adapters[i] = r->adapters[--r->n_adapters];
}

/* Least recently used out until the cache fits its budget; keep stays.
 * Lock held. */
static void evict(api_registry *r, const eng_adapter *keep)
{
    while (r->adapter_bytes > r->adapter_budget) {
        int lru = -1;
        for (int i = 0; i < r->n_adapters; i++)
            if (r->adapters[i].a != keep &&
                (lru < 0 || r->adapters[i].used < r->adapters[lru].used))
                lru = i;
        if (lru < 0)
            break;
        drop_adapter(r, lru);
    }
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
    e->bytes = eng_adapter_bytes(a);
    e->used = ++r->clock;
    r->adapter_bytes += e->bytes;
    evict(r, a);
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
    /* the caller's ref first: eviction may drop the cache's at once */
    a = find_adapter(r, m, dir);
    if (!a) {
        eng_adapter_ref(loaded);
        if (!(a = cache_adapter(r, m, dir, loaded)))
            eng_adapter_unref(loaded);
    } else {
        eng_adapter_ref(a);
    }
    if (a)
        *ret = a;
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
    /* Borrowed names: entries live until a rescan drops them. */
    for (int i = 0; names && i < n; i++)
        names[i] = r->bases[i]->e.name;
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

void api_registry_counts(api_registry *r, int *ret_bases, int *ret_adapters)
{
    pthread_mutex_lock(&r->mu);
    *ret_bases = r->n_bases;
    *ret_adapters = r->n_adapters;
    pthread_mutex_unlock(&r->mu);
}

void api_limits_default(api_limits *l)
{
    l->max_body_bytes = (size_t)64 << 20;
    l->max_rows = 100000;
    l->max_seq_len = 2048;
    l->max_gen_tokens = 2048;
    l->max_prompts = 64;
    l->max_jobs_in_flight = 0;
    l->max_storage_bytes = 0;
    l->rate_limit_rpm = 0;
    l->max_streams = 0;
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

void api_registry_forget_adapter(api_registry *r, const char *dir)
{
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_adapters; i++)
        if (strcmp(r->adapters[i].dir, dir) == 0)
            drop_adapter(r, i--); /* holders keep theirs */
    pthread_mutex_unlock(&r->mu);
}

void api_registry_set_weights(api_registry *r, int mode)
{
    pthread_mutex_lock(&r->mu);
    r->weights = mode;
    pthread_mutex_unlock(&r->mu);
}

void api_registry_set_adapter_budget(api_registry *r, size_t bytes)
{
    pthread_mutex_lock(&r->mu);
    r->adapter_budget = bytes;
    evict(r, NULL);
    pthread_mutex_unlock(&r->mu);
}

void api_registry_adapter_stats(api_registry *r, size_t *ret_bytes,
                                size_t *ret_budget, int *ret_n)
{
    pthread_mutex_lock(&r->mu);
    *ret_bytes = r->adapter_bytes;
    *ret_budget = r->adapter_budget;
    *ret_n = r->n_adapters;
    pthread_mutex_unlock(&r->mu);
}

int api_registry_lora_add(api_registry *r, const char *name, const char *base,
                          const char *dir)
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_loras && rc == 0; i++)
        if (!strcmp(r->loras[i].name, name))
            rc = -EEXIST;
    if (rc == 0) {
        lora_entry *l = realloc(r->loras,
                                (size_t)(r->n_loras + 1) * sizeof(*l));
        if (!l) {
            rc = -ENOMEM;
        } else {
            r->loras = l;
            l = &r->loras[r->n_loras++];
            snprintf(l->name, sizeof(l->name), "%s", name);
            snprintf(l->base, sizeof(l->base), "%s", base);
            snprintf(l->dir, sizeof(l->dir), "%s", dir);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int api_registry_lora_find(api_registry *r, const char *name, char *base,
                           size_t blen, char *dir, size_t dlen)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_loras && rc; i++)
        if (!strcmp(r->loras[i].name, name)) {
            if (base)
                snprintf(base, blen, "%s", r->loras[i].base);
            if (dir)
                snprintf(dir, dlen, "%s", r->loras[i].dir);
            rc = 0;
        }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int api_registry_lora_remove(api_registry *r, const char *name)
{
    char dir[1024] = "";
    bool shared = false;
    int rc = -ENOENT;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_loras && rc; i++)
        if (!strcmp(r->loras[i].name, name)) {
            snprintf(dir, sizeof(dir), "%s", r->loras[i].dir);
            r->loras[i] = r->loras[--r->n_loras];
            rc = 0;
        }
    for (int i = 0; i < r->n_loras; i++)
        shared = shared || !strcmp(r->loras[i].dir, dir);
    pthread_mutex_unlock(&r->mu);
    if (rc == 0 && !shared)
        api_registry_forget_adapter(r, dir);
    return rc;
}

cJSON *api_registry_lora_json(api_registry *r)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_loras; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", r->loras[i].name);
        cJSON_AddStringToObject(o, "object", "model");
        cJSON_AddStringToObject(o, "type", "lora");
        cJSON_AddStringToObject(o, "base", r->loras[i].base);
        cJSON_AddStringToObject(o, "path", r->loras[i].dir);
        cJSON_AddItemToArray(arr, o);
    }
    pthread_mutex_unlock(&r->mu);
    return arr;
}
