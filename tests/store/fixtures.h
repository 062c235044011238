/* SPDX-License-Identifier: MIT */
/*
 * fixtures.h - rows for the store tests: a dataset and a job filled in with
 * distinct values in every field, so a round trip that drops or swaps a
 * column is caught.
 */
#ifndef TUNA_TEST_STORE_FIXTURES_H
#define TUNA_TEST_STORE_FIXTURES_H

#include "store/store.h"
#include "testutil.h"

static inline store_dataset fixture_dataset(const char *id)
{
    store_dataset d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), "%s", id);
    snprintf(d.name, sizeof(d.name), "zog-%s.jsonl", id);
    snprintf(d.format, sizeof(d.format), "completion");
    d.rows = 240;
    d.tokens = 12345;
    d.bytes = 67890;
    snprintf(d.sha256, sizeof(d.sha256), "%064d", 7);
    snprintf(d.path, sizeof(d.path), "datasets/%s.jsonl", id);
    d.created_at = 1700000000;
    snprintf(d.owner, sizeof(d.owner), "key_alice");
    d.shared = true;
    return d;
}

static inline void check_dataset_eq(const store_dataset *a, const store_dataset *b)
{
    CHECK_EQ_STR(a->id, b->id);
    CHECK_EQ_STR(a->name, b->name);
    CHECK_EQ_STR(a->format, b->format);
    CHECK_EQ_INT(a->rows, b->rows);
    CHECK_EQ_INT(a->tokens, b->tokens);
    CHECK_EQ_INT(a->bytes, b->bytes);
    CHECK_EQ_STR(a->sha256, b->sha256);
    CHECK_EQ_STR(a->path, b->path);
    CHECK_EQ_INT(a->created_at, b->created_at);
    CHECK_EQ_STR(a->owner, b->owner);
    CHECK_EQ_INT(a->shared, b->shared);
}

/* A job to insert (hyperparameters points at static text: do not
 * store_job_done it). */
static inline store_job fixture_job(const char *id, const char *dataset_id)
{
    store_job j;
    memset(&j, 0, sizeof(j));
    snprintf(j.id, sizeof(j.id), "%s", id);
    snprintf(j.status, sizeof(j.status), "succeeded"); /* ignored: queued */
    snprintf(j.base_model, sizeof(j.base_model), "stories260K");
    snprintf(j.dataset_id, sizeof(j.dataset_id), "%s", dataset_id);
    j.hyperparameters = (char *)"{\"epochs\":3,\"learning_rate\":0.001}";
    snprintf(j.suffix, sizeof(j.suffix), "zog");
    snprintf(j.model, sizeof(j.model), "stories260K:zog:%s", id);
    j.created_at = 1700000100;
    j.priority = 0;
    snprintf(j.owner, sizeof(j.owner), "key_alice");
    return j;
}

#endif
