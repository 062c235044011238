/* SPDX-License-Identifier: MIT */
/*
 * runner-impl.h - private to the job runner (runner.c, ckpt.c, report.c):
 * the state of one run and the helpers its parts share.
 */
#ifndef TUNA_SRV_RUNNER_IMPL_H
#define TUNA_SRV_RUNNER_IMPL_H

#include "server/runner.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

/* Job settings of migration 0003, read from the stored hyperparameters
 * (0 = automatic where noted). */
typedef struct run_settings {
    int eval_every;            /* steps between evaluations; 0: ~10 a run */
    int checkpoint_every;      /* steps between checkpoints; 0: eval_every */
    int keep_checkpoints;      /* the last K kept (plus the best) */
    int patience;              /* evaluations without improvement; 0: off */
} run_settings;

typedef struct run {
    const srv_runner_env *env;
    const store_job *job;
    double t_start;            /* of this attempt's first step */
    int step_start;            /* step this attempt started from */
    double last_cancel_check;
    bool cancel, stop, pause;  /* what the abort hook saw */
    eng_model *model;
    eng_tokenizer *tok;
    eng_example *ex, *val_own;     /* as loaded: freed with api_examples_free */
    int n_ex, n_val_own;
    eng_example *train, *val;      /* views into the loaded examples */
    int n_train, n_val;
    eng_train_params params;
    double val_split;
    run_settings set;
    eng_trainer *tr;
    float val_loss, val_acc;       /* of the last evaluation */
    int val_step;                  /* step of the last evaluation, -1 none */
    float train_loss;              /* of the last step */
    double best_val;               /* early stopping: best so far */
    int best_step, bad_evals;
    int saved_step;                /* newest checkpoint on disk, -1 none */
    /* usage of this attempt, charged to the job's API key */
    int64_t usage_tokens, usage_prev;
    bool usage_started;
    const char *err_code;
    char err[512];
} run;

/* Adds an event; data (may be NULL) is consumed. */
void srv_run_event(run *r, const char *level, const char *type,
                   const char *msg, cJSON *data);
/* Sets the failure reason; returns -1 for `return srv_run_err(...)`. */
__attribute__((format(printf, 3, 4)))
int srv_run_err(run *r, const char *code, const char *fmt, ...);
/* The abort hook: shutdown, cancel, stop or pause. */
bool srv_run_abort(void *user);

/* ckpt.c: checkpoints under <data>/jobs/<id>/checkpoints/step-<n>/ (the
 * trainer state plus a servable adapter), written to a temp folder and
 * renamed, then recorded in the store; retention keeps the best (lowest
 * validation loss) and the last keep_checkpoints. */
int srv_ckpt_save(run *r);
/* Loads the newest checkpoint that reads back intact into the trainer
 * (dropping unreadable ones and orphan folders); 0 with nothing to resume
 * leaves the trainer at step 0. */
int srv_ckpt_resume(run *r);
/* Loads checkpoint step into the trainer. */
int srv_ckpt_load(run *r, int step);
/* Removes every checkpoint and the adapter of the job (cancel). */
void srv_ckpt_discard(const srv_runner_env *env, const char *job_id);
/* Removes a folder tree; 0 or -errno. */
int srv_rm_rf(const char *path);

/* report.c: the prompting-vs-finetuning report, written to
 * <data>/jobs/<id>/report.json. */
int srv_report_run(run *r);

#endif
