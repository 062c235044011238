# SPDX-License-Identifier: MIT
"""Real base models end to end: tunad serve --models-dir with small random
models written by tests/engine/make_models.py (a Qwen3-tokenizer Hugging Face
folder in BF16, a TinyLlama-tokenizer GGUF, a broken folder):

  - GET /models: architecture, parameters, context, dtype, chat template
    family, status (nothing loaded until used), the broken model's reason;
  - POST /models/rescan picks up a new model and drops a removed one;
  - /tokenize and /detokenize round trip, special tokens parsed or not,
    /apply-template with the model's own template;
  - a LoRA job on the HF base and one on the GGUF base succeed with falling
    loss; their events report tokens with the job's tokenizer and the chat
    template used;
  - exports: the PEFT tar re-imported with POST /adapters gives identical
    greedy generations; the GGUF adapter has llama.cpp's metadata; the
    merged tar holds a loadable folder with the tokenizer;
  - bad imports and exports get the right 4xx.

Skips (77) when /usr/bin/python3 lacks torch or numpy (make_models.py)."""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tunalib  # noqa: E402

ROOT = tunalib.source_root()
TOK = os.path.join(ROOT, "tests", "data", "tokenizers")


def make_models(work):
    py = "/usr/bin/python3"
    probe = subprocess.run([py, "-c", "import torch, numpy"],
                           capture_output=True)
    if probe.returncode != 0:
        print("SKIP: /usr/bin/python3 has no torch/numpy")
        sys.exit(tunalib.SKIP)
    src = os.path.join(work, "src")
    mk = os.path.join(ROOT, "tests", "engine", "make_models.py")
    for tok, name in (("qwen3", "qwen3"),
                      ("tinyllama-1.1b-chat-v1.0", "tinyllama")):
        subprocess.run([py, mk, "--tokenizer", os.path.join(TOK, tok), name,
                        src], check=True, capture_output=True)
    models = os.path.join(work, "models")
    os.makedirs(models)
    shutil.move(os.path.join(src, "qwen3", "hf-bf16"),
                os.path.join(models, "qwen3-hf"))
    shutil.move(os.path.join(src, "tinyllama", "tinyllama-bf16.gguf"),
                os.path.join(models, "tinyllama.gguf"))
    broken = os.path.join(models, "broken")
    os.makedirs(broken)
    with open(os.path.join(broken, "config.json"), "w") as f:
        json.dump({"architectures": ["GPTNeoXForCausalLM"]}, f)
    return src, models


def by_id(d, path="/models"):
    return {m["id"]: m for m in d.json("GET", path)["data"]}


def check_list(d):
    m = by_id(d)
    q, t, b, s = m["qwen3-hf"], m["tinyllama"], m["broken"], m["stories260K"]
    assert q["format"] == "hf" and q["architecture"] == "qwen2", q
    assert q["dtype"] == "BF16" and q["context_length"] == 256, q
    assert q["chat_template"] is True and q["chat_template_family"] == "qwen3"
    assert q["vocab_size"] == 151669 and q["parameters"] > 9_000_000, q
    assert q["status"] == "available", q          # listed, not loaded
    assert t["format"] == "gguf" and t["architecture"] == "llama", t
    assert t["dtype"] == "BF16" and t["chat_template_family"] == "zephyr", t
    assert s["status"] == "loaded" and s["chat_template"] is False, s
    assert b["status"] == "error" and "not supported" in b["error"], b


def post(d, path, body, expect=200):
    return d.json("POST", path, body, expect=expect)


