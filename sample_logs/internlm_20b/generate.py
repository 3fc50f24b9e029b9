"""A short InternLM 20B run in the InternLM 20B demo's exact log line format: 16 GPUs on two hosts
(tensor parallel 4, data parallel 4), 300 steps of ~4.1 s, ending in a CUDA OOM traceback.
Deterministic.

    .venv/bin/python sample_logs/internlm_20b/generate.py [OUT_DIR]
"""

from __future__ import annotations

import math
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

LOCAL = timezone(timedelta(hours=8))
START = datetime(2023, 11, 10, 11, 45, 20, 248000, tzinfo=LOCAL)
STEPS = 300
TOKENS_PER_STEP = 65_536
GPUS = 16
HOSTS = ("HOST-10-140-60-69", "HOST-10-140-60-95")
PID = 117775
# The per-data-source keys of the demo's line, in its order (the demo trained on a code folder).
SOURCES = (".git .github .gitignore .gitmodules .owners.yml .pre-commit-config.yaml .pylintrc .pytest_cache "
           ".readthedocs.yml .vscode 7b_train CHANGE_LOG.md LICENSE README-ja-JP.md README-zh-Hans.md README.md "
           "RUN ci_scripts configs doc docker docker.Makefile experiment internlm requirements "
           "sonar-project.properties tests third_party tools train.py version.txt web_demo.py "
           "web_demo_internlm.py").split()


def old_style(t: datetime) -> str:
    """`2023-11-10 11:45:20,248` (the launcher's logging lines)."""
    return t.strftime("%Y-%m-%d %H:%M:%S,") + f"{t.microsecond // 1000:03d}"


def iso(t: datetime) -> str:
    """`2023-11-10T11:46:16.409+08:00` (the training metrics lines)."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+08:00"


def lines() -> list[str]:
    rng = random.Random(2)
    out = []
    now = START
    order = [0, 10, 12, 9, 13, 8, 15, 14, 11, 6, 7, 2, 5, 1, 4, 3]
    for rank in order:
        out.append(f"{old_style(now)} INFO parallel_context.py:555 in set_device -- process rank {rank} is bound "
                   f"to host:{HOSTS[rank // 8]} device: {rank % 8}")
        now += timedelta(milliseconds=rng.randint(1, 40))
    now += timedelta(seconds=4.7)
    out.append(f"{old_style(now)} INFO launch.py:409 in launch -- Distributed environment is initialized, data "
               "parallel size: 4, pipeline parallel size: 1, tensor parallel size: 4")
    now += timedelta(seconds=15.459)
    out.append(f"{old_style(now)} INFO hybrid_zero_optim.py:268 in _partition_param_list -- Number of elements on "
               "ranks: [1262168320, 1269084160, 1269084160, 1222844160], rank:0")
    now += timedelta(seconds=35.788)
    tgs_history: list[float] = []
    elapsed = 0.0
    for step in range(STEPS):
        dt = 13.47 if step == 0 else rng.uniform(4.05, 4.45)
        elapsed += dt
        tgs = round(TOKENS_PER_STEP / GPUS / dt, 2)
        tgs_history.append(tgs)
        tgs_all = round(TOKENS_PER_STEP / GPUS * (step + 1) / elapsed, 2)
        tgs_avg = round(sum(tgs_history) / len(tgs_history), 2)
        last10 = round(sum(tgs_history[-10:]) / 10, 2) if step >= 10 else 0
        last50 = round(sum(tgs_history[-50:]) / 50, 2) if step >= 50 else 0
        loss = 2.1 + 9.44 * math.exp(-step / 25) + rng.uniform(-0.05, 0.05)
        acc = 0.0 if step < 2 else round(min(0.62, 0.07 + 0.55 * (1 - math.exp(-step / 60))), 4)
        git_tokens = rng.randint(59800, 61200)
        metric_loss = round(loss + rng.uniform(-0.06, 0.06), 4)
        fields = [
            f"tflops={tgs * 0.124:.15g}", f"step={step}", f"loss={loss!r}",
            f"tgs (tokens/gpu/second)={tgs}", f"tgs/last_tgs_1={round(tgs + 0.01, 2)}", f"tgs/tgs_all={tgs_all}",
            f"tgs/tgs_avg={tgs_avg}", f"tgs/tgs_SMA={tgs_all}", f"tgs/last_tgs_10={last10}", f"tgs/last_tgs_50={last50}",
            f"lr={min(step + 2, 50) * 2e-7!r}", "loss_scale=65536.0",
            f"grad_norm={{'0_default': {rng.uniform(2, 90)!r}, '1_fp32': 0.0}}", "micro_num=4",
            f"num_consumed_tokens={TOKENS_PER_STEP * (step + 1)}", "inf_nan_skip_batches=0",
            f"num_samples_in_batch={rng.randint(16, 23)}", f"largest_length={rng.choice([2048, 2048, 1893, 1977])}",
            f"largest_batch={rng.randint(5, 8)}", f"smallest_batch={rng.randint(3, 4)}", "adam_beta2=0.95",
            f"fwd_bwd_time={round(dt - 0.7 if step else dt, 2)}", f"acc={acc}",
            f"perplexity={round(math.exp(min(metric_loss, 11.6)), 4)}",
        ]
        fields += [f"acc/{s}={acc if s == '.git' else 0.0}" for s in SOURCES]
        fields += [f"tokens/{s}={git_tokens if s == '.git' else 0}" for s in SOURCES]
        fields.append(f"loss_from_metric={metric_loss}")
        fields += [f"loss/{s}={metric_loss if s == '.git' else 'nan'}" for s in SOURCES]
        now += timedelta(seconds=dt)
        out.append(f"{iso(now)} INFO [training_internlm.py, line 600, in record_current_batch_training_metrics] "
                   f"- pid={PID} : " + " ".join(fields) + " ")
    out += [
        "Traceback (most recent call last):",
        '  File "/mnt/petrelfs/internlm/train.py", line 310, in <module>',
        "    main(args=args)",
        '  File "/mnt/petrelfs/internlm/train.py", line 262, in main',
        "    _, _, loss = trainer.execute_schedule(",
        '  File "/mnt/petrelfs/internlm/internlm/core/trainer.py", line 175, in execute_schedule',
        "    return self.schedule.forward_backward_step(self.engine, data_iter, **kwargs)",
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.97 GiB (GPU 3; 79.35 GiB total "
        "capacity; 75.12 GiB already allocated; 1.21 GiB free; 76.90 GiB reserved in total by PyTorch) If reserved "
        "memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.  See documentation for "
        "Memory Management and PYTORCH_CUDA_ALLOC_CONF",
    ]
    return out


def write(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "train_20B.log"
    path.write_text("\n".join(lines()) + "\n")
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "logs"))
