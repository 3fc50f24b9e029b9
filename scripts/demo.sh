#!/usr/bin/env bash
# Sets up .venv and runs the main job on the embedded default (SQLite, sample data, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "trainledger is installed: .venv/bin/trainledger --help"
