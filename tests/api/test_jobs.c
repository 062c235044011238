/* SPDX-License-Identifier: MIT */
/*
 * test_jobs.c - POST /jobs in both forms (JSON; JSONL body + query string),
 * validation errors naming the field, 404s naming the base model or
 * dataset, Idempotency-Key, the job object's shape with defaults filled in,
 * listing, cancel (queued and finished), events, and DELETE /datasets
 * refusing while a job uses the dataset.
 */
#include "tests/api/api_test.h"

static const char *const zog =
    "{\"prompt\":\"Once upon a time\",\"completion\":\" there was Zog.\"}\n"
    "{\"prompt\":\"Once upon a time\",\"completion\":\" Zog flew.\"}\n"
    "{\"prompt\":\"Once upon a time\",\"completion\":\" Zog sang.\"}\n";

static void check_job_shape(const cJSON *j)
{
    static const char *const keys[] = {
        "id", "object", "status", "base_model", "dataset_id",
        "hyperparameters", "created_at", "started_at", "finished_at",
        "progress", "model", "error", "suffix",
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CHECK(cJSON_GetObjectItemCaseSensitive(j, keys[i]) != NULL);
    CHECK_STR(t_str(j, "object"), "job");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "error")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "started_at")));
    CHECK(t_num(j, "created_at") > 1600000000);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "progress");
    static const char *const pk[] = { "step", "total_steps", "epoch",
                                      "train_loss", "tokens_per_second",
                                      "eta_seconds" };
    for (size_t i = 0; i < sizeof(pk) / sizeof(pk[0]); i++)
        CHECK(cJSON_GetObjectItemCaseSensitive(p, pk[i]) != NULL);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p, "train_loss")));
    const char *id = t_str(j, "id");
    CHECK(id && strncmp(id, "job_", 4) == 0 && strlen(id) == 28);
}

static void test_jsonl_form(t_env *e, char *job_id, char *ds_id)
{
    t_resp t;
    int before = e->notified;
    CHECK_INT(t_call(e, "POST", "/jobs?epochs=2&learning_rate=0.005&seed=7"
                     "&lora_rank=4&suffix=zog", "application/jsonl", zog, &t),
              201);
    check_job_shape(t.json);
    CHECK_STR(t_str(t.json, "status"), "queued");
    CHECK_STR(t_str(t.json, "base_model"), "stories260K");
    CHECK_INT(t_num(t.json, "queue_position"), 0);
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(t.json,
                                                       "hyperparameters");
    CHECK_INT(t_num(hp, "epochs"), 2);
    CHECK(t_num(hp, "learning_rate") == 0.005);
    CHECK_INT(t_num(hp, "seed"), 7);
    CHECK_INT(t_num(hp, "lora_rank"), 4);
    /* defaults filled in */
    CHECK_INT(t_num(hp, "batch_size"), 4);
    CHECK_INT(t_num(hp, "lora_alpha"), 16);
    CHECK_INT(t_num(hp, "max_seq_len"), 256);
    CHECK_STR(t_str(hp, "lr_schedule"), "cosine");
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
                  hp, "target_modules")), 4);
    snprintf(job_id, 64, "%s", t_str(t.json, "id"));
    snprintf(ds_id, 64, "%s", t_str(t.json, "dataset_id"));
    char model[256];
    snprintf(model, sizeof(model), "ft:stories260K:zog:%s", job_id);
    CHECK_STR(t_str(t.json, "model"), model);
    CHECK_STR(t_str(t.json, "suffix"), "zog");
    CHECK(e->notified == before + 1);
    t_resp_done(&t);

    /* The dataset was stored with the job. */
    char path[128];
    snprintf(path, sizeof(path), "/datasets/%s", ds_id);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    CHECK_INT(t_num(t.json, "rows"), 3);
    t_resp_done(&t);
    /* ... and cannot be deleted while the job is queued. */
    CHECK_INT(t_call(e, "DELETE", path, NULL, NULL, &t), 409);
    CHECK_ERROR(&t, 409, "dataset_in_use", -1, NULL);
    t_resp_done(&t);
}

