# SPDX-License-Identifier: MIT
"""The README walkthrough end to end: upload the Zog dataset as a job,
watch it train, and check that the tuned model tells stories about Zog
while the base model does not."""

import os
import time

import tunalib

EPOCHS = int(os.environ.get("TUNA_WALKTHROUGH_EPOCHS", "3"))
PROMPT = "Once upon a time"


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    d = tunalib.Daemon(tunad).start()
    t = tunalib.Runner("walkthrough")
    state = {}

    def health():
        h = d.json("GET", "/health")
        assert h["status"] == "ok", h

    def base_listed():
        models = d.json("GET", "/models")
        text = repr(models)
        assert "stories260K" in text, models

    def submit():
        job = d.upload_jobs(tunalib.example("zog.jsonl"),
                            "epochs=%d" % EPOCHS)
        assert job["id"].startswith("job_"), job
        assert job["status"] in ("queued", "running"), job
        assert job["base_model"] == "stories260K", job
        assert job["hyperparameters"]["epochs"] == EPOCHS, job
        assert job["dataset_id"].startswith("ds_"), job
        state["job"] = job

    def progress_while_running():
        job_id = state["job"]["id"]
        job = d.wait_job(job_id, pred=lambda j: j["status"] == "running" and
                         (j.get("progress") or {}).get("step", 0) > 0)
        if job["status"] == "running":
            p = job["progress"]
            assert p["total_steps"] >= p["step"] > 0, p
            assert p["epoch"] >= 1, p
            assert isinstance(p["train_loss"], (int, float)), p
            assert job["started_at"], job
            # The API stays responsive while the job trains.
            t0 = time.time()
            d.json("GET", "/jobs/" + job_id)
            r = d.json("POST", "/generate", {
                "model": "stories260K", "prompt": PROMPT, "max_tokens": 16})
            assert r["text"], r
            took = time.time() - t0
            print("   GET /jobs/{id} + /generate while training: %.3fs" % took)
            assert took < 5, took

    def succeeded():
        job = d.wait_job(state["job"]["id"], timeout=900)
        assert job["status"] == "succeeded", job
        assert job["error"] is None, job
        assert job["finished_at"] and job["model"], job
        p = job["progress"]
        assert p["step"] == p["total_steps"] > 0, p
        # an ETA only while running (docs/api.md, the job object)
        assert p["eta_seconds"] is None and p["estimated_finish"] is None, p
        state["job"] = job

    def events():
        job_id = state["job"]["id"]
        items = d.events(job_id)
        types = [e.get("type") for e in items]
        assert "step" in types, types[:20]
        steps = [e for e in items if e.get("type") == "step"]
        assert all("train_loss" in (e.get("data") or {}) for e in steps), \
            steps[:2]
        first = steps[0]["data"]["train_loss"]
        last = steps[-1]["data"]["train_loss"]
        assert last < first, (first, last)

    def generate(model):
        r = d.json("POST", "/generate", {
            "model": model, "prompt": PROMPT, "max_tokens": 64,
            "temperature": 0})
        assert isinstance(r["text"], str) and r["text"], r
        assert r["finish_reason"] in ("stop", "length"), r
        assert r["usage"]["completion_tokens"] > 0, r
        return r["text"]

    def tuned_mentions_zog():
        text = generate(state["job"]["model"])
        print("   tuned:", repr(text))
        assert "Zog" in text, text
        # The job id names the same model.
        assert generate(state["job"]["id"]) == text

    def base_does_not():
        text = generate("stories260K")
        print("   base: ", repr(text))
        assert "Zog" not in text, text

    def tuned_listed():
        models = d.json("GET", "/models")
        assert state["job"]["model"] in repr(models), models

    def checks():
        t.check("health", health)
        t.check("base model listed", base_listed)
        if t.check("POST /jobs with the Zog dataset", submit):
            t.check("progress while running", progress_while_running)
            if t.check("job succeeded", succeeded):
                t.check("events: per-step loss, falling", events)
                t.check("tuned model writes about Zog", tuned_mentions_zog)
                t.check("tuned model in GET /models", tuned_listed)
        t.check("base model does not", base_does_not)

    tunalib.run_checks(t, d, checks)


if __name__ == "__main__":
    main()
