/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the public contract of Tuna's training and inference engine.
 *
 * The engine knows tensors, models, tokenizers, training and sampling. It
 * knows nothing of HTTP, SQL or JSON requests, so a CLI, a test or the daemon
 * can link it alone.
 *
 * Conventions
 *  - Functions return 0 on success or a negative errno (-EINVAL bad input,
 *    -ENOENT missing file, -EIO unreadable/corrupt, -ENOMEM, -ECANCELED when an
 *    abort hook fired). Outputs are ret_* parameters, last, written only on
 *    success. An optional `char *err, size_t errlen` buffer gets a one-line
 *    human message.
 *  - The engine never logs and never exits; it reports through the hooks.
 *  - Objects: _new/_free (heap), _ref/_unref (shared). Destructors accept NULL.
 *  - Thread safety: a loaded eng_model and eng_tokenizer are immutable after
 *    load and may be shared by any number of threads (refcounted). Trainers
 *    and generation sessions belong to one thread at a time.
 */
#ifndef TUNA_ENGINE_H
#define TUNA_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Model configuration                                                       */

typedef enum {
    ENG_ROPE_INTERLEAVED = 0, /* pairs (2i, 2i+1): llama2.c, Meta checkpoints */
    ENG_ROPE_HALF = 1,        /* pairs (i, i+d/2): Hugging Face "rotate_half" */
} eng_rope_style;

typedef enum {
    ENG_ROPE_SCALING_NONE = 0,
    ENG_ROPE_SCALING_LINEAR = 1,
    ENG_ROPE_SCALING_LLAMA3 = 2,
} eng_rope_scaling;

typedef struct eng_config {
    int dim;          /* hidden size */
    int hidden_dim;   /* MLP intermediate size */
    int n_layers;
    int n_heads;
    int n_kv_heads;   /* <= n_heads, divides it (grouped-query attention) */
    int head_dim;     /* usually dim / n_heads */
    int vocab_size;
    int max_seq_len;  /* context length */
    float norm_eps;
    float rope_theta;
    eng_rope_style rope_style;
    eng_rope_scaling rope_scaling;
    float rope_factor;           /* linear and llama3 scaling */
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int rope_orig_max_pos;       /* llama3 original_max_position_embeddings */
    bool tied_embeddings;        /* LM head shares the token embedding */
    bool qkv_bias;               /* Qwen2 style q/k/v biases */
    char arch[32];               /* "llama", "mistral", "qwen2" */
} eng_config;

/* ------------------------------------------------------------------------ */
/* Models                                                                    */

typedef struct eng_model eng_model;

/* Loads a llama2.c checkpoint (7 x int32 header, fp32 weights; a negative
 * vocab size means an unshared classifier). The file is memory-mapped. */
int eng_model_load_llama2c(const char *path, eng_model **ret_model,
                           char *err, size_t errlen);

/* Loads a Hugging Face folder: config.json (LlamaForCausalLM,
 * MistralForCausalLM, Qwen2ForCausalLM) and model.safetensors or the shards
 * of model.safetensors.index.json. F32/F16/BF16 weights stay memory-mapped
 * in their stored dtype; RoPE is ENG_ROPE_HALF. -ENOENT (no config.json or
 * shard), -EINVAL (unsupported architecture/option, missing or misshapen
 * tensor: err names it), -EIO (corrupt file), -ENOMEM. */
int eng_model_load_hf(const char *dir, eng_model **ret_model, char *err,
                      size_t errlen);
/* Loads a GGUF file (v2/v3; architectures llama, mistral, qwen2; tensors
 * F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, memory-mapped as stored). llama
 * and mistral use the interleaved RoPE pairing llama.cpp's converter stores,
 * qwen2 the half split. Errors as eng_model_load_hf. */
int eng_model_load_gguf(const char *path, eng_model **ret_model, char *err,
                        size_t errlen);
/* Detects the format: a directory is a Hugging Face folder, a file starting
 * with "GGUF" a GGUF file, anything else a llama2.c checkpoint. */
int eng_model_load(const char *path, eng_model **ret_model, char *err,
                   size_t errlen);

/* Builds a model with random weights (N(0, std)) for tests and benchmarks. */
int eng_model_new_random(const eng_config *cfg, uint64_t seed, float std,
                         eng_model **ret_model);

