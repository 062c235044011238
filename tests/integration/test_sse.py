# SPDX-License-Identifier: MIT
"""Live job events over Server-Sent Events, read by a real streaming client
(curl -N): the stream carries every event of a running job and closes when
the job ends; a client that disconnects mid-job and reconnects with
Last-Event-ID gets exactly the events it had not seen. Also: POST /jobs
dry runs answer without queueing or storing anything, and "auto"
hyperparameters are chosen and reported."""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tunalib import (Daemon, Runner, SKIP, example, run_checks,  # noqa: E402
                     tunad_path)


def curl_sse(url, headers=()):
    cmd = ["curl", "-sN", "--max-time", "600", url]
    for h in headers:
        cmd += ["-H", h]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE)


def read_messages(proc, want=None):
    """Parses SSE from proc's stdout: yields (id, event, data) per message
    until EOF, or until `want` messages were read."""
    msg, n = {}, 0
    for raw in proc.stdout:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if "data" in msg:
                yield int(msg["id"]), msg.get("event"), json.loads(msg["data"])
                n += 1
                if want is not None and n >= want:
                    return
            msg = {}
            continue
        if line.startswith(":"):
            continue
        k, _, v = line.partition(":")
        msg[k] = v[1:] if v.startswith(" ") else v


def start_job(d, query):
    return d.upload_jobs(example("zog.jsonl"), query)["id"]


def check_stream_and_resume(d):
    job = start_job(d, "epochs=2&batch_size=4&seed=3")
    url = "%s/jobs/%s/events" % (d.url, job)
    # First client: reads a few messages while the job trains, then leaves.
    first = curl_sse(url, ["Accept: text/event-stream"])
    got1 = list(read_messages(first, want=12))
    first.kill()
    first.wait()
    assert len(got1) == 12, got1
    last = got1[-1][0]
    st = d.json("GET", "/jobs/" + job)["status"]
    assert st in ("queued", "running"), "job ended too soon to test: " + st
    # Second client resumes after the last id it saw and reads to the end:
    # the server closes the stream once the job has finished.
    second = curl_sse(url + "?stream=true", ["Last-Event-ID: %d" % last])
    t0 = time.time()
    got2 = list(read_messages(second))
    rc = second.wait(timeout=60)
    assert rc == 0, "curl exit %d (the server should end the stream)" % rc
    assert time.time() - t0 < 590
    ids = [m[0] for m in got1 + got2]
    assert ids == sorted(set(ids)), "duplicates or disorder: %r" % ids
    assert got2 and got2[0][0] > last
    # nothing missed: the same events as the JSON list, in order
    listed = [e["id"] for e in d.events(job)]
    assert ids == listed, (ids, listed)
    kinds = {m[1] for m in got1 + got2}
    assert {"status", "step"} <= kinds, kinds
    fin = got2[-1]
    assert fin[1] == "status" and fin[2]["data"]["status"] == "succeeded", fin
    for i, ev, data in got1 + got2:
        assert data["id"] == i and data["type"] == ev
    assert d.json("GET", "/jobs/" + job)["status"] == "succeeded"
    # A finished job: the history is replayed and the stream closes.
    p = curl_sse(url + "?stream=true&after=%d" % listed[-3])
    tail = list(read_messages(p))
    assert p.wait(timeout=30) == 0
    assert [m[0] for m in tail] == listed[-2:], tail
    # A bad Last-Event-ID is a 400, not a stream.
    r = d.get("/jobs/%s/events" % job,
              headers={"Accept": "text/event-stream",
                       "Last-Event-ID": "abc"})
    assert r.status == 400 and r.json()["error"]["field"] == "Last-Event-ID"


