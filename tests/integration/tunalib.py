# SPDX-License-Identifier: MIT
"""Helpers for the integration tests: start the real tunad on 127.0.0.1
with a temporary data dir, talk HTTP to it, stop or kill it.

Python 3 standard library only. Each test script is run by meson as
`python3 test_x.py <path to tunad>` with TUNA_SOURCE_ROOT in the
environment, and exits 0 (pass), 1 (fail) or 77 (skip)."""

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77


def source_root():
    return os.environ.get("TUNA_SOURCE_ROOT",
                          os.path.dirname(os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))))


def example(name):
    return os.path.join(source_root(), "examples", name)


def tunad_path():
    if len(sys.argv) < 2:
        sys.exit("usage: %s /path/to/tunad" % sys.argv[0])
    return os.path.abspath(sys.argv[1])


def skip_if_placeholder(tunad):
    out = subprocess.run([tunad, "--help"], capture_output=True, text=True)
    if "not built yet" in out.stdout:
        print("SKIP: tunad is still the placeholder")
        sys.exit(SKIP)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


class Daemon:
    """One tunad process. The data dir outlives restarts; logs go to a file
    in it (never a pipe that could fill up and block the daemon)."""

    def __init__(self, tunad, data_dir=None, args=()):
        self.tunad = tunad
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="tuna-it-")
        self.args = list(args)
        self.proc = None
        self.url = None
        self.host = "127.0.0.1"
        self.port = None
        self.log_path = os.path.join(self.data_dir, "..",
                                     os.path.basename(self.data_dir) + ".log")

    def start(self, timeout=60):
        cmd = [self.tunad, "serve", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", self.data_dir] + self.args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=self.log)
        line = self._read_line(timeout)
        prefix = "tunad listening on http://"
        if line.startswith("tunad listening on https://"):
            prefix = "tunad listening on https://"
        if not line.startswith(prefix):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("tunad did not start: %r\n%s" %
                               (line, self.log_tail()))
        hostport = line[len(prefix):].strip()
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.url = prefix[len("tunad listening on "):] + hostport
        return self

    def _read_line(self, timeout):
        fd = self.proc.stdout.fileno()
        buf = b""
        end = time.time() + timeout
        while b"\n" not in buf:
            left = end - time.time()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        return buf.decode("utf-8", "replace").split("\n")[0]

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends sig and waits; returns the exit status."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise RuntimeError("tunad did not stop within %ds" % timeout)
        finally:
            self.proc.stdout.close()
            self.log.close()
        self.proc = None
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        if self.proc:
            try:
                self.stop(signal.SIGKILL)
            except Exception:
                pass
        if self.own_dir and os.environ.get("TUNA_KEEP_DATA") != "1":
            shutil.rmtree(self.data_dir, ignore_errors=True)
            try:
                os.unlink(self.log_path)
            except OSError:
                pass

    # ---------------------------------------------------------------- HTTP

    def request(self, method, path, body=None, headers=None, timeout=120):
        """path is sent as given (bytes or str), so tests can send
        malformed ones. body: bytes, str, or a dict/list sent as JSON."""
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection(self.host, self.port,
                                          timeout=timeout)
        try:
            if isinstance(path, bytes):
                path = path.decode("latin-1")
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            if body is not None and "Content-Length" not in headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, resp.getheaders(), data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def json(self, method, path, body=None, expect=200, **kw):
        r = self.request(method, path, body=body, **kw)
        if r.status != expect:
            raise AssertionError("%s %s: expected %d, got %r" %
                                 (method, path, expect, r))
        return r.json()

    def wait_job(self, job_id, states=("succeeded", "failed", "cancelled"),
                 timeout=600, pred=None):
        """Polls GET /jobs/{id} until its status is in states (or pred(job)
        is true); returns the job."""
        end = time.time() + timeout
        job = None
        while time.time() < end:
            job = self.json("GET", "/jobs/" + job_id)
            if job["status"] in states or (pred and pred(job)):
                return job
            if not self.alive():
                raise AssertionError("tunad died:\n" + self.log_tail())
            time.sleep(0.2)
        raise AssertionError("job %s still %s after %ds: %r" %
                             (job_id, job and job["status"], timeout, job))

    def events(self, job_id):
        """Every event of a job, following the ?after= cursor."""
        out, after = [], 0
        while True:
            page = self.json("GET", "/jobs/%s/events?after=%d&limit=1000" %
                             (job_id, after))
            items = page["data"] if isinstance(page, dict) else page
            out += items
            if not items or not (isinstance(page, dict) and
                                 page.get("has_more")):
                return out
            after = items[-1]["id"]

    def upload_jobs(self, jsonl_path, query):
        with open(jsonl_path, "rb") as f:
            data = f.read()
        return self.json("POST", "/jobs?" + query, data,
                         headers={"Content-Type": "application/jsonl"},
                         expect=201)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Runner:
    """Runs check functions in order, prints each result, exits 0 or 1."""

    def __init__(self, name):
        self.name = name
        self.failed = []

    def check(self, label, fn, *args):
        t0 = time.time()
        try:
            fn(*args)
        except Exception:
            self.failed.append(label)
            print("FAIL %s (%.1fs)" % (label, time.time() - t0))
            traceback.print_exc(file=sys.stdout)
            return False
        print("ok   %s (%.1fs)" % (label, time.time() - t0))
        sys.stdout.flush()
        return True

    def finish(self):
        if self.failed:
            print("%s: %d failed: %s" % (self.name, len(self.failed),
                                         ", ".join(self.failed)))
            sys.exit(1)
        print("%s: all passed" % self.name)
        sys.exit(0)


def run_checks(t, d, checks, log_lines=40, cleanup=()):
    """The end of a test's main: runs checks() (its t.check calls) against
    the daemon d; if a check failed, prints the end of d's log; cleans d up
    (then calls each function in cleanup) whatever happened; exits through
    t.finish()."""
    try:
        checks()
    finally:
        if t.failed:
            print(d.log_tail(log_lines))
        d.cleanup()
        for fn in cleanup:
            fn()
    t.finish()