/* Moves the model's memory-mapped weights (a Hugging Face folder, GGUF or
 * llama2.c file) into memory of the process's own, backed by transparent
 * huge pages, when they take at most max_bytes. Decode streams every weight
 * once per token, and through a file mapping's 4 KiB pages (Linux gives
 * file mappings of ordinary filesystems no huge pages) it ran 13-32% slower
 * here. It costs a copy at load, and the weights no longer share the page
 * cache. Call it before the model is shared with other threads. Returns 1
 * when it moved them, 0 when nothing is mapped or they are larger than
 * max_bytes, -ENOMEM. */
int eng_model_pin(eng_model *m, size_t max_bytes);
/* The memory the system could give now without swapping (MemAvailable),
 * in bytes; SIZE_MAX when it cannot tell. */
size_t eng_mem_available(void);

eng_model *eng_model_ref(eng_model *m);
void eng_model_unref(eng_model *m);
const eng_config *eng_model_config(const eng_model *m);
int64_t eng_model_n_params(const eng_model *m);

/* ------------------------------------------------------------------------ */
/* Tokenizers                                                                */

typedef struct eng_tokenizer eng_tokenizer;

/* llama2.c tokenizer.bin: SentencePiece-style BPE with scores, byte
 * fallback tokens <0xNN>, BOS=1, EOS=2. */
int eng_tokenizer_load_llama2c(const char *path, int vocab_size,
                               eng_tokenizer **ret_tok, char *err,
                               size_t errlen);
/* Hugging Face tokenizer: a model folder (tokenizer.json, and when present
 * tokenizer_config.json and generation_config.json next to it) or a
 * tokenizer.json path. Model BPE (byte-level or SentencePiece-style with
 * byte fallback), its normalizers, pre-tokenizers, added tokens and
 * decoders; BOS/EOS, add_bos_token and chat_template from the configs.
 * -ENOENT missing file, -EINVAL unsupported or malformed tokenizer. */
int eng_tokenizer_load_hf(const char *dir_or_tokenizer_json,
                          eng_tokenizer **ret_tok, char *err, size_t errlen);
/* Tokenizer from a GGUF file's metadata (tokenizer.ggml.model llama or
 * gpt2, tokens, scores, merges, token types, special ids, the
 * tokenizer.ggml.pre regex set, tokenizer.chat_template), tokenizing as
 * llama.cpp does. */
int eng_tokenizer_load_gguf(const char *gguf_path, eng_tokenizer **ret_tok,
                            char *err, size_t errlen);
eng_tokenizer *eng_tokenizer_ref(eng_tokenizer *t);
void eng_tokenizer_unref(eng_tokenizer *t);

/* Encodes UTF-8 text. With add_bos, BOS is prepended. parse_special: text of
 * special tokens becomes one token (otherwise it is plain text). Writes at
 * most cap ids; *ret_n gets the full count (a count > cap means truncated).
 * Returns -EINVAL for invalid UTF-8 input. */
int eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len,
                         bool add_bos, bool parse_special, int32_t *ids,
                         int cap, int *ret_n);
/* Bytes of one token's text as it appears in decoded output (byte-fallback
 * tokens give one raw byte, SentencePiece's U+2581 becomes a space).
 * prev is the previous token (-1 if none): a leading space after BOS is
 * dropped, as SentencePiece does. Returns the length; *ret_bytes is borrowed. */
int eng_tokenizer_piece(const eng_tokenizer *t, int32_t prev, int32_t id,
                        const char **ret_bytes);
/* Decodes a whole id sequence into a malloc'd NUL-terminated string. */
int eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, int n,
                         char **ret_text);
int eng_tokenizer_vocab_size(const eng_tokenizer *t);
int32_t eng_tokenizer_bos(const eng_tokenizer *t);
int32_t eng_tokenizer_eos(const eng_tokenizer *t);

/* ------------------------------------------------------------------------ */
/* Data to tokens                                                            */

typedef enum {
    ENG_REC_COMPLETION = 0, /* prompt/completion or input/output */
    ENG_REC_CHAT = 1,       /* messages */
    ENG_REC_TEXT = 2,       /* text */
} eng_record_kind;

typedef struct eng_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} eng_message;

/* One training record, borrowed strings (the caller parsed the JSON). */
typedef struct eng_record {
    eng_record_kind kind;
    const char *prompt;      /* COMPLETION */
    const char *completion;  /* COMPLETION */
    const char *text;        /* TEXT */
    const eng_message *messages; /* CHAT */
    int n_messages;
} eng_record;

/* A tokenized example: ids and a per-token loss mask. mask[i] = 1 means the
 * model is trained to predict ids[i] (from ids[0..i-1]). */