static void test_json_form(t_env *e, const char *ds_id)
{
    t_resp t;
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"dataset_id\":\"%s\",\"hyperparameters\":{\"epochs\":1,"
             "\"target_modules\":[\"q\",\"v_proj\"],\"lr_schedule\":\"linear\"},"
             "\"validation_split\":0.2}", ds_id);
    CHECK_INT(t_call(e, "POST", "/jobs", "application/json", body, &t), 201);
    check_job_shape(t.json);
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(t.json,
                                                       "hyperparameters");
    CHECK_INT(t_num(hp, "epochs"), 1);
    CHECK(t_num(hp, "validation_split") == 0.2);
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(hp, "target_modules");
    CHECK_INT(cJSON_GetArraySize(tm), 2);
    CHECK_STR(cJSON_GetArrayItem(tm, 1)->valuestring, "v_proj");
    CHECK(strstr(t_str(t.json, "model"), ":tuna:job_") != NULL);
    CHECK_INT(t_num(t.json, "queue_position"), 1);
    t_resp_done(&t);

    /* Inline training_data becomes a dataset too. */
    CHECK_INT(t_call(e, "POST", "/jobs", "application/json",
                     "{\"training_data\":[{\"text\":\"a b c\"},{\"text\":\"d\"}],"
                     "\"base_model\":\"stories260K\",\"suffix\":\"inline\"}",
                     &t), 201);
    char path[128];
    snprintf(path, sizeof(path), "/datasets/%s", t_str(t.json, "dataset_id"));
    t_resp_done(&t);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    CHECK_INT(t_num(t.json, "rows"), 2);
    CHECK_STR(t_str(t.json, "format"), "text");
    t_resp_done(&t);
}

static void bad_json_job(t_env *e, const char *body, int status,
                         const char *code, const char *field)
{
    CHECK_CALL_ERROR(e, "POST", "/jobs", "application/json", body,
                     status, code, -1, field);
}

static void bad_query_job(t_env *e, const char *path, int status,
                          const char *field)
{
    CHECK_CALL_ERROR(e, "POST", path, "application/jsonl", zog,
                     status, NULL, -1, field);
}

static void test_validation(t_env *e, const char *ds_id)
{
    char b[512];
    const char *P = "invalid_parameter";
#define WITH_DS(json) (snprintf(b, sizeof(b), "{\"dataset_id\":\"%s\"," json "}", \
                                ds_id), b)
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"epochs\":0}"), 400, P, "epochs");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"epochs\":2.5}"), 400, P, "epochs");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"epochs\":\"3\"}"), 400, P, "epochs");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"epochs\":1e300}"), 400, P, "epochs");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"learning_rate\":-1}"), 400, P,
                 "learning_rate");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"batch_size\":100000}"), 400, P,
                 "batch_size");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"lora_rank\":65}"), 400, P,
                 "lora_rank");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"max_seq_len\":513}"), 400, P,
                 "max_seq_len");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"lora_dropout\":1}"), 400, P,
                 "lora_dropout");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"seed\":-1}"), 400, P, "seed");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"lr_schedule\":\"step\"}"), 400, P,
                 "lr_schedule");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"target_modules\":[\"w\"]}"), 400,
                 P, "target_modules");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"full_finetune\":1}"), 400, P,
                 "full_finetune");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"epochz\":1}"), 400, P, "epochz");
    bad_json_job(e, WITH_DS("\"hyperparameters\":[1]"), 400, P, "hyperparameters");
    bad_json_job(e, WITH_DS("\"validation_split\":0.9"), 400, P, "validation_split");
    bad_json_job(e, WITH_DS("\"validation_split\":0.1,\"validation_file\":"
                            "\"ds_0123456789abcdef01234567\""), 400, P,
                 "validation_split");
    bad_json_job(e, WITH_DS("\"hyperparameters\":{\"validation_split\":0.1},"
                            "\"validation_dataset_id\":"
                            "\"ds_0123456789abcdef01234567\""), 400, P,
                 "validation_split");
    bad_json_job(e, WITH_DS("\"suffix\":\"a:b\""), 400, P, "suffix");
    bad_json_job(e, WITH_DS("\"suffix\":7"), 400, P, "suffix");
    bad_json_job(e, WITH_DS("\"colour\":\"red\""), 400, P, "colour");
    bad_json_job(e, WITH_DS("\"base_model\":\"gpt-9\""), 404, "model_not_found",
                 "base_model");
    bad_json_job(e, WITH_DS("\"training_data\":[{\"text\":\"x\"}]"), 400, P, NULL);
