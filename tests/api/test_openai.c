/* SPDX-License-Identifier: MIT */
/*
 * test_openai.c - without sockets: the OpenAI files and fine-tuning routes
 * (multipart upload with purpose, file/job objects, id mapping in both
 * directions, OpenAI-shaped errors with params, list pages), "auto"
 * hyperparameters, dry runs that store nothing, and the SSE stream of a
 * job's events read through its api_stream (resume after an id, end after
 * the final status event).
 */
#include "tests/api/api_test.h"

#include <dirent.h>

static const char *const zog =
    "{\"prompt\":\"Once upon a time\",\"completion\":\" there was Zog.\"}\n"
    "{\"prompt\":\"Once upon a time\",\"completion\":\" Zog flew.\"}\n"
    "{\"prompt\":\"Once upon a time\",\"completion\":\" Zog sang.\"}\n";

#define BOUNDARY "tunaBoundary42"
#define MP_CT "multipart/form-data; boundary=" BOUNDARY

static char *multipart(const char *purpose, const char *content)
{
    char *b = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&b, &n);
    if (purpose)
        fprintf(f, "--" BOUNDARY "\r\nContent-Disposition: form-data; "
                "name=\"purpose\"\r\n\r\n%s\r\n", purpose);
    fprintf(f, "--" BOUNDARY "\r\nContent-Disposition: form-data; "
            "name=\"file\"; filename=\"zog.jsonl\"\r\nContent-Type: "
            "application/octet-stream\r\n\r\n%s\r\n--" BOUNDARY "--\r\n",
            content);
    fclose(f);
    return b;
}

static const cJSON *oai_err(const t_resp *t)
{
    return cJSON_GetObjectItemCaseSensitive(t->json, "error");
}

static int count_files(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/datasets", dir);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.' || strncmp(e->d_name, ".upload", 7) == 0;
    if (d)
        closedir(d);
    return n;
}

static void test_files(t_env *e, char *file_id)
{
    t_resp t;
    char *body = multipart("fine-tune", zog);
    CHECK_INT(t_call(e, "POST", "/v1/files", MP_CT, body, &t), 200);
    free(body);
    CHECK_STR(t_str(t.json, "object"), "file");
    CHECK_STR(t_str(t.json, "purpose"), "fine-tune");
    CHECK_STR(t_str(t.json, "filename"), "zog.jsonl");
    const char *id = t_str(t.json, "id");
    CHECK(id && strncmp(id, "file-", 5) == 0 && strlen(id) == 29);
    snprintf(file_id, 64, "%s", id ? id : "");
    t_resp_done(&t);

    /* the same row under its native id */
    char path[128];
    snprintf(path, sizeof(path), "/datasets/ds_%s", file_id + 5);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    CHECK_INT(t_num(t.json, "rows"), 3);
    t_resp_done(&t);
    snprintf(path, sizeof(path), "/datasets/%s", file_id);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    t_resp_done(&t);

    body = multipart("assistants", zog);
    CHECK_INT(t_call(e, "POST", "/v1/files", MP_CT, body, &t), 400);
    free(body);
    CHECK_STR(t_str(oai_err(&t), "type"), "invalid_request_error");
    CHECK_STR(t_str(oai_err(&t), "param"), "purpose");
    CHECK(cJSON_GetObjectItemCaseSensitive(oai_err(&t), "code") != NULL);
    t_resp_done(&t);
    body = multipart(NULL, zog);
    CHECK_INT(t_call(e, "POST", "/v1/files", MP_CT, body, &t), 400);
    free(body);
    CHECK_STR(t_str(oai_err(&t), "param"), "purpose");
    t_resp_done(&t);
    body = multipart("fine-tune", "{\"prompt\":\"a\",\"completion\":\"b\"}\n"
                                  "{\"prompt\":1}\n");
    CHECK_INT(t_call(e, "POST", "/v1/files", MP_CT, body, &t), 400);
    free(body);
    CHECK_STR(t_str(oai_err(&t), "code"), "invalid_dataset");
    CHECK_INT(t_num(oai_err(&t), "line"), 2);
    t_resp_done(&t);

    CHECK_INT(t_call(e, "GET", "/v1/files?limit=5", NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "object"), "list");
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t.json, "has_more")));
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(t.json, "data")), 1);
    t_resp_done(&t);
    CHECK_INT(t_call(e, "GET", "/v1/files/file-0123456789abcdef01234567",
                     NULL, NULL, &t), 404);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(oai_err(&t),
                                                        "param")));
    t_resp_done(&t);
    CHECK_INT(t_call(e, "GET", "/v1/files/../../etc", NULL, NULL, &t), 404);
    t_resp_done(&t);
}

