#!/bin/sh
# SPDX-License-Identifier: MIT
#
# test-sanitize.sh - builds the whole project with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs the unit test suites under them (CI
# runs this; see docs/fuzzing.md). Any ASan/LSan/UBSan report fails the run:
# leaks are detected at exit and UBSan halts on the first error.
#
#     scripts/test-sanitize.sh [BUILD_DIR] [SUITE...]
#
# BUILD_DIR defaults to build-san (relative to the source root); SUITEs
# default to "engine store api fuzz". Add "integration" for the Python
# end-to-end tests against the sanitized tunad (slow). Extra meson setup
# options can be given in MESON_SETUP_ARGS (e.g. -Dbuildtype=debug).
# CC is honoured (gcc by default; clang works too).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-san}
[ $# -gt 0 ] && shift
suites=${*:-engine store api fuzz}
case $build in /*) ;; *) build=$root/$build ;; esac

if [ ! -d "$build" ]; then
    # shellcheck disable=SC2086
    meson setup "$build" "$root" -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debugoptimized ${MESON_SETUP_ARGS:-}
fi
ninja -C "$build"

# detect_leaks: LSan at exit. abort_on_error: a core/stack, not just exit 1.
# halt_on_error + print_stacktrace: any UBSan finding fails the test with
# its stack. Not strict_string_checks: it reports strndup(p, n) on arrays
# without a NUL, which C allows and api/ does on purpose. Suppressions
# would live in tests/sanitizer/ (none are needed today).
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
if [ -f "$root/tests/sanitizer/lsan.supp" ]; then
    LSAN_OPTIONS=suppressions=$root/tests/sanitizer/lsan.supp:print_suppressions=0
    export LSAN_OPTIONS
fi
export ASAN_OPTIONS UBSAN_OPTIONS
# OpenBLAS threads confuse LSan's thread registry less when single-threaded.
OPENBLAS_NUM_THREADS=1
export OPENBLAS_NUM_THREADS

rc=0
for s in $suites; do
    echo "== suite $s (ASan + UBSan)"
    meson test -C "$build" --suite "$s" --print-errorlogs \
        --timeout-multiplier 4 || rc=1
done
if [ $rc -eq 0 ]; then
    echo "test-sanitize: clean (suites: $suites)"
else
    echo "test-sanitize: FAILED (see $build/meson-logs/testlog.txt)"
fi
exit $rc
