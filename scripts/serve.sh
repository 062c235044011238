#!/bin/sh
# README command 1: install what is missing, configure, build, and serve the
# embedded stories260K model on 127.0.0.1:8080 (extra args go to `tunad serve`).
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
exec ./build/tunad serve "$@"
