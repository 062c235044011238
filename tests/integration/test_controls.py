# SPDX-License-Identifier: MIT
"""Job controls and validation: early stopping on a dataset made to
overfit (the model is then the best checkpoint, byte for byte), checkpoints
listed and served as models, metrics.csv with validation columns, pause
(frees the worker) and resume (continues from the pause), priority and
queue positions, stop-and-save (succeeds with a note and a usable model),
and cancel (discards checkpoints)."""

import os
import time

import tunalib

ZOG = tunalib.example("zog.jsonl")


def lines(path, a, b):
    with open(path, "rb") as f:
        return b"".join(f.readlines()[a:b])


def adapter(d, job_id, sub="adapter"):
    with open(os.path.join(d.data_dir, "jobs", job_id, sub,
                           "adapter_model.safetensors"), "rb") as f:
        return f.read()


def stepping(j):
    return j["status"] == "running" and j["progress"]["step"] >= 3


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    d = tunalib.Daemon(tunad, args=["--workers", "1", "--threads", "1"])
    t = tunalib.Runner("controls")
    s = {}

    def early_stopping():
        # 6 training stories learned by heart at a high learning rate; the
        # validation set is 16 other stories: its loss falls, then rises
        val = d.json("POST", "/datasets?name=val", lines(ZOG, 200, 216),
                     expect=201)
        job = d.json("POST", "/jobs", {
            "training_data": [{"prompt": "Once upon a time",
                               "completion": c} for c in s["train6"]],
            "validation_dataset_id": val["id"],
            "hyperparameters": {"epochs": 60, "batch_size": 2,
                                "learning_rate": 0.02,
                                "lr_schedule": "constant", "lora_rank": 16,
                                "eval_every": 3,
                                "early_stopping_patience": 3}},
            expect=201)
        assert job["validation_dataset_id"] == val["id"], job
        job = d.wait_job(job["id"], timeout=120)
        assert job["status"] == "succeeded", job
        p = job["progress"]
        assert p["step"] < p["total_steps"], p
        assert "early stopping" in job["note"], job["note"]
        ck = d.json("GET", "/jobs/%s/checkpoints" % job["id"])
        best = [c for c in ck["data"] if c["best"]]
        assert len(best) == 1 and ck["best_step"] == best[0]["step"], ck
        assert best[0]["step"] < p["step"], (best, p)
        assert all(c["val_loss"] >= best[0]["val_loss"]
                   for c in ck["data"] if c["val_loss"] is not None), ck
        assert adapter(d, job["id"]) == adapter(
            d, job["id"], "checkpoints/step-%d" % best[0]["step"])
        print("   stopped at step %d of %d; best checkpoint step %d "
              "(val loss %.4f)" % (p["step"], p["total_steps"],
                                   best[0]["step"], best[0]["val_loss"]))
        r = d.json("POST", "/generate", {"model": best[0]["model"],
                                         "prompt": "Once upon a time",
                                         "max_tokens": 16, "temperature": 0})
        assert r["model"] == best[0]["model"], r
        models = [m["id"] for m in d.json("GET", "/models")["data"]]
        assert best[0]["model"] in models, models
        csv = d.get("/jobs/%s/metrics.csv" % job["id"]).body.decode()
        rows = [r.split(",") for r in csv.strip().split("\r\n")[1:]]
        assert len(rows) == p["step"], len(rows)
        assert rows[2][2] and rows[2][3] and not rows[0][2], rows[:3]

    def pause_resume_priority():
        a = d.upload_jobs(ZOG, "epochs=4&seed=3")
        d.wait_job(a["id"], pred=stepping, timeout=60)
        b = d.upload_jobs(ZOG, "epochs=1")
        c = d.upload_jobs(ZOG, "epochs=1&priority=5")
        assert d.json("GET", "/jobs/" + c["id"])["queue_position"] == 0
        assert d.json("GET", "/jobs/" + b["id"])["queue_position"] == 1
        bb = d.json("POST", "/jobs/%s/priority" % b["id"], {"priority": 9})
        assert bb["priority"] == 9 and bb["queue_position"] == 0, bb
        r = d.json("POST", "/jobs/%s/pause" % a["id"])
        assert r["status"] == "running" and r["requested"] == "pause", r
        ja = d.wait_job(a["id"], states=("paused",), timeout=30)
        step = ja["progress"]["step"]
        # the worker is free: b (priority 9) runs while a is paused
        d.wait_job(b["id"], pred=lambda j: j["status"] != "queued",
                   timeout=30)
        assert d.json("GET", "/jobs/" + a["id"])["progress"]["step"] == step
        r = d.request("POST", "/jobs/%s/resume" % b["id"])
        assert r.status == 409, r
        r = d.json("POST", "/jobs/%s/resume" % a["id"])
        assert r["status"] == "queued", r
        ja = d.wait_job(a["id"], timeout=120)
        assert ja["status"] == "succeeded", ja
        assert ja["progress"]["step"] == ja["progress"]["total_steps"], ja
        ev = [e["message"] for e in d.events(a["id"])]
        assert "resumed from the checkpoint of step %d" % step in ev, ev
        for j in (b, c):
            assert d.wait_job(j["id"], timeout=120)["status"] == "succeeded"
        print("   paused at step %d, resumed there" % step)

    def stop_and_save():
        job = d.upload_jobs(ZOG, "epochs=4&suffix=stopped")
        d.wait_job(job["id"], pred=stepping, timeout=60)
        r = d.json("POST", "/jobs/%s/stop" % job["id"])
        assert r["requested"] == "stop", r
        job = d.wait_job(job["id"], timeout=60)
        assert job["status"] == "succeeded", job
        p = job["progress"]
        assert p["step"] < p["total_steps"], p
        assert "stopped by request at step %d" % p["step"] in job["note"], \
            job["note"]
        r = d.json("POST", "/generate", {"model": job["model"],
                                         "prompt": "Once upon a time",
                                         "max_tokens": 8})
        assert r["text"], r
        assert d.request("POST", "/jobs/%s/stop" % job["id"]).status == 409
        assert d.json("GET", "/jobs/%s/report" % job["id"])["variants"]

    def cancel_discards():
        job = d.upload_jobs(ZOG, "epochs=4&checkpoint_every=2")
        d.wait_job(job["id"], pred=stepping, timeout=60)
        d.json("POST", "/jobs/%s/cancel" % job["id"])
        job = d.wait_job(job["id"], timeout=60)
        assert job["status"] == "cancelled", job
        ck = d.json("GET", "/jobs/%s/checkpoints" % job["id"])
        assert ck["data"] == [], ck
        assert not os.path.exists(os.path.join(d.data_dir, "jobs", job["id"],
                                               "checkpoints"))
        r = d.request("GET", "/jobs/%s/report" % job["id"])
        assert r.status == 409, r

    def checks():
        d.start()
        with open(ZOG) as f:
            import json
            s["train6"] = [json.loads(x)["completion"] for x in
                           f.readlines()[:6]]
        t.check("early stopping: the model is the best checkpoint",
                early_stopping)
        t.check("pause frees the worker, resume continues; priority",
                pause_resume_priority)
        t.check("stop-and-save: succeeded with a note", stop_and_save)
        t.check("cancel discards the checkpoints", cancel_discards)

    tunalib.run_checks(t, d, checks, 60)


if __name__ == "__main__":
    main()
