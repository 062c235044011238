# SPDX-License-Identifier: MIT
"""Crash and corruption: tunad is killed with SIGKILL at random moments
while it (a) takes several concurrent large uploads (raw, multipart, and a
slow one that is always cut mid-body), (b) creates jobs (JSON and JSONL
forms, from several threads), (c) writes checkpoints and final adapters
(jobs with checkpoint_every=1 and many short jobs; half the kills land the
moment a temporary checkpoint folder or adapter file appears), and is restarted on the
same data dir after each kill. After every kill and at the end:

  * PRAGMA integrity_check is "ok" and foreign_key_check is empty (the
    crashed database opened read-only, before tunad recovers it);
  * every acknowledged (201) upload and job is there: the dataset's sha256
    in the store, its file on disk and its content as served
    (GET /v1/files/{id}/content) all match the bytes that were sent;
  * every dataset row has its file, every datasets/ds_*.jsonl file has its
    row, and no temp file of an upload survives a restart (datasets/.upload-*,
    datasets/.part-*, tmp/upload-*);
  * every checkpoint row names a whole folder, no temporary checkpoint or
    adapter file is left behind once the jobs have ended, every job
    succeeds, and its adapter and a checkpoint load (POST /generate).

TUNA_CRASH_SEED picks the kill moments (default: random, printed)."""

import glob
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import threading
import time

import tunalib

ARGS = ["--workers", "2", "--threads", "2", "--rate-limit-rpm", "0",
        "--max-jobs-in-flight", "0"]
UPLOAD_ROUNDS = 4
JOB_ROUNDS = 3
TRAIN_KILLS = 8
UPLOADERS = 4

NET_ERRORS = (OSError, http.client.HTTPException)

WORDS = ("zog dragon forest castle river cloud happy brave little friend "
         "tree sun moon star stone bird song dance red green blue").split()


def make_jsonl(rng, tag, rows):
    """rows clean JSONL lines (what the server stores byte for byte)."""
    out = []
    for i in range(rows):
        p = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        c = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))
        out.append(json.dumps({"prompt": "%s %d: %s" % (tag, i, p),
                               "completion": " " + c}))
    return ("\n".join(out) + "\n").encode()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def multipart(body, name):
    boundary = "tunacrash%08x" % random.getrandbits(32)
    head = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"%s\"\r\nContent-Type: application/jsonl\r\n\r\n" %
            (boundary, name)).encode()
    tail = ("\r\n--%s--\r\n" % boundary).encode()
    return head + body + tail, "multipart/form-data; boundary=" + boundary


class Ledger:
    """What the server acknowledged, and anything it should never say."""

    def __init__(self):
        self.lock = threading.Lock()
        self.datasets = {}    # id -> (sha256, bytes)
        self.jobs = {}        # id -> {"dataset_id": ..., "sha": ...}
        self.unexpected = []  # (what, status, body)

    def bad(self, what, r):
        with self.lock:
            self.unexpected.append((what, r.status, r.body[:300]))


def open_ro(db_path):
    return sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=30)


def check_db(db_path, label):
    """integrity_check and foreign_key_check on the database as it is."""
    con = open_ro(db_path)
    try:
        ic = [r[0] for r in con.execute("PRAGMA integrity_check")]
        assert ic == ["ok"], (label, ic)
        fk = list(con.execute("PRAGMA foreign_key_check"))
        assert fk == [], (label, fk[:5])
    finally:
        con.close()


