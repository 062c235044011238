# SPDX-License-Identifier: MIT
"""API keys and ownership against the real daemon: `tunad keys`, every
route without a key (401) or with a revoked or unknown one (401), a member
on an admin route (403), another member's private dataset and job (404,
never the data), shared resources visible, admins see everything, /usage
per key, the per-key rate limit (429 + Retry-After), the jobs-in-flight
quota, X-Request-Id, and the loopback-only rule when no key exists."""

import os
import subprocess
import time

import tunalib

ZOG = tunalib.example("zog.jsonl")


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    t = tunalib.Runner("auth")
    d = tunalib.Daemon(tunad, args=["--rate-limit-rpm", "0",
                                    "--max-jobs-in-flight", "0"])
    keys = {}
    ids = {}

    def keys_cmd(*args):
        return subprocess.run([tunad, "keys"] + list(args) +
                              ["--data-dir", d.data_dir],
                              capture_output=True, text=True, timeout=30)

    def auth(name):
        return {"Authorization": "Bearer " + keys[name]}

    def create_keys():
        for name, role in (("root", "admin"), ("alice", "member"),
                           ("bob", "member"), ("carol", "member")):
            r = keys_cmd("create", "--name", name, "--role", role)
            assert r.returncode == 0, r
            secret = r.stdout.strip()
            assert secret.startswith("tuna_") and len(secret) == 45, secret
            keys[name] = secret
        r = keys_cmd("create", "--name", "alice")
        assert r.returncode != 0 and "already" in r.stderr, r
        r = keys_cmd("list")
        assert r.returncode == 0 and "alice" in r.stdout, r
        # only the hash is stored
        for s in keys.values():
            assert s not in r.stdout and s[:12] in r.stdout
        with open(os.path.join(d.data_dir, "tuna.db"), "rb") as f:
            db = f.read()
        wal = os.path.join(d.data_dir, "tuna.db-wal")
        if os.path.exists(wal):
            with open(wal, "rb") as f:
                db += f.read()
        for s in keys.values():
            assert s.encode() not in db

    def starts():
        d.start()
        assert "active API key" in d.log_tail(), d.log_tail()

    routes = [("GET", "/datasets"), ("POST", "/datasets"),
              ("GET", "/datasets/ds_000000000000000000000000"),
              ("DELETE", "/datasets/ds_000000000000000000000000"),
              ("POST", "/jobs"), ("GET", "/jobs"),
              ("GET", "/jobs/job_000000000000000000000000"),
              ("POST", "/jobs/job_000000000000000000000000/cancel"),
              ("GET", "/jobs/job_000000000000000000000000/events"),
              ("POST", "/generate"), ("GET", "/models"), ("GET", "/usage"),
              ("GET", "/keys"), ("GET", "/metrics")]

    def every_route_401():
        for m, p in routes:
            for h in ({}, {"Authorization": "Bearer tuna_nope"},
                      {"Authorization": "Basic abc"}):
                r = d.request(m, p, body=b"{}" if m == "POST" else None,
                              headers=h)
                assert r.status == 401, (m, p, h, r)
                assert r.json()["error"]["code"] == "unauthorized"
                assert r.header("WWW-Authenticate"), r.headers
        assert d.get("/health").status == 200
        # CORS preflight needs no key
        r = d.request("OPTIONS", "/jobs")
        assert r.status == 204, r

    def uploads():
        with open(ZOG, "rb") as f:
            data = f.read()
        r = d.post("/datasets", data, headers=auth("alice"))
        assert r.status == 201, r
        ids["alice_ds"] = r.json()["id"]
        r = d.post("/datasets?shared=true", data, headers=auth("bob"))
        assert r.status == 201, r
        ids["bob_shared_ds"] = r.json()["id"]
        r = d.post("/jobs?epochs=1", data,
                   headers=dict(auth("alice"),
                                **{"Content-Type": "application/jsonl"}))
        assert r.status == 201, r
        ids["alice_job"] = r.json()["id"]
        r = d.post("/jobs", {"dataset_id": ids["bob_shared_ds"],
                             "shared": True,
                             "hyperparameters": {"epochs": 1}},
                   headers=auth("bob"))
        assert r.status == 201, r
        ids["bob_shared_job"] = r.json()["id"]

    def member_isolation():
        b = auth("bob")
        for p in ("/datasets/" + ids["alice_ds"],
                  "/jobs/" + ids["alice_job"],
                  "/jobs/%s/events" % ids["alice_job"]):
            r = d.get(p, headers=b)
            assert r.status == 404, (p, r)
            assert ids["alice_ds"].encode() not in r.body or \
                p.endswith(ids["alice_ds"]), r
            assert b"zog" not in r.body.lower(), r
        r = d.request("DELETE", "/datasets/" + ids["alice_ds"], headers=b)
        assert r.status == 404, r
        r = d.post("/jobs/%s/cancel" % ids["alice_job"], headers=b)
        assert r.status == 404, r
        r = d.post("/jobs", {"dataset_id": ids["alice_ds"]}, headers=b)
        assert r.status == 404, r
        r = d.post("/generate", {"model": ids["alice_job"], "prompt": "x",
                                 "max_tokens": 2}, headers=b)
        assert r.status == 404, r
        lst = d.json("GET", "/datasets", headers=b)["data"]
        got = {x["id"] for x in lst}
        assert ids["alice_ds"] not in got and ids["bob_shared_ds"] in got
        lst = d.json("GET", "/jobs", headers=b)["data"]
        got = {x["id"] for x in lst}
        assert ids["alice_job"] not in got and ids["bob_shared_job"] in got
        # carol sees only the shared ones
        c = auth("carol")
        got = {x["id"] for x in d.json("GET", "/datasets", headers=c)["data"]}
        assert got == {ids["bob_shared_ds"]}, got
        got = {x["id"] for x in d.json("GET", "/jobs", headers=c)["data"]}
        assert got == {ids["bob_shared_job"]}, got
        assert d.get("/jobs/" + ids["bob_shared_job"],
                     headers=c).status == 200
        # a shared job is usable, not re-sharable by others
        r = d.post("/jobs/%s/share" % ids["bob_shared_job"],
                   {"shared": False}, headers=c)
        assert r.status == 403, r

    def share_later():
        r = d.post("/datasets/%s/share" % ids["alice_ds"], {"shared": True},
                   headers=auth("bob"))
        assert r.status == 404, r
        r = d.post("/datasets/%s/share" % ids["alice_ds"], {"shared": True},
                   headers=auth("alice"))
        assert r.status == 200 and r.json()["shared"] is True, r
        assert d.get("/datasets/" + ids["alice_ds"],
                     headers=auth("bob")).status == 200
        r = d.post("/datasets/%s/share" % ids["alice_ds"], {"shared": False},
                   headers=auth("alice"))
        assert r.status == 200, r
        assert d.get("/datasets/" + ids["alice_ds"],
                     headers=auth("bob")).status == 404

    def admin_routes():
        for p in ("/keys", "/metrics"):
            r = d.get(p, headers=auth("alice"))
            assert r.status == 403, (p, r)
            assert r.json()["error"]["code"] == "forbidden"
            assert d.get(p, headers=auth("root")).status == 200
        a = auth("root")
        got = {x["id"] for x in d.json("GET", "/datasets", headers=a)["data"]}
        assert {ids["alice_ds"], ids["bob_shared_ds"]} <= got, got
        assert d.get("/jobs/" + ids["alice_job"], headers=a).status == 200
        ks = d.json("GET", "/keys", headers=a)["data"]
        assert {k["name"] for k in ks} >= {"root", "alice", "bob"}
        assert all("hash" not in k for k in ks)

    def usage():
        a = auth("alice")
        # wait for alice's job to finish (it trains 1 epoch)
        end = time.time() + 300
        while time.time() < end:
            j = d.json("GET", "/jobs/" + ids["alice_job"], headers=a)
            if j["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.3)
        assert j["status"] == "succeeded", j
        r = d.post("/generate", {"model": ids["alice_job"],
                                 "prompt": "Once", "max_tokens": 8,
                                 "temperature": 0}, headers=a)
        assert r.status == 200, r
        u = d.json("GET", "/usage", headers=a)["data"]
        assert len(u) == 1 and u[0]["name"] == "alice", u
        assert u[0]["tokens_generated"] >= 1, u
        assert u[0]["tokens_trained"] > 0 and u[0]["cpu_seconds"] > 0, u
        u = d.json("GET", "/usage", headers=auth("root"))["data"]
        assert {x["name"] for x in u} >= {"alice", "bob", "root"}, u

    def revoked():
        r = keys_cmd("revoke", "carol")
        assert r.returncode == 0, r
        r = d.get("/jobs", headers=auth("carol"))
        assert r.status == 401, r
        assert "revoked" in r.json()["error"]["message"], r

    def request_id():
        r = d.get("/health")
        rid = r.header("X-Request-Id")
        assert rid and len(rid) >= 8, r.headers
        r = d.get("/health", headers={"X-Request-Id": "abc-123.x"})
        assert r.header("X-Request-Id") == "abc-123.x", r.headers
        r = d.get("/health", headers={"X-Request-Id": "bad id\"<>"})
        assert r.header("X-Request-Id") != "bad id\"<>", r.headers

    def rate_limit():
        d.stop()
        d.args = ["--rate-limit-rpm", "5", "--max-jobs-in-flight", "1"]
        d.start()
        b = auth("bob")
        statuses = [d.get("/jobs", headers=b).status for _ in range(8)]
        assert statuses[:5] == [200] * 5, statuses
        r = d.get("/jobs", headers=b)
        assert r.status == 429, r
        assert r.json()["error"]["code"] == "rate_limited"
        ra = int(r.header("Retry-After"))
        assert 1 <= ra <= 60, ra
        # other keys have their own bucket; /health is never limited
        assert d.get("/jobs", headers=auth("alice")).status == 200
        assert d.get("/health", headers=b).status == 200

    def jobs_quota():
        a = auth("alice")
        body = {"dataset_id": ids["alice_ds"],
                "hyperparameters": {"epochs": 3}}
        r1 = d.post("/jobs", body, headers=a)
        assert r1.status == 201, r1
        r2 = d.post("/jobs", body, headers=a)
        assert r2.status == 429, r2
        assert r2.json()["error"]["code"] == "too_many_jobs"
        assert r2.header("Retry-After")
        d.post("/jobs/%s/cancel" % r1.json()["id"], headers=a)

    def loopback_only():
        d.stop()
        # a fresh data dir has no key: asked for 0.0.0.0, it serves
        # loopback only and says why
        other = tunalib.Daemon(tunad, args=["--host", "0.0.0.0"])
        try:
            other.start()
            assert other.url.startswith("http://127.0.0.1:"), other.url
            assert "authentication is off" in other.log_tail()
            other.stop()
            other = tunalib.Daemon(tunad, args=["--host", "0.0.0.0",
                                                "--allow-public"])
            other.start()
            assert other.url.startswith("http://0.0.0.0:"), other.url
            assert "full access" in other.log_tail()
            other.stop()
        finally:
            other.cleanup()

    def checks():
        t.check("keys create/list (hash only)", create_keys)
        t.check("daemon starts with keys", starts)
        t.check("every route but /health: 401 without a valid key",
                every_route_401)
        t.check("uploads and jobs owned, some shared", uploads)
        t.check("another member's private data: 404", member_isolation)
        t.check("share later and back", share_later)
        t.check("admin routes (403 for members) and admin sees all",
                admin_routes)
        t.check("usage per key", usage)
        t.check("revoked key: 401", revoked)
        t.check("X-Request-Id", request_id)
        t.check("rate limit: 429 + Retry-After", rate_limit)
        t.check("jobs in flight quota: 429", jobs_quota)
        t.check("no key: loopback only, said at start", loopback_only)

    tunalib.run_checks(t, d, checks)


if __name__ == "__main__":
    main()
