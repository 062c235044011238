#!/bin/sh
# SPDX-License-Identifier: MIT
#
# fuzz-run.sh - runs libFuzzer targets of tests/fuzz/ for a bounded time
# each (see docs/fuzzing.md). The build dir must be set up with
# -Dfuzzing_engine=libfuzzer; the corpus grows in a scratch copy, so the
# committed seeds stay as they are.
#
#     scripts/fuzz-run.sh BUILD_DIR [SECONDS] [TARGET...]
#
# SECONDS defaults to 60; TARGETs (without the fuzz_ prefix) to all of
# them. Crashes, leaks, timeouts and OOMs land in $FUZZ_OUT (default
# /tmp/tuna-fuzz-out)/<target>/; the exit status is non-zero if any target
# found something.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: fuzz-run.sh BUILD_DIR [SECONDS] [TARGET...]}
secs=${2:-60}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
targets=${*:-router request_json dataset_jsonl multipart safetensors gguf tokenizer_json tokenizer_encode chat_template}
out=${FUZZ_OUT:-/tmp/tuna-fuzz-out}

ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
TUNA_SOURCE_ROOT=$root
OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS UBSAN_OPTIONS TUNA_SOURCE_ROOT OPENBLAS_NUM_THREADS

rc=0
for t in $targets; do
    exe=$build/tests/fuzz/fuzz_$t
    [ -x "$exe" ] || { echo "fuzz-run: no $exe, skipped"; continue; }
    mkdir -p "$out/$t/corpus" "$out/$t/artifacts"
    dict=
    [ -f "$root/tests/fuzz/$t.dict" ] && dict=-dict=$root/tests/fuzz/$t.dict
    echo "== fuzz_$t for ${secs}s"
    # shellcheck disable=SC2086
    "$exe" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 \
        -max_len=262144 -print_final_stats=1 $dict \
        -artifact_prefix="$out/$t/artifacts/" \
        "$out/$t/corpus" "$root/tests/fuzz/corpus/$t" \
        >"$out/$t/log.txt" 2>&1
    r=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)' \
        "$out/$t/log.txt" | tr '\n' ' '
    echo
    if [ $r -ne 0 ]; then
        rc=1
        echo "fuzz_$t: FOUND SOMETHING (exit $r), see $out/$t/log.txt:"
        grep -E 'ERROR|SUMMARY|invariant|artifact' "$out/$t/log.txt" | head -5
    fi
done
exit $rc
