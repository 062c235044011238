# SPDX-License-Identifier: MIT
"""Structured output over HTTP: 100 seeds at temperature 1 on stories260K
(whose 512-token vocabulary spells JSON mostly through byte tokens, the
hard case) for each of: /v1/chat/completions with a nested json_schema,
/v1/completions with json_object, and /generate with a Lamini-style
output_type. Every output parses and validates against its schema, with
finish_reason "stop"; /generate also returns it parsed as "output". A
tight max_tokens still closes the JSON when it can (the constraint steers
towards the end), and otherwise answers finish_reason "length"."""

import json
import math
import sys
import threading

import tunalib

MODEL = "stories260K"
SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "score": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string",
                                            "enum": ["a", "bc"]}},
        "ok": {"type": "boolean"},
        "x": {"type": "number"},
        "inner": {"type": "object", "properties": {
            "k": {"enum": ["red", "green", 3]}}, "required": ["k"]},
    },
    "required": ["answer", "score", "ok", "inner"],
}
SHORTHAND = {"answer": "str", "score": "int", "tags": ["str"],
             "meta": {"ok": "bool", "p": "float"}}
SHORTHAND_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"}, "score": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "properties": {
            "ok": {"type": "boolean"}, "p": {"type": "number"}},
            "required": ["ok", "p"]}},
    "required": ["answer", "score", "tags", "meta"],
}


def validate(v, s):
    """The subset of JSON Schema used here; True when v matches s."""
    if "enum" in s:
        return any(v == e and type(v) == type(e) for e in s["enum"])
    t = s.get("type")
    if t is None:
        return True
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return (isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v))
    if t == "boolean":
        return isinstance(v, bool)
    if t == "array":
        return isinstance(v, list) and all(
            validate(x, s.get("items", {})) for x in v)
    if t == "object":
        if not isinstance(v, dict):
            return False
        props = s.get("properties", {})
        if any(k not in v for k in s.get("required", [])):
            return False
        return all(k in props and validate(x, props[k]) for k, x in v.items())
    return False


def strict_loads(text):
    def no_const(c):
        raise ValueError("non-standard constant " + c)
    return json.loads(text, parse_constant=no_const)


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    d = tunalib.Daemon(tunad, args=["--max-concurrent-requests", "8"])
    t = tunalib.Runner("structured")
    t.check("start", d.start)

    def run_seeds(label, make, check, n=100, parallel=4):
        bad = []
        lock = threading.Lock()

        def worker(seeds):
            for seed in seeds:
                path, body = make(seed)
                r = d.post(path, body)
                try:
                    assert r.status == 200, r
                    check(r.json())
                except Exception as e:  # noqa: BLE001
                    with lock:
                        bad.append((seed, repr(e)[:300]))
        threads = [threading.Thread(target=worker,
                                    args=(range(1 + i, n + 1, parallel),))
                   for i in range(parallel)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not bad, "%s: %d/%d bad, e.g. %s" % (label, len(bad), n,
                                                    bad[:3])
        print("    %s: %d/%d parse and validate" % (label, n, n))

    def chat_schema():
        def make(seed):
            return "/v1/chat/completions", {
                "model": MODEL, "seed": seed, "temperature": 1.0,
                "max_tokens": 200,
                "messages": [{"role": "user", "content": "Describe Lily."}],
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "story", "strict": True, "schema": SCHEMA}}}

        def check(r):
            ch = r["choices"][0]
            assert ch["finish_reason"] == "stop", ch
            v = strict_loads(ch["message"]["content"])
            assert validate(v, SCHEMA), v
        run_seeds("chat json_schema", make, check)

    def completion_object():
        def make(seed):
            return "/v1/completions", {
                "model": MODEL, "seed": seed, "temperature": 1.0,
                "max_tokens": 80, "prompt": "Once upon a time",
                "response_format": {"type": "json_object"}}

        def check(r):
            ch = r["choices"][0]
            assert ch["finish_reason"] == "stop", ch
            assert isinstance(strict_loads(ch["text"]), dict), ch
        run_seeds("completions json_object", make, check)

    def generate_output_type():
        def make(seed):
            return "/generate", {
                "model": MODEL, "seed": seed, "temperature": 1.0,
                "max_tokens": 200, "prompt": "Lily said",
                "output_type": SHORTHAND}

        def check(r):
            assert r["finish_reason"] == "stop", r
            v = strict_loads(r["text"])
            assert validate(v, SHORTHAND_SCHEMA), v
            assert r["output"] == v, r
        run_seeds("generate output_type", make, check)

    def greedy_and_stream():
        body = {"model": MODEL, "temperature": 0, "max_tokens": 200,
                "prompt": "Lily said", "output_type": SHORTHAND}
        a = d.json("POST", "/generate", body)
        b = d.json("POST", "/generate", body)
        assert a["text"] == b["text"] and a["output"] is not None, (a, b)
        r = d.post("/generate", dict(body, stream=True))
        assert r.status == 200, r
        events = [json.loads(line[6:]) for line in
                  r.body.decode().split("\n") if line.startswith("data: {")]
        text = "".join(e.get("text", "") for e in events)
        assert text == a["text"], (text, a["text"])
        assert events[-1]["output"] == a["output"], events[-1]

    def tight_budget():
        # 12 tokens cannot spell SHORTHAND's object on a byte vocabulary:
        # the answer is cut and says so
        r = d.json("POST", "/generate", {
            "model": MODEL, "seed": 1, "max_tokens": 12, "prompt": "x",
            "output_type": SHORTHAND})
        assert r["finish_reason"] == "length" and r["output"] is None, r
        # a small object closes within a small budget
        for seed in range(1, 11):
            r = d.json("POST", "/generate", {
                "model": MODEL, "seed": seed, "max_tokens": 24,
                "prompt": "x", "output_type": {"n": "int"}})
            assert r["finish_reason"] == "stop", r
            assert isinstance(r["output"]["n"], int), r

    def errors():
        r = d.post("/generate", {"model": MODEL, "prompt": "x",
                                 "output_type": {"a": "date"}})
        assert r.status == 400 and "date" in r.json()["error"]["message"], r
        r = d.post("/generate", {"model": MODEL, "prompt": "x",
                                 "output_type": "str"})
        assert r.status == 400, r

    t.check("chat json_schema, 100 seeds", chat_schema)
    t.check("completions json_object, 100 seeds", completion_object)
    t.check("generate output_type, 100 seeds", generate_output_type)
    t.check("greedy repeats, streamed = collected", greedy_and_stream)
    t.check("tight max_tokens", tight_budget)
    t.check("bad output_type", errors)
    d.stop()
    d.cleanup()
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
