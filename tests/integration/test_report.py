# SPDX-License-Identifier: MIT
"""Prompting vs finetuning: a job on examples/zog.jsonl with a validation
split ends with a report comparing the base model (plain prompt), the base
model with a 3-shot prompt and the tuned model on the validation examples;
the tuned model must be ahead on loss, token accuracy and word F1. Prints
the numbers the README quotes."""

import tunalib


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    d = tunalib.Daemon(tunad, args=["--workers", "1", "--threads", "1"])
    t = tunalib.Runner("report")
    s = {}

    def job_with_report():
        r = d.get("/jobs/job_000000000000000000000000/report")
        assert r.status == 404, r
        job = d.upload_jobs(tunalib.example("zog.jsonl"),
                            "epochs=3&validation_split=0.1&seed=42")
        r = d.request("GET", "/jobs/%s/report" % job["id"])
        assert r.status == 409 and \
            r.json()["error"]["code"] == "report_not_ready", r
        job = d.wait_job(job["id"], timeout=240)
        assert job["status"] == "succeeded", job
        s["rep"] = d.json("GET", "/jobs/%s/report" % job["id"])
        ev = [e for e in d.events(job["id"]) if e["type"] == "report"]
        assert len(ev) == 1, ev

    def tuned_ahead():
        rep = s["rep"]
        assert rep["source"] == "validation", rep
        assert rep["k_shot"] == 3, rep
        v = rep["variants"]
        for name in ("base", "k_shot"):
            assert v["tuned"]["loss"] < v[name]["loss"], v
            assert v["tuned"]["token_accuracy"] > v[name]["token_accuracy"]
            assert v["tuned"]["word_f1"] > v[name]["word_f1"], v
        assert rep["best_by_loss"] == "tuned", rep
        ex = rep["examples"]
        assert len(ex) == 3 and all(e["tuned"] for e in ex), ex
        assert sum("Zog" in e["tuned"] for e in ex) >= 2, ex
        assert not any("Zog" in e["base"] for e in ex), ex
        print("   %d validation examples (loss), %d generated" %
              (rep["examples_loss"], rep["examples_generated"]))
        print("   %-8s %8s %8s %8s %8s %8s" % ("", "loss", "tok acc",
                                              "exact", "contains", "word F1"))
        for name in ("base", "k_shot", "tuned"):
            x = v[name]
            print("   %-8s %8.3f %8.3f %8.2f %8.2f %8.3f" % (
                name, x["loss"], x["token_accuracy"], x["exact_match"],
                x["contains_match"], x["word_f1"]))
        print("   tuned: %r" % ex[0]["tuned"][:90])
        print("   base:  %r" % ex[0]["base"][:90])

    def checks():
        d.start()
        if t.check("a job on zog.jsonl writes its report", job_with_report):
            t.check("the tuned model is ahead of prompting", tuned_ahead)

    tunalib.run_checks(t, d, checks, 60)


if __name__ == "__main__":
    main()
