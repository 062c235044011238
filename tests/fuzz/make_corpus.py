#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make_corpus.py - writes the seed corpora of tests/fuzz/corpus/<target>/.

    tests/fuzz/make_corpus.py [CORPUS_DIR]     (default: next to this file)

Plain Python 3 (struct, json): no numpy, gguf or safetensors packages. The
output is deterministic, so re-running it leaves git clean. Each corpus has
small, real-looking inputs (the shapes the api documents, tiny models and
tokenizers in the real formats) and a few nasty ones (truncations, huge
counts, deep nesting, traversal ids, bad UTF-8). Files that the fuzzers
later found interesting may be added by hand; this script only (re)writes
the files it names.
"""
import json
import os
import random
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def jl(*rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


# ---------------------------------------------------------------------------
# router: "METHOD PATH?QUERY\nHeaders\n\nbody"

JOB = "job_0123456789abcdef01234567"
DS = "ds_0123456789abcdef01234567"
MP_BODY = ("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
           "filename=\"zog.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
           + jl({"prompt": "Zog?", "completion": " Zog is a cat."})
           + "\r\n--XyZ--\r\n")


def router():
    r = {
        "health": "GET /health\n\n",
        "models": "GET /models\nAccept: application/json\n\n",
        "datasets_list": "GET /datasets?limit=10\n\n",
        "jobs_list": "GET /jobs?status=queued&limit=5\n\n",
        "job_get": f"GET /jobs/{JOB}\n\n",
        "ds_get": f"GET /datasets/{DS}\n\n",
        "ds_delete": f"DELETE /datasets/{DS}\n\n",
        "job_cancel": f"POST /jobs/{JOB}/cancel\n\n",
        "job_events": f"GET /jobs/{JOB}/events\nLast-Event-ID: 3\n"
                      "Accept: text/event-stream\n\n",
        "upload": "POST /datasets?name=train.jsonl\nContent-Type: "
                  "application/jsonl\n\n"
                  + jl({"prompt": "Hi", "completion": " there"},
                       {"prompt": "Bye", "completion": " now"}),
        "upload_file": "POST /datasets\nContent-Type: multipart/form-data; "
                       "boundary=XyZ\nX-Body-File: 1\n\n" + MP_BODY,
        "jobs_jsonl": "POST /jobs?epochs=1&max_seq_len=64&suffix=zog&"
                      "learning_rate=0.001&target_modules=q,v\n"
                      "Content-Type: application/jsonl\n\n"
                      + jl({"text": "Once upon a time"}),
        "jobs_json": "POST /jobs\nContent-Type: application/json\n"
                     "Idempotency-Key: abc-123\n\n"
                     + json.dumps({"training_data": [{"text": "hello"}],
                                   "hyperparameters": {"epochs": 1}}),
        "generate": "POST /generate\nContent-Type: application/json\n\n"
                    '{"prompt":"Once upon a time","max_tokens":4,'
                    '"temperature":0}',
        "preflight": "OPTIONS /jobs\nOrigin: https://a.example\n\n",
        "cors_other": "GET /health\nOrigin: https://evil.example\n\n",
        "method": "PUT /health\n\n",
        "wrong_ct": "POST /generate\nContent-Type: text/plain\n\n{}",
        "too_large": "POST /datasets\nX-Too-Large: 1\n\n{}",
        "auth": "GET /jobs\nAuthorization: Bearer tuna_0000\n\n",
        "v1_models": "GET /v1/models\n\n",
        "v1_model": "GET /v1/models/stories260K\n\n",
        "usage": "GET /usage\n\n",
        "metrics": "GET /metrics\n\n",
        "keys": "GET /keys\nAuthorization: Bearer tuna_x\n\n",
        "rescan": "POST /models/rescan\n\n",
        "tokenize": "POST /tokenize\nContent-Type: application/json\n\n"
                    '{"model":"stories260K","text":"Hi there"}',
        "apply_template": "POST /apply-template\nContent-Type: application/"
                          'json\n\n{"messages":[{"role":"user","content":'
                          '"Hi"}]}',
        "v1_chat": "POST /v1/chat/completions\nContent-Type: application/"
                   'json\n\n{"model":"stories260K","max_tokens":3,'
                   '"messages":[{"role":"user","content":"Hi"}],'
                   '"stream":true}',
        "job_pause": f"POST /jobs/{JOB}/pause\n\n",
        "job_priority": f"POST /jobs/{JOB}/priority\nContent-Type: "
                        'application/json\n\n{"priority":5}',
        "job_checkpoints": f"GET /jobs/{JOB}/checkpoints\n\n",
        "job_metrics_csv": f"GET /jobs/{JOB}/metrics.csv\n\n",
        "job_report": f"GET /jobs/{JOB}/report\n\n",
        "job_adapter": f"GET /jobs/{JOB}/adapter?format=gguf\n\n",
        "ds_share": f"POST /datasets/{DS}/share\nContent-Type: application"
                    '/json\n\n{"shared":true}',
        "adapters_import": "POST /adapters?name=x&base_model=stories260K\n"
                           "Content-Type: application/octet-stream\n\n"
                           "not a tar",
        "adapter_delete": "DELETE /adapters/x\n\n",
        "oai_files": "POST /v1/files\nContent-Type: multipart/form-data; "
                     "boundary=XyZ\n\n" + MP_BODY.replace(
                         'name="file"', 'name="purpose"\r\n\r\n'
                         'fine-tune\r\n--XyZ\r\nContent-Disposition: '
                         'form-data; name="file"', 1),
        "oai_files_list": "GET /v1/files\n\n",
        "oai_file_content": f"GET /v1/files/{DS}/content\n\n",
        "oai_jobs": "GET /v1/fine_tuning/jobs?limit=2&after=x\n\n",
        "oai_job_events": f"GET /v1/fine_tuning/jobs/{JOB}/events\n\n",
        # nasty ones
        "traversal": "GET /datasets/ds_..%2F..%2Fetc%2Fpasswd\n\n",
        "traversal2": "DELETE /datasets/../../tuna.db\n\n",
        "query_junk": "GET /datasets?limit=%zz&limit=1e99&&=&name=%00&%41=%4"
                      "&limit=-1&limit=+5\n\n",
        "query_long": "GET /jobs?" + "&".join(f"k{i}=" + "v" * 40
                                             for i in range(80)) + "\n\n",
        "slashes": "GET //health/\n\n",
        "braces": "GET /jobs/{id}\n\n",
        "empty": "",
        "no_path": "GET\n\n",
        "crlf": "GET /health?x=1\r\nOrigin: https://a.example\r\n\r\n",
        "empty_upload": "POST /datasets\nX-Body-File: 1\n\n",
        "long_id": "GET /jobs/job_" + "0" * 300 + "\n\n",
    }
    for k, v in r.items():
        put("router", k, v)


# ---------------------------------------------------------------------------
# request_json: byte 0 even -> /generate, odd -> /jobs

def request_json():
    gen = {
        "simple": {"prompt": "Once upon a time", "max_tokens": 4,
                   "temperature": 0},
        "array": {"prompt": ["The cat", "A dog"], "max_tokens": 3,
                  "top_p": 0.9, "top_k": 20, "seed": 7, "stop": ["."]},
        "model": {"model": "stories260K", "prompt": "Hi", "max_tokens": 2,
                  "stop": "\n"},
        "job_model": {"model": "stories260K:zog:job_0123456789abcdef01234567",
                      "prompt": "Hi"},
        "stream": {"prompt": "x", "stream": True},
        "bad_types": {"prompt": 3, "max_tokens": "7", "temperature": None},
        "unknown": {"prompt": "x", "bogus": 1},
    }
    for k, v in gen.items():
        put("request_json", "gen_" + k, b"\0" + json.dumps(v).encode())
    jobs = {
        "inline": {"training_data": [{"prompt": "Q", "completion": " A"}],
                   "hyperparameters": {"epochs": 1, "learning_rate": 0.001,
                                       "lora_rank": 4, "max_seq_len": 64},
                   "suffix": "zog"},
        "chat": {"training_data": [{"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}]}],
            "validation_split": 0.1},
        "dataset": {"dataset_id": DS, "base_model": "stories260K"},
        "both": {"dataset_id": DS, "training_data": []},
        "hparams": {"training_data": [{"text": "t"}], "hyperparameters": {
            "lr_schedule": "cosine", "target_modules": "q,k,v,o",
            "packing": True, "warmup_steps": 2, "grad_accum": 2,
            "weight_decay": 0.01, "max_grad_norm": 1.0, "min_lr_ratio": 0.1,
            "lora_dropout": 0.05, "lora_alpha": 8, "batch_size": 2,
            "seed": 1, "full_finetune": False}},
        "bad_record": {"training_data": [{"prompt": "Q"}, 5]},
    }
    for k, v in jobs.items():
        put("request_json", "jobs_" + k, b"\1" + json.dumps(v).encode())
    more = {
        "v1chat": (2, {"model": "stories260K", "max_tokens": 4, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}], "temperature": 0,
            "logprobs": True, "top_logprobs": 2, "stream": True,
            "stop": ["\n"], "response_format": {"type": "json_object"}}),
        "v1completion": (3, {"model": "stories260K", "prompt": "Once",
                             "max_tokens": 3, "n": 1, "echo": False,
                             "logprobs": 2, "seed": 3}),
        "tokenize": (4, {"model": "stories260K", "text": "Once upon a time",
                         "add_special": True}),
        "detokenize": (5, {"model": "stories260K", "tokens": [1, 403, 407,
                                                             -1, 99999]}),
        "template": (6, {"model": "stories260K", "messages": [
            {"role": "user", "content": "Hi"}],
            "add_generation_prompt": True}),
        "oai_job": (7, {"model": "stories260K", "training_file": DS,
                        "hyperparameters": {"n_epochs": 1},
                        "suffix": "zog"}),
    }
    for k, (b, v) in more.items():
        put("request_json", "route_" + k, bytes([b]) + json.dumps(v).encode())
    nasty = {
        "deep": b"\0" + b"[" * 2000 + b"]" * 2000,
        "deep_obj": b"\1" + b'{"a":' * 500 + b"1" + b"}" * 500,
        "bigexp": b'\0{"prompt":"x","max_tokens":1e999,"temperature":-0}',
        "bad_utf8": b'\0{"prompt":"\xc3\x28\xed\xa0\x80"}',
        "nul": b'\1{"suffix":"a\\u0000b"}',
        "surrogate": b'\0{"prompt":"\\ud83d\\ude00 \\udc00"}',
        "trailing": b'\0{"prompt":"x"} {}',
        "dupes": b'\1{"suffix":"a","suffix":"b","training_data":[{"text":"'
                 b'x"}]}',
        "empty": b"\0",
        "not_object": b"\1[1,2,3]",
    }
    for k, v in nasty.items():
        put("request_json", "nasty_" + k, v)


# ---------------------------------------------------------------------------
# dataset_jsonl

def dataset_jsonl():
    d = {
        "completion": jl({"prompt": "What is Zog?", "completion": " A cat."},
                         {"prompt": "Who is Tom?", "completion": " A dog.",
                          "extra": 1}),
        "input_output": jl({"input": "2+2", "output": "4"}),
        "chat": jl({"messages": [{"role": "system", "content": "Be kind."},
                                 {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello!"}]},
                   {"messages": [{"role": "user", "content": "日本語?"},
                                 {"role": "assistant", "content": "はい 🙂"}]}),
        "text": jl({"text": "Once upon a time there was a cat."}),
        "bom_crlf": "\ufeff" + jl({"text": "a"}).replace("\n", "\r\n")
                    + "\r\n\r\n" + json.dumps({"text": "b"}),
        "blank_lines": "\n\n" + jl({"text": "a"}) + "   \n\t\n"
                       + jl({"text": "b"}),
        "mixed": jl({"text": "a"}, {"prompt": "b", "completion": "c"}),
        "bad_json": '{"text": "a"}\n{"text": \n',
        "bad_role": jl({"messages": [{"role": "wizard", "content": "x"}]}),
        "not_object": "[1,2]\n",
        "empty": "",
        "only_blank": "\n \n",
        "bad_utf8": b'{"text": "\xff\xfe"}\n',
        "nul": b'{"text": "a\x00b"}\n',
        "long_line": jl({"text": "word " * 3000}),
        "many_rows": jl(*({"text": f"row {i}"} for i in range(300))),
        "deep": "[" * 3000 + "]" * 3000 + "\n",
        "empty_strings": jl({"prompt": "", "completion": ""}),
        "messages_empty": jl({"messages": []}),
        "types": jl({"prompt": 1, "completion": None}),
    }
    for k, v in d.items():
        put("dataset_jsonl", k, v)


# ---------------------------------------------------------------------------
# multipart: first line is the Content-Type value

def multipart():
    ct = "multipart/form-data; boundary=XyZ"
    m = {
        "upload": ct + "\n" + MP_BODY,
        "two_parts": ct + "\n--XyZ\r\nContent-Disposition: form-data; "
                     "name=\"name\"\r\n\r\nzog\r\n" + MP_BODY,
        "quoted": 'multipart/form-data; boundary="----WebKitFormBoundary7MA4"'
                  "\n------WebKitFormBoundary7MA4\r\nContent-Disposition: "
                  "form-data; name=\"file\"; filename=\"a b.jsonl\"\r\n\r\n"
                  '{"text":"x"}\n\r\n------WebKitFormBoundary7MA4--\r\n',
        "preamble": ct + "\nthis is a preamble\r\n" + MP_BODY + "epilogue",
        "no_file": ct + "\n--XyZ\r\nContent-Disposition: form-data; "
                   "name=\"other\"\r\n\r\nx\r\n--XyZ--\r\n",
        "no_end": ct + "\n--XyZ\r\nContent-Disposition: form-data; "
                  "name=\"file\"\r\n\r\nunterminated",
        "no_boundary": "multipart/form-data\n" + MP_BODY,
        "long_boundary": "multipart/form-data; boundary=" + "b" * 200 + "\n",
        "lf_only": ct + "\n--XyZ\nContent-Disposition: form-data; "
                   "name=\"file\"\n\nx\n--XyZ--\n",
        "whitespace": ct + "\n--XyZ  \t\r\nContent-Disposition: form-data; "
                      "name=file; filename=f\r\n\r\nx\r\n--XyZ--",
        "big_headers": ct + "\n--XyZ\r\n" + "X-Pad: " + "p" * 20000
                       + "\r\n\r\nx\r\n--XyZ--\r\n",
        "big_part": ct + "\n--XyZ\r\nContent-Disposition: form-data; "
                    "name=\"file\"\r\n\r\n" + "0123456789abcde\n" * 10000
                    + "\r\n--XyZ--\r\n",
        "empty": "",
    }
    for k, v in m.items():
        put("multipart", k, v)


# ---------------------------------------------------------------------------
# safetensors

def st_file(tensors, meta=None, pad=True, fix_len=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape,
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if fix_len is None else fix_len
    return struct.pack("<Q", n) + h + b"".join(blobs)


def f32(vals):
    return struct.pack(f"<{len(vals)}f", *vals)


def safetensors():
    rnd = random.Random(1)
    a = f32([rnd.uniform(-1, 1) for _ in range(16)])
    lora = [("base_model.model.layers.0.self_attn.q_proj.lora_A.weight",
             "F32", [2, 8], a[:64]),
            ("base_model.model.layers.0.self_attn.q_proj.lora_B.weight",
             "F32", [8, 2], a[:64])]
    s = {
        "adapter": st_file(lora, {"format": "pt", "tuna.rank": "2"}),
        "bf16": st_file([("w", "BF16", [2, 3], bytes(range(12)))]),
        "f16": st_file([("w", "F16", [4], b"\x00\x3c" * 4)]),
        "scalar": st_file([("s", "F32", [], f32([1.5]))]),
        "empty_tensor": st_file([("e", "F32", [0, 4], b"")]),
        "other_dtypes": st_file([("i", "I64", [2], b"\0" * 16),
                                 ("b", "BOOL", [3], b"\1\0\1"),
                                 ("u", "U8", [1], b"\7")]),
        "no_meta": st_file(lora[:1]),
        "unicode": st_file([("名前\"\\\n", "F32", [1], f32([0]))],
                           {"k\"ey": "v\u0001al", "ü": "ß"}),
        # nasty
        "torn": st_file(lora)[:-5],
        "header_too_long": st_file(lora, fix_len=1 << 40),
        "header_short": st_file(lora, fix_len=4),
        "overlap": struct.pack("<Q", 80) + json.dumps(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
            separators=(",", ":")).encode().ljust(80) + b"\0" * 12,
        "shape_overflow": struct.pack("<Q", 96) + json.dumps(
            {"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16],
                   "data_offsets": [0, 0]}},
            separators=(",", ":")).encode().ljust(96),
        "neg_shape": st_file([("a", "F32", [-1, -4], f32([1] * 4))]),
        "bad_dtype": st_file([("a", "Q4", [4], b"\0" * 4)]),
        "not_json": struct.pack("<Q", 8) + b"{{{{{{{{",
        "tiny": b"\x02\0\0\0\0\0\0\0{}",
        "empty": b"",
    }
    for k, v in s.items():
        put("safetensors", k, v)


# ---------------------------------------------------------------------------
# GGUF

GT = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6,
      "bool": 7, "str": 8, "arr": 9, "u64": 10, "i64": 11, "f64": 12}


def gs(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gkv(key, typ, val):
    out = gs(key) + struct.pack("<I", GT[typ])
    if typ == "str":
        return out + gs(val)
    if typ == "arr":
        et, items = val
        out += struct.pack("<IQ", GT[et], len(items))
        if et == "str":
            return out + b"".join(gs(v) for v in items)
        fmt = {"f32": "f", "i32": "i", "u8": "B", "u32": "I", "i64": "q",
               "f64": "d", "bool": "B"}[et]
        return out + b"".join(struct.pack("<" + fmt, v) for v in items)
    fmt = {"u8": "B", "i8": "b", "u16": "H", "i16": "h", "u32": "I",
           "i32": "i", "f32": "f", "bool": "B", "u64": "Q", "i64": "q",
           "f64": "d"}[typ]
    return out + struct.pack("<" + fmt, val)


def gguf(kvs, tensors=(), version=3, align=32, n_kv=None, n_t=None):
    head = b"GGUF" + struct.pack("<IQQ", version,
                                 len(tensors) if n_t is None else n_t,
                                 len(kvs) if n_kv is None else n_kv)
    head += b"".join(gkv(*kv) for kv in kvs)
    infos, off = b"", 0
    for name, shape, gtype, raw in tensors:
        ne = list(reversed(shape))
        infos += gs(name) + struct.pack("<I", len(ne))
        infos += b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", gtype, off)
        off += len(raw)
        off += (align - off % align) % align
    body = head + infos
    body += b"\0" * ((align - len(body) % align) % align)
    for _, _, _, raw in tensors:
        body += raw + b"\0" * ((align - len(raw) % align) % align)
    return body


def spm_vocab():
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    toks += ["\u2581", "\u2581a", "\u2581the", "\u2581cat", "at", "on",
             "\u2581Once", "\u2581upon", "\u2581time", "e", "t", "a"]
    scores = [0.0] * 259 + [-float(i) for i in range(len(toks) - 259)]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(toks) - 259)
    return toks, scores, types


def byte_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) +
          list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def gpt2_vocab():
    bu = byte_unicode()
    toks = [bu[b] for b in range(256)]
    merges = ["Ġ t", "Ġ a", "h e", "Ġt he", "a t", "Ġ c", "Ġc at"]
    toks += ["Ġt", "Ġa", "he", "Ġthe", "at", "Ġc", "Ġcat", "<|endoftext|>"]
    types = [1] * (len(toks) - 1) + [3]
    return toks, merges, types


def tiny_llama_tensors(vocab, dim=16, hidden=32, layers=1, seed=3):
    rnd = random.Random(seed)

    def w(*shape):
        n = 1
        for s in shape:
            n *= s
        return (list(shape), 0, f32([rnd.gauss(0, 0.02) for _ in range(n)]))
    t = [("token_embd.weight",) + w(vocab, dim),
         ("output_norm.weight", [dim], 0, f32([1.0] * dim))]
    kvd = dim // 2  # 2 heads, 1 kv head of size 8
    for i in range(layers):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", [dim], 0, f32([1.0] * dim)),
              (p + "ffn_norm.weight", [dim], 0, f32([1.0] * dim)),
              (p + "attn_q.weight",) + w(dim, dim),
              (p + "attn_k.weight",) + w(kvd, dim),
              (p + "attn_v.weight",) + w(kvd, dim),
              (p + "attn_output.weight",) + w(dim, dim),
              (p + "ffn_gate.weight",) + w(hidden, dim),
              (p + "ffn_up.weight",) + w(hidden, dim),
              (p + "ffn_down.weight",) + w(dim, hidden)]
    return t


def llama_kvs(vocab, arch="llama", dim=16, hidden=32, layers=1):
    return [("general.architecture", "str", arch),
            ("general.name", "str", "fuzz-tiny"),
            (f"{arch}.context_length", "u32", 64),
            (f"{arch}.embedding_length", "u32", dim),
            (f"{arch}.block_count", "u32", layers),
            (f"{arch}.feed_forward_length", "u32", hidden),
            (f"{arch}.attention.head_count", "u32", 2),
            (f"{arch}.attention.head_count_kv", "u32", 1),
            (f"{arch}.attention.layer_norm_rms_epsilon", "f32", 1e-5),
            (f"{arch}.rope.freq_base", "f32", 10000.0),
            (f"{arch}.rope.dimension_count", "u32", dim // 2),
            (f"{arch}.vocab_size", "u32", vocab)]


def gguf_corpus():
    toks, scores, types = spm_vocab()
    spm = [("tokenizer.ggml.model", "str", "llama"),
           ("tokenizer.ggml.tokens", "arr", ("str", toks)),
           ("tokenizer.ggml.scores", "arr", ("f32", scores)),
           ("tokenizer.ggml.token_type", "arr", ("i32", types)),
           ("tokenizer.ggml.bos_token_id", "u32", 1),
           ("tokenizer.ggml.eos_token_id", "u32", 2),
           ("tokenizer.ggml.unknown_token_id", "u32", 0),
           ("tokenizer.ggml.add_bos_token", "bool", True),
           ("tokenizer.chat_template", "str",
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
            "{% endfor %}")]
    gtoks, merges, gtypes = gpt2_vocab()
    bpe = [("tokenizer.ggml.model", "str", "gpt2"),
           ("tokenizer.ggml.pre", "str", "gpt-2"),
           ("tokenizer.ggml.tokens", "arr", ("str", gtoks)),
           ("tokenizer.ggml.merges", "arr", ("str", merges)),
           ("tokenizer.ggml.token_type", "arr", ("i32", gtypes)),
           ("tokenizer.ggml.bos_token_id", "u32", len(gtoks) - 1),
           ("tokenizer.ggml.eos_token_id", "u32", len(gtoks) - 1)]
    model = tiny_llama_tensors(len(toks))
    g = {
        "llama_spm_model": gguf(llama_kvs(len(toks)) + spm, model),
        "llama_spm_v2": gguf(llama_kvs(len(toks)) + spm, model, version=2),
        "gpt2_tokenizer": gguf([("general.architecture", "str", "gpt2")]
                               + bpe),
        "qwen2_model": gguf(llama_kvs(len(gtoks), arch="qwen2") + bpe,
                            tiny_llama_tensors(len(gtoks), seed=4)),
        "all_types": gguf([("u8", "u8", 1), ("i8", "i8", -1),
                           ("u16", "u16", 2), ("i16", "i16", -2),
                           ("u32", "u32", 3), ("i32", "i32", -3),
                           ("f32", "f32", 0.5), ("bool", "bool", 1),
                           ("str", "str", "s"), ("u64", "u64", 2**63),
                           ("i64", "i64", -2**62), ("f64", "f64", 1e300),
                           ("general.alignment", "u32", 64),
                           ("af", "arr", ("f64", [1.0, -2.0])),
                           ("ab", "arr", ("bool", [0, 1, 2]))], align=64),
        # nasty
        "truncated": gguf(llama_kvs(len(toks)) + spm, model)[:700],
        "huge_n_kv": gguf(spm[:1], n_kv=2**62),
        "huge_n_tensors": gguf(llama_kvs(len(toks)) + spm, n_t=2**40),
        "bad_alignment": gguf([("general.alignment", "u32", 3)]),
        "version1": gguf(spm[:1], version=1),
        "nested": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gs("n")
        + struct.pack("<IIQ", GT["arr"], GT["arr"], 2)
        + struct.pack("<IQ", GT["u8"], 3) + b"abc"
        + struct.pack("<IQ", GT["str"], 1) + gs("x"),
        "str_count_lie": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gs("k")
        + struct.pack("<IIQ", GT["arr"], GT["str"], 2**60) + gs("a"),
        "bad_type": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gs("k")
        + struct.pack("<I", 77) + b"\0" * 8,
        "tok_ids_out_of_range": gguf(bpe[:-2] + [
            ("tokenizer.ggml.bos_token_id", "u32", 99999),
            ("tokenizer.ggml.eos_token_id", "i32", -1)]),
        "tensor_out_of_file": gguf(llama_kvs(len(toks)) + spm,
                                   model)[:-1000],
        "magic_only": b"GGUF",
    }
    for k, v in g.items():
        put("gguf", k, v)


# ---------------------------------------------------------------------------
# tokenizer.json

def hf_bytelevel():
    gtoks, merges, _ = gpt2_vocab()
    return {
        "version": "1.0",
        "added_tokens": [{"id": len(gtoks) - 1, "content": "<|endoftext|>",
                          "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False,
                          "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                          "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                    "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(gtoks)},
                  "merges": merges},
    }


def hf_spm():
    toks, _, _ = spm_vocab()
    merges = ["\u2581 a", "\u2581 t", "a t", "o n", "\u2581t he", "\u2581c at"]
    toks = toks + ["\u2581t", "\u2581c", "\u2581the", "\u2581cat"]
    toks = list(dict.fromkeys(toks))
    return {
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "<unk>", "special": True, "normalized": False,
             "lstrip": False, "rstrip": False, "single_word": False},
            {"id": 1, "content": "<s>", "special": True, "normalized": False,
             "lstrip": False, "rstrip": False, "single_word": False},
            {"id": 2, "content": "</s>", "special": True, "normalized": False,
             "lstrip": False, "rstrip": False, "single_word": False}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "},
             "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>",
                                                        "type_id": 0}},
                                      {"Sequence": {"id": "A",
                                                    "type_id": 0}}]},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"},
             "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True,
                  "vocab": {t: i for i, t in enumerate(toks)},
                  "merges": merges},
    }


def tokenizer_json():
    bl, sp = hf_bytelevel(), hf_spm()
    put("tokenizer_json", "bytelevel", json.dumps(bl, ensure_ascii=False))
    put("tokenizer_json", "spm", json.dumps(sp, ensure_ascii=False, indent=1))
    split = json.loads(json.dumps(bl))
    split["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
                                      "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                      "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                                      "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)"
                                      "|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False,
         "trim_offsets": False, "use_regex": False}]}
    split["normalizer"] = {"type": "NFC"}
    split["model"]["merges"] = [m.split(" ") for m in bl["model"]["merges"]]
    put("tokenizer_json", "split_regex_nfc", json.dumps(split))
    nasty = {
        "empty_vocab": json.dumps({"model": {"type": "BPE", "vocab": {},
                                             "merges": []}}),
        "wordpiece": json.dumps({"model": {"type": "WordPiece",
                                           "vocab": {"a": 0}}}),
        "bad_merge": json.dumps({"model": {"type": "BPE",
                                           "vocab": {"a": 0, "b": 1},
                                           "merges": ["a", "a b c", "x y"]}}),
        "dup_ids": json.dumps({"model": {"type": "BPE",
                                         "vocab": {"a": 5, "b": 5, "c": -1},
                                         "merges": []},
                               "added_tokens": [{"id": 99999999,
                                                 "content": "", "special":
                                                 True}]}),
        "bad_regex": json.dumps({**bl, "pre_tokenizer": {
            "type": "Split", "pattern": {"Regex": "(((("},
            "behavior": "Removed"}}),
        "not_json": "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,",
        "array": "[]",
        "empty": "",
    }
    for k, v in nasty.items():
        put("tokenizer_json", k, v)


# ---------------------------------------------------------------------------
# tokenizer_encode: byte 0 = tokenizer (bits 0-1) | bos (4) | special (8)

def tokenizer_encode():
    texts = {
        "hello": "Hello world",
        "story": "Once upon a time, there was a little cat named Tom. "
                 "He liked to play.",
        "unicode": "日本語 émoji 🙂 naïve café Ελληνικά",
        "specials": "<s>[INST] hi [/INST]</s><|endoftext|><unk>",
        "spaces": "  \t\n\n  x   y\r\n",
        "digits": "1234567890 3.14159 -42",
        "code": "def f(x):\n    return x ** 2  # square\n",
        "contractions": "don't you'll we've I'm",
    }
    i = 0
    for k, v in texts.items():
        for tok in range(4):
            flags = tok | (4 if i % 2 else 0) | (8 if i % 3 == 0 else 0)
            put("tokenizer_encode", f"{k}_{tok}", bytes([flags]) + v.encode())
            i += 1
    put("tokenizer_encode", "bad_utf8", b"\x00a\xc3\x28\xf0\x90\x80")
    put("tokenizer_encode", "surrogate", b"\x01\xed\xa0\x80")
    put("tokenizer_encode", "overlong", b"\x02\xc0\xaf\xe0\x80\xaf")
    put("tokenizer_encode", "long_word", b"\x03" + b"a" * 5000)
    put("tokenizer_encode", "nul", b"\x00a\x00b")
    put("tokenizer_encode", "empty", b"\x05")


# ---------------------------------------------------------------------------
# chat_template: byte 0 flags | template [\0 messages_json [\0 kwargs_json]]

CT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "data", "chat_templates")


def chat_template():
    tdir = os.path.join(CT_DATA, "templates")
    if not os.path.isdir(tdir):
        return

    def rd(*p):
        with open(os.path.join(CT_DATA, *p), "rb") as f:
            return f.read()
    pairs = {"chatml": ("unicode.json", None),
             "qwen3": ("qwen3_tools.json", "tools.json"),
             "llama3.1": ("llama31_tools.json", "builtin_tools.json"),
             "command-r": ("sua.json", "date.json"),
             "gemma3": ("multimodal.json", None)}
    for i, name in enumerate(sorted(os.listdir(tdir))):
        base = name[:-len(".jinja")]
        flags = bytes([(i & 1) | 2 | ((i % 3) << 2)])
        t = rd("templates", name)
        put("chat_template", base, flags + t)
        if base in pairs:
            m, k = pairs[base]
            extra = b"\0" + rd("messages", m)
            if k:
                extra += b"\0" + rd("kwargs", k)
            put("chat_template", base + "_json", flags + t + extra)
    nasty = {
        "loop_bomb": "{% for i in range(100000) %}{% for j in range(100000)"
                     " %}x{% endfor %}{% endfor %}",
        "string_bomb": "{{ 'x' * 1000000000 }}",
        "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "deep_parens": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
        "deep_blocks": "{% if true %}" * 400 + "x" + "{% endif %}" * 400,
        "namespace": "{% set ns = namespace(n=0) %}{% for m in messages %}"
                     "{% set ns.n = ns.n + m.content|length %}{% endfor %}"
                     "{{ ns.n }}{{ messages|tojson(indent=2) }}",
        "filters": "{{ messages[0].content|upper|replace('A','b')|trim|"
                   "truncate(5) }}{{ (messages|map(attribute='role')|list)"
                   "|join(',') }}{{ messages|selectattr('role','equalto',"
                   "'user')|list|length }}{{ 'a,b'.split(',')[-1] }}"
                   "{{ '%d'|format(3) }}{{ 1/0 }}",
        "slices": "{{ messages[::-1][0]['content'][1:-1] }}{{ 'abc'[10:] }}"
                  "{{ [1,2,3][-100] }}{{ 9223372036854775807 + 1 }}"
                  "{{ -9223372036854775808 // -1 }}{{ 2 ** 1000 }}",
        "raise": "{{ raise_exception('nope ' ~ messages|length) }}",
        "unterminated": "{% for m in messages %}{{ m.content",
        "bad_utf8": b"{{ '\xff\xfe' }}\xc3",
        "strftime": "{{ strftime_now('%Y-%m-%d %H:%M:%S %%n') }}",
        "loopvars": "{% for m in messages %}{{ loop.index }}{{ loop.revindex"
                    "0 }}{{ loop.cycle('a','b') }}{% if loop.last %}{% break"
                    " %}{% endif %}{% continue %}{% endfor %}",
        "dict_ops": "{% set d = {'a': 1, 'b': [1, {'c': none}]} %}{{ d|tojson"
                    " }}{{ d.items()|list }}{{ d.get('z', 'dflt') }}"
                    "{{ d|dictsort }}{{ d.keys()|sort|reverse|first }}",
    }
    for k, v in nasty.items():
        put("chat_template", "nasty_" + k,
            b"\x03" + (v if isinstance(v, bytes) else v.encode()))


def main():
    router()
    request_json()
    dataset_jsonl()
    multipart()
    safetensors()
    gguf_corpus()
    tokenizer_json()
    tokenizer_encode()
    chat_template()


if __name__ == "__main__":
    main()
