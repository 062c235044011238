# SPDX-License-Identifier: MIT
"""The engine CLI as the README shows it: `tunad generate` (the greedy
stories260K reference, a stop string, a sampled run with a seed twice, a
bad model path) and `tunad train` on part of examples/zog.jsonl, whose
adapter `tunad generate --adapter` then uses."""

import os
import shutil
import subprocess
import tempfile

import tunalib

# llama2.c's run.c, greedy, stories260K, prompt "Once upon a time"
# (tests/engine/test_generate.c checks eng_generate against the same text)
EXPECTED = (", there was a little girl named Lily. She loved to play outside "
            "in the park. One day, she saw a big, red ball. She wanted to "
            "play with it, but it was too high.\nLily's mom said")


def main():
    tunad = tunalib.tunad_path()
    tunalib.skip_if_placeholder(tunad)
    t = tunalib.Runner("engine_cli")
    tmp = tempfile.mkdtemp(prefix="tuna-ecli-")

    def run(args, timeout=300):
        return subprocess.run([tunad] + args, capture_output=True, text=True,
                              timeout=timeout)

    def greedy_reference():
        r = run(["generate", "--temperature", "0", "--max-tokens", "64",
                 "Once upon a time"])
        assert r.returncode == 0, r
        assert r.stdout == EXPECTED + "\n", repr(r.stdout)
        assert "[5 prompt + 64 completion tokens," in r.stderr, r.stderr
        assert "finish: length]" in r.stderr, r.stderr

    def stop_string():
        r = run(["generate", "--temperature", "0", "--max-tokens", "64",
                 "--stop", "Lily", "Once upon a time"])
        assert r.returncode == 0, r
        assert r.stdout == ", there was a little girl named \n", \
            repr(r.stdout)
        assert "finish: stop]" in r.stderr, r.stderr

    def seeded_sampling():
        args = ["generate", "--temperature", "1", "--seed", "7",
                "--max-tokens", "40", "Once upon a time"]
        a, b = run(args), run(args)
        assert a.returncode == 0 and b.returncode == 0, (a, b)
        assert a.stdout == b.stdout and a.stdout.strip(), (a.stdout, b.stdout)
        assert a.stdout != EXPECTED[:len(a.stdout)], "sampling was greedy"

    def bad_model():
        r = run(["generate", "--model", os.path.join(tmp, "nope"), "hi"])
        assert r.returncode == 1, r
        assert "cannot load model" in r.stderr, r.stderr

    def train_then_generate():
        data = os.path.join(tmp, "zog40.jsonl")
        with open(tunalib.example("zog.jsonl")) as f, open(data, "w") as o:
            for i, line in enumerate(f):
                if i >= 40:
                    break
                o.write(line)
        out = os.path.join(tmp, "zog")
        r = run(["train", "--data", data, "--out", out, "--epochs", "2",
                 "--lr", "3e-3"], timeout=600)
        assert r.returncode == 0, r
        assert os.path.exists(os.path.join(out, "adapter_config.json")), \
            os.listdir(out)
        r = run(["generate", "--adapter", out, "--temperature", "0",
                 "--max-tokens", "64", "Once upon a time"])
        assert r.returncode == 0, r
        assert r.stdout.strip() and r.stdout != EXPECTED + "\n", \
            repr(r.stdout)

    try:
        t.check("generate: the greedy stories260K reference", greedy_reference)
        t.check("generate --stop ends before the stop string", stop_string)
        t.check("generate with a seed repeats itself", seeded_sampling)
        t.check("generate --model that is not there: exit 1", bad_model)
        t.check("train, then generate --adapter", train_then_generate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.finish()


if __name__ == "__main__":
    main()