typedef struct eng_example {
    int32_t *ids;
    uint8_t *mask;
    int n;
    bool truncated;
} eng_example;

/* Tokenizes a record: completion records get loss on the completion only
 * with EOS appended; text records on every token; chat records are rendered
 * with the tokenizer's own chat template (eng_example_from_chat_template)
 * or, when it has none or it fails on the record, with the default
 * template (see data.c), with loss on assistant turns only.
 * Truncates to max_len tokens (ret->truncated says so). */
int eng_example_from_record(const eng_tokenizer *t, const eng_record *rec,
                            int max_len, eng_example *ret);
void eng_example_done(eng_example *ex);

/* Renders chat messages with Tuna's default template into a malloc'd string.
 * add_generation_prompt appends the assistant header. */
int eng_chat_render_default(const eng_message *msgs, int n,
                            bool add_generation_prompt, char **ret_text);

/* ------------------------------------------------------------------------ */
/* Chat templates (chat.c, jinja*.c)                                         */

/* Model chat templates (tokenizer_config.json "chat_template", GGUF
 * "tokenizer.chat_template") are Jinja2 programs. The engine renders them
 * with its own interpreter exactly as Hugging Face transformers'
 * apply_chat_template does (jinja2 sandbox, trim_blocks, lstrip_blocks,
 * raise_exception, strftime_now, tojson with ensure_ascii=False). Templates
 * are untrusted: errors (syntax, raise_exception, an unknown filter, a
 * limit on output size, loop iterations, nesting or memory) are returned
 * as -EINVAL with "line N: message" in err, never a crash. */

typedef struct eng_chat_params {
    bool add_generation_prompt;
    const char *bos_token;     /* NULL: bos_token is undefined */
    const char *eos_token;     /* NULL: eos_token is undefined */
    int enable_thinking;       /* -1: undefined (default), 0 false, 1 true */
    /* Optional JSON array of message objects, used instead of msgs: it
     * carries fields beyond role/content (tool_calls, reasoning_content,
     * content null). */
    const char *messages_json;
    /* Optional JSON object of extra template variables (tools, documents,
     * date_string, ...); they override the ones above. tools and
     * documents are None unless given, as in transformers. */
    const char *kwargs_json;
    size_t max_output;         /* bytes; 0: 4 MiB */
} eng_chat_params;

void eng_chat_params_default(eng_chat_params *p);

/* Renders template tmpl (Jinja source) over msgs[0..n) into a malloc'd
 * string. p may be NULL (defaults: no generation prompt, no bos/eos).
 * Thread-safe (no shared state). */
int eng_chat_template_render(const char *tmpl, const eng_message *msgs, int n,
                             const eng_chat_params *p, char **ret_text,
                             char *err, size_t errlen);

typedef enum {
    ENG_CHAT_SRC_MODEL = 0,    /* the tokenizer's own chat template */
    ENG_CHAT_SRC_DEFAULT = 1,  /* Tuna's default (eng_chat_render_default) */
} eng_chat_source;

/* Renders with the tokenizer's chat template (bos/eos token texts filled
 * in from its BOS/EOS ids); when it has none, or the template fails, falls
 * back to eng_chat_render_default. *ret_source says which was used; on a
 * fallback err (if given) gets the reason, for the job's events. t may be
 * NULL (always the default). Errors: -EINVAL bad arguments or the default
 * also failing, -ENOMEM. */
int eng_chat_render(const eng_tokenizer *t, const eng_message *msgs, int n,
                    bool add_generation_prompt, char **ret_text,
                    eng_chat_source *ret_source, char *err, size_t errlen);

typedef enum {
    ENG_CHAT_UNKNOWN = 0,
    ENG_CHAT_CHATML,
    ENG_CHAT_LLAMA2,
    ENG_CHAT_LLAMA3,
    ENG_CHAT_MISTRAL,
    ENG_CHAT_GEMMA,
    ENG_CHAT_ZEPHYR,
    ENG_CHAT_PHI3,
    ENG_CHAT_QWEN3,
} eng_chat_family;

/* Names a template's family from its markers, for display (/models); NULL
 * gives ENG_CHAT_UNKNOWN. Rendering never depends on it. */
eng_chat_family eng_chat_template_family(const char *tmpl);
/* "chatml", "llama2", "llama3", "mistral", "gemma", "zephyr", "phi3",
 * "qwen3" or "unknown". */
const char *eng_chat_family_name(eng_chat_family f);

