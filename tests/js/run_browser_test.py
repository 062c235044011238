# SPDX-License-Identifier: MIT
"""Runs dashboard.test.mjs: the dashboard (web/, served by tunad at /) in
headless Chromium, driven by playwright-core, against a real tunad started
on 127.0.0.1 with a temporary data dir. Screenshots go to
$TUNA_BUILD_ROOT/screenshots (or $TUNA_SCREENSHOTS).

Skips (77) only when something it needs cannot be found: node, Debian's
chromium (/usr/bin/chromium, or $TUNA_CHROMIUM), or the playwright-core npm
package (`npm ci --prefix tests/js`; scripts/install-deps.sh does both
under TUNA_TEST_DEPS=1). It never downloads a browser."""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from tunalib import Daemon, SKIP, example, tunad_path  # noqa: E402

# A dataset whose line 3 is broken (the page must show line 3), 4 lines.
BAD = ('{"prompt": "Once upon a time", "completion": ", there was a cat."}\n'
       '{"prompt": "One day", "completion": " a dog ran."}\n'
       '{"prompt": "Then", "completion": }\n'
       '{"prompt": "At last", "completion": " all was well."}\n')


def find_chromium():
    for c in (os.environ.get("TUNA_CHROMIUM"), "/usr/bin/chromium",
              shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def main():
    tunad = tunad_path()
    node = shutil.which("node")
    if not node:
        print("SKIP: node is not installed (apt-get install nodejs npm)")
        sys.exit(SKIP)
    chromium = find_chromium()
    if not chromium:
        print("SKIP: Debian's chromium is not installed "
              "(TUNA_TEST_DEPS=1 scripts/install-deps.sh, or apt-get install "
              "chromium)")
        sys.exit(SKIP)
    if not os.path.isfile(os.path.join(HERE, "node_modules", "playwright-core",
                                       "package.json")):
        print("SKIP: the playwright-core npm package is missing: run "
              "`npm ci --prefix tests/js`")
        sys.exit(SKIP)
    shots = os.environ.get("TUNA_SCREENSHOTS") or os.path.join(
        os.environ.get("TUNA_BUILD_ROOT") or tempfile.gettempdir(),
        "screenshots")
    os.makedirs(shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="tuna-browser-")
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write(BAD)
    d = Daemon(tunad).start()
    rc = 1
    try:
        env = dict(os.environ, TUNA_URL=d.url, TUNA_DATASET=example("zog.jsonl"),
                   TUNA_BAD_DATASET=bad, TUNA_CHROMIUM=chromium,
                   TUNA_SCREENSHOTS=shots, TUNA_TUNAD=tunad,
                   TUNA_DATA_DIR=d.data_dir, TUNA_TMP=tmp)
        script = sys.argv[2] if len(sys.argv) > 2 else "dashboard.test.mjs"
        rc = subprocess.run([node, os.path.join(HERE, script)],
                            env=env, cwd=HERE, timeout=840).returncode
        if rc != 0:
            print(d.log_tail(60))
        print("screenshots in %s" % shots)
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if rc else 0)


if __name__ == "__main__":
    main()
