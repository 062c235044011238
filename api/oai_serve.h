/* SPDX-License-Identifier: MIT */
/*
 * oai_serve.h - private to api/: the OpenAI-compatible serving routes
 * (/v1/models, /v1/completions, /v1/chat/completions) and their answer
 * formats. Their errors get OpenAI's shape from api_oai_error_convert
 * (openai.c), as every /v1 route's do.
 */
#ifndef TUNA_API_OAI_SERVE_H
#define TUNA_API_OAI_SERVE_H

#include "api/completion.h"

void api_h_v1_models(api_call *c);
void api_h_v1_model_get(api_call *c);
void api_h_v1_completions(api_call *c);
void api_h_v1_chat(api_call *c);

/* Answer formats (oai_format.c). */
extern const api_gen_format api_fmt_chat;
extern const api_gen_format api_fmt_completion;

/* The system_fingerprint of every answer: "fp_tuna_<version>". */
const char *api_system_fingerprint(void);

#endif
