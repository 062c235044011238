# SPDX-License-Identifier: MIT
"""The `tuna` command-line client against the real tunad: every command,
--json output parsed and compared with what the HTTP API says, `jobs
follow` as a progress bar in a pseudo-terminal (redrawn with \\r, as wide
as the terminal) and as plain lines when piped, a follow whose event
stream is cut mid-way (it reconnects with Last-Event-ID and shows every
step exactly once), generate streamed, API keys, and the error exits
(the server's message, a bad file's line, an unreachable server).

Run by meson as `python3 test_cli.py <tunad> <tuna>`."""

import errno
import fcntl
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tunalib  # noqa: E402
from tunalib import Daemon, Runner, example, free_port  # noqa: E402

TIMEOUT = 300


def tuna_path():
    if len(sys.argv) < 3:
        sys.exit("usage: %s /path/to/tunad /path/to/tuna" % sys.argv[0])
    return os.path.abspath(sys.argv[2])


class Cli:
    """Runs tuna against one daemon (TUNA_URL in the environment)."""

    def __init__(self, tuna, url, key=None):
        self.tuna = tuna
        self.env = dict(os.environ)
        self.env["TUNA_URL"] = url
        self.env.pop("TUNA_API_KEY", None)
        if key:
            self.env["TUNA_API_KEY"] = key
        self.env.pop("COLUMNS", None)

    def run(self, *args, expect=0, timeout=TIMEOUT, env=None):
        r = subprocess.run([self.tuna] + list(args), capture_output=True,
                           text=True, env=env or self.env, timeout=timeout)
        if expect is not None and r.returncode != expect:
            raise AssertionError("tuna %s: exit %d, expected %d\nstdout: "
                                 "%s\nstderr: %s" %
                                 (" ".join(args), r.returncode, expect,
                                  r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def json(self, *args):
        r = self.run(*(list(args) + ["--json"]))
        return json.loads(r.stdout)

    def pty(self, *args, cols=72, rows=24, timeout=TIMEOUT):
        """Runs tuna with stdout, stderr and stdin on a pseudo-terminal of
        cols x rows; returns (exit status, everything it wrote)."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", rows, cols, 0, 0))
        proc = subprocess.Popen([self.tuna] + list(args), stdin=slave,
                                stdout=slave, stderr=slave, env=self.env,
                                start_new_session=True)
        os.close(slave)
        out = b""
        end = time.time() + timeout
        try:
            while time.time() < end:
                r, _, _ = select.select([master], [], [], 1)
                if not r:
                    if proc.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:  # the child side closed
                        break
                    raise
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(master)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        return rc, out.decode("utf-8", "replace")


class CutProxy:
    """A TCP proxy in front of tunad that cuts the first event stream it
    carries after `cut` bytes of the answer, and records every request's
    head."""

    def __init__(self, port, cut):
        self.port = port
        self.cut = cut
        self.heads = []
        self.cut_done = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,),
                             daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass

    def _handle(self, c):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = c.recv(65536)
            if not chunk:
                c.close()
                return
            head += chunk
        self.heads.append(head.split(b"\r\n\r\n")[0].decode("latin-1"))
        cut = None
        if b"stream=true" in head.split(b"\r\n")[0] and not self.cut_done:
            self.cut_done = True
            cut = self.cut
        u = socket.create_connection(("127.0.0.1", self.port))
        u.sendall(head)
        threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
        sent = 0
        try:
            while True:
                data = u.recv(65536)
                if not data:
                    break
                if cut is not None and sent + len(data) >= cut:
                    c.sendall(data[:cut - sent])
                    break
                c.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.sock.close()


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BAR = re.compile(r"step (\d+)/(\d+) \[([#.]+)\] +(\d+)%")


def step_lines(text):
    """The step numbers of plain `step k/N` lines."""
    return [int(m.group(1)) for m in
            re.finditer(r"^step (\d+)/(\d+)\b", text, re.M)]


def main():
    tunad = tunalib.tunad_path()
    tuna = tuna_path()
    tunalib.skip_if_placeholder(tunad)
    t = Runner("cli")
    d = Daemon(tunad)
    st = {}
    bad = os.path.join(d.data_dir, "..", os.path.basename(d.data_dir) +
                       "-bad.jsonl")

    def cli():
        return st["cli"]

    def start():
        d.start()
        st["cli"] = Cli(tuna, d.url)

    def version_help():
        r = cli().run("--version")
        assert re.fullmatch(r"tuna \d+\.\d+\.\d+\n", r.stdout), r.stdout
        r = cli().run("--help")
        for word in ("datasets", "jobs", "generate", "models", "health",
                     "--json", "TUNA_URL"):
            assert word in r.stdout, (word, r.stdout)
        for cmd in (["datasets"], ["datasets", "upload"], ["datasets", "list"],
                    ["datasets", "show"], ["datasets", "delete"], ["jobs"],
                    ["jobs", "create"], ["jobs", "list"], ["jobs", "show"],
                    ["jobs", "events"], ["jobs", "follow"],
                    ["jobs", "cancel"], ["jobs", "pause"], ["jobs", "resume"],
                    ["jobs", "stop"], ["generate"], ["models"],
                    ["models", "list"], ["health"]):
            r = cli().run(*(cmd + ["--help"]))
            assert r.stdout.startswith("usage: tuna " + cmd[0]), (cmd, r)
        create = cli().run("jobs", "create", "--help").stdout
        for opt in ("--dataset", "--base", "--epochs", "--learning-rate",
                    "--batch-size", "--lora-rank", "--seed", "--suffix",
                    "--validation-split", "--follow"):
            assert opt in create, opt
        gen = cli().run("generate", "--help").stdout
        for opt in ("--model", "--max-tokens", "--temperature", "--top-p",
                    "--seed", "--stop"):
            assert opt in gen, opt
        # usage errors: exit 2 with a pointer to --help
        for args in (["frobnicate"], ["jobs", "frobnicate"], ["jobs", "show"],
                     ["jobs", "create", "--epochs"],
                     ["jobs", "list", "--bogus"], ["datasets", "upload"]):
            r = cli().run(*args, expect=2)
            assert "--help" in r.stderr, (args, r.stderr)

    def health():
        r = cli().run("health")
        assert r.stdout.startswith("ok: tunad ") and d.url in r.stdout, r
        h = cli().json("health")
        want = d.json("GET", "/health")
        # memory (resident bytes) moves between two calls; the rest may not.
        h.pop("memory", None)
        want.pop("memory", None)
        assert h == want, h

    def datasets():
        ds = cli().json("datasets", "upload", example("zog.jsonl"))
        assert ds["id"].startswith("ds_") and ds["rows"] == 240, ds
        assert ds["name"] == "zog.jsonl" and ds["format"] == "completion"
        assert d.json("GET", "/datasets/" + ds["id"]) == ds
        st["ds"] = ds["id"]
        r = cli().run("datasets", "upload", example("zog.jsonl"),
                      "--name", "zog two")
        assert "rows:    240" in r.stdout and "zog two" in r.stdout, r.stdout
        other = re.search(r"^id:\s+(ds_[0-9a-f]+)$", r.stdout, re.M).group(1)
        lst = cli().json("datasets", "list")
        assert lst == d.json("GET", "/datasets"), lst
        assert {x["id"] for x in lst["data"]} >= {ds["id"], other}
        r = cli().run("datasets", "list")
        assert ds["id"] in r.stdout and "zog two" in r.stdout, r.stdout
        assert cli().json("datasets", "show", ds["id"]) == ds
        r = cli().run("datasets", "show", ds["id"])
        assert "sha256:  " + ds["sha256"] in r.stdout, r.stdout
        gone = cli().json("datasets", "delete", other)
        assert gone == {"id": other, "object": "dataset", "deleted": True}
        # gone: the server's 404, word for word
        msg = d.request("GET", "/datasets/" + other).json()["error"]
        r = cli().run("datasets", "show", other, expect=1)
        assert msg["message"] in r.stderr and "404" in r.stderr, r.stderr
        r = cli().run("datasets", "delete", other, "--json", expect=1)
        assert json.loads(r.stdout) == {"error": msg}, r.stdout

    def bad_file():
        with open(bad, "w") as f:
            f.write('{"prompt": "a", "completion": "b"}\n\n'
                    '{"prompt": "c", "completion": 3}\n')
        server = d.request("POST", "/datasets", open(bad, "rb").read())
        err = server.json()["error"]
        assert server.status == 400 and err["line"] == 3, server
        for args in (["datasets", "upload", bad], ["jobs", "create", bad]):
            r = cli().run(*args, expect=1)
            assert err["message"] in r.stderr, r.stderr
            assert "line 3" in r.stderr and "field completion" in r.stderr
            assert r.stdout == "", r.stdout
        r = cli().run("datasets", "upload", bad, "--json", expect=1)
        assert json.loads(r.stdout)["error"]["line"] == 3
        # a file that is not there: said before anything is sent
        r = cli().run("datasets", "upload", bad + ".missing", expect=1)
        assert "No such file" in r.stderr and bad + ".missing" in r.stderr

    def unknown_ids():
        for args, path in ((["jobs", "show"], "/jobs/"),
                           (["jobs", "events"], "/jobs/"),
                           (["jobs", "follow"], "/jobs/"),
                           (["jobs", "cancel"], "/jobs/")):
            jid = "job_" + "0" * 24
            msg = d.request("GET", path + jid).json()["error"]["message"]
            r = cli().run(*(args + [jid]), expect=1)
            assert "tuna: " + msg in r.stderr, (args, r.stderr)
        r = cli().run("generate", "--model", "no-such-model", "hi", expect=1)
        assert "model" in r.stderr and "404" in r.stderr, r.stderr
        r = cli().run("jobs", "create", "--dataset", st["ds"],
                      "--epochs", "1000", expect=1)
        assert "epochs" in r.stderr and "400" in r.stderr, r.stderr

    def unreachable():
        url = "http://127.0.0.1:%d" % free_port()
        for args in (["health"], ["jobs", "list"], ["jobs", "follow",
                                                     "job_" + "1" * 24],
                     ["generate", "hi"]):
            r = cli().run("--url", url, *args, expect=1, timeout=60)
            assert "cannot reach tunad at " + url in r.stderr, r.stderr
        env = dict(cli().env, TUNA_URL=url)
        r = cli().run("health", expect=1, env=env)
        assert "cannot reach" in r.stderr
        # --url wins over TUNA_URL
        r = cli().run("health", "--url", d.url, env=env)
        assert r.stdout.startswith("ok"), r.stdout

    def follow_tty():
        job = cli().json("jobs", "create", example("zog.jsonl"),
                         "--epochs", "3", "--seed", "5")
        st["job"] = job["id"]
        assert job["hyperparameters"]["epochs"] == 3
        assert job["hyperparameters"]["seed"] == 5
        cols = 72
        rc, out = cli().pty("jobs", "follow", job["id"], cols=cols)
        assert rc == 0, (rc, out[-2000:])
        total = d.json("GET", "/jobs/" + job["id"])["progress"]["total_steps"]
        # redrawn in place: \r then the bar, many times
        segs = [ANSI.sub("", s) for s in re.split(r"[\r\n]", out)]
        bars = [BAR.search(s) for s in segs]
        bars = [b for b in bars if b]
        steps = sorted({int(b.group(1)) for b in bars})
        assert len(steps) >= 3 and steps[-1] == total, (steps, out[-2000:])
        assert "\rstep %d/%d [" % (steps[0], total) in out, out[:2000]
        assert any(int(b.group(1)) < total and "#" in b.group(3) and
                   "." in b.group(3) for b in bars), steps
        last = [b for b in bars if int(b.group(1)) == total][-1]
        assert set(last.group(3)) == {"#"} and last.group(4) == "100"
        for s in segs:  # the bar is never wider than the terminal
            if BAR.search(s):
                assert len(s) <= cols - 1, (len(s), s)
        assert any("loss " in s and "tok/s" in s and "ETA " in s
                   for s in segs if BAR.search(s)), out[-2000:]
        assert re.search(r"%s succeeded in \d+:\d\d: model ft:stories260K:"
                         r"tuna:%s" % (job["id"], job["id"]), out), out[-800:]
        # a wider terminal gets a longer line
        rc, wide = cli().pty("jobs", "follow", job["id"], cols=150)
        assert rc == 0
        wsegs = [ANSI.sub("", s) for s in re.split(r"[\r\n]", wide)]
        assert max(len(s) for s in wsegs if BAR.search(s)) > cols, wide[-500:]

    def follow_piped():
        job = st["job"]
        total = d.json("GET", "/jobs/" + job)["progress"]["total_steps"]
        r = cli().run("jobs", "follow", job)
        assert "\r" not in r.stdout and "\x1b" not in r.stdout
        assert step_lines(r.stdout) == list(range(1, total + 1))
        lines = r.stdout.splitlines()
        assert lines[0] == "Job queued", lines[:3]
        assert re.match(r"step 1/%d +\d+%%  loss \d+\.\d{4}" % total,
                        [x for x in lines if x.startswith("step ")][0])
        assert lines[-1].startswith(job + " succeeded in "), lines[-3:]
        # --json: one event a line, then the job
        r = cli().run("jobs", "follow", job, "--json")
        objs = [json.loads(x) for x in r.stdout.splitlines()]
        assert objs[:-1] == d.events(job), "events differ"
        assert objs[-1]["id"] == job and objs[-1]["status"] == "succeeded"

    def jobs_cmds():
        job = st["job"]
        assert cli().json("jobs", "show", job) == d.json("GET", "/jobs/" +
                                                         job)
        r = cli().run("jobs", "show", job)
        assert re.search(r"^status:\s+succeeded$", r.stdout, re.M), r.stdout
        assert "epochs=3" in r.stdout and "seed=5" in r.stdout
        lst = cli().json("jobs", "list")
        assert job in [j["id"] for j in lst["data"]]
        lst = cli().json("jobs", "list", "--status", "succeeded",
                         "--limit", "1")
        assert [j["id"] for j in lst["data"]] == [job], lst
        r = cli().run("jobs", "list")
        assert re.search(r"^%s +succeeded +(\d+)/\1 " % job, r.stdout,
                         re.M), r.stdout
        ev = cli().json("jobs", "events", job)
        assert ev["data"] == d.events(job) and not ev["has_more"]
        page = cli().json("jobs", "events", job, "--after", "2",
                          "--limit", "3")
        assert [e["id"] for e in page["data"]] == [
            e["id"] for e in d.events(job) if e["id"] > 2][:3], page
        r = cli().run("jobs", "events", job)
        assert "Job queued" in r.stdout and "train loss" in r.stdout
        # a finished job: the server's 409
        msg = d.request("POST", "/jobs/%s/cancel" % job).json()["error"]
        r = cli().run("jobs", "cancel", job, expect=1)
        assert msg["message"] in r.stderr and "409" in r.stderr, r.stderr

    def create_dataset_follow():
        # --dataset with settings and --follow, piped
        r = cli().run("jobs", "create", "--dataset", st["ds"], "--epochs",
                      "1", "--learning-rate", "0.002", "--batch-size", "8",
                      "--lora-rank", "4", "--suffix", "clitest",
                      "--validation-split", "0.1", "--param",
                      "lr_schedule=linear", "--follow")
        job = re.search(r"^id:\s+(job_[0-9a-f]+)$", r.stdout, re.M).group(1)
        j = d.json("GET", "/jobs/" + job)
        hp = j["hyperparameters"]
        assert (hp["epochs"], hp["learning_rate"], hp["batch_size"],
                hp["lora_rank"], hp["lr_schedule"], hp["validation_split"]) \
            == (1, 0.002, 8, 4, "linear", 0.1), hp
        assert j["model"] == "ft:stories260K:clitest:" + job
        assert step_lines(r.stdout) == list(
            range(1, j["progress"]["total_steps"] + 1))
        assert "validation" in r.stdout or "val " in r.stdout
        assert r.stdout.rstrip().endswith(": model " + j["model"])
        st["job2"] = j
        # dry run: nothing queued
        before = len(d.json("GET", "/jobs")["data"])
        pre = cli().json("jobs", "create", example("zog.jsonl"), "--dry-run",
                         "--epochs", "2")
        assert pre["dry_run"] is True and pre["epochs"] == 2, pre
        r = cli().run("jobs", "create", "--dataset", st["ds"], "--dry-run")
        assert "dry run" in r.stdout and "steps:" in r.stdout, r.stdout
        assert len(d.json("GET", "/jobs")["data"]) == before

    def generate():
        job = st["job"]
        body = {"model": job, "prompt": "Once upon a time", "max_tokens": 48,
                "temperature": 0}
        want = d.json("POST", "/generate", body)
        r = cli().run("generate", "--model", job, "--max-tokens", "48",
                      "--temperature", "0", "Once upon a time")
        assert r.stdout == want["text"], (r.stdout, want)
        assert "48 tokens" in r.stderr or "tokens" in r.stderr, r.stderr
        got = cli().json("generate", "--model", job, "--max-tokens", "48",
                         "--temperature", "0", "Once upon a time")
        assert got == want, got
        # sampling settings and stop strings reach the server
        body = {"model": "stories260K", "prompt": "Once upon a time",
                "max_tokens": 40, "temperature": 0.8, "top_p": 0.9,
                "seed": 11, "stop": ["Lily"]}
        want = d.json("POST", "/generate", body)
        r = cli().run("generate", "--model", "stories260K", "--max-tokens",
                      "40", "--temperature", "0.8", "--top-p", "0.9",
                      "--seed", "11", "--stop", "Lily", "Once", "upon", "a",
                      "time")
        assert r.stdout == want["text"], (r.stdout, want)
        # streamed: on a terminal the text comes with a final newline
        want = d.json("POST", "/generate", {
            "model": job, "prompt": "Once upon a time", "max_tokens": 16,
            "temperature": 0})
        rc, out = cli().pty("generate", "--model", job, "--max-tokens", "16",
                            "--temperature", "0", "Once upon a time")
        assert rc == 0, out
        assert out.replace("\r\n", "\n").startswith(want["text"] + "\n"), \
            (out, want)
        r = cli().run("generate", "--model", job, "--max-tokens", "0", "x",
                      expect=1)
        assert "max_tokens" in r.stderr, r.stderr

    def models():
        lst = cli().json("models", "list")
        assert lst == d.json("GET", "/models"), lst
        ids = [m["id"] for m in lst["data"]]
        assert "stories260K" in ids and st["job2"]["model"] in ids, ids
        r = cli().run("models", "list")
        assert st["job2"]["model"] in r.stdout and "finetuned" in r.stdout

    def controls():
        # a long job: pause, resume, cancel; follow then exits 1
        job = cli().json("jobs", "create", "--dataset", st["ds"],
                         "--epochs", "100")["id"]
        r = cli().run("jobs", "pause", job)
        assert r.stdout.startswith(job + ": "), r.stdout
        d.wait_job(job, states=("paused",), timeout=120)
        r = cli().run("jobs", "resume", job)
        assert re.match(job + r": (queued|running)$", r.stdout), r.stdout
        r = cli().run("jobs", "cancel", job)
        assert job in r.stdout and "cancel" in r.stdout, r.stdout
        d.wait_job(job, timeout=120)
        r = cli().run("jobs", "follow", job, expect=1)
        assert r.stdout.rstrip().endswith(job + " cancelled"), r.stdout[-300:]
        rc, out = cli().pty("jobs", "follow", job)
        assert rc == 1 and job + " cancelled" in out, out[-300:]
        # stop and save: succeeds early with a note
        job = cli().json("jobs", "create", "--dataset", st["ds"],
                         "--epochs", "100")["id"]
        d.wait_job(job, states=("running",),
                   pred=lambda j: (j["progress"]["step"] or 0) >= 5,
                   timeout=120)
        r = cli().run("jobs", "stop", job)
        assert job in r.stdout, r.stdout
        r = cli().run("jobs", "follow", job)
        assert "note: stopped by request" in r.stdout, r.stdout[-500:]

    def reconnect():
        job = cli().json("jobs", "create", "--dataset", st["ds"],
                         "--epochs", "2", "--seed", "9")["id"]
        proxy = CutProxy(d.port, cut=2500)
        try:
            via = Cli(tuna, proxy.url)
            r = via.run("jobs", "follow", job)
        finally:
            proxy.close()
        total = d.json("GET", "/jobs/" + job)["progress"]["total_steps"]
        # every step once, none lost or repeated across the cut
        assert step_lines(r.stdout) == list(range(1, total + 1)), r.stdout
        assert r.stdout.count("Job queued") == 1
        assert "reconnecting after event " in r.stderr, r.stderr
        streams = [h for h in proxy.heads if "stream=true" in
                   h.split("\r\n")[0]]
        assert len(streams) >= 2, proxy.heads
        assert "last-event-id" not in streams[0].lower()
        m = re.search(r"^Last-Event-ID: (\d+)$", streams[1], re.M | re.I)
        assert m and int(m.group(1)) > 0, streams[1]
        assert r.stdout.rstrip().endswith("model ft:stories260K:tuna:" + job)

    def api_keys():
        k = Daemon(tunad)
        try:
            out = subprocess.run([tunad, "keys", "create", "--name", "cli",
                                  "--data-dir", k.data_dir],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out
            key = out.stdout.strip()
            k.start()
            anon = Cli(tuna, k.url)
            anon.run("health")  # open to all
            msg = k.request("GET", "/datasets").json()["error"]["message"]
            r = anon.run("datasets", "list", expect=1)
            assert msg in r.stderr and "401" in r.stderr, r.stderr
            Cli(tuna, k.url, key=key).json("datasets", "list")
            anon.run("datasets", "list", "--api-key", key)
            r = anon.run("datasets", "list", "--api-key", key + "x",
                         expect=1)
            assert "401" in r.stderr
        finally:
            k.cleanup()

    def checks():
        t.check("daemon starts", start)
        t.check("--version, --help of every command, usage errors",
                version_help)
        t.check("health", health)
        t.check("datasets upload/list/show/delete, --json = the API",
                datasets)
        t.check("bad file: the server's message and line", bad_file)
        t.check("unknown ids: non-zero with the server's message",
                unknown_ids)
        t.check("unreachable server; TUNA_URL and --url", unreachable)
        t.check("follow on a terminal: a progress bar redrawn with \\r",
                follow_tty)
        t.check("follow piped: plain lines; --json: events", follow_piped)
        t.check("jobs list/show/events/cancel", jobs_cmds)
        t.check("create --dataset with settings --follow; --dry-run",
                create_dataset_follow)
        t.check("generate streamed, = /generate", generate)
        t.check("models list", models)
        t.check("pause, resume, cancel, stop; follow exits 1 on cancel",
                controls)
        t.check("follow reconnects with Last-Event-ID after a cut",
                reconnect)
        t.check("API keys: TUNA_API_KEY, --api-key, 401", api_keys)

    def remove_bad():
        try:
            os.unlink(bad)
        except OSError:
            pass

    tunalib.run_checks(t, d, checks, cleanup=[remove_bad])


if __name__ == "__main__":
    main()
