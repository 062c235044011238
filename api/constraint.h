/* SPDX-License-Identifier: MIT */
/*
 * constraint.h - private to api/: structured output (response_format of
 * type json_object or json_schema, /generate's output_type), enforced by
 * constrained decoding over the tokenizer's vocabulary (engine/constrain.h).
 *
 * An api_constraint is the compiled schema plus the tokenizer's vocabulary
 * trie (built once per tokenizer and cached for the life of the process);
 * every sequence of the request then runs its own automaton over them
 * (eng_seq_params.schema / .vocab), so the output always parses and
 * matches the schema, or ends with finish_reason "length" when max_tokens
 * or the context cut it.
 */
#ifndef TUNA_API_CONSTRAINT_H
#define TUNA_API_CONSTRAINT_H

#include "engine/constrain.h"
#include "engine/engine.h"

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct api_constraint api_constraint;

/* Compiles a validated response_format object ({"type":"json_object"} or
 * {"type":"json_schema","json_schema":{"name","schema",...}}) for
 * tokenizer t. -EINVAL (a schema it cannot enforce; err says why),
 * -ENOMEM. */
int api_constraint_new(const cJSON *response_format, const eng_tokenizer *t,
                       api_constraint **ret, char *err, size_t errlen);
/* From a JSON schema text (NULL: any JSON object). */
int api_constraint_from_schema(const char *schema, const eng_tokenizer *t,
                               api_constraint **ret, char *err,
                               size_t errlen);
void api_constraint_free(api_constraint *c);

const eng_json_schema *api_constraint_schema(const api_constraint *c);
const eng_vocab_bytes *api_constraint_vocab(const api_constraint *c);

#endif
