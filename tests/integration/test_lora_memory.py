# SPDX-License-Identifier: MIT
"""Load/unload frees the memory: a rank-64 LoRA adapter on every target of
a wider random Llama (dim 768, 8 layers, TinyLlama's tokenizer; written by
tests/engine/make_models.py's helpers, trained one step with `tunad
train`) is loaded with POST /v1/load_lora_adapter, used, and unloaded with
POST /v1/unload_lora_adapter while a request still holds it: the resident
memory (VmRSS of the daemon, also reported by GET /health) grows by about
the adapter's size, and returns to its level before the load once the last
request using it has ended. Also the LRU: with --adapter-cache-bytes below
two adapters, using a second one evicts the first.

Skips (77) when /usr/bin/python3 lacks torch or numpy (make_models.py)."""

import json
import os
import subprocess
import sys
import threading
import time

import tunalib

ROOT = tunalib.source_root()

MAKE = r'''
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "engine"))
import make_models as mm
c = dict(arch="LlamaForCausalLM", dim=768, hidden=2048, layers=8, heads=12,
         kv_heads=4, vocab=0, tied=True, bias=False, theta=10000.0,
         eps=1e-5, max_pos=512)
tokdir = os.path.join(sys.argv[1], "tests", "data", "tokenizers",
                      "tinyllama-1.1b-chat-v1.0")
kvs, c["vocab"] = mm.gguf_tokenizer_kvs(tokdir, "tinyllama")
W = mm.rounded(mm.random_weights(c, 11), "bf16")
out = sys.argv[2]
mm.write_hf(out, c, W, "bf16")
for fn in mm.TOKENIZER_FILES:
    p = os.path.join(tokdir, fn)
    if os.path.exists(p):
        open(os.path.join(out, fn), "wb").write(open(p, "rb").read())
'''


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    py = "/usr/bin/python3"
    if subprocess.run([py, "-c", "import torch, numpy"],
                      capture_output=True).returncode != 0:
        print("SKIP: /usr/bin/python3 has no torch/numpy")
        return tunalib.SKIP
    d = tunalib.Daemon(tunad, args=["--workers", "1",
                                    "--adapter-cache-bytes", "40M"])
    os.makedirs(d.data_dir, exist_ok=True)
    models = os.path.join(d.data_dir, "models")
    wide = os.path.join(models, "wide")
    loras = os.path.join(d.data_dir, "loras")
    os.makedirs(loras)
    d.args += ["--models-dir", models]
    t = tunalib.Runner("lora_memory")

    def make():
        subprocess.run([py, "-c", MAKE, ROOT, wide], check=True,
                       capture_output=True, timeout=600)
        data = os.path.join(loras, "d.jsonl")
        with open(data, "w") as f:
            for i in range(4):
                f.write(json.dumps({"prompt": "Hello", "completion":
                                    " world number %d" % i}) + "\n")
        for name, seed in (("big", "1"), ("big2", "2")):
            r = subprocess.run(
                [tunad, "train", "--model", wide, "--data", data, "--out",
                 os.path.join(loras, name), "--rank", "64", "--targets",
                 "q,k,v,o,gate,up,down", "--epochs", "1", "--batch-size", "4",
                 "--max-seq-len", "16", "--seed", seed, "--threads", "1"],
                capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stderr[-2000:]

    t.check("make the model and two rank-64 adapters", make)
    t.check("start", d.start)
    gen = {"model": "wide", "prompt": "Hello", "max_tokens": 4,
           "temperature": 0}
    state = {}

    def settle():
        """RSS after a short pause (the allocator's trims are done)."""
        time.sleep(0.3)
        return rss(d.proc.pid)

    def baseline():
        d.json("POST", "/generate", gen)  # base loaded, scratch allocated
        d.json("POST", "/generate", gen)
        state["before"] = settle()
        h = d.json("GET", "/health")
        assert h["memory"]["rss_bytes"] > 0, h

    def load_use_unload():
        r = d.json("POST", "/v1/load_lora_adapter", {
            "lora_name": "big", "lora_path": os.path.join(loras, "big"),
            "base_model": "wide"})
        size = r["bytes"]
        assert size > 20e6, r
        d.json("POST", "/generate", dict(gen, model="big"))
        loaded = settle()
        grew = loaded - state["before"]
        print("    adapter %.1f MB; RSS before %.1f MB, loaded %.1f MB "
              "(+%.1f MB)" % (size / 1e6, state["before"] / 1e6,
                              loaded / 1e6, grew / 1e6))
        assert grew > 0.8 * size, (grew, size)
        # unload while a long request holds the adapter: it finishes
        # normally, and the memory goes when it ends
        res = {}

        def long_req():
            res["r"] = d.post("/generate", dict(gen, model="big",
                                                max_tokens=60))
        th = threading.Thread(target=long_req)
        th.start()
        time.sleep(0.2)
        d.json("POST", "/v1/unload_lora_adapter", {"lora_name": "big"})
        th.join()
        assert res["r"].status == 200, res["r"]
        after = settle()
        print("    after unload %.1f MB (%+.1f MB from before)" %
              (after / 1e6, (after - state["before"]) / 1e6))
        assert after - state["before"] < 0.15 * size, (after, state, size)
        h = d.json("GET", "/health")["memory"]
        assert h["adapters_resident"] == 0, h

    def lru():
        # the budget (40M) holds one of these adapters (~29 MB), not two
        for name in ("big", "big2"):
            d.json("POST", "/v1/load_lora_adapter", {
                "lora_name": name, "lora_path": os.path.join(loras, name),
                "base_model": "wide"})
        h = d.json("GET", "/health")["memory"]
        assert h["adapters_resident"] == 1, h
        assert h["adapter_bytes"] <= h["adapter_budget_bytes"], h
        # both still serve (an evicted one is read again)
        for name in ("big", "big2", "big"):
            d.json("POST", "/generate", dict(gen, model=name))
        h = d.json("GET", "/health")["memory"]
        assert h["adapters_resident"] == 1, h

    t.check("baseline", baseline)
    t.check("load, use, unload: RSS back to its level", load_use_unload)
    t.check("LRU under --adapter-cache-bytes", lru)
    d.stop()
    d.cleanup()
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
