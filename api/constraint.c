/* SPDX-License-Identifier: MIT */
/*
 * constraint.c - the structured-output hook (see constraint.h). Nothing is
 * enforced yet, so nothing is accepted: every response_format other than
 * "text" is refused with -ENOTSUP until constrained decoding lands.
 */
#include "api/constraint.h"

#include <errno.h>
#include <stdio.h>

int api_constraint_new(const cJSON *response_format, const eng_tokenizer *t,
                       api_constraint **ret, char *err, size_t errlen)
{
    (void)response_format;
    (void)t;
    (void)ret;
    if (err && errlen)
        snprintf(err, errlen, "structured output (response_format "
                 "json_object/json_schema) is not supported yet");
    return -ENOTSUP;
}

void api_constraint_free(api_constraint *c)
{
    (void)c;
}
