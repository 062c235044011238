#!/bin/sh
# README command 2: install what is missing (test-only extras included:
# Debian's python3-torch for reference checks, chromium for browser tests),
# build, and run every test.
set -eu
cd "$(dirname "$0")/.."
TUNA_TEST_DEPS=1 scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
meson test -C build --print-errorlogs "$@"
