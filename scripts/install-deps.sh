#!/bin/sh
# Installs the Debian packages Tuna needs to build and test. Safe to re-run:
# apt-get skips what is already there. Needs root (or sudo).
set -eu
PKGS="build-essential meson ninja-build pkg-config
libmicrohttpd-dev libsqlite3-dev libcjson-dev libopenblas-dev uuid-dev
libpcre2-dev libutf8proc-dev libcurl4-openssl-dev libgnutls28-dev
sqlite3 curl"
# Optional extras used by tests only (reference checks, browser tests).
if [ "${TUNA_TEST_DEPS:-0}" = 1 ]; then
  PKGS="$PKGS python3-numpy python3-torch python3-jinja2 chromium wrk openssl"
  # Node.js may come from elsewhere (and Debian's npm conflicts with it).
  command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
fi
# The JavaScript tests' npm packages (tests/js/package-lock.json: the
# OpenAI SDK, and playwright-core, which drives Debian's chromium for the
# dashboard test and never downloads a browser), when node is there;
# without them those tests are skipped.
npm_ci() {
  if [ "${TUNA_TEST_DEPS:-0}" = 1 ] && command -v npm >/dev/null 2>&1 &&
     { [ ! -f tests/js/node_modules/openai/package.json ] ||
       [ ! -f tests/js/node_modules/playwright-core/package.json ]; }; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error ||
      echo "warning: npm ci --prefix tests/js failed; the OpenAI SDK" \
           "and browser tests will be skipped" >&2
  fi
}
cd "$(dirname "$0")/.."
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  npm_ci
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
npm_ci
