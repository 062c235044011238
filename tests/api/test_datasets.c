/* SPDX-License-Identifier: MIT */
/*
 * test_datasets.c - the JSONL dataset parser through POST /datasets: every
 * format, BOM/CRLF/blank lines, multipart and file bodies, every kind of bad
 * line (line number and field checked), storage (file, sha256, row), list,
 * get, delete, and that a rejected upload leaves nothing behind.
 */
#include "tests/api/api_test.h"
#include "api/sha256.h"

#include <dirent.h>
#include <sys/stat.h>

static int count_files(t_env *e)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/datasets", e->dir);
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.' || strncmp(de->d_name, ".upload", 7) == 0 ||
             strncmp(de->d_name, ".part", 5) == 0;
    if (d)
        closedir(d);
    return n;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void test_sha256(void)
{
    api_sha256 s;
    char hex[65];
    api_sha256_init(&s);
    api_sha256_update(&s, "abc", 3);
    api_sha256_final_hex(&s, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223"
                   "b00361a396177a9cb410ff61f20015ad");
    api_sha256_init(&s);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t i = 0; i < strlen(m); i++) /* byte at a time */
        api_sha256_update(&s, m + i, 1);
    api_sha256_final_hex(&s, hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039"
                   "a33ce45964ff2167f6ecedd419db06c1");
}

/* Uploads body and checks a 201 with rows and format; returns the id. */
static void upload_ok(t_env *e, const char *ct, const char *body, int rows,
                      const char *format, char *id_out)
{
    t_resp t;
    CHECK_INT(t_call(e, "POST", "/datasets", ct, body, &t), 201);
    CHECK_STR(t_str(t.json, "object"), "dataset");
    CHECK_INT(t_num(t.json, "rows"), rows);
    CHECK_STR(t_str(t.json, "format"), format);
    CHECK(t_num(t.json, "tokens") > rows);
    const char *id = t_str(t.json, "id");
    CHECK(id && strncmp(id, "ds_", 3) == 0 && strlen(id) == 27);
    if (id_out)
        snprintf(id_out, 64, "%s", id ? id : "");
    /* The stored file is the normalized JSONL and matches sha256/bytes. */
    char path[512];
    snprintf(path, sizeof(path), "%s/datasets/%s.jsonl", e->dir, id ? id : "");
    size_t len = 0;
    char *data = read_file(path, &len);
    CHECK(data != NULL);
    if (data) {
        api_sha256 s;
        char hex[65];
        api_sha256_init(&s);
        api_sha256_update(&s, data, len);
        api_sha256_final_hex(&s, hex);
        CHECK_STR(t_str(t.json, "sha256"), hex);
        CHECK_INT(t_num(t.json, "bytes"), len);
        CHECK(strchr(data, '\r') == NULL);
        CHECK(memcmp(data, "\xEF\xBB\xBF", 3) != 0);
        free(data);
    }
    CHECK(t_header(&t, "Location") != NULL);
    t_resp_done(&t);
}

static void test_formats(t_env *e)
{
    upload_ok(e, "application/jsonl",
              "{\"prompt\":\"Hi\",\"completion\":\" there\"}\n"
              "{\"prompt\":\"\",\"completion\":\"x\",\"extra\":[1]}\n",
              2, "completion", NULL);
    upload_ok(e, NULL, "{\"input\":\"a\",\"output\":\"b\"}", 1, "completion",
              NULL);
    upload_ok(e, "text/plain",
              "{\"messages\":[{\"role\":\"system\",\"content\":\"Be kind\"},"
              "{\"role\":\"user\",\"content\":\"Hi\"},"
              "{\"role\":\"assistant\",\"content\":\"Hello!\"}]}\n",
              1, "chat", NULL);
    upload_ok(e, "application/x-ndjson",
              "{\"text\":\"Once upon a time\"}\n{\"text\":\"caf\xC3\xA9\"}\n",
              2, "text", NULL);
    /* BOM, CRLF, blank and whitespace-only lines. */
    upload_ok(e, "application/octet-stream",
              "\xEF\xBB\xBF{\"text\":\"a\"}\r\n\r\n   \r\n{\"text\":\"b\"}\r\n\n",
              2, "text", NULL);
}

