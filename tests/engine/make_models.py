#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make_models.py - small random-weight base models in every format Tuna
loads, with reference logits from a PyTorch forward pass written here.

Run with Debian's /usr/bin/python3 (python3-torch, python3-numpy); no
transformers, safetensors or gguf packages are needed: both file formats are
written by the small writers below.

    make_models.py OUTDIR            test set + manifest.txt (a few MB)
    make_models.py --tokenizer TOKDIR NAME OUTDIR
                                     a small model with the real tokenizer in
                                     TOKDIR (tokenizer.json, tokenizer_config
                                     .json, tokenizer.model if SentencePiece):
                                     OUTDIR/NAME/hf-bf16 (tokenizer files
                                     copied) and OUTDIR/NAME/NAME-bf16.gguf
                                     (tokenizer.ggml.* metadata)
    make_models.py --big DIM LAYERS OUTDIR
                                     one larger llama in HF f32/bf16 and GGUF
                                     f16/q8_0/q4_0 for RAM measurements

The test set (see MODELS below) covers Llama with a tied and an untied head
(the untied one with llama3 RoPE scaling), Qwen2 with q/k/v biases, Mistral
with an explicit head_dim in a sharded folder, and a wider Llama whose GGUF
uses the k-quants. Each is written as:

  hf-f32/, hf-bf16/, hf-f16/   Hugging Face folders (config.json +
                               model.safetensors, or shards + index json)
  *.gguf                       GGUF v3 (one v2) in F32, F16, BF16, Q8_0,
                               Q4_0, or Q4_K + Q6_K

GGUF files follow llama.cpp's convert_hf_to_gguf.py: tensor names
blk.N.attn_q.weight etc., norms kept F32, and for the llama architecture the
q/k rows permuted (LlamaModel.permute) into the interleaved RoPE pairing that
llama.cpp's "llama" kernel uses; qwen2 is stored unpermuted (NeoX RoPE). A
llama3-scaled model gets the rope_freqs.weight tensor of per-frequency
factors, as the converter writes it.

Reference logits are computed in float64 from exactly the weights a file
holds (bf16/f16-rounded or dequantized), for every position of TOKENS, and
written as little-endian float32 [n_tokens, vocab] to refs/<ref>.f32.
manifest.txt lists one model per line:

    model <relpath> <ref> <tolerance>
    pair <relpath-a> <relpath-b> <tolerance>   (same weights, two formats)
    rpair <relpath-a> <relpath-b> <tolerance>  (max |diff| / max |logit|)
    tokens <id> <id> ...
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

TOKENS = [1, 17, 42, 5, 99, 3, 250, 7, 64, 128, 2, 31]

MODELS = {
    "llama-tied": dict(arch="LlamaForCausalLM", dim=64, hidden=192, layers=2,
                       heads=4, kv_heads=2, vocab=320, tied=True,
                       theta=10000.0, eps=1e-5, max_pos=128),
    "llama-untied": dict(arch="LlamaForCausalLM", dim=64, hidden=160,
                         layers=2, heads=4, kv_heads=4, vocab=288,
                         tied=False, theta=10000.0, eps=1e-5, max_pos=256,
                         rope_scaling=dict(rope_type="llama3", factor=8.0,
                                           low_freq_factor=1.0,
                                           high_freq_factor=4.0,
                                           original_max_position_embeddings=32)),
    "qwen2": dict(arch="Qwen2ForCausalLM", dim=64, hidden=128, layers=2,
                  heads=4, kv_heads=2, vocab=320, tied=True, bias=True,
                  theta=1000000.0, eps=1e-6, max_pos=512),
    "mistral": dict(arch="MistralForCausalLM", dim=64, hidden=192, layers=3,
                    heads=4, kv_heads=1, head_dim=32, vocab=256, tied=False,
                    theta=10000.0, eps=1e-5, max_pos=128,
                    rope_scaling=dict(type="linear", factor=2.0)),
    "llama-k": dict(arch="LlamaForCausalLM", dim=256, hidden=512, layers=1,
                    heads=4, kv_heads=2, vocab=256, tied=False,
                    theta=10000.0, eps=1e-5, max_pos=64),
}

# ---------------------------------------------------------------------------
# Random weights (HF names, float32 numpy arrays [out, in])


