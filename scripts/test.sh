#!/bin/sh
# README command 2: install what is missing (test-only extras included:
# Debian's python3-torch for reference checks, chromium for browser tests),
# build, and run every test. Ends with one summary line "N passed, N failed".
set -eu
cd "$(dirname "$0")/.."
TUNA_TEST_DEPS=1 scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
rc=0
meson test -C build --print-errorlogs "$@" || rc=$?
log=build/meson-logs/testlog.json
if [ -f "$log" ]; then
  p=$(grep -c '"result": "OK"' "$log" || true)
  f=$(grep -cE '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log" || true)
  s=$(grep -c '"result": "SKIP"' "$log" || true)
  echo "$p passed, $f failed, $s skipped"
fi
exit $rc