def db_rows(d, sql):
    con = open_ro(os.path.join(d.data_dir, "tuna.db"))
    try:
        return list(con.execute(sql))
    finally:
        con.close()


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    seed = os.environ.get("TUNA_CRASH_SEED") or str(random.randrange(10**6))
    print("   TUNA_CRASH_SEED=%s" % seed)
    rng = random.Random(seed)
    t = tunalib.Runner("crash")
    d = tunalib.Daemon(tunad, args=ARGS)
    led = Ledger()
    s = {"kills": 0}
    db_path = os.path.join(d.data_dir, "tuna.db")

    def kill_and_restart(stop, threads, label):
        assert d.alive(), "tunad died by itself:\n" + d.log_tail()
        rc = d.kill9()
        assert rc == -signal.SIGKILL, rc
        s["kills"] += 1
        stop.set()
        for th in threads:
            th.join(120)
            assert not th.is_alive(), "a client thread hangs"
        check_db(db_path, label)
        d.start(timeout=120)

    # ------------------------------------------------------------ uploads

    def uploader(tid, stop, r):
        seq = 0
        while not stop.is_set():
            seq += 1
            body = make_jsonl(r, "u%d.%d" % (tid, seq),
                              r.randint(3000, 12000))
            mp = tid == 0 and seq % 2 == 0
            send, ct = multipart(body, "u%d.jsonl" % seq) if mp else \
                (body, "application/jsonl")
            try:
                resp = d.post("/datasets?name=u%d-%d" % (tid, seq), send,
                              headers={"Content-Type": ct}, timeout=120)
            except NET_ERRORS:
                continue
            if resp.status != 201:
                led.bad("upload", resp)
                continue
            j = resp.json()
            with led.lock:
                led.datasets[j["id"]] = (sha(body), len(body))
            if j["sha256"] != sha(body) or j["bytes"] != len(body):
                led.bad("upload answer", resp)

    def slow_uploader(stop, r):
        """Announces a body and sends it slowly: a kill always lands in
        the middle of it (the server has a partial upload in tmp/)."""
        body = make_jsonl(r, "slow", 20000)
        while not stop.is_set():
            try:
                sk = socket.create_connection((d.host, d.port), timeout=30)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                sk.sendall(("POST /datasets HTTP/1.1\r\nHost: x\r\n"
                            "Content-Type: application/jsonl\r\n"
                            "Content-Length: %d\r\n\r\n" %
                            (len(body) + 1)).encode())
                off = 0
                while not stop.is_set() and off < len(body):
                    sk.sendall(body[off:off + 65536])
                    off += 65536
                    time.sleep(0.05)
                while not stop.is_set():
                    time.sleep(0.05)     # never sends the last byte
            except OSError:
                pass
            finally:
                sk.close()

    def uploads_killed():
        for rnd in range(UPLOAD_ROUNDS):
            stop = threading.Event()
            ths = [threading.Thread(target=uploader,
                                    args=(i, stop, random.Random(
                                        "%s-%d-%d" % (seed, rnd, i))))
                   for i in range(UPLOADERS)]
            ths.append(threading.Thread(target=slow_uploader,
                                        args=(stop, random.Random(rnd))))
            for th in ths:
                th.start()
            time.sleep(rng.uniform(1.0, 4.0))
            kill_and_restart(stop, ths, "upload round %d" % rnd)
            verify_datasets()
        n = len(led.datasets)
        print("   %d kills, %d uploads acknowledged" % (s["kills"], n))
        assert n >= 2, "too few uploads got through: %d" % n
        assert not led.unexpected, led.unexpected[:5]

    def verify_datasets():
        dd = os.path.join(d.data_dir, "datasets")
        # acknowledged: the store, the file and what is served agree
        for did, (want, size) in list(led.datasets.items()):
            r = d.get("/datasets/" + did)
            assert r.status == 200, ("acknowledged dataset lost", did, r)
            j = r.json()
            assert j["sha256"] == want and j["bytes"] == size, (did, j)
            with open(os.path.join(dd, did + ".jsonl"), "rb") as f:
                assert sha(f.read()) == want, ("file differs", did)
            r = d.get("/v1/files/%s/content" % did)
            assert r.status == 200 and sha(r.body) == want, \
                ("served content differs", did, r.status, len(r.body))
        # every row has its whole file; every file has its row
        rows = {i: (h, b, p) for i, h, b, p in db_rows(
            d, "SELECT id, sha256, bytes, path FROM datasets")}
        listed = {x["id"] for x in d.json(
            "GET", "/datasets?limit=1000")["data"]}
        assert listed == set(rows), (listed ^ set(rows))
        for did, (h, b, p) in rows.items():
            path = os.path.join(d.data_dir, p)
            assert os.path.isfile(path), ("row without its file", did)
            with open(path, "rb") as f:
                data = f.read()
            assert len(data) == b and sha(data) == h, \
                ("row and file disagree", did)
        files = {os.path.basename(f)[:-6] for f in
                 glob.glob(os.path.join(dd, "ds_*.jsonl"))}
        assert files == set(rows), ("files without rows", files - set(rows))
        left = [os.path.basename(f) for f in
                glob.glob(os.path.join(dd, ".*")) +
                glob.glob(os.path.join(d.data_dir, "tmp", "upload-*"))]
        assert not left, ("temp files survived a restart", left)

    # -------------------------------------------------------- job creation

    def job_creator(tid, stop, r, small_ds):
        seq = 0
        while not stop.is_set():
            seq += 1
            if seq % 2:
                body = {"dataset_id": small_ds, "suffix": "c%d" % tid,
                        "hyperparameters": {"epochs": 1, "batch_size": 4}}
                want = {"dataset_id": small_ds}
                args = {"body": body}
            else:
                data = make_jsonl(r, "j%d.%d" % (tid, seq), r.randint(4, 400))
                want = {"sha": sha(data)}
                args = {"body": data,
                        "headers": {"Content-Type": "application/jsonl"}}
                body = None
            try:
                resp = d.request("POST", "/jobs?epochs=1&batch_size=4" if
                                 body is None else "/jobs", timeout=120,
                                 **args)
            except NET_ERRORS:
                continue
            if resp.status != 201:
                led.bad("job", resp)
                continue
            j = resp.json()
            with led.lock:
                led.jobs[j["id"]] = dict(want, dataset=j["dataset_id"])

    def jobs_killed():
        small = make_jsonl(random.Random(seed), "small", 8)
        ds = d.json("POST", "/datasets?name=small", small,
                    headers={"Content-Type": "application/jsonl"},
                    expect=201)
        led.datasets[ds["id"]] = (sha(small), len(small))
        s["small"] = ds["id"]
        for rnd in range(JOB_ROUNDS):
            stop = threading.Event()
            ths = [threading.Thread(target=job_creator,
                                    args=(i, stop, random.Random(
                                        "%s-j%d-%d" % (seed, rnd, i)),
                                        ds["id"]))
                   for i in range(3)]
            for th in ths:
                th.start()
            time.sleep(rng.uniform(0.5, 2.5))
            kill_and_restart(stop, ths, "job round %d" % rnd)
            verify_jobs()
            verify_datasets()
        print("   %d jobs acknowledged" % len(led.jobs))
        assert len(led.jobs) >= JOB_ROUNDS, len(led.jobs)
        assert not led.unexpected, led.unexpected[:5]
        # they would keep the workers busy: cancel what has not run yet
        for jid in led.jobs:
            d.request("POST", "/jobs/%s/cancel" % jid)

    def verify_jobs():
        for jid, want in list(led.jobs.items()):
            r = d.get("/jobs/" + jid)
            assert r.status == 200, ("acknowledged job lost", jid, r)
            j = r.json()
            assert j["dataset_id"] == want["dataset"], (jid, j)
            assert j["status"] in ("queued", "running", "succeeded",
                                   "cancelled"), j
            r = d.get("/datasets/" + j["dataset_id"])
            assert r.status == 200, ("a job's dataset is lost", jid, r)
            if "sha" in want:
                assert r.json()["sha256"] == want["sha"], (jid, r.json())
                with open(os.path.join(d.data_dir, "datasets",
                                       j["dataset_id"] + ".jsonl"),
                          "rb") as f:
                    assert sha(f.read()) == want["sha"], jid

    # ------------------------------------------ checkpoint and adapter writes

    def training_killed():
        zog = d.upload_jobs(tunalib.example("zog.jsonl"),
                            "epochs=2&batch_size=4&checkpoint_every=1"
                            "&keep_checkpoints=2&suffix=ck")
        ids = [zog["id"]]
        r = random.Random(seed + "-train")
        for i in range(6):
            data = make_jsonl(r, "t%d" % i, 8)
            j = d.json("POST", "/jobs?epochs=2&batch_size=4&checkpoint_every"
                       "=1&keep_checkpoints=1&suffix=t%d" % i, data,
                       headers={"Content-Type": "application/jsonl"},
                       expect=201)
            ids.append(j["id"])
        s["train"] = ids
        kills = 0
        while kills < TRAIN_KILLS:
            st = [d.json("GET", "/jobs/" + i)["status"] for i in ids]
            if all(x == "succeeded" for x in st):
                break
            if kills % 2:
                time.sleep(rng.uniform(0.3, 2.5))
            else:
                # aim: the moment a temp checkpoint folder or adapter file
                # appears, a write is under way
                end = time.time() + 3
                while time.time() < end and not writing(ids):
                    pass
            rc = d.kill9()
            assert rc == -signal.SIGKILL, rc
            kills += 1
            s["kills"] += 1
            check_db(db_path, "training kill %d" % kills)
            verify_checkpoints(ids, final=False)
            if temp_files(ids):
                s["mid_write"] = s.get("mid_write", 0) + 1
            d.start(timeout=120)
        print("   %d kills while training, %d of them left a checkpoint or "
              "adapter half-written" % (kills, s.get("mid_write", 0)))
        for i in ids:
            j = d.wait_job(i, timeout=600)
            assert j["status"] == "succeeded", j

    def verify_checkpoints(ids, final):
        for jid, step, path in db_rows(
                d, "SELECT job_id, step, path FROM job_checkpoints"):
            folder = os.path.join(d.data_dir, path)
            for f in ("checkpoint.safetensors", "adapter_model.safetensors",
                      "adapter_config.json"):
                p = os.path.join(folder, f)
                assert os.path.isfile(p) and os.path.getsize(p) > 0, \
                    ("checkpoint row without its files", jid, step, f)
        if final:
            left = temp_files(ids)
            assert not left, ("temporary files left behind", left)

    def writing(ids):
        for jid in ids:
            for sub in ("checkpoints", "adapter"):
                try:
                    names = os.listdir(os.path.join(d.data_dir, "jobs", jid,
                                                    sub))
                except OSError:
                    continue
                if any(".tmp" in x for x in names):
                    return True
        return False

    def temp_files(ids):
        """Temp folders and files of checkpoint and adapter writes."""
        left = []
        for jid in ids:
            jd = os.path.join(d.data_dir, "jobs", jid)
            for root, dirs, files in os.walk(jd):
                left += [os.path.join(root, x) for x in dirs + files
                         if ".tmp" in x or x.startswith(".")]
        return left

    def adapters_load():
        verify_checkpoints(s["train"], final=True)
        for jid in s["train"]:
            j = d.json("GET", "/jobs/" + jid)
            ad = os.path.join(d.data_dir, "jobs", jid, "adapter")
            for f in ("adapter_model.safetensors", "adapter_config.json"):
                assert os.path.isfile(os.path.join(ad, f)), (jid, f)
            g = d.json("POST", "/generate", {"model": j["model"],
                                             "prompt": "Once",
                                             "max_tokens": 4,
                                             "temperature": 0})
            assert g["model"] == j["model"] and "text" in g, g
            ck = d.json("GET", "/jobs/%s/checkpoints" % jid)["data"]
            assert ck, ("no checkpoint kept", jid)
            g = d.json("POST", "/generate", {"model": ck[-1]["model"],
                                             "prompt": "Once",
                                             "max_tokens": 4})
            assert g["model"] == ck[-1]["model"], g

    def final_state():
        verify_datasets()
        verify_jobs()
        # the job-creation jobs that ran to the end (before the cancel)
        done = [j for j in d.json("GET", "/jobs?status=succeeded&limit=1000")
                ["data"] if j["id"] in led.jobs]
        for j in done:
            ad = os.path.join(d.data_dir, "jobs", j["id"], "adapter")
            for f in ("adapter_model.safetensors", "adapter_config.json"):
                assert os.path.isfile(os.path.join(ad, f)), (j["id"], f)
        for j in done[:3]:
            g = d.json("POST", "/generate", {"model": j["model"],
                                             "prompt": "Once",
                                             "max_tokens": 4})
            assert g["model"] == j["model"], g
        rc = d.stop(signal.SIGTERM, timeout=60)
        assert rc == 0, rc
        con = sqlite3.connect(db_path)
        try:
            assert [r[0] for r in con.execute("PRAGMA integrity_check")] \
                == ["ok"]
            assert list(con.execute("PRAGMA foreign_key_check")) == []
        finally:
            con.close()
        print("   %d kills in all; %d datasets and %d jobs acknowledged, "
              "all intact" % (s["kills"], len(led.datasets), len(led.jobs)))

    def checks():
        d.start(timeout=120)
        ok = t.check("kill -9 during concurrent uploads (%d rounds)" %
                     UPLOAD_ROUNDS, uploads_killed)
        ok = t.check("kill -9 during job creation (%d rounds)" % JOB_ROUNDS,
                     jobs_killed) and ok
        if t.check("kill -9 during checkpoint and adapter writes",
                   training_killed):
            t.check("adapters and checkpoints load", adapters_load)
        if ok:
            t.check("after a clean stop: integrity_check, nothing lost",
                    final_state)

    tunalib.run_checks(t, d, checks, 60)


if __name__ == "__main__":
    main()
