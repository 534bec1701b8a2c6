#!/usr/bin/env bash
# README command 2 (and CI): set up what is missing, then run every check CI runs:
# formatting, the torch-free guarantee, clippy with warnings as errors, and all tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

scripts/bootstrap.sh all
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step "rustfmt"
cargo fmt --all --check

step "torch-free crates must not depend on libtorch"
for crate in proto controller telemetry sidecar; do
  [ -d "crates/$crate" ] || continue
  if cargo tree --locked -p "apparate-$crate" -e normal,build,dev --prefix none | grep -E '^(tch|torch-sys) '; then
    echo "apparate-$crate depends on libtorch (above): it must not" >&2
    exit 1
  fi
  echo "apparate-$crate: no tch, no torch-sys"
done

step "clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  echo "(cargo-nextest not installed: using cargo test)"
  cargo test --locked --workspace --no-fail-fast
fi
cargo test --locked --workspace --doc