/* ------------------------------------------------------------------------ */
/* LoRA adapters                                                             */

enum {
    ENG_TARGET_Q = 1 << 0,
    ENG_TARGET_K = 1 << 1,
    ENG_TARGET_V = 1 << 2,
    ENG_TARGET_O = 1 << 3,
    ENG_TARGET_GATE = 1 << 4,
    ENG_TARGET_UP = 1 << 5,
    ENG_TARGET_DOWN = 1 << 6,
    ENG_TARGET_DEFAULT = 0xF, /* q, k, v, o */
    ENG_TARGET_ALL = 0x7F,
};

typedef struct eng_adapter eng_adapter;

/* New adapter for model m: A ~ kaiming-uniform (seeded), B = 0, so the
 * adapted model equals the base at step 0. */
int eng_adapter_new(const eng_model *m, int rank, float alpha,
                    unsigned targets, uint64_t seed, eng_adapter **ret);
/* Loads an adapter folder (adapter_config.json + adapter_model.safetensors,
 * PEFT tensor names) and checks every shape against m. */
int eng_adapter_load(const eng_model *m, const char *dir, eng_adapter **ret,
                     char *err, size_t errlen);
/* Saves an adapter folder atomically (temp files, fsync, rename).
 * base_name goes into adapter_config.json's base_model_name_or_path. */
int eng_adapter_save(const eng_adapter *a, const char *dir,
                     const char *base_name, char *err, size_t errlen);
eng_adapter *eng_adapter_ref(eng_adapter *a);
void eng_adapter_unref(eng_adapter *a);
size_t eng_adapter_bytes(const eng_adapter *a);

/* ------------------------------------------------------------------------ */
/* Hooks                                                                     */

typedef struct eng_progress {
    int step;            /* optimizer steps done */
    int total_steps;
    int epoch;           /* 1-based */
    float train_loss;    /* mean masked cross-entropy of the last step */
    float lr;
    float grad_norm;     /* before clipping */
    double tokens_per_second;
    int64_t tokens_seen;
} eng_progress;

typedef struct eng_token_info eng_token_info; /* see Generation */

typedef struct eng_hooks {
    /* Called after every optimizer step. */
    void (*progress)(void *user, const eng_progress *p);
    /* Polled at least once per step; returning true aborts (-ECANCELED). */
    bool (*abort)(void *user);
    /* Free-form diagnostic lines (the engine itself never prints). */
    void (*log)(void *user, const char *msg);
    void *user;
    /* Generation only: called once per generated token (see
     * eng_token_info), before that token's text reaches the text
     * callback. May be NULL. */
    void (*token)(void *user, const eng_token_info *info);
} eng_hooks;

/* ------------------------------------------------------------------------ */
/* Training                                                                  */

typedef enum {
    ENG_SCHED_COSINE = 0,
    ENG_SCHED_LINEAR = 1,
    ENG_SCHED_CONSTANT = 2,
} eng_schedule;

typedef struct eng_train_params {
    /* adapter */
    bool full_finetune;  /* train every weight instead of LoRA */
    int lora_rank;       /* default 8 */
    float lora_alpha;    /* default 16 */
    float lora_dropout;  /* default 0 */
    unsigned targets;    /* ENG_TARGET_*, default q,k,v,o */
    /* optimisation */
    int epochs;          /* default 3 */
    int batch_size;      /* sequences per micro-batch, default 4 */
    int grad_accum;      /* micro-batches per optimizer step, default 1 */
    int max_seq_len;     /* default 256 */
    float learning_rate; /* peak, default 1e-3 (LoRA) */
    int warmup_steps;    /* default 0 */
    eng_schedule schedule;
    float min_lr_ratio;  /* final lr / peak lr, default 0.1 */
    float weight_decay;  /* default 0 */
    float beta1, beta2, adam_eps; /* 0.9, 0.999, 1e-8 */
    float max_grad_norm; /* 0 = no clipping, default 1.0 */
    bool packing;        /* pack examples into full rows instead of padding */
    uint64_t seed;       /* data order, dropout, adapter init */
    int n_threads;       /* BLAS + engine threads for this trainer */
} eng_train_params;

void eng_train_params_default(eng_train_params *p);

typedef struct eng_trainer eng_trainer;

/* The trainer borrows m (takes a ref) and copies the examples it needs. */
int eng_trainer_new(eng_model *m, const eng_train_params *p,
                    const eng_example *train, int n_train,
                    eng_trainer **ret, char *err, size_t errlen);