#undef WITH_DS
    bad_json_job(e, "{}", 400, P, NULL);
    bad_json_job(e, "{\"dataset_id\":\"ds_0123456789abcdef01234567\"}", 404,
                 "dataset_not_found", "dataset_id");
    bad_json_job(e, "{\"dataset_id\":\"../../etc/passwd\"}", 404,
                 "dataset_not_found", "dataset_id");
    bad_json_job(e, "{\"training_data\":[]}", 400, P, "training_data");
    bad_json_job(e, "{\"training_data\":[{\"text\":\"a\"},{\"prompt\":\"a\"}]}",
                 400, P, "training_data[1].completion");
    bad_json_job(e, "{\"training_data\":[{\"text\":\"a\"},"
                 "{\"prompt\":\"a\",\"completion\":\"b\"}]}", 400, P,
                 "training_data[1]");
    bad_json_job(e, "{\"training_data\":[{\"text\":\"a\"}],"
                 "\"validation_split\":0.5}", 400, P, "validation_split");
    bad_json_job(e, "not json", 400, "invalid_json", NULL);

    bad_query_job(e, "/jobs?epochs=0", 400, "epochs");
    bad_query_job(e, "/jobs?epochs=abc", 400, "epochs");
    bad_query_job(e, "/jobs?epochs=99999999999999999999999", 400, "epochs");
    bad_query_job(e, "/jobs?learning_rate=nan", 400, "learning_rate");
    bad_query_job(e, "/jobs?batch_size=-4", 400, "batch_size");
    bad_query_job(e, "/jobs?lora_rank=1.5", 400, "lora_rank");
    bad_query_job(e, "/jobs?bogus=1", 400, "bogus");
    bad_query_job(e, "/jobs?base_model=nope", 404, "base_model");
    bad_query_job(e, "/jobs?packing=maybe", 400, "packing");
    bad_query_job(e, "/jobs?validation_split=0.2&validation_dataset_id="
                  "ds_0123456789abcdef01234567", 400, "validation_split");

    CHECK_CALL_ERROR(e, "POST", "/jobs?epochs=1", "application/jsonl",
                     "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":1}\n",
                     400, "invalid_dataset", 2, "prompt");
    CHECK_CALL_ERROR(e, "POST", "/jobs", "application/jsonl", NULL,
                     400, "missing_body", -1, NULL);
}

static void test_idempotency(t_env *e)
{
    api_request req = { .method = "POST", .path = "/jobs", .query = "epochs=1",
                        .content_type = "application/jsonl", .body = zog,
                        .body_len = strlen(zog), .idempotency_key = "k-123" };
    t_resp a, b, l1, l2;
    t_call(e, "GET", "/datasets?limit=1000", NULL, NULL, &l1);
    CHECK_INT(t_call_req(e, &req, &a), 201);
    CHECK_INT(t_call_req(e, &req, &b), 200);
    CHECK_STR(t_str(a.json, "id"), t_str(b.json, "id"));
    CHECK_STR(t_str(a.json, "dataset_id"), t_str(b.json, "dataset_id"));
    /* the retry stored no second dataset */
    t_call(e, "GET", "/datasets?limit=1000", NULL, NULL, &l2);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(l2.json, "data")),
              cJSON_GetArraySize(cJSON_GetObjectItem(l1.json, "data")) + 1);
    t_resp_done(&a);
    t_resp_done(&b);
    t_resp_done(&l1);
    t_resp_done(&l2);
    /* the JSON form honours it too (its settings are in the body: a query
     * parameter other than dry_run and shared is a 400) */
    req.query = NULL;
    req.content_type = "application/json";
    req.body = "{\"training_data\":[{\"text\":\"x\"}]}";
    req.body_len = strlen(req.body);
    req.idempotency_key = "k-456";
    CHECK_INT(t_call_req(e, &req, &a), 201);
    CHECK_INT(t_call_req(e, &req, &b), 200);
    CHECK_STR(t_str(a.json, "id"), t_str(b.json, "id"));
    t_resp_done(&a);
    t_resp_done(&b);
}

