/* SPDX-License-Identifier: MIT */
/*
 * test_generate.c - POST /generate on the embedded base model (greedy is
 * deterministic and equals the engine called directly), arrays of prompts,
 * max_tokens and stop, validation errors, 404/409 for job models, and a
 * "succeeded" job served with its adapter from the job's adapter dir (a
 * fresh LoRA adapter has B = 0, so its greedy output equals the base's).
 */
#include "tests/api/api_test.h"

#include <math.h>
#include <sys/stat.h>

static const char *const prompt = "Once upon a time";

static void test_base_greedy(t_env *e, char *text_out, size_t len)
{
    t_resp a, b;
    const char *body = "{\"model\":\"stories260K\",\"prompt\":\"Once upon a "
                       "time\",\"max_tokens\":24,\"temperature\":0}";
    CHECK_INT(t_call(e, "POST", "/generate", "application/json", body, &a), 200);
    CHECK_INT(t_call(e, "POST", "/generate", "application/json", body, &b), 200);
    CHECK_STR(t_str(a.json, "model"), "stories260K");
    const char *text = t_str(a.json, "text");
    CHECK(text && strlen(text) > 0);
    CHECK_STR(t_str(b.json, "text"), text);
    const char *fin = t_str(a.json, "finish_reason");
    CHECK(fin && (!strcmp(fin, "length") || !strcmp(fin, "stop")));
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(a.json, "usage");
    CHECK(t_num(u, "prompt_tokens") >= 2);
    CHECK(t_num(u, "completion_tokens") >= 1 &&
          t_num(u, "completion_tokens") <= 24);
    snprintf(text_out, len, "%s", text ? text : "");

    /* Same as the engine called directly. */
    eng_model *m;
    eng_tokenizer *tok;
    CHECK(api_registry_get_base(e->reg, "stories260K", &m, &tok) == 0);
    eng_sample_params sp;
    eng_sample_params_default(&sp);
    sp.max_tokens = 24;
    sp.temperature = 0;
    sp.n_threads = 1;
    eng_generation g = { 0 };
    char err[256];
    CHECK(eng_generate(m, NULL, tok, prompt, &sp, NULL, NULL, NULL, &g, err,
                       sizeof(err)) == 0);
    CHECK_STR(g.text, text);
    eng_generation_done(&g);
    eng_model_unref(m);
    eng_tokenizer_unref(tok);
    t_resp_done(&a);
    t_resp_done(&b);
}

static void test_array_and_stop(t_env *e, const char *greedy)
{
    t_resp t;
    CHECK_INT(t_call(e, "POST", "/generate", "application/json",
                     "{\"prompt\":[\"Once upon a time\",\"The cat\"],"
                     "\"max_tokens\":24,\"temperature\":0}", &t), 200);
    CHECK_STR(t_str(t.json, "object"), "list");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(t.json, "results");
    CHECK_INT(cJSON_GetArraySize(res), 2);
    CHECK_STR(t_str(cJSON_GetArrayItem(res, 0), "text"), greedy);
    CHECK_INT(t_num(cJSON_GetArrayItem(res, 1), "index"), 1);
    t_resp_done(&t);

    CHECK_INT(t_call(e, "POST", "/generate", "application/json",
                     "{\"prompt\":\"Once upon a time\",\"max_tokens\":3,"
                     "\"temperature\":0}", &t), 200);
    CHECK_INT(t_num(cJSON_GetObjectItem(t.json, "usage"), "completion_tokens"),
              3);
    CHECK_STR(t_str(t.json, "finish_reason"), "length");
    t_resp_done(&t);

    /* A stop string cut from the greedy text ends generation before it. */
    if (strlen(greedy) > 8) {
        char body[512], stop[8];
        snprintf(stop, sizeof(stop), "%.4s", greedy + 4);
        bool plain = !strpbrk(stop, "\"\\\n");
        snprintf(body, sizeof(body), "{\"prompt\":\"Once upon a time\","
                 "\"max_tokens\":24,\"temperature\":0,\"stop\":[\"%s\"]}", stop);
        if (plain) {
            CHECK_INT(t_call(e, "POST", "/generate", "application/json", body,
                             &t), 200);
            CHECK_STR(t_str(t.json, "finish_reason"), "stop");
            const char *txt = t_str(t.json, "text");
            CHECK(txt && strlen(txt) <= 4 && !strstr(txt, stop));
            t_resp_done(&t);
        }
    }
    /* Sampling with a seed is reproducible. */
    const char *s = "{\"prompt\":\"Once\",\"max_tokens\":16,\"temperature\":1,"
                    "\"top_p\":0.9,\"top_k\":40,\"seed\":11}";
    t_resp a, b;
    CHECK_INT(t_call(e, "POST", "/generate", "application/json", s, &a), 200);
    CHECK_INT(t_call(e, "POST", "/generate", "application/json", s, &b), 200);
    CHECK_STR(t_str(a.json, "text"), t_str(b.json, "text"));
    t_resp_done(&a);
    t_resp_done(&b);
}

