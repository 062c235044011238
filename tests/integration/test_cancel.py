# SPDX-License-Identifier: MIT
"""Cancel: a queued job never starts, a running one stops within a step,
a finished one answers 409. One worker, so the second job waits."""

import json
import time

import tunalib

SMALL = "\n".join(
    '{"prompt": "Once upon a time", "completion": " there was a cat %d."}'
    % i for i in range(8)) + "\n"


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    d = tunalib.Daemon(tunad, args=["--workers", "1"]).start()
    t = tunalib.Runner("cancel")
    s = {}

    def submit(query, body=None):
        if body is None:
            return d.upload_jobs(tunalib.example("zog.jsonl"), query)
        return d.json("POST", "/jobs?" + query, body,
                      headers={"Content-Type": "text/plain"}, expect=201)

    def start_two():
        # Long enough to still be running when cancelled.
        s["a"] = submit("epochs=100")
        s["b"] = submit("epochs=1")
        a = d.wait_job(s["a"]["id"], pred=lambda j: j["status"] == "running"
                       and (j.get("progress") or {}).get("step", 0) > 0)
        assert a["status"] == "running", a
        b = d.json("GET", "/jobs/" + s["b"]["id"])
        assert b["status"] == "queued", b

    def cancel_queued():
        r = d.json("POST", "/jobs/%s/cancel" % s["b"]["id"])
        assert r["status"] == "cancelled", r
        b = d.json("GET", "/jobs/" + s["b"]["id"])
        assert b["status"] == "cancelled", b

    def cancel_running():
        t0 = time.time()
        r = d.json("POST", "/jobs/%s/cancel" % s["a"]["id"])
        assert r["status"] in ("running", "cancelled"), r
        a = d.wait_job(s["a"]["id"], timeout=30)
        assert a["status"] == "cancelled", a
        assert time.time() - t0 < 10, "cancel took %.1fs" % (time.time() - t0)
        assert a["progress"]["step"] < a["progress"]["total_steps"], a

    def queued_never_started():
        # Give the worker time to pick up anything still queued.
        time.sleep(2.5)
        b = d.json("GET", "/jobs/" + s["b"]["id"])
        assert b["status"] == "cancelled", b
        assert not b.get("started_at"), b
        assert (b.get("progress") or {}).get("step", 0) == 0, b

    def cancel_finished():
        # A JSON job with inline records and a validation split.
        records = [json.loads(x) for x in SMALL.splitlines()]
        c = d.json("POST", "/jobs", {
            "training_data": records, "validation_split": 0.25,
            "hyperparameters": {"epochs": 2, "batch_size": 2}}, expect=201)
        c = d.wait_job(c["id"], timeout=300)
        assert c["status"] == "succeeded", c
        assert isinstance(c["progress"].get("validation_loss"), float), c
        steps = [e["data"] for e in d.events(c["id"]) if e["type"] == "step"]
        assert steps and "val_loss" in steps[-1], steps[-1:]
        for job in (c, s["a"], s["b"]):
            r = d.request("POST", "/jobs/%s/cancel" % job["id"])
            assert r.status == 409, r
            assert r.json()["error"]["code"], r
        r = d.json("GET", "/jobs/" + c["id"])
        assert r["status"] == "succeeded", r

    def events_tell():
        items = d.events(s["a"]["id"])
        assert any((e.get("data") or {}).get("status") == "cancelled"
                   for e in items), items[-5:]

    def checks():
        if t.check("a running job and a queued one", start_two):
            t.check("cancel the queued job", cancel_queued)
            t.check("cancel the running job", cancel_running)
            t.check("the cancelled queued job never started",
                    queued_never_started)
            t.check("events record the cancel", events_tell)
        t.check("cancel a finished job: 409", cancel_finished)

    tunalib.run_checks(t, d, checks)


if __name__ == "__main__":
    main()
