# SPDX-License-Identifier: MIT
"""Bad input never hurts the daemon: each malformed request gets the right
4xx with a JSON error body, the daemon keeps serving, and the datasets and
jobs made before are intact afterwards."""

import json
import socket

import tunalib

MAX_BODY = 100000
UNKNOWN_JOB = "job_" + "0" * 24
UNKNOWN_DS = "ds_" + "0" * 24
GOOD = ('{"prompt": "Once upon a time", "completion": " a cat sat."}\n'
        '{"prompt": "One day", "completion": " the sun rose."}\n')
JSONL = {"Content-Type": "application/jsonl"}
JSON = {"Content-Type": "application/json"}


def jsonl(*lines):
    return ("\n".join(lines) + "\n").encode()


def cases(s):
    """(label, method, path, body, headers, status, checks) where checks
    is a dict of error fields that must match."""
    ds, job = s["ds"]["id"], s["job"]["id"]
    line = '{"prompt": "a", "completion": "b"}'
    hp = lambda **h: {"dataset_id": ds, "hyperparameters": h}  # noqa: E731
    return [
        # --- datasets: bad JSONL, reported with the first bad line
        ("not JSON", "POST", "/datasets", b"hello\n", JSONL, 400,
         {"line": 1}),
        ("bad JSON on line 3", "POST", "/datasets",
         jsonl(line, line, '{"prompt": "a", "completion": ', line), JSONL,
         400, {"line": 3}),
        ("mixed formats", "POST", "/datasets",
         jsonl(line, '{"text": "hello"}'), JSONL, 400, {"line": 2}),
        ("wrong type for completion", "POST", "/datasets",
         jsonl(line, '{"prompt": "a", "completion": 5}'), JSONL, 400,
         {"line": 2}),
        ("array instead of object", "POST", "/datasets",
         jsonl('["prompt", "completion"]'), JSONL, 400, {"line": 1}),
        ("messages not a list", "POST", "/datasets",
         jsonl('{"messages": "hi"}'), JSONL, 400, {"line": 1}),
        ("invalid UTF-8 in a line", "POST", "/datasets",
         b'{"prompt": "a", "completion": "b"}\n{"text": "\xff\xfe"}\n',
         JSONL, 400, {"line": 2}),
        ("empty dataset", "POST", "/datasets", b"\n\n", JSONL, (400, 422),
         {}),
        ("missing body", "POST", "/datasets", None, {}, 400, {}),
        ("oversized upload", "POST", "/datasets",
         jsonl(*[line] * (MAX_BODY // len(line) + 100)), JSONL, 413, {}),
        # --- jobs (JSON)
        ("job: invalid JSON", "POST", "/jobs", b'{"dataset_id": ', JSON,
         400, {}),
        ("job: JSON array", "POST", "/jobs", b"[1, 2]", JSON, 400, {}),
        ("job: no dataset", "POST", "/jobs", {}, None, 400, {}),
        ("job: dataset_id and training_data", "POST", "/jobs",
         {"dataset_id": ds, "training_data": [{"text": "x"}]}, None, 400,
         {}),
        ("job: unknown dataset", "POST", "/jobs", {"dataset_id": UNKNOWN_DS},
         None, 404, {}),
        ("job: dataset_id path traversal", "POST", "/jobs",
         {"dataset_id": "../../etc/passwd"}, None, (400, 404), {}),
        ("job: dataset_id wrong type", "POST", "/jobs", {"dataset_id": 7},
         None, 400, {}),
        ("job: negative epochs", "POST", "/jobs", hp(epochs=-1), None, 400,
         {"field": "epochs"}),
        ("job: huge epochs", "POST", "/jobs", hp(epochs=10 ** 12), None, 400,
         {"field": "epochs"}),
        ("job: epochs as a string", "POST", "/jobs", hp(epochs="three"),
         None, 400, {"field": "epochs"}),
        ("job: fractional batch size", "POST", "/jobs", hp(batch_size=2.5),
         None, 400, {"field": "batch_size"}),
        ("job: negative learning rate", "POST", "/jobs",
         hp(learning_rate=-0.1), None, 400, {"field": "learning_rate"}),
        ("job: unknown hyperparameter", "POST", "/jobs", hp(frobs=1), None,
         400, {"field": "frobs"}),
        ("job: unknown base model", "POST", "/jobs",
         {"dataset_id": ds, "base_model": "no-such-model"}, None, 404, {}),
        ("job: base model path traversal", "POST", "/jobs",
         {"dataset_id": ds, "base_model": "../../../etc/passwd"}, None,
         (400, 404), {}),
        ("job: validation_split 1.5", "POST", "/jobs",
         {"dataset_id": ds, "validation_split": 1.5}, None, 400, {}),
        ("job: invalid training_data record", "POST", "/jobs",
         {"training_data": [{"prompt": 1}]}, None, 400, {}),
        ("job: oversized JSON", "POST", "/jobs",
         b'{"training_data": [' + b'{"text": "abcdefgh"},' * 8000 +
         b'{"text": "x"}]}', JSON, 413, {}),
        # --- jobs (JSONL body, settings in the query)
        ("job query: negative epochs", "POST", "/jobs?epochs=-3",
         GOOD.encode(), JSONL, 400, {"field": "epochs"}),
        ("job query: epochs not a number", "POST", "/jobs?epochs=abc",
         GOOD.encode(), JSONL, 400, {"field": "epochs"}),
        ("job query: unknown setting", "POST", "/jobs?bogus=1",
         GOOD.encode(), JSONL, 400, {}),
        ("job query: bad JSONL line", "POST", "/jobs?epochs=1",
         jsonl(line, "{oops}"), JSONL, 400, {"line": 2}),
        # --- unknown ids, traversal, routes, methods
        ("unknown job", "GET", "/jobs/" + UNKNOWN_JOB, None, {}, 404, {}),
        ("malformed job id", "GET", "/jobs/job_xyz", None, {}, 404, {}),
        ("job path traversal", "GET", "/jobs/..%2F..%2Fetc%2Fpasswd", None,
         {}, 404, {}),
        ("dataset path traversal", "GET",
         "/datasets/%2e%2e%2f%2e%2e%2ftuna.db", None, {}, 404, {}),
        ("dataset NUL byte", "GET", "/datasets/%s%%00.jsonl" % ds, None, {},
         404, {}),
        ("unknown dataset", "GET", "/datasets/" + UNKNOWN_DS, None, {}, 404,
         {}),
        ("delete unknown dataset", "DELETE", "/datasets/" + UNKNOWN_DS, None,
         {}, 404, {}),
        ("cancel unknown job", "POST", "/jobs/%s/cancel" % UNKNOWN_JOB, None,
         {}, 404, {}),
        ("events of unknown job", "GET", "/jobs/%s/events" % UNKNOWN_JOB,
         None, {}, 404, {}),
        ("unknown route", "GET", "/nope", None, {}, 404, {}),
        ("unknown nested route", "GET", "/jobs/%s/nope" % job, None, {}, 404,
         {}),
        ("wrong method on /jobs", "DELETE", "/jobs", None, {}, 405, {}),
        ("wrong method on /datasets", "PUT", "/datasets", b"x", JSONL, 405,
         {}),
        ("wrong method on /generate", "GET", "/generate", None, {}, 405, {}),
        ("wrong method on /health", "POST", "/health", b"{}", JSON, 405, {}),
        ("bad list limit", "GET", "/jobs?limit=-1", None, {}, 400, {}),
        ("bad status filter", "GET", "/jobs?status=sleeping", None, {}, 400,
         {}),
        ("bad events cursor", "GET", "/jobs/%s/events?after=abc" % job, None,
         {}, 400, {}),
        # --- generate
        ("generate: missing body", "POST", "/generate", None, JSON, 400, {}),
        ("generate: invalid JSON", "POST", "/generate", b"{model", JSON, 400,
         {}),
        ("generate: not JSON content type", "POST", "/generate",
         b"model=stories260K", {"Content-Type": "text/plain"}, 415, {}),
        ("generate: unknown model", "POST", "/generate",
         {"model": "gpt-17", "prompt": "x"}, None, 404, {}),
        ("generate: unknown job model", "POST", "/generate",
         {"model": UNKNOWN_JOB, "prompt": "x"}, None, 404, {}),
        ("generate: negative max_tokens", "POST", "/generate",
         {"model": "stories260K", "prompt": "x", "max_tokens": -5}, None,
         400, {"field": "max_tokens"}),
        ("generate: huge max_tokens", "POST", "/generate",
         {"model": "stories260K", "prompt": "x", "max_tokens": 10 ** 15},
         None, 400, {"field": "max_tokens"}),
        ("generate: prompt of the wrong type", "POST", "/generate",
         {"model": "stories260K", "prompt": 123}, None, 400,
         {"field": "prompt"}),
        ("generate: temperature as a string", "POST", "/generate",
         {"model": "stories260K", "prompt": "x", "temperature": "hot"}, None,
         400, {"field": "temperature"}),
        ("generate: invalid UTF-8", "POST", "/generate",
         b'{"model": "stories260K", "prompt": "\xc3\x28"}', JSON, 400, {}),
        ("generate: model of a cancelled job", "POST", "/generate",
         {"model": s["cancelled"]["id"], "prompt": "x"}, None, 409, {}),
        ("delete a dataset a queued job uses", "DELETE",
         "/datasets/" + s["queued_ds"], None, {}, 409, {}),
    ]


def check_case(d, c):
    label, method, path, body, headers, status, fields = c
    r = d.request(method, path, body=body, headers=headers)
    ok = status if isinstance(status, tuple) else (status,)
    assert r.status in ok, "%s: expected %s, got %r" % (label, status, r)
    ct = r.header("Content-Type") or ""
    assert ct.startswith("application/json"), (label, ct)
    err = r.json()["error"]
    assert isinstance(err["code"], str) and err["code"], (label, err)
    assert isinstance(err["message"], str) and err["message"], (label, err)
    for k, v in fields.items():
        assert err.get(k) == v, "%s: %s should be %r: %r" % (label, k, v,
                                                              err)


def raw_request(d, data):
    """Sends bytes on a raw socket; returns the status line (or '')."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\r\n", 1)[0].decode("latin-1")
    finally:
        s.close()


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    # No training while the bad requests run: the worker count cannot be
    # 0, so jobs queued here are cancelled at once (one is kept queued
    # behind a long one for the 409 on delete).
    d = tunalib.Daemon(tunad, args=["--max-body-bytes", str(MAX_BODY),
                                    "--workers", "1"]).start()
    t = tunalib.Runner("malformed")
    s = {}

    def setup():
        s["ds"] = d.json("POST", "/datasets", GOOD.encode(), headers=JSONL,
                         expect=201)
        assert s["ds"]["rows"] == 2, s["ds"]
        s["job"] = d.json("POST", "/jobs", {
            "dataset_id": s["ds"]["id"],
            "hyperparameters": {"epochs": 1}}, expect=201)
        s["job"] = d.wait_job(s["job"]["id"], timeout=300)
        assert s["job"]["status"] == "succeeded", s["job"]
        # One long job keeps the worker busy, one waits behind it.
        with open(tunalib.example("zog.jsonl"), "rb") as f:
            zog = d.json("POST", "/datasets", f.read(), headers=JSONL,
                         expect=201)
        s["long"] = d.json("POST", "/jobs", {
            "dataset_id": zog["id"], "hyperparameters": {"epochs": 100}},
            expect=201)
        ds2 = d.json("POST", "/datasets", GOOD.encode(), headers=JSONL,
                     expect=201)
        q = d.json("POST", "/jobs", {"dataset_id": ds2["id"]}, expect=201)
        s["queued_ds"], s["queued"] = ds2["id"], q
        s["cancelled"] = d.json("POST", "/jobs", {
            "dataset_id": s["ds"]["id"]}, expect=201)
        d.json("POST", "/jobs/%s/cancel" % s["cancelled"]["id"])

    def all_cases():
        n_bad = 0
        for c in cases(s):
            try:
                check_case(d, c)
            except Exception as e:
                n_bad += 1
                print("   FAIL %s: %s" % (c[0], e))
            assert d.alive(), "tunad died after %s" % c[0]
        n = len(cases(s))
        print("   %d malformed requests, %d wrong" % (n, n_bad))
        assert n >= 30
        assert n_bad == 0

    def raw_garbage():
        # An unknown HTTP version gets libmicrohttpd's 505, the answer HTTP
        # defines for it; nothing else may be a 5xx.
        line = raw_request(d, b"GET /health HTTP/9.9\r\n\r\n")
        assert line.startswith("HTTP/1.1 505") or \
            line.startswith("HTTP/1.1 4"), line
        for data in (b"GARBAGE\r\n\r\n",
                     b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"POST /datasets HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 10\r\n\r\nabc",
                     b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"):
            line = raw_request(d, data)
            assert not line.startswith("HTTP/1.1 5"), (data[:40], line)
            assert d.alive()

    def still_serving():
        assert d.json("GET", "/health")["status"] == "ok"
        ds = d.json("GET", "/datasets/" + s["ds"]["id"])
        assert ds["rows"] == 2 and ds["id"] == s["ds"]["id"], ds
        job = d.json("GET", "/jobs/" + s["job"]["id"])
        assert job["status"] == "succeeded", job
        ids = json.dumps(d.json("GET", "/jobs"))
        for j in (s["job"], s["long"], s["queued"], s["cancelled"]):
            assert j["id"] in ids, j["id"]
        ids = json.dumps(d.json("GET", "/datasets"))
        assert s["ds"]["id"] in ids and s["queued_ds"] in ids
        r = d.json("POST", "/generate", {"model": s["job"]["model"],
                                         "prompt": "Once", "max_tokens": 4})
        assert r["text"], r

    def checks():
        if t.check("setup: a dataset and jobs", setup):
            t.check("malformed requests: 4xx with a JSON error", all_cases)
            t.check("raw garbage on the socket", raw_garbage)
            t.check("still serving, earlier data intact", still_serving)
        for k in ("long", "queued"):
            if k in s:
                d.request("POST", "/jobs/%s/cancel" % s[k]["id"])

    tunalib.run_checks(t, d, checks)


if __name__ == "__main__":
    main()
