# SPDX-License-Identifier: MIT
"""Cheap checks of the dashboard's files (web/) that need no browser: every
JavaScript module parses (node --check, as an ES module), every file that
index.html or a module refers to exists and is listed in web/meson.build
(so it is built into tunad), and no file refers to another origin (the page
must work offline). Skips (77) without node."""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.environ.get("TUNA_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEB = os.path.join(ROOT, "web")


def main():
    node = shutil.which("node")
    if not node:
        print("SKIP: node is not installed")
        sys.exit(77)
    bad = []
    with open(os.path.join(WEB, "meson.build")) as f:
        listed = set(re.findall(r"'([\w.-]+\.(?:html|js|css|svg|png))'", f.read()))
    tmp = tempfile.mkdtemp(prefix="tuna-web-")
    try:
        for path in sorted(glob.glob(os.path.join(WEB, "*.js"))):
            name = os.path.basename(path)
            dst = os.path.join(tmp, name[:-3] + ".mjs")
            shutil.copy(path, dst)
            r = subprocess.run([node, "--check", dst], capture_output=True,
                               text=True)
            if r.returncode != 0:
                bad.append("%s does not parse:\n%s" % (name, r.stderr))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for path in sorted(glob.glob(os.path.join(WEB, "*"))):
        name = os.path.basename(path)
        if name in ("meson.build", "embed.py"):
            continue
        if name not in listed:
            bad.append("%s is not listed in web/meson.build" % name)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for ref in re.findall(r"""(?:from\s+|import\s*\(\s*)['"]\./([\w.-]+)['"]""", text):
            if ref not in listed:
                bad.append("%s imports %s, which is not built in" % (name, ref))
        for ref in re.findall(r"""(?:src|href)=["']/ui/([\w.-]+)["']""", text):
            if ref not in listed:
                bad.append("%s refers to /ui/%s, which is not built in" % (name, ref))
        for m in re.finditer(r"""(?:src|href|url\()\s*=?\s*["']?(https?:)?//""", text):
            bad.append("%s refers to another origin: %s" %
                       (name, text[m.start():m.start() + 60]))
    for b in bad:
        print("FAIL: " + b)
    if not bad:
        print("web: %d files checked" % len(listed))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
