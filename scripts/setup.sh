#!/usr/bin/env bash
# Creates .venv with the CPU build of torch and every dependency (tests and dashboard too).
# GPU users: create .venv, install torch into it the way you normally do, then run this:
# an installed torch is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # Pinned: an unpinned torch pulls a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e '.[test,dashboard]'
# train.compile=true (and its test) builds CPU kernels with the system C++ compiler.
command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++ >/dev/null; } \
  || echo "g++ not installed: train.compile=true cannot compile on CPU" >&2
# The browser tests drive Debian's chromium (never a downloaded browser): installed when missing
# and this runs as root (CI); elsewhere, `apt-get install chromium` once.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
fi
