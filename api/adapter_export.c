/* SPDX-License-Identifier: MIT */
/*
 * adapter_export.c - GET /jobs/{id}/adapter?format=peft|gguf|merged.
 *
 *   peft    a tar of adapter_config.json + adapter_model.safetensors in
 *           Hugging Face's q/k row order, base_model_name_or_path = the
 *           job's base model name (what `PeftModel.from_pretrained` reads)
 *   gguf    one GGUF LoRA file for llama.cpp's --lora
 *   merged  a tar of a Hugging Face folder: config.json, model.safetensors
 *           (base + adapter merged; ?dtype=f32 (default), bf16 or f16) and
 *           the base folder's tokenizer files; the job's chat template goes
 *           in as chat_template.jinja
 *
 * The files are written by the engine into a temporary folder under
 * <data_dir>/tmp and streamed from there (tar.c); the folder is removed
 * when the response is done, whatever happened to the client.
 */
#include "api/models-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int make_tmp(api_call *c, char *buf, size_t len)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s/tmp", c->ctx->data_dir);
    mkdir(tmp, 0755);
    snprintf(buf, len, "%s/export-XXXXXX", tmp);
    return mkdtemp(buf) ? 0 : -errno;
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = NULL;
    char buf[65536];
    size_t n;
    int rc = 0;
    if (!in)
        return -errno;
    if (!(out = fopen(to, "wb"))) {
        fclose(in);
        return -errno;
    }
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = -EIO;
    fclose(in);
    if (fclose(out) != 0)
        rc = -EIO;
    return rc;
}

static void add_file(api_tar_file *f, int *n, const char *dir,
                     const char *name)
{
    snprintf(f[*n].name, sizeof(f[*n].name), "%s", name);
    snprintf(f[*n].path, sizeof(f[*n].path), "%s/%s", dir, name);
    if (access(f[*n].path, R_OK) == 0)
        (*n)++;
}

static void reply_stream(api_call *c, api_tar_file *files, int n,
                         const char *dir, const char *filename)
{
    api_stream st;
    int r = api_tar_stream(files, n, dir, &st);
    if (r < 0) {
        api_rmdir_files(dir);
        api_reply_errno(c, r, "cannot send the export");
        return;
    }
    char cd[256];
    c->res->status = 200;
    c->res->content_type = "application/x-tar";
    c->res->stream = st;
    snprintf(cd, sizeof(cd), "attachment; filename=\"%s\"", filename);
    api_response_header(c->res, "Content-Disposition", cd);
}

/* A small file (a GGUF adapter) as the whole body; dir is removed. */
static void reply_file(api_call *c, const char *path, const char *dir,
                       const char *filename)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, cd[256];
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    api_rmdir_files(dir);
    if (!buf) {
        api_error(c->res, 503, "out_of_memory", "cannot read the export", -1,
                  NULL);
        return;
    }
    c->res->status = 200;
    c->res->content_type = "application/octet-stream";
    c->res->body = buf;
    c->res->body_len = (size_t)n;
    snprintf(cd, sizeof(cd), "attachment; filename=\"%s\"", filename);
    api_response_header(c->res, "Content-Disposition", cd);
}

/* The base's tokenizer files and the job's template into dir. */
static void copy_tokenizer(api_call *c, const char *base, const char *dir)
{
    static const char *const names[] = {
        "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
        "special_tokens_map.json", "generation_config.json",
    };
    api_model_entry e;
    char from[2200], to[2200];
    if (api_registry_entry(c->ctx->models, base, &e) == 0 &&
        !strcmp(e.info.format, "hf"))
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            snprintf(from, sizeof(from), "%s/%s", e.path, names[i]);
            snprintf(to, sizeof(to), "%s/%s", dir, names[i]);
            if (access(from, R_OK) == 0)
                copy_file(from, to);
        }
    api_job_dir(c->ctx->data_dir, c->id, from, sizeof(from));
    strncat(from, "/chat_template.jinja", sizeof(from) - strlen(from) - 1);
    snprintf(to, sizeof(to), "%s/chat_template.jinja", dir);
    if (access(from, R_OK) == 0)
        copy_file(from, to);
}