void eng_trainer_free(eng_trainer *t);
int eng_trainer_total_steps(const eng_trainer *t);
int eng_trainer_step_index(const eng_trainer *t);
/* One optimizer step (grad_accum micro-batches). */
int eng_trainer_step(eng_trainer *t, const eng_hooks *h, eng_progress *ret);
/* Runs every remaining step, calling the hooks. */
int eng_trainer_run(eng_trainer *t, const eng_hooks *h);
/* Mean masked loss and next-token accuracy over examples, no grad. */
int eng_trainer_evaluate(eng_trainer *t, const eng_example *ex, int n,
                         float *ret_loss, float *ret_accuracy);
/* The current adapter (borrowed; take a ref to keep it). NULL when
 * full_finetune. */
eng_adapter *eng_trainer_adapter(eng_trainer *t);
/* The model the trainer computes with (borrowed; take a ref to keep it):
 * the base model for LoRA, the trainer's own trained copy when
 * full_finetune. */
eng_model *eng_trainer_model(eng_trainer *t);
/* Checkpoint: adapter + optimizer moments + step + RNG + data order, in one
 * safetensors file written atomically into dir; resume restores all of it so
 * training continues bit-exactly. */
int eng_trainer_save_checkpoint(const eng_trainer *t, const char *dir,
                                char *err, size_t errlen);
int eng_trainer_load_checkpoint(eng_trainer *t, const char *dir, char *err,
                                size_t errlen);

/* ------------------------------------------------------------------------ */
/* Generation                                                                */

typedef struct eng_sample_params {
    int max_tokens;      /* default 64 */
    float temperature;   /* 0 = greedy */
    float top_p;         /* 1 = off */
    int top_k;           /* 0 = off */
    uint64_t seed;
    const char *const *stop; /* stop strings, may be NULL */
    int n_stop;
    bool stop_at_eos;    /* default true */
    int n_threads;
    /* With a token hook (eng_hooks.token): how many of the most likely
     * alternatives each eng_token_info carries, 0..ENG_MAX_TOP_LOGPROBS
     * (default 0: the chosen token's logprob only). */
    int top_logprobs;
} eng_sample_params;

#define ENG_MAX_TOP_LOGPROBS 20

/* One token and its log-probability: the natural log of its probability
 * under the model's raw distribution, softmax(logits) at temperature 1,
 * before temperature, top-k and top-p reshape it for sampling. */
typedef struct eng_token_prob {
    int32_t id;
    float logprob;
} eng_token_prob;

/* What the token hook receives for every generated token that counts in
 * completion_tokens (the end-of-sequence token that ends a generation is
 * not one). Everything is borrowed for the duration of the call. */
struct eng_token_info {
    int32_t id;                 /* the sampled token */
    int32_t prev;               /* the token before it (eng_tokenizer_piece) */
    float logprob;              /* of id */
    const eng_token_prob *top;  /* the top_logprobs most likely tokens, most
                                 * likely first (ties: lower id first) */
    int n_top;
    int index;                  /* 0-based position in the completion */
};

void eng_sample_params_default(eng_sample_params *p);

typedef enum {
    ENG_FINISH_LENGTH = 0,
    ENG_FINISH_STOP = 1,   /* EOS or a stop string */
} eng_finish;

/* Streaming callback: text is a UTF-8-complete piece (never a split
 * character). Return false to stop generating (finish = STOP). */
typedef bool (*eng_token_cb)(void *user, const char *text, size_t len);

typedef struct eng_generation {
    char *text;          /* malloc'd completion text, stop string excluded */
    eng_finish finish;
    int prompt_tokens;
    int completion_tokens;
} eng_generation;

/* Generates from base m plus optional adapter a (applied unmerged). */
int eng_generate(eng_model *m, const eng_adapter *a, const eng_tokenizer *t,
                 const char *prompt, const eng_sample_params *sp,
                 eng_token_cb cb, void *user, const eng_hooks *h,
                 eng_generation *ret, char *err, size_t errlen);
/* Same, from prompt token ids (BOS included if wanted). */
int eng_generate_ids(eng_model *m, const eng_adapter *a,
                     const eng_tokenizer *t, const int32_t *ids, int n_ids,
                     const eng_sample_params *sp, eng_token_cb cb, void *user,
                     const eng_hooks *h, eng_generation *ret, char *err,
                     size_t errlen);
void eng_generation_done(eng_generation *g);

