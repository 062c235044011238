/* SPDX-License-Identifier: MIT */
/*
 * fuzz_request_json.c - request JSON: bodies of POST /jobs, POST /generate
 * and the other JSON routes through api_dispatch(), on the embedded stories260K model (the
 * fuzz environment caps max_tokens at 8 and prompts at 3, so generation is
 * cheap).
 *
 * Input: the first byte picks the route (its value mod 8: 0 /generate,
 * 1 /jobs, 2 /v1/chat/completions, 3 /v1/completions, 4 /tokenize,
 * 5 /detokenize, 6 /apply-template, 7 /v1/fine_tuning/jobs), the rest is
 * the body, sent as application/json.
 *
 * Checks: the response invariants of fz_check_response(); and the JSON
 * round-trip the api relies on: when api_json_parse() accepts the body, the
 * document printed by cJSON is accepted again and prints to the same bytes.
 * (Not cJSON_Compare: it is exponential in the nesting depth and
 * misjudges objects with repeated keys.) Documents
 * with a number out of double range are left out of the round-trip (cJSON
 * turns them into infinity and prints null).
 */
#include "tests/fuzz/fuzz_api.h"

#include "api/api-impl.h"

#include <math.h>

/* cJSON reads 1e999 as infinity and prints it as null: such a document
 * cannot round-trip, and the api's range checks reject the value anyway. */
static bool has_nonfinite(const cJSON *j)
{
    if (cJSON_IsNumber(j) && !isfinite(j->valuedouble))
        return true;
    for (const cJSON *c = j->child; c; c = c->next)
        if (has_nonfinite(c))
            return true;
    return false;
}

static void json_roundtrip(const char *body, size_t len)
{
    char err[160];
    cJSON *a = api_json_parse(body, len, err, sizeof(err));
    if (!a)
        return;
    if (has_nonfinite(a)) {
        cJSON_Delete(a);
        return;
    }
    char *s1 = cJSON_PrintUnformatted(a);
    FZ_ASSERT(s1 != NULL);
    cJSON *b = api_json_parse(s1, strlen(s1), err, sizeof(err));
    FZ_ASSERT(b != NULL);
    char *s2 = cJSON_PrintUnformatted(b);
    FZ_ASSERT(s2 != NULL && strcmp(s1, s2) == 0);
    free(s1);
    free(s2);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (256 << 10))
        return 0;
    static const char *const paths[8] = {
        "/generate", "/jobs", "/v1/chat/completions", "/v1/completions",
        "/tokenize", "/detokenize", "/apply-template", "/v1/fine_tuning/jobs",
    };
    const char *path = paths[data[0] & 7];
    /* An exact-size copy: the api gets (pointer, length), never a NUL. */
    size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    if (!body)
        return 0;
    memcpy(body, data + 1, len);

    json_roundtrip(body, len);

    api_request req = {
        .method = "POST", .path = path, .content_type = "application/json",
        .body = body, .body_len = len,
    };
    api_response res = { 0 };
    api_dispatch(fz_env_get(), &req, &res);
    fz_check_response(&res);
    api_response_done(&res);
    free(body);
    return 0;
}
