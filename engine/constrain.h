/* SPDX-License-Identifier: MIT */
/*
 * constrain.h - constrained decoding: JSON output that always parses and
 * matches a schema (response_format json_object / json_schema, /generate's
 * output_type).
 *
 * A schema (a JSON Schema subset: objects with properties and required,
 * arrays with items, strings with enum, numbers, integers, booleans, null,
 * enum and const, nested; or none: any JSON object) is compiled once. For a
 * tokenizer, eng_vocab_bytes holds every token's bytes in a trie, built
 * once. A generation then owns an eng_constrain: before each sample,
 * eng_constrain_mask sets the logits of every token whose bytes the
 * automaton would reject to -inf; after it, eng_constrain_accept advances
 * over the chosen token; eng_constrain_done says the JSON value is
 * complete (the generation stops there).
 *
 * Object properties come out in the schema's order (optional ones may be
 * skipped); no whitespace is produced (ENG_JSON_WS_NONE) or a single space
 * before values (ENG_JSON_WS_MINIMAL). When fewer tokens remain than the
 * shortest way to finish the value needs (plus one), only tokens that bring
 * the end closer are allowed, so a max_tokens budget closes the JSON
 * properly whenever the tokenizer can spell the closing bytes.
 *
 * Thread safety: schemas and vocab tries are immutable after creation and
 * shareable; an eng_constrain belongs to one generation.
 */
#ifndef TUNA_ENGINE_CONSTRAIN_H
#define TUNA_ENGINE_CONSTRAIN_H

#include "engine/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eng_json_schema eng_json_schema;

/* Compiles schema_json (NULL or "": any JSON object, json_object mode).
 * -EINVAL with err set for a malformed or unsupported schema ($ref, oneOf,
 * patternProperties, more than 64 properties, nesting beyond 24). */
int eng_json_schema_compile(const char *schema_json, eng_json_schema **ret,
                            char *err, size_t errlen);
void eng_json_schema_free(eng_json_schema *s);

/* Lamini-style shorthand {"answer": "str", "score": "int", ...} (types
 * str/string, int/integer, float/number, bool/boolean, a nested object or
 * a one-element list [type]) to a JSON schema text with every key required
 * (malloc'd). -EINVAL with err set for anything else. */
int eng_json_shorthand_to_schema(const char *shorthand, char **ret_schema,
                                 char *err, size_t errlen);

typedef struct eng_vocab_bytes eng_vocab_bytes;

/* Every token's decoded bytes (eng_tokenizer_piece after a non-BOS token)
 * in a trie. Tokens with no bytes (BOS, EOS, control) are never allowed
 * inside JSON; EOS is allowed once the value is complete. */
int eng_vocab_bytes_new(const eng_tokenizer *t, eng_vocab_bytes **ret);
void eng_vocab_bytes_free(eng_vocab_bytes *v);

enum { ENG_JSON_WS_NONE = 0, ENG_JSON_WS_MINIMAL = 1 };

typedef struct eng_constrain eng_constrain;

/* Borrows s and v (they must outlive it). */
int eng_constrain_new(const eng_json_schema *s, const eng_vocab_bytes *v,
                      int ws, eng_constrain **ret);
void eng_constrain_free(eng_constrain *c);
/* Sets logits[i] = -inf for every token i < n_logits the automaton rejects
 * now; remaining is the number of tokens the budget still allows (this one
 * included; <= 0: no limit). Returns the number of tokens left allowed
 * (0: none, the caller ends with finish reason length). */
int eng_constrain_mask(eng_constrain *c, float *logits, int n_logits,
                       int remaining);
/* Advances over token id: 0, or -EINVAL if the automaton rejects it. */
int eng_constrain_accept(eng_constrain *c, int32_t id);
/* True once the top-level JSON value is complete. */
bool eng_constrain_done(const eng_constrain *c);
/* Feeds raw bytes (tests; accept uses it): false on the first rejected. */
bool eng_constrain_feed(eng_constrain *c, const char *bytes, size_t n);

#ifdef __cplusplus
}
#endif
#endif
