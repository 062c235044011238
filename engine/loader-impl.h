/* SPDX-License-Identifier: MIT */
/*
 * loader-impl.h - what the Hugging Face and GGUF model loaders share.
 *
 * Both loaders bind the same list of weight slots through eng_ld_bind_all():
 * each slot is one eng_tensor of the model with the shape the config
 * requires. A loader only finds the slot's tensor in its file under its own
 * naming scheme (its eng_ld_lookup_fn); the shared code checks dtype and
 * shape with a message naming the tensor, and either points the slot at the
 * file's bytes (matrices stay in their stored dtype, memory-mapped) or
 * converts it into the model's owned fp32 block (norm weights and biases,
 * which the forward pass reads as plain floats). Only files inside engine/
 * include this header.
 */
#ifndef TUNA_ENGINE_LOADER_IMPL_H
#define TUNA_ENGINE_LOADER_IMPL_H

#include "err.h"
#include "model.h"

typedef enum {
    ENG_W_TOK_EMB, ENG_W_FINAL_NORM, ENG_W_LM_HEAD,
    ENG_W_ATTN_NORM, ENG_W_FFN_NORM,
    ENG_W_Q, ENG_W_K, ENG_W_V, ENG_W_O,
    ENG_W_GATE, ENG_W_UP, ENG_W_DOWN,
    ENG_W_BQ, ENG_W_BK, ENG_W_BV,
} eng_w_kind;

typedef struct eng_ld_slot {
    eng_w_kind kind;
    int layer;          /* -1 for model-level tensors */
    eng_tensor *dst;
    int rows, cols;     /* rows = 1 for vectors */
    bool vector;        /* converted to owned fp32 */
} eng_ld_slot;

/* A tensor as a file describes it: dims outermost first (PyTorch order), so a
 * matrix is {rows, cols}. */
typedef struct eng_ld_src {
    const char *name;   /* for messages */
    eng_dtype dtype;
    int ndim;
    int64_t dims[4];
    const void *data;   /* bytes in the file, rows packed */
} eng_ld_src;

/* A loader's lookup for eng_ld_bind_all: writes the file's name for slot s
 * into name (namelen bytes) and describes that tensor in *src (all but
 * src->name, which points at name already). -EINVAL with a message naming
 * the tensor when the file lacks it or stores it in a type we cannot load. */
typedef int (*eng_ld_lookup_fn)(const void *file, const eng_ld_slot *s,
                                char *name, size_t namelen, eng_ld_src *src,
                                char *err, size_t errlen);

/* Binds every tensor model m needs under its config (embeddings, the final
 * norm, the LM head unless tied, every layer's norms, projections and
 * qkv_bias biases) to the tensor lookup finds in file, the vectors converted
 * into a fresh m->owned. -ENOMEM, the first error of lookup, or -EINVAL with
 * a message on a shape or dtype mismatch. */
int eng_ld_bind_all(eng_model *m, eng_ld_lookup_fn lookup, const void *file,
                    char *err, size_t errlen);

/* Values per block of dt (1 for unquantized types): a row of a quantized
 * matrix must be whole blocks. */
int eng_ld_block_elems(eng_dtype dt);

/* Refuses sizes no real model has (-EINVAL with a message). */
int eng_ld_check_limits(const eng_config *c, char *err, size_t errlen);

/* The model's view of a finished load: eng_model_finish() with a message. */
int eng_ld_finish(eng_model *m, char *err, size_t errlen);

/* Probing without weights (model_probe.c): config.json of a Hugging Face
 * folder; a GGUF file's config, the ggml type name of blk.0.attn_q.weight
 * into dtype, and a malloc'd copy of tokenizer.chat_template (or NULL). */
int eng_ld_hf_config(const char *dir, eng_config *ret, char *err,
                     size_t errlen);
int eng_ld_gguf_probe(const char *path, eng_config *ret, char *dtype,
                      size_t dlen, char **ret_chat_template, char *err,
                      size_t errlen);

#endif