def check_dry_run(d):
    before_jobs = d.json("GET", "/jobs")["data"]
    before_ds = d.json("GET", "/datasets")["data"]
    files = sorted(os.listdir(os.path.join(d.data_dir, "datasets")))
    with open(example("zog.jsonl"), "rb") as f:
        body = f.read()
    r = d.json("POST", "/jobs?dry_run=true&epochs=2&batch_size=4"
               "&validation_split=0.1&max_seq_len=64", body,
               headers={"Content-Type": "application/jsonl"})
    assert r["dry_run"] is True and r["object"] == "job.preflight", r
    assert r["examples"]["total"] == 240 and r["examples"]["validation"] == 24
    assert r["tokens"]["total"] > 0 and r["truncated_examples"] > 0, r
    assert r["total_steps"] == 2 * 54, r        # 216 rows / 4 per step
    assert r["epochs"] == 2
    assert r["estimated_seconds"] > 0 and r["estimated_ram_bytes"] > 0
    ram = r["estimate"]["ram"]
    assert 0 < ram["measured_trainer_bytes"] <= 2 * ram["trainer_bytes"], ram
    # The JSON form, with dry_run in the body, against a stored dataset.
    ds = d.json("POST", "/datasets", body,
                headers={"Content-Type": "application/jsonl"}, expect=201)
    r2 = d.json("POST", "/jobs", {"dataset_id": ds["id"], "dry_run": True,
                                  "hyperparameters": {"epochs": "auto"}})
    assert r2["dataset_id"] == ds["id"] and r2["epochs"] == 3, r2
    assert r2["hyperparameters"]["auto"] == ["epochs"], r2
    # Nothing queued, nothing stored (but the one explicit upload).
    assert d.json("GET", "/jobs")["data"] == before_jobs
    assert len(d.json("GET", "/datasets")["data"]) == len(before_ds) + 1
    after = sorted(os.listdir(os.path.join(d.data_dir, "datasets")))
    assert len(after) == len(files) + 1, (files, after)
    # A bad setting still fails as it would for a real job.
    r = d.post("/jobs?dry_run=true&epochs=0", body,
               headers={"Content-Type": "application/jsonl"})
    assert r.status == 400 and r.json()["error"]["field"] == "epochs"


def check_auto(d):
    # 240 rows -> 3 epochs (3 x 240 passes is within 100..25,000)
    j = d.upload_jobs(example("zog.jsonl"),
                      "epochs=auto&learning_rate=auto&batch_size=auto")
    hp = j["hyperparameters"]
    assert hp["epochs"] == 3 and hp["batch_size"] == 8, hp
    assert 1e-4 < hp["learning_rate"] < 3e-3, hp
    assert hp["auto"] == ["epochs", "learning_rate", "batch_size"], hp
    d.post("/jobs/%s/cancel" % j["id"])       # may have finished already
    # 10 rows -> 10 epochs (at least ~100 example passes)
    rows = [{"prompt": "Q%d" % i, "completion": " A%d" % i}
            for i in range(10)]
    j = d.json("POST", "/jobs", {"training_data": rows,
                                 "hyperparameters": {"epochs": "auto"}},
               expect=201)
    assert j["hyperparameters"]["epochs"] == 10, j["hyperparameters"]
    d.post("/jobs/%s/cancel" % j["id"])
    r = d.post("/jobs", {"training_data": rows,
                         "hyperparameters": {"lora_rank": "auto"}})
    assert r.status == 400 and r.json()["error"]["field"] == "lora_rank"


def main():
    tunad = tunad_path()
    if not shutil.which("curl"):
        print("SKIP: curl is not installed")
        sys.exit(SKIP)
    d = Daemon(tunad).start()
    run = Runner("sse")
    def checks():
        run.check("SSE stream, disconnect, resume with Last-Event-ID",
                  check_stream_and_resume, d)
        run.check("dry run: counts and estimates, nothing stored",
                  check_dry_run, d)
        run.check("auto hyperparameters chosen and reported", check_auto, d)

    run_checks(run, d, checks)


if __name__ == "__main__":
    main()
