# SPDX-License-Identifier: MIT
"""Serving: the OpenAI-compatible routes (/v1/models, /v1/completions,
/v1/chat/completions) and /generate, non-streaming (every field checked)
and streaming (read by `curl -N`, as a browser or SDK reads it), logprobs,
n, stop, seeds, response_format, OpenAI's error shape; then backpressure on
a daemon started with --max-concurrent-requests 1 --max-queued-requests 0:
a second request is a 429 with Retry-After, a client that disconnects
mid-stream frees its slot at once, and --request-timeout ends a request
that runs too long; and with one queued place: a queued stream waits (SSE
comments), the next is a 429, a queued client that leaves frees its place,
and the queued request runs once the running one is gone."""

import json
import math
import os
import shutil
import subprocess
import sys
import time

import tunalib

MODEL = "stories260K"
# llama2.c's greedy continuation of "Once upon a time" on stories260K
GREEDY = (", there was a little girl named Lily. She loved to play outside in "
          "the park.")


def sse(raw):
    """Parses an SSE body into the list of its data payloads (JSON objects,
    or the string "[DONE]")."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    out = []
    for block in text.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                data = line[len("data: "):]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def curl_stream(d, path, body, timeout=60):
    """POSTs body with `curl -N` and returns (HTTP status, SSE events)."""
    r = subprocess.run(
        ["curl", "-sS", "-N", "-w", "\n%{http_code}", "-H",
         "Content-Type: application/json", "--data-binary", json.dumps(body),
         d.url + path], capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    body, _, status = r.stdout.rpartition(b"\n")
    return int(status), sse(body)


def oai_error(r, status, code=None):
    assert r.status == status, r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert isinstance(e["message"], str) and e["message"], e
    assert e["type"] == ("rate_limit_error" if status == 429 else
                         "server_error" if status >= 500 else
                         "invalid_request_error"), e
    if code:
        assert e["code"] == code, e
    return e


def check_usage(u):
    assert set(u) >= {"prompt_tokens", "completion_tokens", "total_tokens"}, u
    assert all(isinstance(u[k], int) for k in u), u
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    if not shutil.which("curl"):
        print("SKIP: curl is not installed")
        sys.exit(tunalib.SKIP)
    t = tunalib.Runner("serving")
    d = tunalib.Daemon(tunad)
    b = tunalib.Daemon(tunad, args=["--max-concurrent-requests", "1",
                                    "--max-queued-requests", "0",
                                    "--request-timeout", "5"])
    # A timeout short enough that the biggest request allowed (64 sequences
    # x 500 tokens, about 3 s on an idle machine) always outlasts it.
    tmo = tunalib.Daemon(tunad, args=["--request-timeout", "1"])
    q = tunalib.Daemon(tunad, args=["--max-concurrent-requests", "1",
                                    "--max-queued-requests", "1"])

    def post(path, body, expect=200):
        return d.json("POST", path, body, expect=expect)

    def models():
        m = d.json("GET", "/v1/models")
        assert m["object"] == "list", m
        ids = [x["id"] for x in m["data"]]
        assert MODEL in ids, ids
        for x in m["data"]:
            assert x["object"] == "model" and isinstance(x["created"], int)
            assert isinstance(x["owned_by"], str), x
        one = d.json("GET", "/v1/models/" + MODEL)
        assert one["id"] == MODEL and one["object"] == "model", one
        assert one["parent"] is None, one
        oai_error(d.get("/v1/models/no-such-model"), 404, "model_not_found")

    def chat_shape():
        r = post("/v1/chat/completions", {
            "model": MODEL, "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Tell me a story."}]})
        assert set(r) == {"id", "object", "created", "model", "choices",
                          "usage", "system_fingerprint"}, r
        assert r["id"].startswith("chatcmpl-"), r
        assert r["object"] == "chat.completion", r
        assert isinstance(r["created"], int) and r["created"] > 1e9, r
        assert r["model"] == MODEL and isinstance(r["system_fingerprint"], str)
        assert len(r["choices"]) == 1, r
        c = r["choices"][0]
        assert set(c) == {"index", "message", "logprobs", "finish_reason"}, c
        assert c["index"] == 0 and c["logprobs"] is None, c
        assert c["message"]["role"] == "assistant", c
        assert isinstance(c["message"]["content"], str), c
        assert c["finish_reason"] in ("stop", "length"), c
        check_usage(r["usage"])
        assert r["usage"]["completion_tokens"] <= 16, r
        if c["finish_reason"] == "length":
            assert r["usage"]["completion_tokens"] == 16, r
        # content parts and max_completion_tokens
        r2 = post("/v1/chat/completions", {
            "model": MODEL, "max_completion_tokens": 16, "temperature": 0,
            "messages": [{"role": "system", "content": [
                {"type": "text", "text": "Be "}, {"type": "text",
                                                  "text": "brief."}]},
                {"role": "user", "content": "Tell me a story."}]})
        assert r2["choices"][0]["message"] == c["message"], (r2, r)

    def completion_shape():
        r = post("/v1/completions", {"model": MODEL, "prompt":
                                     "Once upon a time", "max_tokens": 9,
                                     "temperature": 0})
        assert set(r) == {"id", "object", "created", "model", "choices",
                          "usage", "system_fingerprint"}, r
        assert r["id"].startswith("cmpl-") and r["object"] == "text_completion"
        c = r["choices"][0]
        assert set(c) == {"text", "index", "logprobs", "finish_reason"}, c
        assert c["text"] == GREEDY[:len(c["text"])] and len(c["text"]) > 10, c
        assert c["finish_reason"] == "length", c
        assert r["usage"]["completion_tokens"] == 9, r
        assert r["usage"]["prompt_tokens"] == 5, r
        check_usage(r["usage"])

    def n_and_arrays():
        r = post("/v1/completions", {"model": MODEL, "prompt": ["Once", "Lily"],
                                     "n": 3, "max_tokens": 6, "seed": 1})
        assert [c["index"] for c in r["choices"]] == list(range(6)), r
        u = r["usage"]
        assert u["completion_tokens"] == sum(
            6 if c["finish_reason"] == "length" else 0
            for c in r["choices"]) or u["completion_tokens"] <= 36, u
        r = post("/v1/chat/completions", {
            "model": MODEL, "n": 4, "max_tokens": 8, "seed": 5,
            "messages": [{"role": "user", "content": "Hi"}]})
        assert [c["index"] for c in r["choices"]] == [0, 1, 2, 3], r
        texts = [c["message"]["content"] for c in r["choices"]]
        assert len(set(texts)) > 1, texts  # each choice its own sample
        # token-id prompts
        r = post("/v1/completions", {"model": MODEL, "prompt": [1, 403],
                                     "max_tokens": 3, "temperature": 0})
        assert r["usage"]["prompt_tokens"] == 2, r

    def stop_strings():
        r = post("/v1/completions", {"model": MODEL, "prompt":
                                     "Once upon a time", "max_tokens": 40,
                                     "temperature": 0, "stop": "Lily"})
        c = r["choices"][0]
        assert c["text"] == GREEDY[:GREEDY.index("Lily")], c
        assert c["finish_reason"] == "stop", c
        r = post("/v1/completions", {"model": MODEL, "prompt":
                                     "Once upon a time", "max_tokens": 40,
                                     "temperature": 0,
                                     "stop": ["zzz", " girl"]})
        assert r["choices"][0]["text"] == ", there was a little", r

    def seeds():
        body = {"model": MODEL, "max_tokens": 24, "temperature": 1.0,
                "seed": 1234, "n": 2,
                "messages": [{"role": "user", "content": "A story"}]}
        a = post("/v1/chat/completions", body)
        b2 = post("/v1/chat/completions", body)
        ta = [c["message"]["content"] for c in a["choices"]]
        tb = [c["message"]["content"] for c in b2["choices"]]
        assert ta == tb, (ta, tb)
        body["seed"] = 99
        c = post("/v1/chat/completions", body)
        assert [x["message"]["content"] for x in c["choices"]] != ta

    def chat_logprobs():
        r = post("/v1/chat/completions", {
            "model": MODEL, "max_tokens": 12, "temperature": 0,
            "logprobs": True, "top_logprobs": 3,
            "messages": [{"role": "user", "content": "Once upon a time"}]})
        c = r["choices"][0]
        content = c["logprobs"]["content"]
        assert c["logprobs"]["refusal"] is None, c
        assert len(content) == r["usage"]["completion_tokens"], r
        for e in content:
            assert set(e) == {"token", "logprob", "bytes", "top_logprobs"}, e
            assert e["logprob"] <= 0 and isinstance(e["bytes"], list), e
            top = e["top_logprobs"]
            assert len(top) == 3, e
            lps = [x["logprob"] for x in top]
            assert lps == sorted(lps, reverse=True), top
            assert top[0]["token"] == e["token"], e  # greedy: the top one
            assert abs(top[0]["logprob"] - e["logprob"]) < 1e-9, e
            assert sum(math.exp(x) for x in lps) <= 1 + 1e-6, top
            assert bytes(e["bytes"]).decode("utf-8") == e["token"], e
        text = "".join(e["token"] for e in content)
        if c["finish_reason"] == "length":
            assert text == c["message"]["content"], (text, c)
        # the same tokens, streamed: per-token logprobs equal, sums equal
        st, ev = curl_stream(d, "/v1/chat/completions", {
            "model": MODEL, "max_tokens": 12, "temperature": 0,
            "logprobs": True, "top_logprobs": 3, "stream": True,
            "messages": [{"role": "user", "content": "Once upon a time"}]})
        assert st == 200, ev
        streamed = [e for x in ev[:-1] for ch in x["choices"]
                    if ch["logprobs"] for e in ch["logprobs"]["content"]]
        assert [e["token"] for e in streamed] == [e["token"] for e in content]
        assert abs(sum(e["logprob"] for e in streamed) -
                   sum(e["logprob"] for e in content)) < 1e-6
        # logprobs off: null; top_logprobs without logprobs: 400
        r = post("/v1/chat/completions", {
            "model": MODEL, "max_tokens": 2, "messages": [
                {"role": "user", "content": "x"}]})
        assert r["choices"][0]["logprobs"] is None, r
        oai_error(d.post("/v1/chat/completions", {
            "model": MODEL, "top_logprobs": 2, "messages": [
                {"role": "user", "content": "x"}]}), 400)

    def completion_logprobs():
        r = post("/v1/completions", {"model": MODEL, "prompt":
                                     "Once upon a time", "max_tokens": 10,
                                     "temperature": 0, "logprobs": 2})
        c = r["choices"][0]
        lp = c["logprobs"]
        assert set(lp) == {"tokens", "token_logprobs", "top_logprobs",
                           "text_offset"}, lp
        n = r["usage"]["completion_tokens"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == n
        assert len(lp["top_logprobs"]) == len(lp["text_offset"]) == n
        assert "".join(lp["tokens"]) == c["text"], (lp["tokens"], c)
        assert lp["text_offset"] == sorted(lp["text_offset"]), lp
        assert lp["text_offset"][0] == 0, lp
        for tok, x, top in zip(lp["tokens"], lp["token_logprobs"],
                               lp["top_logprobs"]):
            assert 1 <= len(top) <= 2 and x <= 0, top
            assert abs(max(top.values()) - x) < 1e-9, (x, top)
            assert tok in top, (tok, top)
        # the sum of the chosen logprobs is the sequence's log-likelihood:
        # the same whether asked for with 2 or 5 alternatives
        r5 = post("/v1/completions", {"model": MODEL, "prompt":
                                      "Once upon a time", "max_tokens": 10,
                                      "temperature": 0, "logprobs": 5})
        s2 = sum(lp["token_logprobs"])
        s5 = sum(r5["choices"][0]["logprobs"]["token_logprobs"])
        assert abs(s2 - s5) < 1e-9 and s2 < 0, (s2, s5)

    def chat_stream():
        body = {"model": MODEL, "max_tokens": 20, "temperature": 0,
                "messages": [{"role": "user", "content": "Once upon a time"}]}
        ref = post("/v1/chat/completions", body)
        body.update(stream=True, stream_options={"include_usage": True})
        st, ev = curl_stream(d, "/v1/chat/completions", body)
        assert st == 200 and ev[-1] == "[DONE]", ev
        chunks = ev[:-1]
        ids = {x["id"] for x in chunks}
        assert len(ids) == 1 and ids.pop().startswith("chatcmpl-"), chunks
        for x in chunks:
            assert x["object"] == "chat.completion.chunk", x
            assert x["model"] == MODEL and isinstance(x["created"], int), x
            assert "usage" in x, x
        first = chunks[0]["choices"][0]
        assert first["delta"] == {"role": "assistant", "content": ""}, first
        assert first["finish_reason"] is None, first
        usage = chunks[-1]
        assert usage["choices"] == [] and usage["usage"] == ref["usage"], usage
        last = chunks[-2]["choices"][0]
        assert last["delta"] == {} and last["finish_reason"] == \
            ref["choices"][0]["finish_reason"], last
        text = "".join(x["choices"][0]["delta"].get("content", "")
                       for x in chunks[:-1])
        assert text == ref["choices"][0]["message"]["content"], text
        assert all(x["usage"] is None for x in chunks[:-1]), chunks
        # without include_usage: no usage member, no usage chunk
        del body["stream_options"]
        st, ev = curl_stream(d, "/v1/chat/completions", body)
        assert ev[-1] == "[DONE]" and all("usage" not in x for x in ev[:-1])
        assert ev[-2]["choices"][0]["finish_reason"] is not None, ev

    def completion_stream():
        body = {"model": MODEL, "prompt": "Once upon a time", "n": 2,
                "max_tokens": 12, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        st, ev = curl_stream(d, "/v1/completions", body)
        assert st == 200 and ev[-1] == "[DONE]", ev
        texts, finish = {0: "", 1: ""}, {}
        for x in ev[:-2]:
            assert x["object"] == "text_completion", x
            assert x["id"].startswith("cmpl-"), x
            for ch in x["choices"]:
                texts[ch["index"]] += ch["text"]
                if ch["finish_reason"]:
                    finish[ch["index"]] = ch["finish_reason"]
        assert texts[0] == texts[1] == GREEDY[:len(texts[0])], texts
        assert finish == {0: "length", 1: "length"}, finish
        assert ev[-2]["usage"]["completion_tokens"] == 24, ev[-2]

    def generate_stream():
        body = {"prompt": "Once upon a time", "max_tokens": 20,
                "temperature": 0}
        ref = post("/generate", body)
        body["stream"] = True
        st, ev = curl_stream(d, "/generate", body)
        assert st == 200 and ev[-1] == "[DONE]", ev
        text = "".join(x["text"] for x in ev[:-1])
        assert text == ref["text"], (text, ref)
        last = ev[-2]
        assert last["finish_reason"] == ref["finish_reason"], last
        assert last["usage"] == ref["usage"], last
        assert all(x["index"] == 0 for x in ev[:-1]), ev
        # logprobs, non-streaming and streaming
        body = {"prompt": ["Once upon a time", "Lily"], "max_tokens": 6,
                "temperature": 0, "top_logprobs": 2}
        r = post("/generate", body)
        for res in r["results"]:
            lp = res["logprobs"]
            assert len(lp) == res["usage"]["completion_tokens"], res
            assert "".join(e["token"] for e in lp) == res["text"], res
            for e in lp:
                assert e["top_logprobs"][0]["id"] == e["id"], e
                assert len(e["top_logprobs"]) == 2, e
        body["stream"] = True
        st, ev = curl_stream(d, "/generate", body)
        for i, res in enumerate(r["results"]):
            toks = [e for x in ev[:-1] if x["index"] == i
                    for e in x.get("logprobs", [])]
            assert [e["id"] for e in toks] == [e["id"] for e in
                                               res["logprobs"]], (toks, res)

    def response_format():
        base = {"model": MODEL, "max_tokens": 4,
                "messages": [{"role": "user", "content": "JSON please"}]}
        # enforced (tests/integration/test_structured.py: 100 seeds)
        for rf in ({"type": "json_object"},
                   {"type": "json_schema", "json_schema": {
                       "name": "x", "schema": {"type": "object"}}}):
            r = post("/v1/chat/completions", dict(base, max_tokens=40,
                                                  response_format=rf))
            ch = r["choices"][0]
            assert ch["finish_reason"] == "stop", r
            assert isinstance(json.loads(ch["message"]["content"]), dict), r
        e = oai_error(d.post("/v1/chat/completions", dict(
            base, response_format={"type": "json_schema", "json_schema": {
                "name": "x", "schema": {"$ref": "#/x"}}})), 400)
        assert e["param"] == "response_format", e
        r = post("/v1/chat/completions", dict(base, response_format={
            "type": "text"}))
        assert r["choices"][0]["message"]["role"] == "assistant", r
        for bad in ({"type": "xml"}, {"type": "json_schema"}, "json", {}):
            oai_error(d.post("/v1/chat/completions",
                             dict(base, response_format=bad)), 400)

    def errors():
        msgs = [{"role": "user", "content": "x"}]
        oai_error(d.post("/v1/chat/completions", {"messages": msgs}), 400)
        oai_error(d.post("/v1/chat/completions", {"model": MODEL}), 400)
        e = oai_error(d.post("/v1/chat/completions", {
            "model": MODEL, "messages": msgs, "frobnicate": 1}), 400)
        assert e["param"] == "frobnicate", e
        e = oai_error(d.post("/v1/chat/completions", {
            "model": "nope", "messages": msgs}), 404, "model_not_found")
        assert e["param"] == "model", e
        oai_error(d.post("/v1/chat/completions", {
            "model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}),
            400)
        oai_error(d.post("/v1/chat/completions", {
            "model": MODEL, "messages": msgs, "n": 0}), 400)
        oai_error(d.post("/v1/chat/completions", {
            "model": MODEL, "messages": msgs, "presence_penalty": 0.5}), 400,
            "unsupported")
        oai_error(d.post("/v1/completions", {"model": MODEL}), 400)
        oai_error(d.post("/v1/completions", {
            "model": MODEL, "prompt": "x", "temperature": 3}), 400)
        oai_error(d.post("/v1/completions", {
            "model": MODEL, "prompt": "x " * 2000}), 400,
            "context_length_exceeded")
        oai_error(d.post("/v1/completions", "{bad json",
                         headers={"Content-Type": "application/json"}), 400)
        oai_error(d.get("/v1/completions"), 405)
        # the native route keeps the native error shape
        r = d.post("/generate", {"prompt": "x", "frobnicate": 1})
        assert r.status == 400 and "type" not in r.json()["error"], r
        assert d.json("GET", "/health")["status"] == "ok"

    # ------------------------------------------------------ backpressure

    BIG = {"model": MODEL, "prompt": ["Once", "Lily", "The", "A"], "n": 16,
           "max_tokens": 500, "temperature": 1.0, "seed": 3, "stream": True}

    def start_big_stream(daemon=None):
        # the previous test's client was just killed: its place is freed as
        # soon as the server notices (within a second, checked below)
        t0 = time.time()
        while True:
            p = subprocess.Popen(
                ["curl", "-sS", "-N", "-H", "Content-Type: application/json",
                 "--data-binary", json.dumps(BIG),
                 (daemon or b).url + "/v1/completions"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = p.stdout.readline()  # the first event: it is running
            if line.startswith(b"data: {") or time.time() - t0 > 1.0:
                break
            p.wait()
            time.sleep(0.02)
        assert line.startswith(b"data: {"), line
        return p

    def over_limit():
        p = start_big_stream()
        try:
            r = b.post("/v1/completions", {"model": MODEL, "prompt": "x",
                                           "max_tokens": 2})
            e = oai_error(r, 429, "rate_limited")
            ra = r.header("Retry-After")
            assert ra and int(ra) >= 1, r.headers
            r = b.post("/generate", {"prompt": "x", "max_tokens": 2,
                                     "stream": True})
            assert r.status == 429 and r.header("Retry-After"), r
            assert r.json()["error"]["code"] == "rate_limited", r
        finally:
            p.kill()
            p.wait()

    def disconnect_frees_slot():
        p = start_big_stream()
        p.kill()  # the client goes away mid-stream
        p.wait()
        t0 = time.time()
        while True:
            r = b.post("/v1/completions", {"model": MODEL, "prompt": "Once",
                                           "max_tokens": 4})
            if r.status == 200 or time.time() - t0 > 1.0:
                break
            time.sleep(0.02)
        assert r.status == 200, r
        # the killed request had ~30000 tokens (many seconds) to go
        assert time.time() - t0 < 1.0, time.time() - t0

    def queue():
        # one running place, one queued place
        a = start_big_stream(q)
        try:
            waiter = subprocess.Popen(
                ["curl", "-sS", "-N", "-H", "Content-Type: application/json",
                 "--data-binary", json.dumps(dict(BIG, prompt="Once", n=1,
                                                  max_tokens=3)),
                 q.url + "/v1/completions"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = waiter.stdout.readline()  # ": queued" comments while it waits
            assert line.startswith(b": queued"), line
            r = q.post("/generate", {"prompt": "x", "max_tokens": 2})
            assert r.status == 429 and r.header("Retry-After"), r
            assert r.json()["error"]["code"] == "rate_limited", r
            # a queued client that leaves frees its queue place
            waiter.kill()
            waiter.wait()
            t0 = time.time()
            while time.time() - t0 < 5:
                p2 = subprocess.Popen(
                    ["curl", "-sS", "-N", "-H",
                     "Content-Type: application/json", "--data-binary",
                     json.dumps({"prompt": "x", "max_tokens": 2,
                                 "stream": True}), q.url + "/generate"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                first = p2.stdout.readline()
                if first.startswith(b": queued"):
                    break
                p2.kill()
                p2.wait()
                time.sleep(0.2)
            assert first.startswith(b": queued"), first
        finally:
            a.kill()
            a.wait()
        # the running stream gone, the queued one runs to its end
        out, _ = p2.communicate(timeout=30)
        ev = sse(out)
        assert ev[-1] == "[DONE]" and ev[-2]["finish_reason"], ev

    def timeout():
        body = dict(BIG, stream=False)
        t0 = time.time()
        r = tmo.post("/v1/completions", body)
        took = time.time() - t0
        oai_error(r, 503, "timeout")
        assert 0.8 <= took < 5, took
        r = tmo.post("/generate", {"prompt": "x", "max_tokens": 2})
        assert r.status == 200, r

    try:
        if t.check("start", d.start):
            t.check("models", models)
            t.check("chat response shape", chat_shape)
            t.check("completion response shape", completion_shape)
            t.check("n and prompt arrays", n_and_arrays)
            t.check("stop strings", stop_strings)
            t.check("seed determinism", seeds)
            t.check("chat logprobs", chat_logprobs)
            t.check("completion logprobs", completion_logprobs)
            t.check("chat streaming (curl -N)", chat_stream)
            t.check("completion streaming (curl -N)", completion_stream)
            t.check("/generate streaming and logprobs", generate_stream)
            t.check("response_format", response_format)
            t.check("errors in OpenAI's shape", errors)
        if t.check("start limited daemon", b.start):
            t.check("429 with Retry-After over the limit", over_limit)
            t.check("a disconnecting client frees its slot",
                    disconnect_frees_slot)
            t.check("still serving", lambda: b.json("GET", "/health"))
        if t.check("start short-timeout daemon", tmo.start):
            t.check("request timeout", timeout)
        if t.check("start queueing daemon", q.start):
            t.check("queue: FIFO place, 429 past it, leaving frees it",
                    queue)
    finally:
        for x in (d, b, q, tmo):
            if not x.alive() and x.proc:
                print(x.log_tail())
            x.cleanup()
    t.finish()


if __name__ == "__main__":
    main()