static void bad_gen(t_env *e, const char *body, int status, const char *code,
                    const char *field)
{
    CHECK_CALL_ERROR(e, "POST", "/generate", "application/json", body,
                     status, code, -1, field);
}

static void test_validation(t_env *e)
{
    const char *P = "invalid_parameter";
    bad_gen(e, "{}", 400, P, "prompt");
    bad_gen(e, "{\"prompt\":5}", 400, P, "prompt");
    bad_gen(e, "{\"prompt\":[]}", 400, P, "prompt");
    bad_gen(e, "{\"prompt\":[\"a\",3]}", 400, P, "prompt");
    bad_gen(e, "{\"prompt\":\"a\",\"max_tokens\":0}", 400, P, "max_tokens");
    bad_gen(e, "{\"prompt\":\"a\",\"max_tokens\":1e20}", 400, P, "max_tokens");
    bad_gen(e, "{\"prompt\":\"a\",\"max_tokens\":\"5\"}", 400, P, "max_tokens");
    bad_gen(e, "{\"prompt\":\"a\",\"temperature\":-0.1}", 400, P, "temperature");
    bad_gen(e, "{\"prompt\":\"a\",\"temperature\":99}", 400, P, "temperature");
    bad_gen(e, "{\"prompt\":\"a\",\"top_p\":0}", 400, P, "top_p");
    bad_gen(e, "{\"prompt\":\"a\",\"top_k\":-1}", 400, P, "top_k");
    bad_gen(e, "{\"prompt\":\"a\",\"seed\":-5}", 400, P, "seed");
    bad_gen(e, "{\"prompt\":\"a\",\"stop\":[1]}", 400, P, "stop");
    bad_gen(e, "{\"prompt\":\"a\",\"stop\":[\"\"]}", 400, P, "stop");
    bad_gen(e, "{\"prompt\":\"a\",\"stream\":\"yes\"}", 400, P, "stream");
    bad_gen(e, "{\"prompt\":\"a\",\"temprature\":1}", 400, P, "temprature");
    bad_gen(e, "{\"prompt\":\"a\",\"model\":7}", 400, P, "model");
    bad_gen(e, "{\"prompt\":\"a\",\"model\":\"gpt-9\"}", 404, "model_not_found",
            "model");
    bad_gen(e, "{\"prompt\":\"a\",\"model\":\"job_0123456789abcdef01234567\"}",
            404, "model_not_found", "model");
    bad_gen(e, "{\"prompt\":\"a\",\"model\":\"ft:stories260K:x:../../etc\"}", 404,
            "model_not_found", "model");
    /* A prompt longer than the context. */
    size_t n = 20000;
    char *big = malloc(n + 64);
    strcpy(big, "{\"prompt\":\"");
    for (size_t i = strlen(big); i < n; i++)
        big[i] = "abcdefgh "[i % 9];
    strcpy(big + n, "\"}");
    bad_gen(e, big, 422, "prompt_too_long", "prompt");
    free(big);
}