static void test_jobs(t_env *e, const char *file_id, char *job_id)
{
    t_resp t;
    char body[512], path[160];
    snprintf(body, sizeof(body), "{\"model\":\"stories260K\","
             "\"training_file\":\"%s\",\"suffix\":\"zog\",\"seed\":3,"
             "\"hyperparameters\":{\"n_epochs\":2,"
             "\"learning_rate_multiplier\":0.5}}", file_id);
    CHECK_INT(t_call(e, "POST", "/v1/fine_tuning/jobs", "application/json",
                     body, &t), 200);
    CHECK_STR(t_str(t.json, "object"), "fine_tuning.job");
    CHECK_STR(t_str(t.json, "status"), "queued");
    CHECK_STR(t_str(t.json, "training_file"), file_id);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(t.json, "fine_tuned_model")));
    const cJSON *hp = cJSON_GetObjectItem(t.json, "hyperparameters");
    CHECK_INT(t_num(hp, "n_epochs"), 2);
    CHECK(t_num(hp, "learning_rate_multiplier") == 0.5);
    CHECK_INT(t_num(hp, "batch_size"), 3);       /* auto: at most the rows */
    CHECK_INT(t_num(t.json, "seed"), 3);
    const char *id = t_str(t.json, "id");
    CHECK(id && strncmp(id, "ftjob-", 6) == 0);
    snprintf(job_id, 64, "%s", id ? id : "");
    t_resp_done(&t);

    /* the native view of the same job: auto values listed */
    snprintf(path, sizeof(path), "/jobs/%s", job_id);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    hp = cJSON_GetObjectItem(t.json, "hyperparameters");
    CHECK_INT(t_num(hp, "epochs"), 2);
    const cJSON *au = cJSON_GetObjectItem(hp, "auto");
    CHECK(cJSON_GetArraySize(au) == 1 &&
          !strcmp(cJSON_GetArrayItem(au, 0)->valuestring, "batch_size"));
    t_resp_done(&t);

    CHECK_INT(t_call(e, "POST", "/v1/fine_tuning/jobs", "application/json",
                     "{\"model\":\"stories260K\",\"training_file\":"
                     "\"file-0123456789abcdef01234567\"}", &t), 404);
    CHECK_STR(t_str(oai_err(&t), "param"), "training_file");
    t_resp_done(&t);
    snprintf(body, sizeof(body), "{\"model\":\"stories260K\","
             "\"training_file\":\"%s\",\"hyperparameters\":"
             "{\"n_epochs\":\"many\"}}", file_id);
    CHECK_INT(t_call(e, "POST", "/v1/fine_tuning/jobs", "application/json",
                     body, &t), 400);
    CHECK_STR(t_str(oai_err(&t), "param"), "hyperparameters.n_epochs");
    t_resp_done(&t);
    snprintf(body, sizeof(body), "{\"model\":\"stories260K\","
             "\"training_file\":\"%s\",\"method\":{\"type\":\"dpo\"}}",
             file_id);
    CHECK_INT(t_call(e, "POST", "/v1/fine_tuning/jobs", "application/json",
                     body, &t), 400);
    CHECK_STR(t_str(oai_err(&t), "param"), "method.type");
    t_resp_done(&t);

    CHECK_INT(t_call(e, "GET", "/v1/fine_tuning/jobs?limit=1", NULL, NULL,
                     &t), 200);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(t.json, "data")), 1);
    t_resp_done(&t);
    snprintf(path, sizeof(path), "/v1/fine_tuning/jobs/%s/events", job_id);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    const cJSON *ev = cJSON_GetArrayItem(cJSON_GetObjectItem(t.json, "data"),
                                         0);
    CHECK_STR(t_str(ev, "object"), "fine_tuning.job.event");
    CHECK(t_str(ev, "id") && !strncmp(t_str(ev, "id"), "ftevent-", 8));
    t_resp_done(&t);
    snprintf(path, sizeof(path), "/v1/fine_tuning/jobs/%s/cancel", job_id);
    CHECK_INT(t_call(e, "POST", path, NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "status"), "cancelled");
    t_resp_done(&t);
    CHECK_INT(t_call(e, "POST", path, NULL, NULL, &t), 409);
    CHECK_STR(t_header(&t, "x-should-retry"), "false");
    t_resp_done(&t);
}

/* Reads a stream until it ends (or n reads came back empty). */
static char *drain(api_stream *st, int max_idle)
{
    char *out = NULL, buf[4096];
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    for (int idle = 0; idle < max_idle;) {
        ssize_t r = st->read(st->ctx, buf, sizeof(buf));
        if (r < 0)
            break;
        if (r == 0) {
            idle++;
            usleep(20000);
            continue;
        }
        fwrite(buf, 1, (size_t)r, f);
    }
    fclose(f);
    return out;
}

