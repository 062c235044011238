# SPDX-License-Identifier: MIT
"""The command line and the process: --help, the listening line, a taken
port, an unusable data dir, a second daemon on one data dir, CORS, and a
graceful SIGTERM with nothing running."""

import os
import signal
import socket
import subprocess
import tempfile

import tunalib


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    t = tunalib.Runner("lifecycle")
    tmp = tempfile.mkdtemp(prefix="tuna-life-")
    d = tunalib.Daemon(tunad)

    def run(args, timeout=30):
        return subprocess.run([tunad] + args, capture_output=True, text=True,
                              timeout=timeout)

    def help_texts():
        r = run(["--help"])
        assert r.returncode == 0 and "serve" in r.stdout, r
        r = run(["serve", "--help"])
        assert r.returncode == 0, r
        for flag in ("--host", "--port", "--data-dir", "--workers",
                     "--models-dir", "--max-body-bytes", "--cors-origins",
                     "--threads", "--embedded-dir"):
            assert flag in r.stdout, (flag, r.stdout)
        r = run(["serve", "--no-such-flag", "1"])
        assert r.returncode != 0 and "no-such-flag" in r.stderr, r
        r = run(["serve", "--port", "70000"])
        assert r.returncode != 0 and "port" in r.stderr, r
        r = run(["frobnicate"])
        assert r.returncode != 0, r

    def starts():
        d.start()
        h = d.json("GET", "/health")
        assert h["status"] == "ok", h
        assert d.url == "http://127.0.0.1:%d" % d.port, d.url

    def taken_port():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            r = run(["serve", "--port", str(port), "--data-dir",
                     os.path.join(tmp, "other")])
        finally:
            s.close()
        assert r.returncode != 0, r
        assert "listening" not in r.stdout, r
        assert str(port) in r.stderr and "in use" in r.stderr, r.stderr

    def bad_data_dir():
        f = os.path.join(tmp, "a-file")
        open(f, "w").close()
        r = run(["serve", "--port", "0", "--data-dir",
                 os.path.join(f, "sub")])
        assert r.returncode != 0 and "data dir" in r.stderr, r
        assert "listening" not in r.stdout, r

    def same_data_dir():
        r = run(["serve", "--port", "0", "--data-dir", d.data_dir])
        assert r.returncode != 0 and "in use" in r.stderr, r
        assert d.json("GET", "/health")["status"] == "ok"

    def cors():
        r = d.request("OPTIONS", "/jobs", headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST"})
        assert r.status in (200, 204), r
        assert r.header("Access-Control-Allow-Origin"), r.headers
        r = d.request("GET", "/health", headers={"Origin": "http://x"})
        assert r.header("Access-Control-Allow-Origin") == "*", r.headers

    def cors_restricted():
        d2 = tunalib.Daemon(tunad, args=["--cors-origins",
                                         "http://good.example"]).start()
        try:
            r = d2.request("GET", "/health",
                           headers={"Origin": "http://good.example"})
            assert r.header("Access-Control-Allow-Origin") == \
                "http://good.example", r.headers
            r = d2.request("GET", "/health",
                           headers={"Origin": "http://evil.example"})
            assert r.header("Access-Control-Allow-Origin") is None, r.headers
        finally:
            d2.cleanup()

    def sigterm_idle():
        rc = d.stop(signal.SIGTERM, timeout=20)
        assert rc == 0, rc

    def sigterm_right_after_start():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            d3 = tunalib.Daemon(tunad).start()
            try:
                rc = d3.stop(sig, timeout=20)
                assert rc == 0, (sig, rc, d3.log_tail())
            finally:
                d3.cleanup()

    def checks():
        t.check("--help and bad flags", help_texts)
        if t.check("starts and answers /health", starts):
            t.check("taken port: non-zero exit and a message", taken_port)
            t.check("unusable data dir: non-zero exit", bad_data_dir)
            t.check("second daemon on the same data dir", same_data_dir)
            t.check("CORS preflight and headers", cors)
            t.check("SIGTERM when idle: exit 0", sigterm_idle)
        t.check("CORS restricted to listed origins", cors_restricted)
        t.check("a signal right after start: exit 0",
                sigterm_right_after_start)

    tunalib.run_checks(t, d, checks,
                       cleanup=[lambda: subprocess.run(["rm", "-rf", tmp])])


if __name__ == "__main__":
    main()