static void create_job(t_env *e, char *id, char *model)
{
    t_resp t;
    CHECK_INT(t_call(e, "POST", "/jobs", "application/json",
                     "{\"training_data\":[{\"prompt\":\"Once\",\"completion\":"
                     "\" Zog\"}],\"hyperparameters\":{\"lora_rank\":4}}", &t),
              201);
    snprintf(id, 64, "%s", t_str(t.json, "id"));
    snprintf(model, 256, "%s", t_str(t.json, "model"));
    t_resp_done(&t);
}

static void test_job_models(t_env *e, const char *greedy)
{
    char id[64], model[256], body[512];
    create_job(e, id, model);
    snprintf(body, sizeof(body), "{\"model\":\"%s\",\"prompt\":\"a\"}", id);
    bad_gen(e, body, 409, "model_not_ready", "model");
    snprintf(body, sizeof(body), "{\"model\":\"%s\",\"prompt\":\"a\"}", model);
    bad_gen(e, body, 409, "model_not_ready", "model");

    /* Play the job runner: claim, save a fresh adapter, succeed. */
    store_job j;
    CHECK(store_job_claim_next(e->db, "test", &j) == 0);
    CHECK_STR(j.id, id);
    store_job_done(&j);
    eng_model *m;
    eng_tokenizer *tok;
    eng_adapter *a = NULL;
    char dir[512], err[256] = "";
    CHECK(api_registry_get_base(e->reg, "stories260K", &m, &tok) == 0);
    CHECK(eng_adapter_new(m, 4, 16, ENG_TARGET_DEFAULT, 1, &a) == 0);
    snprintf(dir, sizeof(dir), "%s/jobs", e->dir);
    mkdir(dir, 0755);
    api_job_dir(e->dir, id, dir, sizeof(dir));
    mkdir(dir, 0755);
    api_job_adapter_dir(e->dir, id, dir, sizeof(dir));
    int sr = eng_adapter_save(a, dir, "stories260K", err, sizeof(err));
    if (sr < 0)
        fprintf(stderr, "eng_adapter_save: %s\n", err);
    CHECK(sr == 0);
    eng_adapter_unref(a);
    eng_model_unref(m);
    eng_tokenizer_unref(tok);
    CHECK(store_job_finish(e->db, id, "succeeded", NULL) == 0);

    t_resp t;
    const char *names[] = { id, model };
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof(body), "{\"model\":\"%s\",\"prompt\":\"%s\","
                 "\"max_tokens\":24,\"temperature\":0}", names[i], prompt);
        CHECK_INT(t_call(e, "POST", "/generate", "application/json", body, &t),
                  200);
        CHECK_STR(t_str(t.json, "model"), model);
        CHECK_STR(t_str(t.json, "text"), greedy);
        t_resp_done(&t);
    }
    /* A wrong suffix in the model name is not this job. */
    snprintf(body, sizeof(body), "{\"model\":\"ft:stories260K:other:%s\","
             "\"prompt\":\"a\"}", id);
    bad_gen(e, body, 404, "model_not_found", "model");

    /* GET /models lists it with its base and job. */
    CHECK_INT(t_call(e, "GET", "/models", NULL, NULL, &t), 200);
    const cJSON *data = cJSON_GetObjectItem(t.json, "data"), *it;
    int found = 0;
    cJSON_ArrayForEach(it, data) {
        if (t_str(it, "id") && !strcmp(t_str(it, "id"), model)) {
            found++;
            CHECK_STR(t_str(it, "base"), "stories260K");
            CHECK_STR(t_str(it, "job"), id);
            CHECK_STR(t_str(it, "type"), "finetuned");
        }
    }
    CHECK_INT(found, 1);
    t_resp_done(&t);
}

int main(void)
{
    t_env e;
    t_env_init(&e);
    char greedy[1024];
    test_base_greedy(&e, greedy, sizeof(greedy));
    test_array_and_stop(&e, greedy);
    test_validation(&e);
    test_job_models(&e, greedy);
    t_env_done(&e);
    return test_done("test_generate");
}
