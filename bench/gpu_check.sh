#!/usr/bin/env bash
# The trainer on GPUs, in one short run (issue 17): for each preset, under torchrun with nccl,
# bf16, one uninterrupted run of 2N steps and one stopped at N (async checkpoint) and resumed;
# prints tokens/s, MFU, peak memory, compile time, checkpoint stall and whether the resumed
# losses equal the uninterrupted ones. Presets: tiny and 10m eager, 10m and 125m (GPT-2
# small's shape) compiled.
#
#   bash bench/gpu_check.sh                     # every GPU of this machine
#   NPROC=1 STEPS=20 bash bench/gpu_check.sh    # one GPU, 2 × 10 steps
#   DEVICE=cpu NPROC=2 STEPS=8 COPIES=1 PRESETS="tiny false" bash bench/gpu_check.sh
#                                               # the script itself, on CPU (gloo, fp32)
#
# Needs a CUDA build of torch in $PYTHON's environment (default .venv/bin/python) and a C
# compiler for torch.compile's Triton kernels. Bit-exact resume on GPUs also needs
# deterministic kernels; where it is not exact the largest loss difference is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
TORCHRUN=${TORCHRUN:-$(dirname "$PYTHON")/torchrun}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-$([ "$DEVICE" = cuda ] && echo bf16 || echo fp32)}
NPROC=${NPROC:-$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")}
STEPS=${STEPS:-40}
HALF=$((STEPS / 2))
COPIES=${COPIES:-40}
PRESETS=${PRESETS:-"tiny false|10m false|10m true|125m true"}
if [ "$NPROC" -lt 1 ]; then
  echo "error: no CUDA device visible to $PYTHON: this check is for a GPU machine" >&2
  exit 2
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The sample corpus COPIES times over (40: ~12.6 M tokens, enough for the 125m preset's 2N steps).
for i in $(seq "$COPIES"); do mkdir -p "$WORK/corpus/$i" && cp sample_data/*.jsonl sample_data/*.txt "$WORK/corpus/$i/"; done
"$PYTHON" -m trainer prepare "$WORK/corpus" --out "$WORK/data" > /dev/null

train() {  # preset out_dir overrides…
  local preset=$1 out=$2
  shift 2
  "$TORCHRUN" --standalone --nproc-per-node "$NPROC" -m trainer train --config "$preset" \
    data.path="$WORK/data" train.out_dir="$out" train.device="$DEVICE" model.dtype="$DTYPE" \
    data.valid_every=0 train.print_every=0 data.total_steps="$STEPS" "$@" > "$out.log" 2>&1 \
    || { tail -n 30 "$out.log"; exit 1; }
}

IFS='|' read -r -a specs <<< "$PRESETS"
for spec in "${specs[@]}"; do
  read -r preset compiled <<< "$spec"
  name="$preset-compile_$compiled"
  train "$preset" "$WORK/$name-whole" train.compile="$compiled" checkpoint.checkpoint_every=0
  train "$preset" "$WORK/$name-parts" train.compile="$compiled" checkpoint.checkpoint_every="$HALF" \
    checkpoint.async_save=true debug.stop_at_step="$HALF"
  train "$preset" "$WORK/$name-parts" train.compile="$compiled" checkpoint.checkpoint_every="$HALF" \
    checkpoint.async_save=true --resume auto
  "$PYTHON" - "$WORK/$name" "$preset" "$compiled" <<'EOF'
import json, statistics, sys

base, preset, compiled = sys.argv[1:]
def records(kind, run):
    return [r for r in map(json.loads, open(f"{base}-{run}/events.jsonl")) if r["kind"] == kind]
steps = records("step", "whole")
launch = records("launch", "whole")[0]
measured = steps[3:] or steps
median = lambda key: statistics.median(r[key] for r in measured if r.get(key) is not None)
whole = {r["step"]: r["loss"] for r in steps}
parts = {r["step"]: r["loss"] for r in records("step", "parts")}
diff = max(abs(whole[s] - parts[s]) for s in whole)
checkpoint = records("checkpoint", "parts")[0]
compile_s = steps[0].get("compile_s")
print(f"{preset:>5} compile={compiled:<5} {launch['device']} × {launch['world_size']}: "
      f"{median('tokens_per_s'):,.0f} tokens/s, MFU {100 * median('mfu'):.1f} % "
      f"(peak {launch['peak_flops'] / 1e12:.0f} TFLOP/s), peak memory {median('peak_mem_bytes') / 2**30:.2f} GiB, "
      f"compile {compile_s if compile_s is None else round(compile_s, 1)} s, "
      f"checkpoint blocked {checkpoint['blocked_s']:.3f} s, "
      f"resume {'exact' if diff == 0 else f'max |Δloss| {diff:.2e}'}")
EOF
done