static void bad_upload(t_env *e, const char *body, int status, long line,
                       const char *field, const char *msg_part)
{
    t_resp t;
    t_call(e, "POST", "/datasets", "application/jsonl", body, &t);
    CHECK_ERROR(&t, status, NULL, line, field);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(t.json, "error");
    if (field == NULL)
        CHECK(cJSON_GetObjectItemCaseSensitive(err, "field") == NULL);
    const char *msg = t_str(err, "message");
    if (msg_part && (!msg || !strstr(msg, msg_part))) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", msg ? msg : "",
                msg_part);
        failures++;
    }
    t_resp_done(&t);
}

static void test_bad_lines(t_env *e)
{
    int before = count_files(e);
    const char *ok = "{\"prompt\":\"a\",\"completion\":\"b\"}\n";
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s{\"prompt\":\"a\",}\n", ok);
    bad_upload(e, buf, 400, 2, NULL, "bad JSON");
    bad_upload(e, "[1,2]\n", 400, 1, NULL, "not an object");
    bad_upload(e, "{\"text\":\"a\"} {\"text\":\"b\"}\n", 400, 1, NULL,
               "after the object");
    bad_upload(e, "{\"prompt\":\"a\"}\n", 400, 1, "completion", "missing");
    bad_upload(e, "{\"prompt\":5,\"completion\":\"b\"}\n", 400, 1, "prompt",
               "string");
    bad_upload(e, "{\"input\":\"a\",\"output\":\"\"}\n", 400, 1, "output",
               "empty");
    bad_upload(e, "{\"text\":\"\"}\n", 400, 1, "text", "empty");
    bad_upload(e, "{\"text\":null}\n", 400, 1, "text", "string");
    bad_upload(e, "{\"messages\":\"hi\"}\n", 400, 1, "messages", "array");
    bad_upload(e, "{\"messages\":[]}\n", 400, 1, "messages", "array");
    bad_upload(e, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                  "{\"role\":\"robot\",\"content\":\"b\"}]}\n",
               400, 1, "messages[1].role", "assistant");
    bad_upload(e, "{\"messages\":[{\"role\":\"\",\"content\":\"a\"}]}\n", 400,
               1, "messages[0].role", "empty");
    bad_upload(e, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"\"}]}\n",
               400, 1, "messages[0].content", "empty");
    bad_upload(e, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n",
               400, 1, "messages", "assistant");
    bad_upload(e, "{\"messages\":[\"x\"]}\n", 400, 1, "messages[0]", "object");
    bad_upload(e, "{\"foo\":1}\n", 400, 1, NULL, "unknown format");
    bad_upload(e, "{\"prompt\":\"a\",\"completion\":\"b\",\"text\":\"c\"}\n",
               400, 1, NULL, "several formats");
    snprintf(buf, sizeof(buf), "%s\n{\"text\":\"c\"}\n", ok);
    bad_upload(e, buf, 400, 3, NULL, "mixed formats");
    snprintf(buf, sizeof(buf), "%s{\"input\":\"a\",\"output\":\"b\"}\n", ok);
    bad_upload(e, buf, 400, 2, NULL, "mixed formats");
    snprintf(buf, sizeof(buf), "%s{\"text\":\"\xFF\xFE\"}\n", ok);
    bad_upload(e, buf, 400, 2, NULL, "UTF-8");
    snprintf(buf, sizeof(buf), "%s%s{\"text\":\"\xE0\x80\x80\"}\n", ok, ok);
    bad_upload(e, buf, 400, 3, NULL, "UTF-8");
    bad_upload(e, "\n\n  \r\n", 422, -1, NULL, "no rows");

    e->ctx.limits.max_rows = 2;
    snprintf(buf, sizeof(buf), "%s%s%s", ok, ok, ok);
    bad_upload(e, buf, 400, 3, NULL, "too many rows");
    e->ctx.limits.max_rows = 100000;

    CHECK_CALL_ERROR(e, "POST", "/datasets", "application/json", ok,
                     415, "unsupported_media_type", -1, NULL);
    CHECK_CALL_ERROR(e, "POST", "/datasets", "application/jsonl", NULL,
                     400, "missing_body", -1, NULL);
    /* Nothing half-written is left behind. */
    CHECK_INT(count_files(e), before);
}