/* ------------------------------------------------------------------------ */
/* Encodes a prompt the way eng_generate does, into a malloc'd array (free
 * it): BOS first when the tokenizer adds one by default. With
 * parse_special (text rendered by a model's chat template), special-token
 * text becomes its token and no BOS is added when the text already starts
 * with the BOS token's text. -EINVAL invalid UTF-8, -ENOMEM. */
int eng_prompt_encode(const eng_tokenizer *t, const char *text, size_t len,
                      bool parse_special, int32_t **ret_ids, int *ret_n);
/* Probing, chat-template training, export (model_probe.c, data.c, export.c) */

/* What a model file says about itself, read without loading the weights
 * (config.json and the safetensors header, or GGUF metadata and tensor
 * infos), for listing many models cheaply. */
typedef struct eng_model_info {
    eng_config cfg;
    int64_t n_params;        /* from the config (same count as a load) */
    char format[8];          /* "hf", "gguf" or "llama2c" */
    char dtype[8];           /* stored dtype of the first layer's q weight:
                              * "F32", "F16", "BF16", "Q8_0", "Q4_0", ... */
    bool has_chat_template;
    eng_chat_family chat_family;
} eng_model_info;

/* Probes path (a Hugging Face folder, a GGUF file or a llama2.c
 * checkpoint). Errors as eng_model_load; nothing stays mapped. */
int eng_model_probe(const char *path, eng_model_info *ret, char *err,
                    size_t errlen);

/* The tokenizer's chat template (borrowed, lives as long as t), or NULL. */
const char *eng_tokenizer_chat_template(const eng_tokenizer *t);

/* Tokenizes a chat record rendered by the Jinja template tmpl (as
 * eng_chat_template_render, with bos/eos texts from t), the way
 * transformers' apply_chat_template(tokenize=True) encodes it: special
 * tokens parsed, BOS added only when t wants one and the text does not
 * already start with it. Loss covers each assistant turn: the text the
 * template adds between the conversation before that turn rendered with
 * the generation prompt and the conversation through that turn (content
 * and end-of-turn marker). Template errors are -EINVAL with err set. */
int eng_example_from_chat_template(const eng_tokenizer *t, const char *tmpl,
                                   const eng_record *rec, int max_len,
                                   eng_example *ret, char *err,
                                   size_t errlen);

/* Adapter export and import. Tuna's adapters are stored in the layout of
 * the base model as loaded: for a base with interleaved RoPE (a llama or
 * mistral GGUF, a llama2.c checkpoint) the q/k rows are in llama.cpp's
 * permuted order. PEFT and merged Hugging Face outputs are always in
 * Hugging Face's (rotate_half) order; GGUF adapters in llama.cpp's order
 * (q/k permuted for llama/mistral, as convert_lora_to_gguf.py does). */

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors in
 * Hugging Face order (PEFT loads them). dir must exist. */
int eng_adapter_export_peft(const eng_model *m, const eng_adapter *a,
                            const char *dir, const char *base_name,
                            char *err, size_t errlen);
/* Loads a PEFT adapter folder written for m's architecture in Hugging
 * Face order, checking every tensor's shape (err names the first bad or
 * missing tensor and both shapes: -EINVAL), into m's layout. */
int eng_adapter_import_peft(const eng_model *m, const char *dir,
                            eng_adapter **ret, char *err, size_t errlen);
/* Writes a GGUF LoRA adapter llama.cpp loads with --lora: general.type
 * "adapter", adapter.type "lora", adapter.lora.alpha, general.architecture
 * ("qwen2" or "llama"), F32 tensors blk.N.<attn_q|attn_k|attn_v|
 * attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a (ne [in, rank]) and
 * .lora_b (ne [rank, out]). Written atomically. */
int eng_adapter_export_gguf(const eng_model *m, const eng_adapter *a,
                            const char *path, const char *name, char *err,
                            size_t errlen);
/* Writes a Hugging Face folder of m with a merged in (W + scale B A; a may
 * be NULL): dir/config.json and dir/model.safetensors in F32 (dtype
 * ENG_DT_F32) or BF16/F16, q/k rows in Hugging Face order. Streams tensor
 * by tensor (memory: one tensor). dir must exist. */
int eng_model_export_hf(const eng_model *m, const eng_adapter *a,
                        int dtype, const char *dir, int32_t bos_id,
                        int32_t eos_id, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */

/* Sets the thread count of the calling thread's engine work (BLAS included).
 * Called by trainers/generators with their n_threads; exposed for benches. */
void eng_set_threads(int n);

#ifdef __cplusplus
}
#endif
#endif
