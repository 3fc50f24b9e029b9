"""A nanochat base_train run on two GPUs, shaped like the nanochat run of the report (d16, 185M params, 2x RTX 5090 D,
30,720 tokens/step, checkpoint every 4000 steps), whose throughput falls from ~65k to ~35k
tok/s at step 5000 with nothing in the log saying why. Deterministic.

    .venv/bin/python sample_logs/nanochat_2gpu/generate.py [OUT_DIR]

Line formats are those of karpathy/nanochat scripts/base_train.py (October 2025): print0
lines without timestamps, and `logging` lines (asctime - name - level - message) from the
checkpoint manager.
"""

from __future__ import annotations

import math
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

LOCAL = timezone(timedelta(hours=8))
START = datetime(2025, 10, 25, 15, 35, 13, tzinfo=LOCAL)
NAME = "train_dual_gpu_20251025_153513.log"
ITERATIONS = 12_000
DROP_AT = 5_000
BATCH = 30_720
FLOPS_PER_TOKEN = 1.866e9
PEAK = 989.5e12  # nanochat's promised H100 bf16 peak, which it uses for MFU on any GPU
WORLD = 2
CKPT_DIR = "/root/.cache/nanochat/base_checkpoints/d16"


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S,") + f"{t.microsecond // 1000:03d}"


def lines() -> list[str]:
    rng = random.Random(4)
    now = START + timedelta(seconds=8)
    out = [
        "Overriding: run = dual_gpu_stable_success",
        "Overriding: depth = 16",
        "Overriding: device_batch_size = 10",
        "Overriding: total_batch_size = 30720",
        "Overriding: max_seq_len = 1536",
        "Overriding: activation_checkpoint = True",
        "Autodetected device type: cuda",
        f"{stamp(now)} - nanochat.common - INFO - Distributed world size: {WORLD}",
        "Vocab size: 65,536",
        "num_layers: 16",
        "model_dim: 1024",
        "num_heads: 8",
        "num_kv_heads: 8",
        "Tokens / micro-batch / rank: 10 x 1536 = 15,360",
        "Tokens / micro-batch: 30,720",
        "Total batch size 30,720 => gradient accumulation steps: 1",
        "Number of parameters: 185,073,664",
        f"Estimated FLOPs per token: {FLOPS_PER_TOKEN:e}",
        f"Using user-provided number of iterations: {ITERATIONS:,}",
        f"Total number of training tokens: {ITERATIONS * BATCH:,}",
        f"Tokens : Params ratio: {ITERATIONS * BATCH / 185_073_664:.2f}",
        f"Total training FLOPs estimate: {FLOPS_PER_TOKEN * ITERATIONS * BATCH:e}",
    ]
    now += timedelta(seconds=25)
    smooth, total, min_bpb = 0.0, 0.0, float("inf")
    for step in range(ITERATIONS + 1):
        if step % 250 == 0:
            bpb = 1.0389 + 1.0 * math.exp(-step / 1500) + rng.uniform(-0.004, 0.004)
            min_bpb = min(min_bpb, bpb)
            out.append(f"Step {step:05d} | Validation bpb: {bpb:.4f}")
            now += timedelta(seconds=14)
        if step and step % 2000 == 0:
            out.append(f"Step {step:05d} | CORE metric: {0.1545 * (1 - math.exp(-step / 4000)):.4f}")
            now += timedelta(seconds=95)
        if step and (step % 4000 == 0 or step == ITERATIONS):
            for what, path in (("model parameters", f"model_{step:06d}.pt"), ("metadata", f"meta_{step:06d}.json")):
                out.append(f"{stamp(now)} - nanochat.checkpoint_manager - INFO - Saved {what} to: {CKPT_DIR}/{path}")
                now += timedelta(seconds=2)
        if step == ITERATIONS:
            break
        base = 0.472 if step < DROP_AT else 0.878
        dt = 31.27 if step == 0 else base * rng.uniform(0.97, 1.03)
        now += timedelta(seconds=dt)
        train_loss = 3.18 + 7.73 * math.exp(-step / 900) + rng.uniform(-0.05, 0.05)
        smooth = 0.9 * smooth + 0.1 * train_loss
        loss = smooth / (1 - 0.9 ** (step + 1))
        lrm = 1.0 if step < ITERATIONS * 0.8 else (ITERATIONS - step) / (ITERATIONS * 0.2)
        tok_per_sec = int(BATCH / dt)
        mfu = 100 * FLOPS_PER_TOKEN * BATCH / dt / (PEAK * WORLD)
        if step > 10:
            total += dt
        out.append(f"step {step:05d}/{ITERATIONS:05d} ({100 * step / ITERATIONS:.2f}%) | loss: {loss:.6f} | "
                   f"lrm: {lrm:.2f} | dt: {dt * 1000:.2f}ms | tok/sec: {tok_per_sec:,} | mfu: {mfu:.2f} | "
                   f"total time: {total / 60:.2f}m")
    out += ["Peak memory usage: 19456.00MiB", f"Total training time: {total / 60:.2f}m",
            f"Minimum validation bpb: {min_bpb:.4f}"]
    return out


def write(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / NAME
    path.write_text("\n".join(lines()) + "\n")
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "logs"))
