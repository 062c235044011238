/* SPDX-License-Identifier: MIT */
/*
 * model.c - the eng_model object: allocation, lifetime, the llama2.c
 * checkpoint loader, random models, and the RoPE frequency table.
 *
 * Every loader builds a model the same way: eng_model_alloc() makes a shell
 * (config, refcount, zeroed layer array), the loader points each eng_tensor
 * at weights it either memory-maps (m->map) or owns in one malloc block
 * (m->owned), and eng_model_finish() checks the shapes, counts parameters and
 * computes the rotary table. eng_model_unref() releases all of that, so a
 * loader that fails half-way just unrefs its shell.
 *
 * A llama2.c "version 0" checkpoint is a 28-byte header of 7 int32 (dim,
 * hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len) followed by
 * fp32 arrays in run.c's order: token_embedding, rms_att, wq, wk, wv, wo,
 * rms_ffn, w1 (gate), w2 (down), w3 (up), rms_final, freq_cis_real,
 * freq_cis_imag (unused: we compute RoPE ourselves), then wcls when the
 * vocab size in the header is negative (an unshared classifier). Per-layer
 * arrays are stacked [n_layers, ...], each matrix [out, in] as we store it.
 */
#include "model.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Weight memory                                                             */

enum { HUGE_PAGE = 2 << 20 };

void *eng_alloc_huge(size_t bytes)
{
    void *p = NULL;

    if (bytes < 2 * (size_t)HUGE_PAGE)
        return malloc(bytes ? bytes : 1);
    bytes = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (posix_memalign(&p, HUGE_PAGE, bytes))
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice: failure is fine */
#endif
    return p;
}

void eng_advise_weights(void *map, size_t len)
{
#ifdef MADV_HUGEPAGE
    if (map && len >= 2 * (size_t)HUGE_PAGE)
        (void)madvise(map, len, MADV_HUGEPAGE);
#else
    (void)map, (void)len;
#endif
}

size_t eng_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;

    if (!f)
        return SIZE_MAX;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return kb ? (size_t)kb * 1024 : SIZE_MAX;
}

/* t's data moved by delta when it lies in [lo, lo + len). */
static void relocate(eng_tensor *t, const char *lo, size_t len, ptrdiff_t delta)
{
    const char *p = t->data;

    if (p && p >= lo && p < lo + len)
        t->data = (char *)t->data + delta;
}

int eng_model_pin(eng_model *m, size_t max_bytes)
{
    char *copy;
    ptrdiff_t delta;

    /* every tensor a layer has is relocated below */
    _Static_assert(sizeof(eng_layer) == 12 * sizeof(eng_tensor),
                   "eng_model_pin: relocate eng_layer's new tensor");
    if (!m || !m->map || m->map_len > max_bytes)
        return 0;
    if (!(copy = eng_alloc_huge(m->map_len)))
        return -ENOMEM;
    memcpy(copy, m->map, m->map_len);
    delta = copy - (char *)m->map;
    relocate(&m->tok_emb, m->map, m->map_len, delta);
    relocate(&m->final_norm, m->map, m->map_len, delta);
    relocate(&m->lm_head, m->map, m->map_len, delta);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        eng_layer *l = &m->layers[i];
        eng_tensor *all[] = { &l->attn_norm, &l->wq, &l->wk, &l->wv, &l->wo,
                              &l->bq, &l->bk, &l->bv, &l->ffn_norm,
                              &l->w_gate, &l->w_up, &l->w_down };

        for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
            relocate(all[k], m->map, m->map_len, delta);
    }
    munmap(m->map, m->map_len);
    m->map = NULL;
    m->pinned = copy;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Shapes                                                                    */

int eng_config_check(const eng_config *c)
{
    if (!c || c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 ||
        c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 ||
        c->vocab_size <= 0 || c->max_seq_len <= 0)
        return -EINVAL;
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return -EINVAL;
    if (c->head_dim % 2)
        return -EINVAL;
    if (!(c->norm_eps > 0) || !(c->rope_theta > 0))
        return -EINVAL;
    if (c->rope_scaling != ENG_ROPE_SCALING_NONE && !(c->rope_factor > 0))
        return -EINVAL;
    if (c->rope_scaling == ENG_ROPE_SCALING_LLAMA3 &&
        (c->rope_orig_max_pos <= 0 ||
         !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !(c->rope_low_freq_factor > 0)))
        return -EINVAL;
    return 0;
}

void eng_target_shape(const eng_config *c, int t, int *ret_in, int *ret_out)
{
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    int in = c->dim, out = c->dim;

    switch (t) {
    case ENG_T_Q: out = q; break;
    case ENG_T_K:
    case ENG_T_V: out = kv; break;
    case ENG_T_O: in = q; break;
    case ENG_T_GATE:
    case ENG_T_UP: out = c->hidden_dim; break;
    case ENG_T_DOWN: in = c->hidden_dim; break;
    default: in = out = 0; break;
    }
    *ret_in = in;
    *ret_out = out;
}

