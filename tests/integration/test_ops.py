# SPDX-License-Identifier: MIT
"""Operations: `tunad config check` and the precedence file < environment <
flags; HTTPS with a self-signed certificate made here (openssl); GET
/metrics parses as Prometheus text and counts requests by route pattern;
JSON log lines parse and carry the request id of the response header;
`tunad backup` while the daemon serves and trains gives a database that
passes PRAGMA integrity_check and holds every dataset with its file."""

import http.client
import json
import os
import re
import shutil
import sqlite3
import ssl
import subprocess
import tempfile
import time

import tunalib

ZOG = tunalib.example("zog.jsonl")


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    t = tunalib.Runner("ops")
    tmp = tempfile.mkdtemp(prefix="tuna-ops-")
    d = tunalib.Daemon(tunad, args=["--log-format", "json"])

    def run(args, env=None):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("TUNA_") and k != "TUNA_SOURCE_ROOT":
                del e[k]
        e.update(env or {})
        return subprocess.run([tunad] + args, capture_output=True, text=True,
                              timeout=60, env=e)

    def config_check():
        conf = os.path.join(tmp, "tunad.conf")
        with open(conf, "w") as f:
            f.write("# test\nport = 9001\nhost = 127.0.0.2\n"
                    "max_body_bytes = 1M\nrate-limit-rpm = 7\n"
                    "data_dir = \"%s\"\n" % os.path.join(tmp, "data"))
        r = run(["config", "check", "--config", conf])
        assert r.returncode == 0, r
        lines = {l.split("=")[0].strip(): l for l in r.stdout.splitlines()
                 if "=" in l and not l.startswith("#")}
        assert "9001" in lines["port"] and "file " in lines["port"], lines
        assert "7" in lines["rate_limit_rpm"], lines
        assert "default" in lines["workers"], lines
        # env beats the file, flags beat env
        r = run(["config", "check", "--config", conf, "--port", "9003"],
                env={"TUNA_PORT": "9002", "TUNA_HOST": "127.0.0.3"})
        assert r.returncode == 0, r
        lines = {l.split("=")[0].strip(): l for l in r.stdout.splitlines()
                 if "=" in l and not l.startswith("#")}
        assert "9003" in lines["port"] and "flag" in lines["port"], lines
        assert "127.0.0.3" in lines["host"] and "TUNA_HOST" in lines["host"]
        assert "1M" in lines["max_body_bytes"], lines
        # errors: exit non-zero, and say where
        with open(conf, "a") as f:
            f.write("no_such_option = 1\nport = lots\n")
        r = run(["config", "check", "--config", conf])
        assert r.returncode != 0, r
        assert "no_such_option" in r.stderr.replace("-", "_"), r.stderr
        assert ":7:" in r.stderr, r.stderr
        # comments at the end of a line, as the shipped example has them
        inline = os.path.join(tmp, "inline.conf")
        with open(inline, "w") as f:
            f.write("host = 127.0.0.2   # behind the proxy\n"
                    "log_format = json ; one object a line\n"
                    "lora_dirs = \"a # b\"  # quoted keeps it\n"
                    "webhook_secret = \"s3cr3t # x\"\n"
                    "cors_origins = http://x#y\n")
        r = run(["config", "check", "--config", inline])
        assert r.returncode == 0, r
        lines = {l.split("=")[0].strip(): l for l in r.stdout.splitlines()
                 if "=" in l and not l.startswith("#")}
        assert re.search(r"= 127\.0\.0\.2 +# file", lines["host"]), lines
        assert re.search(r"= json +# file", lines["log_format"]), lines
        assert "= a # b " in lines["lora_dirs"], lines
        # secrets are never printed, only that they are set
        assert re.search(r"= \(set\) +# file", lines["webhook_secret"]), lines
        assert "s3cr3t" not in r.stdout + r.stderr, r.stdout
        assert "= http://x#y " in lines["cors_origins"], lines
        root = tunalib.source_root()     # the shipped example parses
        r = run(["config", "check", "--config",
                 os.path.join(root, "deploy", "tunad.conf"), "--embedded-dir",
                 os.path.join(root, "models", "stories260K")])
        assert r.returncode == 0, r
        r = run(["config", "check", "--tls-cert", "/nonexistent"])
        assert r.returncode != 0 and "tls" in r.stderr, r
        r = run(["config", "check", "--config", "/nonexistent.conf"])
        assert r.returncode != 0, r
        r = run(["config", "check"], env={"TUNA_PORT": "x"})
        assert r.returncode != 0 and "TUNA_PORT" in r.stderr, r

    def tls():
        if not shutil.which("openssl"):
            print("(no openssl: TLS part skipped)")
            return
        key = os.path.join(tmp, "key.pem")
        cert = os.path.join(tmp, "cert.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                            "-nodes", "-keyout", key, "-out", cert, "-days",
                            "2", "-subj", "/CN=127.0.0.1"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r
        s = tunalib.Daemon(tunad, args=["--tls-cert", cert, "--tls-key",
                                        key])
        try:
            s.start()
            assert s.url.startswith("https://127.0.0.1:"), s.url
            ctx = ssl.create_default_context(cafile=cert)
            ctx.check_hostname = False
            c = http.client.HTTPSConnection(s.host, s.port, context=ctx,
                                            timeout=30)
            c.request("GET", "/health")
            resp = c.getresponse()
            body = json.loads(resp.read())
            assert resp.status == 200 and body["status"] == "ok", body
            c.close()
            # plain HTTP on the TLS port gets no HTTP answer
            p = http.client.HTTPConnection(s.host, s.port, timeout=10)
            try:
                p.request("GET", "/health")
                ok = p.getresponse().status == 200
            except Exception:
                ok = False
            assert not ok
            p.close()
        finally:
            s.cleanup()
        # a key that does not match: a clear error, no start
        bad = os.path.join(tmp, "bad.pem")
        with open(bad, "w") as f:
            f.write("not a pem\n")
        r = run(["serve", "--port", "0", "--data-dir",
                 os.path.join(tmp, "tlsbad"), "--tls-cert", cert,
                 "--tls-key", bad])
        assert r.returncode != 0 and "TLS" in r.stderr, r

    def metrics_and_logs():
        d.start()
        for _ in range(3):
            d.get("/health")
        d.get("/jobs/job_000000000000000000000001")
        d.get("/no/such/route")
        r = d.get("/metrics")
        assert r.status == 200, r
        assert r.header("Content-Type").startswith("text/plain"), r.headers
        text = r.body.decode()
        samples = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? '
                         r'([-+0-9.eE]+|NaN|\+Inf)$', line)
            assert m, line
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        k = ('tuna_http_requests_total{route="/health",method="GET",'
             'status="200"}')
        assert samples.get(k, 0) >= 3, samples
        k = ('tuna_http_requests_total{route="/jobs/{id}",method="GET",'
             'status="404"}')
        assert samples.get(k) == 1, [s for s in samples if "jobs" in s]
        assert not any("job_0000" in s for s in samples)
        assert samples["process_resident_memory_bytes"] > 1e6
        for name in ("tuna_queue_depth", 'tuna_jobs{status="running"}',
                     "tuna_training_tokens_per_second",
                     "tuna_generation_tokens_per_second",
                     "tuna_resident_models", "tuna_resident_adapters"):
            assert name in samples, name
        assert ('tuna_http_request_duration_seconds_bucket{route="/health",'
                'le="+Inf"}') in samples
        # logs: every line is JSON; the access line has the header's id
        r = d.get("/health", headers={"X-Request-Id": "ops-test-42"})
        rid = d.get("/datasets").header("X-Request-Id")
        time.sleep(0.3)
        with open(d.log_path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        objs = [json.loads(l) for l in lines if l.strip()]
        ids = {o.get("request_id") for o in objs if o.get("type") == "access"}
        assert "ops-test-42" in ids and rid in ids, ids
        acc = [o for o in objs if o.get("request_id") == rid][0]
        assert acc["route"] == "/datasets" and acc["status"] == 200, acc

    def backup_while_serving():
        with open(ZOG, "rb") as f:
            data = f.read()
        made = []
        job = d.upload_jobs(ZOG, "epochs=2")
        for i in range(4):
            r = d.post("/datasets", data,
                       headers={"Content-Type": "application/jsonl"})
            assert r.status == 201, r
            made.append(r.json()["id"])
        dest = os.path.join(tmp, "backup")
        r = run(["backup", dest, "--data-dir", d.data_dir])
        assert r.returncode == 0, r
        assert "backup of" in r.stdout, r.stdout
        db = sqlite3.connect(os.path.join(dest, "tuna.db"))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(db.execute("SELECT id, path FROM datasets"))
        for ds in made + [job["dataset_id"]]:
            assert ds in rows, ds
            assert os.path.exists(os.path.join(dest, rows[ds])), rows[ds]
        jobs = [x[0] for x in db.execute("SELECT id FROM jobs")]
        assert job["id"] in jobs, jobs
        db.close()
        assert d.get("/health").status == 200
        # a mistyped data dir is an error, not a backup of a new empty one
        typo = os.path.join(tmp, "no-such-data")
        r = run(["backup", os.path.join(tmp, "backup2"), "--data-dir", typo])
        assert r.returncode != 0 and "no database" in r.stderr, r
        assert not os.path.exists(typo), os.listdir(typo)
        assert not os.path.exists(os.path.join(tmp, "backup2"))

    def checks():
        t.check("config check and precedence", config_check)
        t.check("HTTPS with a self-signed certificate", tls)
        t.check("/metrics parses; JSON logs carry the request id",
                metrics_and_logs)
        t.check("backup while serving", backup_while_serving)

    tunalib.run_checks(t, d, checks,
                       cleanup=[lambda: shutil.rmtree(tmp, ignore_errors=True)])


if __name__ == "__main__":
    main()