static void test_sse(t_env *e, const char *job_id)
{
    char path[160];
    t_resp t;
    snprintf(path, sizeof(path), "/jobs/%s/events", job_id);
    api_request req = { .method = "GET", .path = path,
                        .accept = "text/event-stream" };
    CHECK_INT(t_call_req(e, &req, &t), 200);
    CHECK_STR(t.r.content_type, "text/event-stream");
    CHECK(t.r.stream.read != NULL);
    char *all = t.r.stream.read ? drain(&t.r.stream, 200) : NULL;
    /* queued, cancelled (the final status): the stream ended by itself */
    CHECK(all && strstr(all, "retry: 2000\n\n"));
    CHECK(all && strstr(all, "event: status\ndata: {"));
    CHECK(all && strstr(all, "\"Job cancelled\""));
    t_resp_done(&t);

    /* resume after the first id: exactly the rest */
    long first = all ? strtol(strstr(all, "id: ") + 4, NULL, 10) : 0;
    char lid[32];
    snprintf(lid, sizeof(lid), "%ld", first);
    req.last_event_id = lid;
    CHECK_INT(t_call_req(e, &req, &t), 200);
    char *rest = t.r.stream.read ? drain(&t.r.stream, 200) : NULL;
    CHECK(rest && strstr(all, strstr(rest, "id: ")) != NULL);
    char needle[48];
    snprintf(needle, sizeof(needle), "id: %ld\n", first);
    CHECK(rest && !strstr(rest, needle));
    t_resp_done(&t);
    free(all);
    free(rest);

    req.last_event_id = "x1";
    CHECK_INT(t_call_req(e, &req, &t), 400);
    t_resp_done(&t);
}

static void test_dry_run(t_env *e, const char *file_id)
{
    t_resp t;
    int files = count_files(e->dir);
    CHECK_INT(t_call(e, "POST", "/jobs?dry_run=true&epochs=auto",
                     "application/jsonl", zog, &t), 200);
    CHECK_STR(t_str(t.json, "object"), "job.preflight");
    CHECK_INT(t_num(t.json, "epochs"), 25);       /* 3 rows: capped */
    CHECK_INT(t_num(t.json, "total_steps"), 25);  /* 1 batch per epoch */
    CHECK(t_num(t.json, "estimated_seconds") >= 0);
    CHECK(t_num(t.json, "estimated_ram_bytes") > 0);
    const cJSON *tk = cJSON_GetObjectItem(t.json, "tokens");
    CHECK(t_num(tk, "total") > 0);
    t_resp_done(&t);
    CHECK_INT(count_files(e->dir), files);
    /* A data dir given as a relative path (the default ./tuna-data): the
     * body's temp file is found where it was written. */
    char cwd[1024];
    if (getcwd(cwd, sizeof(cwd)) && chdir("/tmp") == 0) {
        const char *dd = e->ctx.data_dir;
        e->ctx.data_dir = e->dir + strlen("/tmp/");
        CHECK_INT(t_call(e, "POST", "/jobs?dry_run=true&epochs=2",
                         "application/jsonl", zog, &t), 200);
        CHECK_INT(t_num(t.json, "epochs"), 2);
        t_resp_done(&t);
        e->ctx.data_dir = dd;
        CHECK(chdir(cwd) == 0);
        CHECK_INT(count_files(e->dir), files);
    }
    CHECK_INT(t_call(e, "GET", "/jobs?status=queued", NULL, NULL, &t), 200);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(t.json, "data")), 0);
    t_resp_done(&t);
    char body[256];
    snprintf(body, sizeof(body), "{\"dataset_id\":\"ds_%s\",\"dry_run\":true}",
             file_id + 5);
    CHECK_INT(t_call(e, "POST", "/jobs", "application/json", body, &t), 200);
    CHECK_INT(t_num(t.json, "epochs"), 3);
    t_resp_done(&t);
    CHECK_INT(t_call(e, "POST", "/jobs?dry_run=maybe", "application/jsonl",
                     zog, &t), 400);
    t_resp_done(&t);
}

int main(void)
{
    t_env e;
    char file_id[64] = "", job_id[64] = "";
    t_env_init(&e);
    test_files(&e, file_id);
    test_jobs(&e, file_id, job_id);
    test_sse(&e, job_id);
    test_dry_run(&e, file_id);
    t_env_done(&e);
    return test_done("test_openai");
}