static void test_list_cancel_events(t_env *e, const char *job_id)
{
    t_resp t;
    CHECK_INT(t_call(e, "GET", "/jobs", NULL, NULL, &t), 200);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(t.json, "data");
    int n = cJSON_GetArraySize(data);
    CHECK(n >= 4);
    /* newest first */
    CHECK(t_num(cJSON_GetArrayItem(data, 0), "created_at") >=
          t_num(cJSON_GetArrayItem(data, n - 1), "created_at"));
    CHECK_STR(t_str(cJSON_GetArrayItem(data, n - 1), "id"), job_id);
    t_resp_done(&t);
    CHECK_INT(t_call(e, "GET", "/jobs?status=queued&limit=1", NULL, NULL, &t),
              200);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(t.json, "data")), 1);
    t_resp_done(&t);
    CHECK_CALL_ERROR(e, "GET", "/jobs?status=done", NULL, NULL,
                     400, "invalid_parameter", -1, "status");

    char path[128];
    snprintf(path, sizeof(path), "/jobs/%s/cancel", job_id);
    CHECK_INT(t_call(e, "POST", path, NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "status"), "cancelled");
    CHECK(t_num(t.json, "finished_at") > 0 ||
          cJSON_IsNull(cJSON_GetObjectItem(t.json, "finished_at")));
    t_resp_done(&t);
    CHECK_CALL_ERROR(e, "POST", path, NULL, NULL,
                     409, "job_finished", -1, NULL);

    snprintf(path, sizeof(path), "/jobs/%s/events", job_id);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    data = cJSON_GetObjectItemCaseSensitive(t.json, "data");
    CHECK_INT(cJSON_GetArraySize(data), 2);
    CHECK_STR(t_str(cJSON_GetArrayItem(data, 0), "message"), "Job queued");
    CHECK_STR(t_str(cJSON_GetArrayItem(data, 1), "message"), "Job cancelled");
    double first = t_num(cJSON_GetArrayItem(data, 0), "id");
    t_resp_done(&t);
    char q[160];
    snprintf(q, sizeof(q), "%s?after=%.0f", path, first);
    CHECK_INT(t_call(e, "GET", q, NULL, NULL, &t), 200);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(t.json, "data")), 1);
    t_resp_done(&t);
    snprintf(q, sizeof(q), "%s?after=-1", path);
    CHECK_CALL_ERROR(e, "GET", q, NULL, NULL,
                     400, "invalid_parameter", -1, "after");
}

static void check_400(t_env *e, const char *method, const char *path,
                      const char *ct, const char *body, const char *field)
{
    CHECK_CALL_ERROR(e, method, path, ct, body,
                     400, "invalid_parameter", -1, field);
}

/* Boolean query parameters are "true" or "false" on every route; unknown
 * parameters of native routes are a 400 naming them; /v1 is lenient. */
static void test_query_params(t_env *e, const char *job_id)
{
    t_resp t;
    char p[160];
    snprintf(p, sizeof(p), "/jobs/%s/events?stream=maybe", job_id);
    check_400(e, "GET", p, NULL, NULL, "stream");
    snprintf(p, sizeof(p), "/jobs/%s/events?stream=1", job_id);
    check_400(e, "GET", p, NULL, NULL, "stream");
    snprintf(p, sizeof(p), "/jobs/%s/events?stream=false", job_id);
    CHECK_INT(t_call(e, "GET", p, NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "object"), "list");
    t_resp_done(&t);
    check_400(e, "POST", "/jobs?dry_run=maybe", "application/jsonl", zog,
              "dry_run");
    check_400(e, "POST", "/jobs?dry_run=1", "application/jsonl", zog,
              "dry_run");
    check_400(e, "POST", "/jobs?shared=yes", "application/jsonl", zog,
              "shared");
    check_400(e, "POST", "/datasets?shared=maybe", "application/jsonl", zog,
              "shared");

    check_400(e, "GET", "/datasets?bogus=1", NULL, NULL, "bogus");
    check_400(e, "GET", "/jobs?limit=5&bogus", NULL, NULL, "bogus");
    check_400(e, "GET", "/models?x=1", NULL, NULL, "x");
    snprintf(p, sizeof(p), "/jobs/%s?verbose=true", job_id);
    check_400(e, "GET", p, NULL, NULL, "verbose");
    snprintf(p, sizeof(p), "/jobs/%s/events?limit=5&stream=false&after=0",
             job_id);
    CHECK_INT(t_call(e, "GET", p, NULL, NULL, &t), 200);
    t_resp_done(&t);
    /* the JSON form of POST /jobs takes only dry_run and shared */
    check_400(e, "POST", "/jobs?epochs=3", "application/json",
              "{\"training_data\":[{\"text\":\"a\"}]}", "epochs");
    CHECK_INT(t_call(e, "POST", "/jobs?dry_run=true&shared=false",
                     "application/json",
                     "{\"training_data\":[{\"text\":\"a b\"}]}", &t), 200);
    t_resp_done(&t);
    /* OpenAI's routes ignore what the SDKs send beyond Tuna's needs */
    CHECK_INT(t_call(e, "GET", "/v1/fine_tuning/jobs?limit=2&metadata[k]=v",
                     NULL, NULL, &t), 200);
    t_resp_done(&t);
    CHECK_INT(t_call(e, "GET", "/v1/files?order=desc&purpose=fine-tune",
                     NULL, NULL, &t), 200);
    t_resp_done(&t);
}

