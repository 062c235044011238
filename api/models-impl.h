/* SPDX-License-Identifier: MIT */
/*
 * models-impl.h - private to api/: the model registry's listing and rescan,
 * imported adapters, tar streams, and the handlers of the model routes
 * (registry.c, models.c, tokenize.c, export.c, adapters.c, tar.c).
 */
#ifndef TUNA_API_MODELS_IMPL_H
#define TUNA_API_MODELS_IMPL_H

#include "api/api-impl.h"

/* ------------------------------------------------------------------------ */
/* Registry (registry.c)                                                     */

/* One base model as listed: what the probe read, whether it is loaded. */
typedef struct api_model_entry {
    char name[128];
    char path[2048];          /* folder or file; the embedded model's .bin */
    bool ok;                  /* probe succeeded and no load failed */
    char error[256];          /* why not, when !ok */
    bool loaded;
    eng_model_info info;
} api_model_entry;

/* A snapshot of every base model, in registry order (malloc'd; free()). */
int api_registry_snapshot(api_registry *r, api_model_entry **ret, int *ret_n);
/* One entry by name; -ENOENT when unknown. */
int api_registry_entry(api_registry *r, const char *name,
                       api_model_entry *ret);
/* Like api_registry_get_base, with the reason a model cannot be loaded in
 * err (-EINVAL: broken model, -ENOMEM, -ENOENT unknown name). */
int api_registry_get_base_err(api_registry *r, const char *name,
                              eng_model **ret_model, eng_tokenizer **ret_tok,
                              char *err, size_t errlen);
/* Re-reads models_dir: new models are added (probed, not loaded), models
 * whose file or folder is gone are dropped (requests holding them keep
 * their references). */
int api_registry_rescan(api_registry *r, int *ret_added, int *ret_removed);

/* Drops the cached adapters loaded from dir (before it is deleted). */
void api_registry_forget_adapter(api_registry *r, const char *dir);

/* LoRA adapters loaded by name (/v1/load_lora_adapter): name -> base model
 * and folder. add: -EEXIST when the name is taken; remove also drops the
 * folder's cached adapter (its memory is freed once the requests holding
 * it end). */
int api_registry_lora_add(api_registry *r, const char *name, const char *base,
                          const char *dir);
int api_registry_lora_find(api_registry *r, const char *name, char *base,
                           size_t blen, char *dir, size_t dlen);
int api_registry_lora_remove(api_registry *r, const char *name);
/* The loaded LoRA adapters as /models objects (type "lora"). */
cJSON *api_registry_lora_json(api_registry *r);
/* Resident adapter bytes, the budget and the count. */
void api_registry_adapter_stats(api_registry *r, size_t *ret_bytes,
                                size_t *ret_budget, int *ret_n);

/* POST /v1/load_lora_adapter, POST /v1/unload_lora_adapter (lora.c). */
void api_h_v1_load_lora(api_call *c);
void api_h_v1_unload_lora(api_call *c);

/* Model and adapter names: 1-100 of [A-Za-z0-9._-], not starting with '.'
 * (so never a path, never "..", never a job's "ft:..." name). */
bool api_model_name_valid(const char *name);

/* ------------------------------------------------------------------------ */
/* Imported adapters (adapters.c): <data_dir>/adapters/<name>/ holds the
 * adapter in the base's layout and tuna_adapter.json {"name","base_model",
 * "created_at",...}.                                                       */

/* Base model name of imported adapter name into base; -ENOENT if none. */
int api_imported_base(api_ctx *ctx, const char *name, char *base,
                      size_t len);
void api_imported_dir(api_ctx *ctx, const char *name, char *buf, size_t len);
/* Appends one /models object per imported adapter to arr. */
void api_imported_list(api_ctx *ctx, cJSON *arr);

/* ------------------------------------------------------------------------ */
/* Tar (tar.c)                                                               */

typedef struct api_tar_file {
    char name[100];           /* name in the archive */
    char path[1200];          /* file on disk */
} api_tar_file;

/* A stream of a ustar archive of files (read lazily, file by file); when
 * the stream is freed, remove_dir (if not NULL) and the files in it are
 * deleted. Files are copied, so the array may be freed. */
int api_tar_stream(const api_tar_file *files, int n, const char *remove_dir,
                   api_stream *ret);
/* Extracts the regular files named want[i] (base name match, any folder
 * inside the archive) from a tar in buf into dir/want[i]. Returns the
 * number of wanted files found, or -EINVAL for a malformed archive. */
int api_tar_extract(const char *buf, size_t len, const char *const *want,
                    int n_want, const char *dir, char *err, size_t errlen);
/* rm -r of a folder holding plain files only. */
void api_rmdir_files(const char *dir);

/* ------------------------------------------------------------------------ */
/* Handlers                                                                  */

void api_h_models_rescan(api_call *c);
void api_h_tokenize(api_call *c);
void api_h_detokenize(api_call *c);
void api_h_apply_template(api_call *c);
void api_h_jobs_adapter(api_call *c);
void api_h_adapters_import(api_call *c);
void api_h_adapters_delete(api_call *c);

/* The /models object of base model name (from its probe). */
cJSON *api_base_model_json(api_ctx *ctx, const char *name);
/* name as a base model or an imported adapter: 0 with refs taken (*ret_a
 * NULL for a base), 1 when it is neither (try jobs), -1 after an error
 * reply (a broken model: 503 with the reason). */
int api_resolve_base_or_imported(api_call *c, const char *name,
                                 eng_model **ret_m, eng_tokenizer **ret_t,
                                 eng_adapter **ret_a);

/* The chat template a model name serves with: a job's stored
 * chat_template.jinja, else its tokenizer's. malloc'd or NULL; *ret_from
 * gets "job" or "model". */
char *api_model_chat_template(api_call *c, const char *name,
                              const eng_tokenizer *t, const char **ret_from);

/* At job creation: stores the base's chat template with the job
 * (jobs/<id>/chat_template.jinja) when it renders, and for a chat dataset
 * adds an event saying which template its records are rendered with. */
void api_job_chat_template_save(api_call *c, const char *job_id,
                                const eng_tokenizer *t, const char *ds_format);

#endif
