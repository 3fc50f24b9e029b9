#!/usr/bin/env bash
# The quick terminal-only demo: trains the tiny preset to its end, ingests its log and the
# ling-1b sample run, prints both ledgers (`bash scripts/demo.sh` brings up the whole product).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "trainledger is installed: .venv/bin/trainledger --help"

# Train: tokenize the shipped sample corpus once, then the tiny preset on 2 CPU processes.
[ -f data/sample/meta.json ] || .venv/bin/trainledger prepare sample_data --out data/sample
rm -rf runs/demo
OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc-per-node 2 -m trainer train \
  --config tiny train.out_dir=runs/demo train.print_every=10
echo "training event log: runs/demo/events.jsonl (schema: docs/events.md)"

# Account: the demo run and the ling-1b run (rebuilt as logs), into one SQLite store (the embedded default).
export TRAINLEDGER_DB=$PWD/runs/trainledger.db
.venv/bin/trainledger ingest runs/demo/events.jsonl sample_logs/ling_1b/logs
.venv/bin/trainledger ledger "$(cat runs/demo/run_id)"
.venv/bin/trainledger ledger ling-1b-v1
echo "store: $TRAINLEDGER_DB (delete it to start over)"