eng_tensor *eng_layer_target(eng_layer *l, int t)
{
    switch (t) {
    case ENG_T_Q: return &l->wq;
    case ENG_T_K: return &l->wk;
    case ENG_T_V: return &l->wv;
    case ENG_T_O: return &l->wo;
    case ENG_T_GATE: return &l->w_gate;
    case ENG_T_UP: return &l->w_up;
    case ENG_T_DOWN: return &l->w_down;
    default: return NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */

int eng_model_alloc(const eng_config *cfg, eng_model **ret)
{
    eng_model *m;
    int rc = eng_config_check(cfg);

    if (rc)
        return rc;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->cfg = *cfg;
    m->cfg.arch[sizeof(m->cfg.arch) - 1] = '\0';
    m->layers = calloc((size_t)cfg->n_layers, sizeof(*m->layers));
    if (!m->layers) {
        free(m);
        return -ENOMEM;
    }
    atomic_init(&m->refs, 1);
    *ret = m;
    return 0;
}

eng_model *eng_model_ref(eng_model *m)
{
    if (m)
        atomic_fetch_add(&m->refs, 1);
    return m;
}

void eng_model_unref(eng_model *m)
{
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    if (m->map)
        munmap(m->map, m->map_len);
    free(m->pinned);
    free(m->owned);
    free(m->layers);
    free(m->rope_inv_freq);
    free(m);
}

const eng_config *eng_model_config(const eng_model *m)
{
    return &m->cfg;
}

int64_t eng_model_n_params(const eng_model *m)
{
    return m->n_params;
}

/* ------------------------------------------------------------------------ */
/* Finishing: shape checks, parameter count, RoPE                             */

static int check_tensor(const eng_tensor *t, int rows, int cols,
                        int64_t *count)
{
    if (!t->data || t->rows != rows || t->cols != cols)
        return -EINVAL;
    *count += (int64_t)rows * cols;
    return 0;
}

static int check_bias(const eng_tensor *t, bool want, int n, int64_t *count)
{
    if (!want)
        return t->data ? -EINVAL : 0;
    return check_tensor(t, 1, n, count);
}

int eng_model_finish(eng_model *m)
{
    const eng_config *c = &m->cfg;
    int q, kv, rc;
    int64_t n = 0;

    q = c->n_heads * c->head_dim;
    kv = c->n_kv_heads * c->head_dim;
    if ((rc = check_tensor(&m->tok_emb, c->vocab_size, c->dim, &n)) ||
        (rc = check_tensor(&m->final_norm, 1, c->dim, &n)))
        return rc;
    if (c->tied_embeddings) {
        if (m->lm_head.data && m->lm_head.data != m->tok_emb.data)
            return -EINVAL;
        m->lm_head = m->tok_emb;
    } else if ((rc = check_tensor(&m->lm_head, c->vocab_size, c->dim, &n))) {
        return rc;
    }
    for (int i = 0; i < c->n_layers; i++) {
        const eng_layer *l = &m->layers[i];

        if ((rc = check_tensor(&l->attn_norm, 1, c->dim, &n)) ||
            (rc = check_tensor(&l->ffn_norm, 1, c->dim, &n)) ||
            (rc = check_tensor(&l->wq, q, c->dim, &n)) ||
            (rc = check_tensor(&l->wk, kv, c->dim, &n)) ||
            (rc = check_tensor(&l->wv, kv, c->dim, &n)) ||
            (rc = check_tensor(&l->wo, c->dim, q, &n)) ||
            (rc = check_tensor(&l->w_gate, c->hidden_dim, c->dim, &n)) ||
            (rc = check_tensor(&l->w_up, c->hidden_dim, c->dim, &n)) ||
            (rc = check_tensor(&l->w_down, c->dim, c->hidden_dim, &n)) ||
            (rc = check_bias(&l->bq, c->qkv_bias, q, &n)) ||
            (rc = check_bias(&l->bk, c->qkv_bias, kv, &n)) ||
            (rc = check_bias(&l->bv, c->qkv_bias, kv, &n)))
            return rc;
        /* Norms and biases are read as plain floats by the forward pass. */
        if (l->attn_norm.dtype != ENG_DT_F32 || l->ffn_norm.dtype != ENG_DT_F32 ||
            (c->qkv_bias && (l->bq.dtype != ENG_DT_F32 ||
                             l->bk.dtype != ENG_DT_F32 ||
                             l->bv.dtype != ENG_DT_F32)))
            return -EINVAL;
    }
    if (m->final_norm.dtype != ENG_DT_F32)
        return -EINVAL;
    m->n_params = n;
    return eng_model_init_rope(m);
}

/* inv_freq[i] = theta^(-2i/head_dim), then the configured scaling. The llama3
 * rule follows Hugging Face's _compute_llama3_parameters: wavelengths longer
 * than orig/low_freq_factor are divided by factor, shorter than
 * orig/high_freq_factor kept, and the band between interpolated smoothly. */
int eng_model_init_rope(eng_model *m)
{
    const eng_config *c = &m->cfg;
    int half = c->head_dim / 2;
    float *f = malloc((size_t)half * sizeof(*f));

    if (!f)
        return -ENOMEM;
    for (int i = 0; i < half; i++) {
        double inv = pow((double)c->rope_theta, -2.0 * i / c->head_dim);

        if (c->rope_scaling == ENG_ROPE_SCALING_LINEAR) {
            inv /= c->rope_factor;
        } else if (c->rope_scaling == ENG_ROPE_SCALING_LLAMA3) {
            double orig = c->rope_orig_max_pos;
            double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double wavelen = 2.0 * M_PI / inv;

            if (wavelen > orig / lo) {
                inv /= c->rope_factor;
            } else if (wavelen >= orig / hi) {
                double s = (orig / wavelen - lo) / (hi - lo);

                inv = (1.0 - s) * inv / c->rope_factor + s * inv;
            }
        }
        f[i] = (float)inv;
    }
    free(m->rope_inv_freq);
    m->rope_inv_freq = f;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* llama2.c checkpoints                                                      */

static eng_tensor f32_view(float **p, int rows, int cols)
{
    eng_tensor t = { ENG_DT_F32, rows, cols, *p };

    *p += (size_t)rows * cols;
    return t;
}

/* Points a model's tensors at fp32 arrays laid out in llama2.c's order,
 * starting at *p; advances *p past the layer weights and rms_final. */
static void assign_llama2c(eng_model *m, float **p)
{
    const eng_config *c = &m->cfg;
    int L = c->n_layers, q = c->n_heads * c->head_dim;
    int kv = c->n_kv_heads * c->head_dim;

    m->tok_emb = f32_view(p, c->vocab_size, c->dim);
    for (int i = 0; i < L; i++)
        m->layers[i].attn_norm = f32_view(p, 1, c->dim);
    for (int i = 0; i < L; i++)
        m->layers[i].wq = f32_view(p, q, c->dim);
    for (int i = 0; i < L; i++)
        m->layers[i].wk = f32_view(p, kv, c->dim);
    for (int i = 0; i < L; i++)
        m->layers[i].wv = f32_view(p, kv, c->dim);
    for (int i = 0; i < L; i++)
        m->layers[i].wo = f32_view(p, c->dim, q);
    for (int i = 0; i < L; i++)
        m->layers[i].ffn_norm = f32_view(p, 1, c->dim);
    for (int i = 0; i < L; i++)
        m->layers[i].w_gate = f32_view(p, c->hidden_dim, c->dim);
    for (int i = 0; i < L; i++)
        m->layers[i].w_down = f32_view(p, c->dim, c->hidden_dim);
    for (int i = 0; i < L; i++)
        m->layers[i].w_up = f32_view(p, c->hidden_dim, c->dim);
    m->final_norm = f32_view(p, 1, c->dim);
}

/* Number of floats a llama2.c checkpoint with config c holds after the
 * header, with the two unused freq_cis tables. */
static size_t llama2c_floats(const eng_config *c)
{
    size_t d = c->dim, h = c->hidden_dim, L = c->n_layers;
    size_t q = (size_t)c->n_heads * c->head_dim;
    size_t kv = (size_t)c->n_kv_heads * c->head_dim;
    size_t n = (size_t)c->vocab_size * d;

    n += L * (d + q * d + 2 * kv * d + d * q + d + 3 * h * d);
    n += d;
    n += (size_t)c->max_seq_len * c->head_dim; /* freq_cis real + imag */
    if (!c->tied_embeddings)
        n += (size_t)c->vocab_size * d;
    return n;
}

static int llama2c_config(const int32_t h[7], eng_config *c)
{
    memset(c, 0, sizeof(*c));
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->tied_embeddings = h[5] > 0;
    /* Negating INT32_MIN would overflow: reject it with the other junk. */
    c->vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]);
    c->max_seq_len = h[6];
    if (c->dim <= 0 || c->n_heads <= 0 || c->dim % c->n_heads)
        return -EIO;
    c->head_dim = c->dim / c->n_heads;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_style = ENG_ROPE_INTERLEAVED;
    c->rope_scaling = ENG_ROPE_SCALING_NONE;
    snprintf(c->arch, sizeof(c->arch), "llama");
    return eng_config_check(c) ? -EIO : 0;
}

int eng_model_load_llama2c(const char *path, eng_model **ret_model,
                           char *err, size_t errlen)
{
    eng_model *m = NULL;
    eng_config cfg;
    struct stat st;
    int32_t hdr[7];
    void *map = MAP_FAILED;
    float *p;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? -ENOENT : -EIO;
        eng_err(err, errlen, "cannot open %s", path);
        return rc;
    }
    rc = -EIO;
    if (fstat(fd, &st) || (size_t)st.st_size < sizeof(hdr)) {
        eng_err(err, errlen, "%s: too short for a llama2.c header", path);
        goto out;
    }
    if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
        llama2c_config(hdr, &cfg)) {
        eng_err(err, errlen, "%s: not a llama2.c checkpoint (bad header)", path);
        goto out;
    }
    /* Overflow is impossible here: every factor is a positive int32, and the
     * product is compared against the real file size before any use. */
    if ((size_t)st.st_size - sizeof(hdr) <
        llama2c_floats(&cfg) * sizeof(float)) {
        eng_err(err, errlen, "%s: truncated llama2.c checkpoint", path);
        goto out;
    }
    map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = -ENOMEM;
        eng_err(err, errlen, "%s: mmap failed", path);
        goto out;
    }
    if ((rc = eng_model_alloc(&cfg, &m))) {
        eng_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    m->map = map;
    m->map_len = st.st_size;
    eng_advise_weights(map, m->map_len);
    map = MAP_FAILED;
    p = (float *)((char *)m->map + sizeof(hdr));
    assign_llama2c(m, &p);
    p += (size_t)cfg.max_seq_len * cfg.head_dim; /* skip freq_cis_real/imag */
    if (!cfg.tied_embeddings)
        m->lm_head = f32_view(&p, cfg.vocab_size, cfg.dim);
    if ((rc = eng_model_finish(m))) {
        eng_err(err, errlen, "%s: inconsistent model", path);
        goto out;
    }
    *ret_model = m;
    m = NULL;
out:
    if (map != MAP_FAILED)
        munmap(map, st.st_size);
    eng_model_unref(m);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Random models                                                             */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]: 24 random bits, never 0 so log() stays finite. */
