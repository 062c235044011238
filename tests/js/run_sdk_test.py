# SPDX-License-Identifier: MIT
"""Runs openai_sdk.test.mjs, or the .mjs named after the tunad path (the
official OpenAI Node.js SDK against tunad)
under meson: starts tunad on 127.0.0.1 with a temporary data dir, runs node
with TUNA_URL and TUNA_DATASET, stops tunad. Skips (77) when node or the
SDK is missing: install it with `npm ci --prefix tests/js` (scripts/test.sh
does, through scripts/install-deps.sh, when node is present)."""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from tunalib import Daemon, SKIP, example, tunad_path  # noqa: E402


def main():
    tunad = tunad_path()
    node = shutil.which("node")
    if not node:
        print("SKIP: node is not installed (apt-get install nodejs npm)")
        sys.exit(SKIP)
    if not os.path.isfile(os.path.join(HERE, "node_modules", "openai",
                                       "package.json")):
        print("SKIP: the openai npm package is missing: run "
              "`npm ci --prefix tests/js`")
        sys.exit(SKIP)
    d = Daemon(tunad).start()
    try:
        env = dict(os.environ, TUNA_URL=d.url,
                   TUNA_DATASET=example("zog.jsonl"))
        script = sys.argv[2] if len(sys.argv) > 2 else "openai_sdk.test.mjs"
        rc = subprocess.run([node, os.path.join(HERE, script)],
                            env=env, cwd=HERE, timeout=600).returncode
        if rc != 0:
            print(d.log_tail(60))
    finally:
        d.cleanup()
    sys.exit(1 if rc else 0)


if __name__ == "__main__":
    main()
