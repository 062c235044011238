# SPDX-License-Identifier: MIT
"""Restart recovery: kill -9 the daemon while a job trains, start it again
on the same data dir, and the job runs to the end. Also a graceful SIGTERM
while a job trains: exit 0, and the job resumes at the next start."""

import signal
import time

import tunalib

EPOCHS = "4"


def running_with_steps(j):
    return j["status"] == "running" and \
        (j.get("progress") or {}).get("step", 0) > 0


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    d = tunalib.Daemon(tunad).start()
    t = tunalib.Runner("restart")
    s = {}

    def kill_while_running():
        s["job"] = d.upload_jobs(tunalib.example("zog.jsonl"),
                                 "epochs=" + EPOCHS)
        job = d.wait_job(s["job"]["id"], pred=running_with_steps)
        assert job["status"] == "running", job
        s["ds"] = d.json("GET", "/datasets/" + job["dataset_id"])
        rc = d.kill9()
        assert rc == -signal.SIGKILL, rc

    def restart_finishes():
        d.start()
        job = d.json("GET", "/jobs/" + s["job"]["id"])
        assert job["status"] in ("queued", "running", "succeeded"), job
        job = d.wait_job(s["job"]["id"], timeout=900)
        assert job["status"] == "succeeded", job
        assert job["progress"]["step"] == job["progress"]["total_steps"], job
        ds = d.json("GET", "/datasets/" + s["ds"]["id"])
        assert ds["rows"] == s["ds"]["rows"], (ds, s["ds"])
        r = d.json("POST", "/generate", {"model": job["model"],
                                         "prompt": "Once", "max_tokens": 8})
        assert r["text"], r

    def sigterm_while_running():
        job = d.upload_jobs(tunalib.example("zog.jsonl"), "epochs=" + EPOCHS)
        s["job2"] = job
        job = d.wait_job(job["id"], pred=running_with_steps)
        assert job["status"] == "running", job
        t0 = time.time()
        rc = d.stop(signal.SIGTERM, timeout=30)
        assert rc == 0, rc
        print("   stopped in %.2fs" % (time.time() - t0))

    def resumes_after_sigterm():
        d.start()
        job = d.wait_job(s["job2"]["id"], timeout=900)
        assert job["status"] == "succeeded", job
        rc = d.stop(signal.SIGINT, timeout=30)
        assert rc == 0, rc

    def checks():
        if t.check("kill -9 while a job runs", kill_while_running):
            t.check("restart: the job finishes", restart_finishes)
        if t.check("SIGTERM while a job runs: exit 0", sigterm_while_running):
            t.check("the job runs again at the next start",
                    resumes_after_sigterm)

    tunalib.run_checks(t, d, checks)


if __name__ == "__main__":
    main()
