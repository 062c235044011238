# SPDX-License-Identifier: MIT
"""Continuous batching and many adapters on one base.

Two LoRA adapters for stories260K are trained with `tunad train` (different
data, ranks and targets), loaded by name with POST /v1/load_lora_adapter,
and a mix of greedy requests over the base and both adapters (short and
long prompts, streamed and not, n > 1, the three routes) is run first one
at a time, then all at once so the scheduler decodes them in shared
batches: every text is identical to the one the request produced alone.
Then unloading: an unloaded adapter is a 404 model, a name cannot be
loaded twice, paths outside the allowed folders are refused."""

import json
import os
import subprocess
import sys
import threading

import tunalib

MODEL = "stories260K"
PROMPTS = [
    "Once upon a time",
    "Lily",
    "The little dog ran to the park and saw a big red ball. He wanted to "
    "play with it, so he",
    "Tom and Sue",
]


def train(tunad, data, out, extra):
    r = subprocess.run([tunad, "train", "--data", data, "--out", out,
                        "--epochs", "1", "--lr", "0.01", "--threads", "1"]
                       + extra, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    d = tunalib.Daemon(tunad, args=["--max-concurrent-requests", "32",
                                    "--workers", "1"])
    os.makedirs(d.data_dir, exist_ok=True)
    loras = os.path.join(d.data_dir, "loras")
    os.makedirs(loras)
    t = tunalib.Runner("batching")

    def adapters():
        train(tunad, tunalib.example("zog.jsonl"), os.path.join(loras, "zog"),
              ["--rank", "8"])
        data = os.path.join(loras, "ball.jsonl")
        with open(data, "w") as f:
            for i in range(48):
                f.write(json.dumps({
                    "prompt": "Once upon a time" if i % 2 else "Lily",
                    "completion": " a big red ball rolled down the hill. "
                    "Ben ran after it and laughed. Ball number %d." % i})
                    + "\n")
        train(tunad, data, os.path.join(loras, "ball"),
              ["--rank", "4", "--targets", "q,v,gate,up,down"])

    t.check("train two adapters (tunad train)", adapters)
    t.check("start", d.start)

    def load():
        for name in ("zog", "ball"):
            r = d.json("POST", "/v1/load_lora_adapter", {
                "lora_name": name, "lora_path": os.path.join(loras, name)})
            assert r["base_model"] == MODEL and r["bytes"] > 0, r
        ids = [m["id"] for m in d.json("GET", "/v1/models")["data"]]
        assert "zog" in ids and "ball" in ids, ids

    t.check("load_lora_adapter", load)

    # (route, body) for every request of the mix
    reqs = []
    for i, p in enumerate(PROMPTS):
        for model in (MODEL, "zog", "ball"):
            k = len(reqs)
            if k % 3 == 0:
                reqs.append(("/v1/completions", {
                    "model": model, "prompt": p, "max_tokens": 48,
                    "temperature": 0, "stream": k % 2 == 1}))
            elif k % 3 == 1:
                reqs.append(("/generate", {
                    "model": model, "prompt": p, "max_tokens": 48,
                    "temperature": 0, "stream": k % 2 == 1}))
            else:
                reqs.append(("/v1/chat/completions", {
                    "model": model, "n": 2, "max_tokens": 48,
                    "temperature": 0, "stream": k % 2 == 1,
                    "messages": [{"role": "user", "content": p}]}))

    for p in PROMPTS:
        for model in (MODEL, "zog", "ball"):
            reqs.append(("/generate", {"model": model, "prompt": p,
                                       "max_tokens": 32, "temperature": 0}))

    def texts(route, body, r):
        assert r.status == 200, r
        if body.get("stream"):
            out = {}
            for line in r.body.decode().split("\n"):
                if not line.startswith("data: {"):
                    continue
                e = json.loads(line[6:])
                if route == "/generate":
                    out[e["index"]] = out.get(e["index"], "") + e["text"]
                    continue
                for c in e.get("choices", []):
                    piece = (c.get("delta", {}).get("content") or ""
                             if route.endswith("chat/completions")
                             else c.get("text", ""))
                    out[c["index"]] = out.get(c["index"], "") + piece
            return [out[k] for k in sorted(out)]
        j = r.json()
        if route == "/generate":
            return [j["text"]]
        if route.endswith("chat/completions"):
            return [c["message"]["content"] for c in j["choices"]]
        return [c["text"] for c in j["choices"]]

    alone = []

    def sequential():
        for route, body in reqs:
            alone.append(texts(route, body, d.post(route, body)))
        by_model = {}
        for (route, body), out in zip(reqs, alone):
            assert all(out) and len(set(out)) == 1, out  # n=2 greedy: same
            if route == "/generate":
                by_model.setdefault(body["prompt"], {})[body["model"]] = out[0]
        # the adapters change the text (each applied to its own rows)
        differ = sum(len(set(v.values())) == 3 for v in by_model.values())
        assert differ >= 2, by_model

    t.check("each request alone", sequential)

    def concurrent(rounds=3):
        for rnd in range(rounds):
            got = [None] * len(reqs)
            errs = []

            def one(k):
                try:
                    route, body = reqs[k]
                    got[k] = texts(route, body, d.post(route, body))
                except Exception as e:  # noqa: BLE001
                    errs.append(repr(e))
            ths = [threading.Thread(target=one, args=(k,))
                   for k in range(len(reqs))]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            assert not errs, errs
            for k in range(len(reqs)):
                assert got[k] == alone[k], (rnd, reqs[k], got[k], alone[k])

    t.check("all at once: identical to alone (3 rounds)", concurrent)

    def unload():
        r = d.json("POST", "/v1/unload_lora_adapter", {"lora_name": "ball"})
        assert r["lora_name"] == "ball", r
        r = d.post("/v1/completions", {"model": "ball", "prompt": "x",
                                       "max_tokens": 2})
        assert r.status == 404, r
        r = d.post("/v1/unload_lora_adapter", {"lora_name": "ball"})
        assert r.status == 404, r
        r = d.post("/v1/load_lora_adapter", {
            "lora_name": "zog", "lora_path": os.path.join(loras, "zog")})
        assert r.status == 400, r
        r = d.post("/v1/load_lora_adapter", {"lora_name": "etc",
                                             "lora_path": "/etc"})
        assert r.status == 403, r
        r = d.post("/v1/load_lora_adapter", {"lora_name": "x",
                                             "lora_path": "/nonexistent"})
        assert r.status == 400, r
        # zog still serves what it served
        route, body = reqs[1] if reqs[1][1]["model"] == "zog" else reqs[4]
        assert texts(route, body, d.post(route, body)) == \
            alone[reqs.index((route, body))]

    t.check("unload_lora_adapter", unload)
    d.stop()
    d.cleanup()
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
