# SPDX-License-Identifier: MIT
"""Exact resume, the kill -9 torture test: one job (one worker, one
thread, a checkpoint every few steps) trains uninterrupted in one daemon;
the same job in a second daemon is killed with SIGKILL at random moments
several times, restarted each time, and once has its newest checkpoint
damaged on disk before the restart. The job must end with the right step
count and an adapter_model.safetensors byte-identical to the uninterrupted
run's, and its checkpoints must be servable models along the way."""

import glob
import os
import random
import signal
import time

import tunalib

ARGS = ["--workers", "1", "--threads", "1"]
QUERY = ("epochs=3&batch_size=4&seed=7&checkpoint_every=4&keep_checkpoints=2"
         "&learning_rate=0.003&suffix=torture")
KILLS = 4


def adapter_bytes(d, job_id):
    path = os.path.join(d.data_dir, "jobs", job_id, "adapter",
                        "adapter_model.safetensors")
    with open(path, "rb") as f:
        return f.read()


def newest_checkpoint(d, job_id):
    dirs = glob.glob(os.path.join(d.data_dir, "jobs", job_id, "checkpoints",
                                  "step-*"))
    return max(dirs, key=lambda p: int(p.rsplit("-", 1)[1])) if dirs else None


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    t = tunalib.Runner("resume")
    ref = tunalib.Daemon(tunad, args=ARGS)
    d = tunalib.Daemon(tunad, args=ARGS)
    s = {}
    rng = random.Random(os.environ.get("TUNA_TORTURE_SEED", "5"))

    def uninterrupted():
        ref.start()
        job = ref.upload_jobs(tunalib.example("zog.jsonl"), QUERY)
        t0 = time.time()
        job = ref.wait_job(job["id"], timeout=300)
        assert job["status"] == "succeeded", job
        s["secs"] = time.time() - t0
        s["ref"] = adapter_bytes(ref, job["id"])
        s["total"] = job["progress"]["total_steps"]
        print("   uninterrupted: %d steps in %.1fs" % (s["total"], s["secs"]))
        ck = ref.json("GET", "/jobs/%s/checkpoints" % job["id"])
        steps = [c["step"] for c in ck["data"]]
        # the last K=2 are kept (no validation set: no "best")
        assert steps == [s["total"], s["total"] - s["total"] % 4 or
                         s["total"] - 4] or len(steps) == 2, steps
        ref.stop()

    def torture():
        d.start()
        job = d.upload_jobs(tunalib.example("zog.jsonl"), QUERY)
        s["id"] = job["id"]
        kills = 0
        served = False
        while kills < KILLS:
            # a random moment: during start-up, a step or a checkpoint write
            time.sleep(rng.uniform(0.05, max(0.3, s["secs"] / KILLS)))
            j = d.json("GET", "/jobs/" + s["id"])
            if j["status"] == "succeeded":
                break
            if not served and j["status"] == "running":
                ck = d.json("GET", "/jobs/%s/checkpoints" % s["id"])["data"]
                if ck:   # a checkpoint is a model at once
                    r = d.json("POST", "/generate", {
                        "model": ck[0]["model"], "prompt": "Once",
                        "max_tokens": 4, "temperature": 0})
                    assert r["model"] == ck[0]["model"], r
                    served = True
            assert d.kill9() == -signal.SIGKILL
            kills += 1
            if kills == 2:   # damage the newest checkpoint on disk
                ck = newest_checkpoint(d, s["id"])
                if ck:
                    f = os.path.join(ck, "checkpoint.safetensors")
                    with open(f, "r+b") as fh:
                        fh.seek(os.path.getsize(f) - 7)
                        b = fh.read(1)
                        fh.seek(-1, 1)
                        fh.write(bytes([b[0] ^ 0x40]))
                    print("   damaged %s" % os.path.basename(ck))
            j = None
            d.start()
            print("   kill %d at step %s" % (kills, d.json(
                "GET", "/jobs/" + s["id"])["progress"]["step"]))
        job = d.wait_job(s["id"], timeout=300)
        assert job["status"] == "succeeded", job
        assert job["progress"]["step"] == s["total"], job
        got = adapter_bytes(d, s["id"])
        assert got == s["ref"], "adapter differs after %d kills" % kills
        print("   %d kills, %d steps, adapter identical (%d bytes)" %
              (kills, s["total"], len(got)))
        ev = d.events(s["id"])
        resumed = [e for e in ev if e["message"].startswith("resumed from")]
        assert resumed, "no resume event"
        msgs = [e["message"] for e in ev]
        print("   resumes: %s" % ", ".join(
            e["message"].rsplit(" ", 1)[1] for e in resumed))
        s["msgs"] = msgs

    def metrics_csv():
        r = d.get("/jobs/%s/metrics.csv" % s["id"])
        assert r.status == 200, r
        assert r.header("Content-Type").startswith("text/csv"), r.headers
        lines = r.body.decode().strip().split("\r\n")
        assert lines[0].startswith("step,train_loss,val_loss"), lines[0]
        steps = [int(x.split(",")[0]) for x in lines[1:]]
        assert steps == list(range(1, s["total"] + 1)), steps[:10]

    def checks():
        if t.check("uninterrupted reference run", uninterrupted):
            if t.check("kill -9 %d times: same steps, same adapter bytes"
                       % KILLS, torture):
                t.check("metrics.csv has every step once", metrics_csv)

    tunalib.run_checks(t, d, checks, 60, cleanup=[ref.cleanup])


if __name__ == "__main__":
    main()