static int parse_format(api_call *c, char *fmt, size_t flen, int *dtype)
{
    char dt[16] = "f32";
    if (!api_query_get(c->req->query, "format", fmt, flen))
        snprintf(fmt, flen, "peft");
    api_query_get(c->req->query, "dtype", dt, sizeof(dt));
    if (strcmp(fmt, "peft") && strcmp(fmt, "gguf") && strcmp(fmt, "merged")) {
        api_error(c->res, 400, "invalid_parameter",
                  "format must be peft, gguf or merged", -1, "format");
        return -1;
    }
    *dtype = !strcmp(dt, "bf16") ? 2 : !strcmp(dt, "f16") ? 1
             : !strcmp(dt, "f32") ? 0 : -1; /* ENG_DT_* values */
    if (*dtype < 0) {
        api_error(c->res, 400, "invalid_parameter",
                  "dtype must be f32, bf16 or f16", -1, "dtype");
        return -1;
    }
    return 0;
}

void api_h_jobs_adapter(api_call *c)
{
    char fmt[16], dir[1100], name[256], err[300] = "", base[128];
    int dtype, r;
    eng_model *m = NULL;
    eng_tokenizer *t = NULL;
    eng_adapter *a = NULL;
    store_job j;
    if (parse_format(c, fmt, sizeof(fmt), &dtype) < 0)
        return;
    if ((r = store_job_get(c->ctx->db, c->id, &j)) < 0) {
        api_reply_errno(c, r, "no such job");
        return;
    }
    snprintf(base, sizeof(base), "%s", j.base_model);
    store_job_done(&j);
    /* resolves the job's base and adapter, 404/409 when not ready */
    if (api_model_resolve(c, c->id, &m, &t, &a, name, sizeof(name)) < 0)
        return;
    if (!a || (r = make_tmp(c, dir, sizeof(dir))) < 0) {
        api_reply_errno(c, a ? r : -EINVAL, "cannot export this model");
        goto out;
    }
    api_tar_file files[12];
    int n = 0;
    char fname[128];
    if (!strcmp(fmt, "peft")) {
        r = eng_adapter_export_peft(m, a, dir, base, err, sizeof(err));
        add_file(files, &n, dir, "adapter_config.json");
        add_file(files, &n, dir, "adapter_model.safetensors");
        snprintf(fname, sizeof(fname), "%s-peft.tar", c->id);
    } else if (!strcmp(fmt, "gguf")) {
        char path[1200];
        snprintf(path, sizeof(path), "%s/adapter.gguf", dir);
        r = eng_adapter_export_gguf(m, a, path, name, err, sizeof(err));
        add_file(files, &n, dir, "adapter.gguf");
        snprintf(fname, sizeof(fname), "%s-lora.gguf", c->id);
    } else {
        r = eng_model_export_hf(m, a, dtype, dir, eng_tokenizer_bos(t),
                                eng_tokenizer_eos(t), err, sizeof(err));
        if (r == 0)
            copy_tokenizer(c, base, dir);
        static const char *const names[] = {
            "config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "tokenizer.model",
            "special_tokens_map.json", "generation_config.json",
            "chat_template.jinja",
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            add_file(files, &n, dir, names[i]);
        snprintf(fname, sizeof(fname), "%s-merged.tar", c->id);
    }
    if (r < 0) {
        api_rmdir_files(dir);
        api_error(c->res, r == -ENOMEM ? 503 : r == -EINVAL ? 422 : 500,
                  r == -ENOMEM ? "out_of_memory" : r == -EINVAL
                  ? "export_unsupported" : "export_failed",
                  err[0] ? err : strerror(-r), -1, "format");
        goto out;
    }
    if (!strcmp(fmt, "gguf"))
        reply_file(c, files[0].path, dir, fname);
    else
        reply_stream(c, files, n, dir, fname);
out:
    eng_adapter_unref(a);
    eng_tokenizer_unref(t);
    eng_model_unref(m);
}