def check_tokenize(d):
    for model, text in (("qwen3-hf", "Hello  world\n\tcafé 12345 日本 🙂"),
                        ("tinyllama", "Hello world, it's 2024!  ok")):
        toks = post(d, "/tokenize", {"model": model, "content": text})["tokens"]
        assert toks and all(isinstance(i, int) for i in toks), toks
        back = post(d, "/detokenize", {"model": model, "tokens": toks})
        assert back["content"] == text, (model, back, text)
    sp = post(d, "/tokenize", {"model": "qwen3-hf",
                               "content": "<|im_end|>"})["tokens"]
    assert sp == [151645], sp
    plain = post(d, "/tokenize", {"model": "qwen3-hf", "content": "<|im_end|>",
                                  "parse_special": False})["tokens"]
    assert len(plain) > 1, plain
    bos = post(d, "/tokenize", {"model": "tinyllama", "content": "Hi",
                                "add_special": True})["tokens"]
    assert bos[0] == 1, bos
    r = d.post("/detokenize", {"model": "qwen3-hf", "tokens": [10 ** 9]})
    assert r.status == 400, r
    r = d.post("/tokenize", {"model": "nope", "content": "x"})
    assert r.status == 404, r


def check_template(d):
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}]
    p = post(d, "/apply-template", {"model": "qwen3-hf", "messages": msgs})
    assert p["prompt"] == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                           "<|im_start|>user\nHi<|im_end|>\n"
                           "<|im_start|>assistant\n"), p
    assert p["chat_template"] == "model"
    p = post(d, "/apply-template", {"model": "tinyllama", "messages": msgs[1:],
                                    "add_generation_prompt": False})
    assert p["prompt"] == "<|user|>\nHi</s>\n", p
    p = post(d, "/apply-template", {"model": "stories260K", "messages": msgs})
    assert p["chat_template"] == "default" and "<|user|>" in p["prompt"], p
    r = d.post("/apply-template", {"model": "qwen3-hf", "messages": [{}]})
    assert r.status == 400, r


def check_rescan(d, src, models):
    shutil.copytree(os.path.join(src, "tinyllama", "hf-bf16"),
                    os.path.join(models, "tinyllama-hf"))
    shutil.rmtree(os.path.join(models, "broken"))
    r = post(d, "/models/rescan", None)
    assert r["added"] == 1 and r["removed"] == 1, r
    m = by_id(d)
    assert "tinyllama-hf" in m and "broken" not in m, list(m)
    assert m["tinyllama-hf"]["format"] == "hf"


CHAT = "".join(json.dumps({"messages": [
    {"role": "user", "content": "What color is Zog %d?" % (i % 3)},
    {"role": "assistant", "content": "Zog is purple."}]}) + "\n"
    for i in range(16))


def run_job(d, base):
    job = d.json("POST", "/jobs?base_model=%s&epochs=3&learning_rate=0.01"
                 "&max_seq_len=64&batch_size=4" % base, CHAT,
                 headers={"Content-Type": "application/jsonl"}, expect=201)
    job = d.wait_job(job["id"], timeout=600)
    assert job["status"] == "succeeded", job
    ev = d.events(job["id"])
    losses = [e["data"]["train_loss"] for e in ev if e["type"] == "step"]
    assert losses[-1] < losses[0] * 0.5, losses
    msgs = [e["message"] for e in ev]
    assert any("tokens with the tokenizer of " + base in m for m in msgs), msgs
    assert any("chat template" in m for m in msgs), msgs
    print("  %s: loss %.3f -> %.3f over %d steps" %
          (base, losses[0], losses[-1], len(losses)))
    return job


def generate(d, model, prompt):
    return post(d, "/generate", {"model": model, "prompt": prompt,
                                 "max_tokens": 16, "temperature": 0})["text"]