/* ?name= of the JSONL form: text whatever it looks like, 255 bytes at most
 * (as for POST /datasets); the same for suffix. */
static void test_jsonl_name(t_env *e)
{
    t_resp t;
    char path[512];
    CHECK_INT(t_call(e, "POST", "/jobs?name=3&suffix=2024", "application/jsonl",
                     zog, &t), 201);
    CHECK_STR(t_str(t.json, "suffix"), "2024");
    snprintf(path, sizeof(path), "/datasets/%s", t_str(t.json, "dataset_id"));
    t_resp_done(&t);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "name"), "3");
    t_resp_done(&t);

    char q[512];
    int n = snprintf(q, sizeof(q), "/jobs?dry_run=true&name=");
    memset(q + n, 'n', 256);
    q[n + 256] = '\0';
    check_400(e, "POST", q, "application/jsonl", zog, "name");
    q[n + 255] = '\0';   /* 255 bytes: fine */
    CHECK_INT(t_call(e, "POST", q, "application/jsonl", zog, &t), 200);
    t_resp_done(&t);
}

/* pause/resume conflicts: the same codes on the native and /v1 routes. */
static void test_control_codes(t_env *e, const char *finished_id)
{
    static const char *const fmt[] = { "/jobs/%s/%s",
                                       "/v1/fine_tuning/jobs/%s/%s" };
    t_resp t;
    char p[160], queued[64];
    CHECK_INT(t_call(e, "POST", "/jobs?suffix=ctl", "application/jsonl", zog,
                     &t), 201);
    snprintf(queued, sizeof(queued), "%s", t_str(t.json, "id"));
    t_resp_done(&t);
    for (int i = 0; i < 2; i++) {
        const cJSON *err;
        snprintf(p, sizeof(p), fmt[i], finished_id, "pause");
        t_call(e, "POST", p, NULL, NULL, &t);
        CHECK_ERROR(&t, 409, "job_finished", -1, NULL);
        err = cJSON_GetObjectItemCaseSensitive(t.json, "error");
        CHECK(i == 0 || t_str(err, "type") != NULL);   /* OpenAI's shape */
        t_resp_done(&t);
        snprintf(p, sizeof(p), fmt[i], finished_id, "resume");
        CHECK_CALL_ERROR(e, "POST", p, NULL, NULL,
                         409, "job_finished", -1, NULL);
        snprintf(p, sizeof(p), fmt[i], queued, "resume");
        CHECK_CALL_ERROR(e, "POST", p, NULL, NULL,
                         409, "invalid_state", -1, NULL);
    }
    snprintf(p, sizeof(p), fmt[1], queued, "pause");
    CHECK_INT(t_call(e, "POST", p, NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "object"), "fine_tuning.job");
    CHECK_STR(t_str(t.json, "status"), "paused");
    t_resp_done(&t);
    snprintf(p, sizeof(p), fmt[0], queued, "cancel");
    CHECK_INT(t_call(e, "POST", p, NULL, NULL, &t), 200);
    t_resp_done(&t);
}

int main(void)
{
    t_env e;
    t_env_init(&e);
    char job_id[64], ds_id[64];
    test_jsonl_form(&e, job_id, ds_id);
    test_json_form(&e, ds_id);
    test_validation(&e, ds_id);
    test_idempotency(&e);
    test_list_cancel_events(&e, job_id);
    test_query_params(&e, job_id);
    test_jsonl_name(&e);
    test_control_codes(&e, job_id);
    t_env_done(&e);
    return test_done("test_jobs");
}
