#!/bin/sh
# SPDX-License-Identifier: MIT
# bench/load.sh - a load test of tunad with wrk (Debian's `wrk`), loopback
# only, bounded in time. It starts its own tunad on 127.0.0.1 with a
# temporary data dir, queues a long training job on examples/zog.jsonl, and
# while it trains runs wrk against GET /jobs/{id} (twice) and GET /health;
# then, with the job cancelled, against POST /generate (twice;
# bench/generate.lua: 16 tokens on the embedded model). For each run it
# prints requests/s, latency p50/p90/p99, non-2xx answers and socket
# errors, and tunad's RSS (VmRSS) before and a second after. Exit status 1
# when any request failed, the job was not training during the GET runs, or
# RSS grew by more than TUNA_LOAD_RSS_SLACK_KB (default 8192) over a run.
#
#   bench/load.sh [path/to/tunad]       default: build/tunad
#   TUNA_LOAD_SECONDS=12 TUNA_LOAD_THREADS=2 TUNA_LOAD_CONNECTIONS=8
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
tunad=${1:-$root/build/tunad}
secs=${TUNA_LOAD_SECONDS:-12}
threads=${TUNA_LOAD_THREADS:-2}
conns=${TUNA_LOAD_CONNECTIONS:-8}
slack=${TUNA_LOAD_RSS_SLACK_KB:-8192}

command -v wrk >/dev/null || {
    echo "load.sh: wrk is missing (TUNA_TEST_DEPS=1 scripts/install-deps.sh)" >&2
    exit 2
}
[ -x "$tunad" ] || { echo "load.sh: no tunad at $tunad" >&2; exit 2; }

work=$(mktemp -d /tmp/tuna-load-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

TUNA_SOURCE_ROOT=$root "$tunad" serve --host 127.0.0.1 --port 0 \
    --data-dir "$work/data" --workers 1 >"$work/out" 2>"$work/log" &
pid=$!
i=0
until grep -q "^tunad listening on" "$work/out" 2>/dev/null; do
    if [ $i -ge 600 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "load.sh: tunad did not start" >&2
        cat "$work/log" >&2
        exit 1
    fi
    sleep 0.1
    i=$((i + 1))
done
line=$(grep "^tunad listening on" "$work/out")
case $line in
"tunad listening on http://"*) url=${line#tunad listening on } ;;
*) echo "load.sh: unexpected: $line" >&2; exit 1 ;;
esac

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
status() { curl -s "$url/jobs/$job" | sed 's/.*"status":"\([a-z]*\)".*/\1/'; }

fail=0
# run NAME URL [wrk args...]: one bounded wrk run and its figures
run() {
    name=$1 target=$2
    shift 2
    before=$(rss)
    wrk -t "$threads" -c "$conns" -d "${secs}s" --latency "$@" "$target" \
        >"$work/wrk.txt" 2>&1
    sleep 1     # requests still in flight when wrk stopped finish first
    after=$(rss)
    awk -v name="$name" -v before="$before" -v after="$after" '
        /Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = $2 } /^ +90%/ { p90 = $2 } /^ +99%/ { p99 = $2 }
        /requests in/ { n = $1 }
        /Non-2xx or 3xx responses:/ { non2xx = $5 }
        /Socket errors:/ { sock = $0; sub(/.*Socket errors: /, "", sock) }
        END {
            printf "%-16s %9s req/s  p50 %-8s p90 %-8s p99 %-8s  requests %s" \
                   "  non-2xx %d  socket errors %s  RSS %d -> %d kB (%+d)\n", \
                   name, rps, p50, p90, p99, n, non2xx + 0, \
                   sock == "" ? "none" : sock, before, after, after - before
        }' "$work/wrk.txt"
    if grep -q "Non-2xx\|Socket errors" "$work/wrk.txt"; then
        fail=1
    fi
    if [ $((after - before)) -gt "$slack" ]; then
        echo "  RSS grew by $((after - before)) kB (slack $slack kB)"
        fail=1
    fi
}

echo "tunad $(cat /proc/$pid/status | awk '/^VmRSS/{print "RSS " $2 " kB at start"}'); $(nproc) cores," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t $threads -c $conns -d ${secs}s"

# A job that trains for the whole GET phase (cancelled afterwards).
job=$(curl -s --data-binary @"$root/examples/zog.jsonl" \
        "$url/jobs?epochs=100&checkpoint_every=100000&suffix=load" |
      sed 's/^{"id":"\([^"]*\)".*/\1/')
case $job in job_*) ;; *) echo "load.sh: no job: $job" >&2; exit 1 ;; esac
i=0
while [ "$(status)" != running ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done

# warm-up runs (first allocations, caches), not reported
wrk -t 1 -c 2 -d 2s "$url/jobs/$job" >/dev/null 2>&1
training() {
    st=$(status)
    echo "  (job $st after the run, step $(curl -s "$url/jobs/$job" |
          sed 's/.*"step":\([0-9]*\).*/\1/'))"
    [ "$st" = running ] || { echo "  the job was not training"; fail=1; }
}
run "GET /jobs/{id}" "$url/jobs/$job"
training
run "GET /jobs/{id}" "$url/jobs/$job"
training
run "GET /health" "$url/health"
training
curl -s -X POST "$url/jobs/$job/cancel" >/dev/null

wrk -t 1 -c 2 -d 3s -s "$here/generate.lua" "$url/generate" >/dev/null 2>&1
run "POST /generate" "$url/generate" -s "$here/generate.lua"
run "POST /generate" "$url/generate" -s "$here/generate.lua"

if [ "$fail" != 0 ]; then
    echo "load.sh: FAILED (errors or memory growth above)"
    exit 1
fi
echo "load.sh: no errors, memory flat"