def check_jobs_and_exports(d, state):
    for base in ("qwen3-hf", "tinyllama"):
        state[base] = run_job(d, base)
    prompt = "What color is Zog 1?"
    for base, job in state.items():
        jid = job["id"]
        r = d.get("/jobs/%s/adapter?format=peft" % jid)
        assert r.status == 200, r
        tf = tarfile.open(fileobj=io.BytesIO(r.body))
        names = sorted(tf.getnames())
        assert names == ["adapter_config.json", "adapter_model.safetensors"]
        cfg = json.load(tf.extractfile("adapter_config.json"))
        assert cfg["base_model_name_or_path"] == base, cfg
        assert cfg["peft_type"] == "LORA" and cfg["r"] == 8, cfg
        name = "imported-" + base
        imp = d.json("POST", "/adapters?name=" + name, r.body,
                     headers={"Content-Type": "application/x-tar"},
                     expect=201)
        assert imp["base"] == base, imp
        a, b = generate(d, jid, prompt), generate(d, name, prompt)
        assert a == b, (a, b)
        assert generate(d, base, prompt) != a  # the adapter changes it
        # GGUF LoRA: llama.cpp's header keys
        g = d.get("/jobs/%s/adapter?format=gguf" % jid)
        assert g.status == 200 and g.body[:4] == b"GGUF", g
        assert struct.unpack("<I", g.body[4:8])[0] == 3
        for key in (b"general.type", b"adapter", b"adapter.type", b"lora",
                    b"adapter.lora.alpha", b"blk.0.attn_q.weight.lora_a",
                    b"blk.1.attn_v.weight.lora_b"):
            assert key in g.body, key
        # merged: a Hugging Face folder with the tokenizer when the base
        # has one
        mt = d.get("/jobs/%s/adapter?format=merged" % jid)
        assert mt.status == 200, mt
        tf = tarfile.open(fileobj=io.BytesIO(mt.body))
        names = set(tf.getnames())
        assert {"config.json", "model.safetensors"} <= names, names
        if base == "qwen3-hf":
            assert "tokenizer.json" in names, names
        mc = json.load(tf.extractfile("config.json"))
        assert mc["architectures"][0] in ("Qwen2ForCausalLM",
                                          "LlamaForCausalLM"), mc
    m = by_id(d)
    assert m["imported-qwen3-hf"]["type"] == "adapter"


def check_bad(d, state):
    jid = state["qwen3-hf"]["id"]
    peft = d.get("/jobs/%s/adapter?format=peft" % jid).body
    r = d.post("/adapters?name=x1&base_model=stories260K", peft)
    assert r.status == 422 and "base_model.model.model.layers" in \
        r.json()["error"]["message"], r
    for path, body, status in (
            ("/adapters?name=../etc", peft, 400),
            ("/adapters", peft, 400),
            ("/adapters?name=imported-qwen3-hf", peft, 409),
            ("/adapters?name=x2&base_model=nope", peft, 404),
            ("/adapters?name=x3", b"not a tar" * 100, 400),
            ("/adapters?name=stories260K", peft, 409)):
        r = d.post(path, body)
        assert r.status == status, (path, r)
        assert "error" in r.json()
    r = d.get("/jobs/%s/adapter?format=onnx" % jid)
    assert r.status == 400, r
    r = d.get("/jobs/job_000000000000000000000000/adapter")
    assert r.status == 404, r
    r = d.request("DELETE", "/adapters/imported-qwen3-hf")
    assert r.status == 200, r
    r = d.post("/generate", {"model": "imported-qwen3-hf", "prompt": "x"})
    assert r.status == 404, r
    assert d.get("/health").status == 200


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    work = tempfile.mkdtemp(prefix="tuna-models-")
    src, models = make_models(work)
    d = tunalib.Daemon(tunad, args=["--models-dir", models, "--workers", "1"])
    runner = tunalib.Runner("models")
    state = {}
    def checks():
        d.start()
        runner.check("model list without loading", check_list, d)
        runner.check("tokenize / detokenize", check_tokenize, d)
        runner.check("apply-template", check_template, d)
        runner.check("rescan", check_rescan, d, src, models)
        if runner.check("jobs on HF and GGUF bases, exports, import",
                        check_jobs_and_exports, d, state):
            runner.check("bad imports and exports", check_bad, d, state)

    tunalib.run_checks(runner, d, checks,
                       cleanup=[lambda: shutil.rmtree(work, ignore_errors=True)])


if __name__ == "__main__":
    main()
