/* SPDX-License-Identifier: MIT */
/*
 * constraint.h - private to api/: structured output (response_format of
 * type json_object or json_schema, /generate's output_type), enforced by
 * constrained decoding over the tokenizer's vocabulary.
 *
 * This is the hook the serving path calls; the decoder itself is not built
 * yet. Until it is, api_constraint_new returns -ENOTSUP and the routes
 * answer 400 "unsupported": a request for structured output is never
 * served unconstrained as if it were honoured.
 */
#ifndef TUNA_API_CONSTRAINT_H
#define TUNA_API_CONSTRAINT_H

#include "engine/engine.h"

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct api_constraint api_constraint;

/* Compiles a validated response_format object ({"type":"json_object"} or
 * {"type":"json_schema","json_schema":{"name","schema",...}}) for
 * tokenizer t. -ENOTSUP (not implemented yet), -EINVAL (a schema it
 * cannot enforce; err says why), -ENOMEM. */
int api_constraint_new(const cJSON *response_format, const eng_tokenizer *t,
                       api_constraint **ret, char *err, size_t errlen);
void api_constraint_free(api_constraint *c);

#endif
