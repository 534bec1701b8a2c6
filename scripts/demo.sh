#!/usr/bin/env bash
# README command 1: set up what is missing (libtorch, data), build, and run the demo.
# Extra arguments go to `apparate demo` (see `apparate demo --help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh all
printf '\033[1m==> building apparate (release)\033[0m\n' >&2
cargo build --release --locked -p apparate -j "${CARGO_BUILD_JOBS:-2}"
exec target/release/apparate demo "$@"