static float unit(uint64_t *s)
{
    return ((splitmix64(s) >> 40) + 1) * (1.0f / 16777216.0f);
}

static void fill_normal(float *x, size_t n, float std, uint64_t *s)
{
    for (size_t i = 0; i < n; i += 2) {
        float r = sqrtf(-2.0f * logf(unit(s)));
        float th = 6.2831853f * unit(s);

        x[i] = std * r * cosf(th);
        if (i + 1 < n)
            x[i + 1] = std * r * sinf(th);
    }
}

/* Same layout as a llama2.c checkpoint (so both paths share assign_llama2c),
 * plus the untied head and the biases at the end. Norm weights start at 1,
 * as a freshly initialised RMSNorm does; everything else is N(0, std). */
int eng_model_new_random(const eng_config *cfg, uint64_t seed, float std,
                         eng_model **ret_model)
{
    eng_model *m = NULL;
    size_t n, q, kv;
    float *p;
    uint64_t s = seed;
    int rc;

    if ((rc = eng_model_alloc(cfg, &m)))
        return rc;
    q = (size_t)cfg->n_heads * cfg->head_dim;
    kv = (size_t)cfg->n_kv_heads * cfg->head_dim;
    n = llama2c_floats(cfg) - (size_t)cfg->max_seq_len * cfg->head_dim;
    if (cfg->qkv_bias)
        n += (size_t)cfg->n_layers * (q + 2 * kv);
    m->owned = eng_alloc_huge(n * sizeof(float));
    if (!m->owned) {
        rc = -ENOMEM;
        goto out;
    }
    fill_normal(m->owned, n, std, &s);
    p = m->owned;
    assign_llama2c(m, &p);
    for (int i = 0; i < cfg->n_layers; i++) {
        for (int j = 0; j < cfg->dim; j++) {
            eng_f32(&m->layers[i].attn_norm)[j] = 1.0f;
            eng_f32(&m->layers[i].ffn_norm)[j] = 1.0f;
        }
    }
    for (int j = 0; j < cfg->dim; j++)
        eng_f32(&m->final_norm)[j] = 1.0f;
    if (!cfg->tied_embeddings)
        m->lm_head = f32_view(&p, cfg->vocab_size, cfg->dim);
    for (int i = 0; cfg->qkv_bias && i < cfg->n_layers; i++) {
        m->layers[i].bq = f32_view(&p, 1, (int)q);
        m->layers[i].bk = f32_view(&p, 1, (int)kv);
        m->layers[i].bv = f32_view(&p, 1, (int)kv);
    }
    if ((rc = eng_model_finish(m)))
        goto out;
    *ret_model = m;
    m = NULL;
out:
    eng_model_unref(m);
    return rc;
}