def head_dim(c):
    return c.get("head_dim", c["dim"] // c["heads"])


def random_weights(c, seed):
    rng = np.random.default_rng(seed)
    d, h, hd = c["dim"], c["hidden"], head_dim(c)
    q, kv = c["heads"] * hd, c["kv_heads"] * hd

    def mat(rows, cols, std=None):
        std = std if std is not None else 1.0 / math.sqrt(cols)
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    W = {"model.embed_tokens.weight": mat(c["vocab"], d, 1.0)}
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = norm(d)
        W[p + "self_attn.q_proj.weight"] = mat(q, d, 2.0 / math.sqrt(d))
        W[p + "self_attn.k_proj.weight"] = mat(kv, d, 2.0 / math.sqrt(d))
        W[p + "self_attn.v_proj.weight"] = mat(kv, d)
        if c.get("bias"):
            for n, rows in (("q", q), ("k", kv), ("v", kv)):
                W[p + f"self_attn.{n}_proj.bias"] = \
                    (0.5 * rng.standard_normal(rows)).astype(np.float32)
        W[p + "self_attn.o_proj.weight"] = mat(d, q)
        W[p + "post_attention_layernorm.weight"] = norm(d)
        W[p + "mlp.gate_proj.weight"] = mat(h, d)
        W[p + "mlp.up_proj.weight"] = mat(h, d)
        W[p + "mlp.down_proj.weight"] = mat(d, h)
    W["model.norm.weight"] = norm(d)
    if not c["tied"]:
        W["lm_head.weight"] = mat(c["vocab"], d, 2.0 / math.sqrt(d))
    return W


def hf_config(c):
    cfg = {
        "architectures": [c["arch"]],
        "model_type": {"LlamaForCausalLM": "llama",
                       "MistralForCausalLM": "mistral",
                       "Qwen2ForCausalLM": "qwen2"}[c["arch"]],
        "hidden_size": c["dim"],
        "intermediate_size": c["hidden"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"],
        "vocab_size": c["vocab"],
        "max_position_embeddings": c["max_pos"],
        "rms_norm_eps": c["eps"],
        "rope_theta": c["theta"],
        "tie_word_embeddings": c["tied"],
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if "head_dim" in c:
        cfg["head_dim"] = c["head_dim"]
    if "rope_scaling" in c:
        cfg["rope_scaling"] = c["rope_scaling"]
    if c["arch"] == "MistralForCausalLM":
        cfg["sliding_window"] = None
    return cfg


# ---------------------------------------------------------------------------
# Reference forward pass (Hugging Face LlamaForCausalLM / Qwen2ForCausalLM)


def inv_freq(c):
    hd = head_dim(c)
    f = 1.0 / (c["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = c.get("rope_scaling")
    if not rs:
        return f
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return f / rs["factor"]
    assert kind == "llama3"
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    wavelen = 2 * math.pi / f
    scaled = torch.where(wavelen > old / lo, f / factor, f)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return torch.where(medium, smoothed, scaled)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(c, W, ids):
    """Logits [T, vocab] in float64 for token ids, as transformers computes
    them (eager attention, no cache)."""
    t = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in W.items()}
    T, H, KV, hd = len(ids), c["heads"], c["kv_heads"], head_dim(c)
    x = t["model.embed_tokens.weight"][torch.tensor(ids)]
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq(c))
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        h = rmsnorm(x, t[p + "input_layernorm.weight"], c["eps"])
        proj = {}
        for n in "qkv":
            y = h @ t[p + f"self_attn.{n}_proj.weight"].T
            if p + f"self_attn.{n}_proj.bias" in t:
                y = y + t[p + f"self_attn.{n}_proj.bias"]
            proj[n] = y.view(T, -1, hd).transpose(0, 1)  # (heads, T, hd)
        q = proj["q"] * cos + rotate_half(proj["q"]) * sin
        k = proj["k"] * cos + rotate_half(proj["k"]) * sin
        k = k.repeat_interleave(H // KV, dim=0)
        v = proj["v"].repeat_interleave(H // KV, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, -1)
        o = (att @ v).transpose(0, 1).reshape(T, H * hd)
        x = x + o @ t[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, t[p + "post_attention_layernorm.weight"], c["eps"])
        g = torch.nn.functional.silu(h @ t[p + "mlp.gate_proj.weight"].T)
        u = h @ t[p + "mlp.up_proj.weight"].T
        x = x + (g * u) @ t[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, t["model.norm.weight"], c["eps"])
    head = t.get("lm_head.weight", t["model.embed_tokens.weight"])
    return x @ head.T


# ---------------------------------------------------------------------------
# Stored dtypes: rounding as a file holds them


def to_bf16_bits(a):
    b = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return b.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def rounded(W, dtype):
    if dtype == "f32":
        return W
    if dtype == "f16":
        return {k: v.astype(np.float16).astype(np.float32) for k, v in W.items()}
    if dtype == "bf16":
        return {k: bf16_bits_to_f32(to_bf16_bits(v)) for k, v in W.items()}
    raise ValueError(dtype)


# ---------------------------------------------------------------------------
# safetensors writer


def st_bytes(a, dtype):
    if dtype == "f32":
        return "F32", np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dtype == "f16":
        return "F16", np.ascontiguousarray(a, dtype="<f2").tobytes()
    return "BF16", to_bf16_bits(a).astype("<u2").tobytes()


def write_safetensors(path, W, dtype):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in W.items():
        st, raw = st_bytes(a, dtype)
        header[name] = {"dtype": st, "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


def write_hf(folder, c, W, dtype, shards=1):
    os.makedirs(folder, exist_ok=True)
    cfg = hf_config(c)
    cfg["torch_dtype"] = {"f32": "float32", "f16": "float16",
                          "bf16": "bfloat16"}[dtype]
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), W, dtype)
        return
    names = list(W)
    per = -(-len(names) // shards)
    wmap, total = {}, 0
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: W[n] for n in names[s * per:(s + 1) * per]}
        total += write_safetensors(os.path.join(folder, fn), part, dtype)
        wmap.update({n: fn for n in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f,
                  indent=2)


# ---------------------------------------------------------------------------
# GGML block quantizers (numpy; layouts of ggml-common.h) and dequantizers.
# Each quantizer returns (raw bytes, dequantized float32 of the same shape).

GGML = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8, "q4_k": 12, "q6_k": 14,
        "bf16": 30}


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def quant_q8_0(a):
    x = a.reshape(-1, 32).astype(np.float32)
    d = f16(np.abs(x).max(1) / 127.0)
    df = d.astype(np.float32)
    idf = np.where(df > 0, 1.0 / np.where(df > 0, df, 1), 0)
    q = np.clip(np.round(x * idf[:, None]), -127, 127).astype(np.int8)
    raw = np.concatenate([d.astype("<f2").view(np.uint8).reshape(-1, 2),
                          q.view(np.uint8)], axis=1)
    return raw.tobytes(), (df[:, None] * q).reshape(a.shape).astype(np.float32)


def quant_q4_0(a):
    x = a.reshape(-1, 32).astype(np.float32)
    amax_i = np.abs(x).argmax(1)
    mx = x[np.arange(len(x)), amax_i]
    d = f16(mx / -8.0)
    df = d.astype(np.float32)
    idf = np.where(df != 0, 1.0 / np.where(df != 0, df, 1), 0)
    q = np.clip(np.floor(x * idf[:, None] + 8.5), 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    raw = np.concatenate([d.astype("<f2").view(np.uint8).reshape(-1, 2),
                          packed], axis=1)
    deq = df[:, None] * (q.astype(np.float32) - 8)
    return raw.tobytes(), deq.reshape(a.shape).astype(np.float32)


def unpack_q4_k_scales(s):
    """s: [nb, 12] -> (sc, m) each [nb, 8], as get_scale_min_k4 reads."""
    sc = np.zeros((len(s), 8), np.uint8)
    m = np.zeros((len(s), 8), np.uint8)
    for j in range(8):
        if j < 4:
            sc[:, j] = s[:, j] & 63
            m[:, j] = s[:, j + 4] & 63
        else:
            sc[:, j] = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
            m[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, m


def quant_q4_k(a):
    x = a.reshape(-1, 8, 32).astype(np.float32)  # superblocks of 8 x 32
    nb = len(x)
    lo = np.minimum(x.min(2), 0)                   # [nb, 8], <= 0
    scale = (x.max(2) - lo) / 15.0
    mins = -lo
    d = f16(scale.max(1) / 63.0)
    dmin = f16(mins.max(1) / 63.0)
    df, dmf = d.astype(np.float32), dmin.astype(np.float32)
    sc = np.clip(np.round(scale / np.where(df > 0, df, 1)[:, None]), 0, 63).astype(np.uint8)
    mq = np.clip(np.round(mins / np.where(dmf > 0, dmf, 1)[:, None]), 0, 63).astype(np.uint8)
    step = df[:, None] * sc                        # [nb, 8]
    off = dmf[:, None] * mq
    q = np.round((x + off[:, :, None]) / np.where(step > 0, step, 1)[:, :, None])
    q = np.clip(q, 0, 15).astype(np.uint8)         # [nb, 8, 32]
    s = np.zeros((nb, 12), np.uint8)
    for j in range(4):
        s[:, j] = sc[:, j] | ((sc[:, j + 4] >> 4) << 6)
        s[:, j + 4] = mq[:, j] | ((mq[:, j + 4] >> 4) << 6)
        s[:, j + 8] = (sc[:, j + 4] & 0xF) | ((mq[:, j + 4] & 0xF) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(nb, 128)
    raw = np.concatenate([d.astype("<f2").view(np.uint8).reshape(-1, 2),
                          dmin.astype("<f2").view(np.uint8).reshape(-1, 2),
                          s, qs], axis=1)
    return raw.tobytes(), deq_q4_k(raw).reshape(a.shape)


def deq_q4_k(raw):
    """Dequantizes [nb, 144] Q4_K blocks the way ggml-quants.c does."""
    d = raw[:, 0:2].copy().view("<f2").astype(np.float32)      # [nb, 1]
    dmin = raw[:, 2:4].copy().view("<f2").astype(np.float32)
    sc, m = unpack_q4_k_scales(raw[:, 4:16])
    qs = raw[:, 16:144].reshape(-1, 4, 32)
    q = np.stack([qs & 0xF, qs >> 4], axis=2).reshape(-1, 8, 32)
    y = d[:, :, None] * sc[:, :, None] * q - dmin[:, :, None] * m[:, :, None]
    return y.astype(np.float32)


def quant_q6_k(a):
    x = a.reshape(-1, 16, 16).astype(np.float32)  # superblocks of 16 x 16
    nb = len(x)
    sub = np.abs(x).max(2) / 31.0                  # [nb, 16]
    d = f16(sub.max(1) / 127.0)
    df = d.astype(np.float32)
    sc = np.clip(np.round(sub / np.where(df > 0, df, 1)[:, None]), -128, 127).astype(np.int8)
    step = df[:, None] * sc.astype(np.float32)
    q = np.round(x / np.where(step > 0, step, 1)[:, :, None])
    q = (np.clip(q, -32, 31) + 32).astype(np.uint8).reshape(nb, 2, 128)
    ql = np.zeros((nb, 2, 64), np.uint8)
    qh = np.zeros((nb, 2, 32), np.uint8)
    for k in range(4):
        part = q[:, :, 32 * k:32 * k + 32]
        ql[:, :, (k % 2) * 32:(k % 2) * 32 + 32] |= (part & 0xF) << (4 * (k // 2))
        qh[:, :, :] |= (part >> 4) << (2 * k)
    raw = np.concatenate([ql.reshape(nb, 128), qh.reshape(nb, 64),
                          sc.view(np.uint8),
                          d.astype("<f2").view(np.uint8).reshape(-1, 2)], axis=1)
    return raw.tobytes(), deq_q6_k(raw).reshape(a.shape)


def deq_q6_k(raw):
    """Dequantizes [nb, 210] Q6_K blocks the way ggml-quants.c does."""
    nb = len(raw)
    ql = raw[:, 0:128].reshape(nb, 2, 64).astype(np.int32)
    qh = raw[:, 128:192].reshape(nb, 2, 32).astype(np.int32)
    sc = raw[:, 192:208].copy().view(np.int8).astype(np.float32).reshape(nb, 2, 8)
    d = raw[:, 208:210].copy().view("<f2").astype(np.float32).reshape(nb, 1, 1)
    y = np.zeros((nb, 2, 128), np.float32)
    for l in range(32):
        i = l // 16
        q1 = ((ql[:, :, l] & 0xF) | (((qh[:, :, l] >> 0) & 3) << 4)) - 32
        q2 = ((ql[:, :, l + 32] & 0xF) | (((qh[:, :, l] >> 2) & 3) << 4)) - 32
        q3 = ((ql[:, :, l] >> 4) | (((qh[:, :, l] >> 4) & 3) << 4)) - 32
        q4 = ((ql[:, :, l + 32] >> 4) | (((qh[:, :, l] >> 6) & 3) << 4)) - 32
        y[:, :, l] = d[:, :, 0] * sc[:, :, i] * q1
        y[:, :, l + 32] = d[:, :, 0] * sc[:, :, i + 2] * q2
        y[:, :, l + 64] = d[:, :, 0] * sc[:, :, i + 4] * q3
        y[:, :, l + 96] = d[:, :, 0] * sc[:, :, i + 6] * q4
    return y


def encode(a, kind):
    """(ggml type, raw bytes, float32 values the file holds)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if kind == "f32":
        return GGML["f32"], a.astype("<f4").tobytes(), a
    if kind == "f16":
        h = a.astype("<f2")
        return GGML["f16"], h.tobytes(), h.astype(np.float32)
    if kind == "bf16":
        b = to_bf16_bits(a)
        return GGML["bf16"], b.astype("<u2").tobytes(), bf16_bits_to_f32(b)
    raw, deq = {"q8_0": quant_q8_0, "q4_0": quant_q4_0,
                "q4_k": quant_q4_k, "q6_k": quant_q6_k}[kind](a)
    return GGML[kind], raw, deq


# ---------------------------------------------------------------------------
# GGUF writer (v2/v3 little-endian, alignment 32)

GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STR, GT_ARR = 4, 5, 6, 7, 8, 9


def gg_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gg_kv(key, val):
    out = gg_str(key)
    if isinstance(val, bool):
        return out + struct.pack("<IB", GT_BOOL, val)
    if isinstance(val, int):
        return out + struct.pack("<II", GT_U32, val)
    if isinstance(val, float):
        return out + struct.pack("<If", GT_F32, val)
    if isinstance(val, str):
        return out + struct.pack("<I", GT_STR) + gg_str(val)
    if isinstance(val, list) and all(isinstance(v, str) for v in val):
        return out + struct.pack("<IIQ", GT_ARR, GT_STR, len(val)) + \
            b"".join(gg_str(v) for v in val)
    if isinstance(val, np.ndarray) and val.dtype == np.float32:
        return out + struct.pack("<IIQ", GT_ARR, GT_F32, len(val)) + \
            val.astype("<f4").tobytes()
    if isinstance(val, np.ndarray) and val.dtype == np.int32:
        return out + struct.pack("<IIQ", GT_ARR, GT_I32, len(val)) + \
            val.astype("<i4").tobytes()
    raise TypeError(key)


def write_gguf(path, kvs, tensors, version=3, align=32):
    """tensors: list of (name, shape [rows, cols] or [n], ggml type, raw)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    head += b"".join(gg_kv(k, v) for k, v in kvs)
    infos, off = b"", 0
    for name, shape, gtype, raw in tensors:
        ne = list(reversed(shape))  # ne[0] is the innermost (columns)
        infos += gg_str(name) + struct.pack("<I", len(ne))
        infos += b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", gtype, off)
        off += len(raw)
        off += (align - off % align) % align
    body = head + infos
    with open(path, "wb") as f:
        f.write(body)
        f.write(b"\0" * ((align - len(body) % align) % align))
        for _, _, _, raw in tensors:
            f.write(raw)
            f.write(b"\0" * ((align - len(raw) % align) % align))


def llama_permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: HF's rotate-half row order
    per head -> interleaved pairs (rows i and i + hd/2 become 2i and 2i+1)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama_unpermute(w, n_head):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def rope_freq_factors(c):
    rs = c["rope_scaling"]
    hd = head_dim(c)
    f = 1.0 / (c["theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    out = []
    for fr in f:
        wl = 2 * math.pi / fr
        if wl < old / hi:
            out.append(1.0)
        elif wl > old / lo:
            out.append(factor)
        else:
            s = (old / wl - lo) / (hi - lo)
            out.append(1.0 / ((1 - s) / factor + s))
    return np.array(out, dtype=np.float32)


GGUF_NAMES = [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
              ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
              ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
              ("mlp.down_proj", "ffn_down"), ("input_layernorm", "attn_norm"),
              ("post_attention_layernorm", "ffn_norm")]


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    i, rest = parts[2], ".".join(parts[3:-1])
    return f"blk.{i}.{dict(GGUF_NAMES)[rest]}.{parts[-1]}"


def write_model_gguf(path, c, W, kind, version=3, arch=None, extra_kvs=()):
    """Writes W as llama.cpp's converter would; returns the HF-layout float32
    weights the file holds (for the reference forward)."""
    arch = arch or ("qwen2" if c["arch"] == "Qwen2ForCausalLM" else "llama")
    hd = head_dim(c)
    kvs = [("general.architecture", arch), ("general.name", os.path.basename(path)),
           (f"{arch}.context_length", c["max_pos"]),
           (f"{arch}.embedding_length", c["dim"]),
           (f"{arch}.block_count", c["layers"]),
           (f"{arch}.feed_forward_length", c["hidden"]),
           (f"{arch}.attention.head_count", c["heads"]),
           (f"{arch}.attention.head_count_kv", c["kv_heads"]),
           (f"{arch}.attention.layer_norm_rms_epsilon", float(c["eps"])),
           (f"{arch}.rope.freq_base", float(c["theta"])),
           (f"{arch}.rope.dimension_count", hd),
           (f"{arch}.vocab_size", c["vocab"])]
    if "head_dim" in c:
        kvs += [(f"{arch}.attention.key_length", hd),
                (f"{arch}.attention.value_length", hd)]
    rs = c.get("rope_scaling")
    if rs and rs.get("type") == "linear":
        kvs += [(f"{arch}.rope.scaling.type", "linear"),
                (f"{arch}.rope.scaling.factor", float(rs["factor"]))]
    kvs += list(extra_kvs)
    tensors, held = [], {}
    permute = arch in ("llama", "mistral")
    for name, a in W.items():
        store = a
        if permute and ".q_proj." in name:
            store = llama_permute(a, c["heads"])
        elif permute and ".k_proj." in name:
            store = llama_permute(a, c["kv_heads"])
        k = kind(name) if callable(kind) else kind
        if a.ndim == 1 or (k not in ("f32", "f16", "bf16") and a.shape[1] % 32):
            k = "f32"  # norms and biases stay F32, as in llama.cpp
        gtype, raw, vals = encode(store, k)
        if permute and ".q_proj." in name:
            vals = llama_unpermute(vals, c["heads"])
        elif permute and ".k_proj." in name:
            vals = llama_unpermute(vals, c["kv_heads"])
        held[name] = vals
        tensors.append((gguf_name(name), list(a.shape), gtype, raw))
    if rs and rs.get("rope_type") == "llama3":
        ff = rope_freq_factors(c)
        tensors.append(("rope_freqs.weight", [len(ff)], 0, ff.astype("<f4").tobytes()))
    write_gguf(path, kvs, tensors, version=version)
    return held


# ---------------------------------------------------------------------------
# The test set


def write_ref(out, ref, c, W):
    logits = forward(c, W, TOKENS).numpy().astype("<f4")
    logits.tofile(os.path.join(out, "refs", ref + ".f32"))


def make_test_set(out):
    os.makedirs(os.path.join(out, "refs"), exist_ok=True)
    lines = ["tokens " + " ".join(map(str, TOKENS))]
    for seed, (name, c) in enumerate(MODELS.items()):
        W = random_weights(c, 1000 + seed)
        if name == "llama-k":
            plan = [("q4_k", lambda n: "q6_k" if "embed" in n or "lm_head" in n
                     or "down_proj" in n else "q4_k"),
                    ("q4_0", "q4_0"), ("q6_k", "q6_k")]
            write_hf(os.path.join(out, name, "hf-f32"), c, W, "f32")
            write_ref(out, f"{name}-f32", c, W)
            lines.append(f"model {name}/hf-f32 {name}-f32 1e-4")
            for tag, kind in plan:
                rel = f"{name}/{name}-{tag}.gguf"
                held = write_model_gguf(os.path.join(out, rel), c, W, kind)
                write_ref(out, f"{name}-{tag}", c, held)
                lines.append(f"model {rel} {name}-{tag} 1e-4")
            continue
        hf_dtypes = ["f32", "bf16", "f16"] if name != "mistral" else ["f32", "bf16"]
        for dt in hf_dtypes:
            rel = f"{name}/hf-{dt}"
            shards = 3 if name == "mistral" else 1
            write_hf(os.path.join(out, rel), c, W, dt, shards=shards)
            write_ref(out, f"{name}-{dt}", c, rounded(W, dt))
            lines.append(f"model {rel} {name}-{dt} 1e-4")
        for kind in ["f32", "f16", "bf16", "q8_0"]:
            rel = f"{name}/{name}-{kind}.gguf"
            version = 2 if (name, kind) == ("llama-tied", "f32") else 3
            # Converted from the folder of that dtype, as llama.cpp would:
            # norms become F32 but hold the f16/bf16-rounded values.
            src = rounded(W, kind) if kind in ("f16", "bf16") else W
            held = write_model_gguf(os.path.join(out, rel), c, src, kind,
                                    version)
            ref = f"{name}-{kind}"
            if kind not in hf_dtypes:
                write_ref(out, ref, c, held)
            lines.append(f"model {rel} {ref} 1e-4")
            if kind in hf_dtypes:
                lines.append(f"pair {name}/hf-{kind} {rel} 1e-4")
        # Q8_0 against the unquantized weights: a loose bound relative to
        # the largest logit (quantization error, not a loader error).
        lines.append(f"rpair {name}/hf-f32 {name}/{name}-q8_0.gguf 5e-2")
    # Mistral's GGUF also under general.architecture = "mistral".
    c = MODELS["mistral"]
    W = random_weights(c, 1000 + list(MODELS).index("mistral"))
    write_model_gguf(os.path.join(out, "mistral", "mistral-arch.gguf"), c, W,
                     "f32", arch="mistral")
    lines.append("model mistral/mistral-arch.gguf mistral-f32 1e-4")
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# Models with a real tokenizer: the Hugging Face folder gets the tokenizer
# files, the GGUF the tokenizer.ggml.* metadata llama.cpp's converter would
# write for them (SentencePiece pieces from tokenizer.model, or byte-level
# BPE vocab and merges from tokenizer.json).

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                   "generation_config.json", "special_tokens_map.json"]
# tokenizer.ggml.pre names llama.cpp gives these tokenizers.
GGUF_PRE = {"qwen3": "qwen2", "qwen2": "qwen2", "gpt2": "gpt-2",
            "phi-2": "phi-2", "llama3": "llama-bpe"}


def varint(b, i):
    v = shift = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return v, i


def protobuf_fields(b):
    """(field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("protobuf wire type %d" % wt)
        yield f, wt, v


def spm_pieces(path):
    """(piece, score, type) of a SentencePiece ModelProto (field 1)."""
    out = []
    for f, _, v in protobuf_fields(open(path, "rb").read()):
        if f != 1:
            continue
        piece, score, typ = "", 0.0, 1
        for g, _, w in protobuf_fields(v):
            if g == 1:
                piece = w.decode("utf-8")
            elif g == 2:
                score = struct.unpack("<f", w)[0]
            elif g == 3:
                typ = w
        out.append((piece, score, typ))
    return out


def token_str(t):
    return t if isinstance(t, str) or t is None else t.get("content")


def gguf_tokenizer_kvs(tokdir, name):
    tj = json.load(open(os.path.join(tokdir, "tokenizer.json")))
    cfg_path = os.path.join(tokdir, "tokenizer_config.json")
    tc = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    spm = os.path.join(tokdir, "tokenizer.model")
    if os.path.exists(spm):
        pieces = spm_pieces(spm)
        tokens = [p for p, _, _ in pieces]
        scores = [sc for _, sc, _ in pieces]
        types = [t for _, _, t in pieces]
        model, pre, merges = "llama", "default", None
    else:
        vocab = tj["model"]["vocab"]
        n = max(list(vocab.values()) + list(added)) + 1
        tokens = [f"[PAD{i}]" for i in range(n)]
        types = [5] * n
        for t, i in vocab.items():
            tokens[i], types[i] = t, 1
        scores = None
        merges = [m if isinstance(m, str) else " ".join(m)
                  for m in tj["model"]["merges"]]
        model, pre = "gpt2", GGUF_PRE.get(name, "default")
    for i, a in added.items():
        while i >= len(tokens):
            tokens.append(f"[PAD{len(tokens)}]")
            types.append(5)
            if scores is not None:
                scores.append(0.0)
        tokens[i] = a["content"]
        types[i] = 3 if a.get("special") else 4
    ids = {t: i for i, t in enumerate(tokens)}
    kvs = [("tokenizer.ggml.model", model), ("tokenizer.ggml.pre", pre),
           ("tokenizer.ggml.tokens", tokens),
           ("tokenizer.ggml.token_type", np.array(types, dtype=np.int32))]
    if scores is not None:
        kvs.append(("tokenizer.ggml.scores", np.array(scores, dtype=np.float32)))
    if merges is not None:
        kvs.append(("tokenizer.ggml.merges", merges))
    for key in ("bos", "eos", "unk", "pad"):
        tok = token_str(tc.get(f"{key}_token"))
        if tok in ids:
            kvs.append((f"tokenizer.ggml.{key}_token_id", ids[tok]))
    for key in ("add_bos_token", "add_eos_token"):
        if isinstance(tc.get(key), bool):
            kvs.append((f"tokenizer.ggml.{key}", tc[key]))
    if isinstance(tc.get("chat_template"), str):
        kvs.append(("tokenizer.chat_template", tc["chat_template"]))
    return kvs, len(tokens)


def make_tokenized(tokdir, name, out):
    """A small Llama (Qwen2 for qwen tokenizers) with tokdir's vocabulary:
    out/<name>/hf-bf16 and out/<name>/<name>-bf16.gguf hold the same weights
    and the same tokenizer."""
    kvs, n_vocab = gguf_tokenizer_kvs(tokdir, name)
    arch = "Qwen2ForCausalLM" if name.startswith("qwen") else "LlamaForCausalLM"
    c = dict(arch=arch, dim=64, hidden=128, layers=2, heads=4, kv_heads=2,
             vocab=n_vocab, tied=True, bias=arch == "Qwen2ForCausalLM",
             theta=10000.0, eps=1e-5, max_pos=256)
    W = rounded(random_weights(c, 4242), "bf16")
    folder = os.path.join(out, name, "hf-bf16")
    write_hf(folder, c, W, "bf16")
    for fn in TOKENIZER_FILES:
        if os.path.exists(os.path.join(tokdir, fn)):
            with open(os.path.join(tokdir, fn), "rb") as src, \
                    open(os.path.join(folder, fn), "wb") as dst:
                dst.write(src.read())
    write_model_gguf(os.path.join(out, name, f"{name}-bf16.gguf"), c, W,
                     "bf16", extra_kvs=kvs)


# ---------------------------------------------------------------------------
# Larger models for RAM measurements


def make_big(dim, layers, out):
    c = dict(arch="LlamaForCausalLM", dim=dim, hidden=dim * 8 // 3 // 256 * 256,
             layers=layers, heads=dim // 64, kv_heads=max(1, dim // 256),
             vocab=32000, tied=False, theta=10000.0, eps=1e-5, max_pos=2048)
    W = random_weights(c, 7)
    n = sum(a.size for a in W.values())
    write_hf(os.path.join(out, "hf-f32"), c, W, "f32")
    write_hf(os.path.join(out, "hf-bf16"), c, W, "bf16")
    for kind in ("f16", "q8_0", "q4_0"):
        write_model_gguf(os.path.join(out, f"big-{kind}.gguf"), c, W, kind)
    with open(os.path.join(out, "params.txt"), "w") as f:
        f.write(f"{n}\n")
    print(f"{n} parameters")


def main(argv):
    if len(argv) >= 2 and argv[1] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return 0
    if len(argv) >= 2 and argv[1].startswith("-") and \
            argv[1] not in ("--big", "--tokenizer"):
        sys.stderr.write(f"make_models.py: unknown option {argv[1]}\n"
                         + __doc__)
        return 2
    if len(argv) == 5 and argv[1] == "--big":
        make_big(int(argv[2]), int(argv[3]), argv[4])
        return 0
    if len(argv) == 5 and argv[1] == "--tokenizer":
        make_tokenized(argv[2], argv[3], argv[4])
        return 0
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    make_test_set(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
