#!/usr/bin/env bash
# The main job on the embedded default (SQLite, sample data, CPU), the whole product at once:
# the sample logs ingested, a tiny live training run under torchrun followed by `trainledger
# watch`, and the dashboard on http://127.0.0.1:8501/ . Ctrl-C stops everything it started.
# The quick terminal-only demo is scripts/demo-terminal.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PORT=${TRAINLEDGER_DEMO_PORT:-8501}
export TRAINLEDGER_DB=$PWD/runs/trainledger.db
mkdir -p runs

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo stopped; store: $TRAINLEDGER_DB (delete it to start over)"
}
trap stop INT TERM EXIT

[ -f data/sample/meta.json ] || .venv/bin/trainledger prepare sample_data --out data/sample
.venv/bin/trainledger ingest sample_logs

# A tiny GPT trained live on 2 CPU processes (small batches: a few thousand steps per pass over
# the sample corpus; when one run has read it all, the next starts), followed into the store.
rm -rf runs/live && mkdir -p runs/live
.venv/bin/trainledger watch runs/live --live-every 2 > runs/watch.log 2>&1 &
pids+=($!)
(
  trap 'kill -INT "$child" 2>/dev/null; wait "$child"; exit 0' INT TERM
  while :; do
    OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc-per-node 2 -m trainer train --config tiny \
      train.out_dir="runs/live/tiny-$(date +%H%M%S)" train.print_every=0 data.total_steps=1000000 \
      data.seq_len=32 data.micro_bsz=1 data.micro_num=1 checkpoint.checkpoint_every=500 &
    child=$!
    wait "$child"
  done
) > runs/live-train.log 2>&1 &
pids+=($!)

.venv/bin/trainledger dashboard --port "$PORT" > runs/dashboard.log 2>&1 &
pids+=($!)
until .venv/bin/python -c "import httpx, sys; httpx.get(sys.argv[1], timeout=1).raise_for_status()" \
    "http://127.0.0.1:$PORT/_stcore/health" 2>/dev/null; do
  kill -0 "${pids[-1]}" 2>/dev/null || { cat runs/dashboard.log; exit 1; }
  sleep 0.5
done
echo
echo "trainledger dashboard: http://127.0.0.1:$PORT/  (Ctrl-C stops the training, the watcher and the dashboard)"
echo "logs: runs/live-train.log, runs/watch.log, runs/dashboard.log"
wait "${pids[-1]}"
