# SPDX-License-Identifier: MIT
"""Job webhooks: a receiver (http.server on 127.0.0.1) gets exactly one
signed delivery per terminal state (succeeded, failed, cancelled), after
retries with backoff when it first answers 500; the HMAC-SHA256 signature
checks out with the job's secret or the server's --webhook-secret; a
restart of the daemon sends nothing twice."""

import hashlib
import hmac
import http.server
import json
import os
import threading
import time

import tunalib

ZOG = tunalib.example("zog.jsonl")
SERVER_SECRET = "server-wide-secret"
JOB_SECRET = "job-secret-42"


class Receiver:
    def __init__(self):
        self.hits = []          # (time, status answered, headers, body)
        self.fail_first = {}    # job id -> answers of 500 still to give
        self.lock = threading.Lock()
        rcv = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                job = json.loads(body)["data"]["id"]
                with rcv.lock:
                    left = rcv.fail_first.get(job, 0)
                    status = 500 if left else 200
                    rcv.fail_first[job] = max(0, left - 1)
                    rcv.hits.append((time.time(), status,
                                     dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def for_job(self, job_id):
        with self.lock:
            return [h for h in self.hits
                    if json.loads(h[3])["data"]["id"] == job_id]


def check_signature(headers, body, secret):
    sig = headers["Tuna-Signature"]
    parts = dict(p.split("=", 1) for p in sig.split(","))
    mac = hmac.new(secret.encode(), parts["t"].encode() + b"." + body,
                   hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, parts["v1"]), (sig, mac)
    assert abs(int(parts["t"]) - time.time()) < 120, sig


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    rcv = Receiver()
    d = tunalib.Daemon(tunad, args=["--workers", "1", "--threads", "1",
                                    "--webhook-secret", SERVER_SECRET])
    t = tunalib.Runner("webhooks")
    s = {}

    def wait_delivered(job_id, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            if any(h[1] == 200 for h in rcv.for_job(job_id)):
                return rcv.for_job(job_id)
            time.sleep(0.2)
        raise AssertionError("no delivery for %s: %r" %
                             (job_id, rcv.for_job(job_id)))

    def three_endings():
        q = "epochs=1&webhook_url=%s&webhook_secret=%s" % (rcv.url,
                                                         JOB_SECRET)
        ok = d.upload_jobs(ZOG, q)
        assert ok["webhook_url"] == rcv.url and "webhook_secret" not in ok
        rcv.fail_first[ok["id"]] = 2
        # queued behind it: cancelled at once
        c = d.json("POST", "/jobs", {"training_data": [
            {"prompt": "a", "completion": "b"}], "webhook_url": rcv.url},
            expect=201)
        d.json("POST", "/jobs/%s/cancel" % c["id"])
        # a job whose dataset file vanished: failed
        with open(ZOG, "rb") as f:
            ds = d.json("POST", "/datasets", f.read(), expect=201)
        os.unlink(os.path.join(d.data_dir, "datasets", ds["id"] + ".jsonl"))
        f = d.json("POST", "/jobs", {"dataset_id": ds["id"],
                                     "webhook_url": rcv.url}, expect=201)
        s.update(ok=ok["id"], cancelled=c["id"], failed=f["id"])
        assert d.wait_job(ok["id"], timeout=120)["status"] == "succeeded"
        assert d.wait_job(f["id"], timeout=60)["status"] == "failed"

    def deliveries():
        for key, event, secret in (("ok", "succeeded", JOB_SECRET),
                                   ("cancelled", "cancelled", SERVER_SECRET),
                                   ("failed", "failed", SERVER_SECRET)):
            hits = wait_delivered(s[key])
            good = [h for h in hits if h[1] == 200]
            assert len(good) == 1, hits
            _, _, headers, body = good[0]
            o = json.loads(body)
            assert o["type"] == "job." + event, o
            assert o["data"]["status"] == event, o
            assert headers["Tuna-Event"] == "job." + event, headers
            check_signature(headers, body, secret)
            if key == "ok":
                assert [h[1] for h in hits] == [500, 500, 200], hits
                gaps = [hits[i + 1][0] - hits[i][0] for i in range(2)]
                assert gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps
                assert all(h[3] == body for h in hits), "bodies differ"
                print("   job.succeeded: 500, 500, then 200 after %.1fs "
                      "and %.1fs" % tuple(gaps))
        bad = dict(good[0][2])
        try:
            check_signature(bad, good[0][3] + b" ", SERVER_SECRET)
        except AssertionError:
            pass
        else:
            raise AssertionError("a changed body still verifies")

    def restart_sends_nothing_twice():
        n = len(rcv.hits)
        d.stop()
        d.start()
        time.sleep(3)
        assert len(rcv.hits) == n, rcv.hits[n:]

    def checks():
        d.start()
        if t.check("a job succeeds, one is cancelled, one fails",
                   three_endings):
            t.check("one signed delivery each, after retries",
                    deliveries)
            t.check("a restart delivers nothing again",
                    restart_sends_nothing_twice)

    tunalib.run_checks(t, d, checks, 60, cleanup=[rcv.srv.shutdown])


if __name__ == "__main__":
    main()