static void test_multipart_and_file(t_env *e)
{
    const char *body =
        "preamble\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"purpose\"\r\n\r\n"
        "fine-tune\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"zog.jsonl\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
        "{\"text\":\"one\"}\n{\"text\":\"two\\r\\n--Xy\"}\n{\"text\":\"3\"}\n"
        "\r\n--XyZ--\r\n";
    char id[64];
    upload_ok(e, "multipart/form-data; boundary=XyZ", body, 3, "text", id);
    t_resp t;
    char path[512];
    snprintf(path, sizeof(path), "/datasets/%s", id);
    CHECK_INT(t_call(e, "GET", path, NULL, NULL, &t), 200);
    CHECK_STR(t_str(t.json, "name"), "zog.jsonl");
    t_resp_done(&t);

    t_call(e, "POST", "/datasets", "multipart/form-data; boundary=XyZ",
           "--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n"
           "x\r\n--XyZ--\r\n", &t);
    CHECK_ERROR(&t, 400, "invalid_multipart", -1, "file");
    t_resp_done(&t);
    CHECK_CALL_ERROR(e, "POST", "/datasets", "multipart/form-data", "x",
                     400, "invalid_multipart", -1, NULL);
    t_call(e, "POST", "/datasets", "multipart/form-data; boundary=XyZ",
           "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
           "{\"text\":\"never ends\"}\n", &t);
    CHECK_ERROR(&t, 400, "invalid_multipart", -1, NULL);
    t_resp_done(&t);

    /* A body the server streamed to a file. */
    snprintf(path, sizeof(path), "%s/upload.tmp", e->dir);
    FILE *f = fopen(path, "wb");
    fputs("{\"prompt\":\"a\",\"completion\":\"b\"}\n", f);
    fclose(f);
    api_request req = { .method = "POST", .path = "/datasets",
                        .query = "name=from%20file", .body_file = path };
    CHECK_INT(t_call_req(e, &req, &t), 201);
    CHECK_STR(t_str(t.json, "name"), "from file");
    CHECK_INT(t_num(t.json, "rows"), 1);
    t_resp_done(&t);
    /* A name of 255 bytes is kept whole; 256 is refused, not cut. */
    char q[600];
    snprintf(q, sizeof(q), "name=%0255d", 0);
    req.query = q;
    CHECK_INT(t_call_req(e, &req, &t), 201);
    CHECK_INT(strlen(t_str(t.json, "name") ? t_str(t.json, "name") : ""), 255);
    t_resp_done(&t);
    snprintf(q, sizeof(q), "name=%0256d", 0);
    CHECK_INT(t_call_req(e, &req, &t), 400);
    CHECK_ERROR(&t, 400, "invalid_parameter", -1, "name");
    t_resp_done(&t);
    req.query = "name=from%20file";
    /* An empty streamed body is a missing body. */
    f = fopen(path, "wb");
    fclose(f);
    CHECK_INT(t_call_req(e, &req, &t), 400);
    CHECK_ERROR(&t, 400, "missing_body", -1, NULL);
    t_resp_done(&t);
}

static void test_list_get_delete(t_env *e)
{
    char id[64], path[512];
    upload_ok(e, NULL, "{\"text\":\"delete me\"}\n", 1, "text", id);
    t_resp t;
    CHECK_INT(t_call(e, "GET", "/datasets?limit=2", NULL, NULL, &t), 200);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(t.json, "data");
    CHECK_INT(cJSON_GetArraySize(data), 2);
    CHECK_STR(t_str(cJSON_GetArrayItem(data, 0), "id"), id); /* newest first */
    t_resp_done(&t);
    CHECK_CALL_ERROR(e, "GET", "/datasets?limit=0", NULL, NULL,
                     400, "invalid_parameter", -1, "limit");
    CHECK_CALL_ERROR(e, "GET", "/datasets?limit=abc", NULL, NULL,
                     400, "invalid_parameter", -1, "limit");

    snprintf(path, sizeof(path), "/datasets/%s", id);
    CHECK_INT(t_call(e, "DELETE", path, NULL, NULL, &t), 200);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t.json, "deleted")));
    t_resp_done(&t);
    CHECK_CALL_ERROR(e, "GET", path, NULL, NULL, 404, "not_found", -1, "id");
    char file[512];
    snprintf(file, sizeof(file), "%s/datasets/%s.jsonl", e->dir, id);
    struct stat st;
    CHECK(stat(file, &st) < 0);
}

int main(void)
{
    t_env e;
    t_env_init(&e);
    test_sha256();
    test_formats(&e);
    test_bad_lines(&e);
    test_multipart_and_file(&e);
    test_list_get_delete(&e);
    t_env_done(&e);
    return test_done("test_datasets");
}
