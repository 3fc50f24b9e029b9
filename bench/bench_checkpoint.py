"""Checkpoint benchmarks: loop-blocked time of async vs synchronous save; save and load
throughput against a raw sequential write and read of the same bytes on the same disk.

One process, the real `trainer.checkpoint` code, the trainer's GPT with AdamW state (one
optimizer step taken), for the 10m preset and a ~100M-parameter shape. Each figure is the
median of a few repetitions, measured side by side in one run; the async figure is taken
after one warm-up save (which allocates the reusable staging buffers — its blocked time is
shown too). Reads are cold for both sides: the files' pages are dropped from the page cache
with posix_fadvise(DONTNEED) first.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.checkpoint import Checkpointer, ResumeRequest, resume
from trainer.config import ModelConfig, load_config
from trainer.model import GPT, count_params
from trainer.optim import build_optimizer

SHAPES = {
    "10m": load_config("10m").model,
    "100m": ModelConfig(hidden_size=768, num_attention_heads=12, num_layers=14, vocab_size=264),
}


class _Sampler:
    def __init__(self):
        self.cursor = 0

    def state_dict(self) -> dict:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.cursor = state["cursor"]


@dataclass
class _State:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    grad_scaler: object
    sampler: _Sampler
    step: int = 0
    consumed_tokens: int = 0


def _state(shape: ModelConfig) -> _State:
    torch.manual_seed(0)
    model = GPT(shape, 64)
    optimizer = build_optimizer(model, load_config("tiny").adam)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return _State(model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), _Sampler())


def _drop_cache(paths) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _raw_write(path: Path, nbytes: int) -> float:
    chunk = os.urandom(8 << 20)
    start = time.perf_counter()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            f.write(chunk[:min(left, len(chunk))])
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - start


def _raw_read(path: Path) -> float:
    _drop_cache([path])
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass
    return time.perf_counter() - start


def _saves(state: _State, root: Path, async_save: bool, reps: int) -> tuple[list, float]:
    saver = Checkpointer(root, keep_max=1, async_save=async_save)
    warm_blocked = None
    if async_save:  # the first save allocates the staging buffers
        state.step += 1
        saver.save(state)
        warm_blocked = saver.wait()[0].blocked_s
    results = []
    for _ in range(reps):
        state.step += 1
        saver.save(state)
        results.extend(saver.wait())
    return results, warm_blocked


def _load_seconds(shape: ModelConfig, ckpt: Path) -> float:
    target = _state(shape)
    _drop_cache(p for p in ckpt.rglob("*") if p.is_file())
    start = time.perf_counter()
    resume(ckpt.parent, ResumeRequest("path", ckpt), target, total_steps=10**9)
    return time.perf_counter() - start


def _measure(name: str, shape: ModelConfig, tmp: Path, reps: int) -> dict:
    state = _state(shape)
    sync, _ = _saves(state, tmp / f"{name}-sync", async_save=False, reps=reps)
    asynchronous, warm = _saves(state, tmp / f"{name}-async", async_save=True, reps=reps)
    nbytes = sync[-1].bytes
    raw = tmp / f"{name}-raw.bin"
    raw_write = statistics.median(_raw_write(raw, nbytes) for _ in range(reps))
    raw_read = statistics.median(_raw_read(raw) for _ in range(reps))
    raw.unlink()
    last = Path(sync[-1].path)
    load = statistics.median(_load_seconds(shape, last) for _ in range(reps))
    for folder in (tmp / f"{name}-sync", tmp / f"{name}-async"):
        shutil.rmtree(folder)
    sync_blocked = statistics.median(r.blocked_s for r in sync)
    return {
        "params": count_params(shape)[0], "bytes": nbytes,
        "sync_blocked": sync_blocked,
        "async_blocked": statistics.median(r.blocked_s for r in asynchronous), "async_first_blocked": warm,
        "async_write": statistics.median(r.write_s for r in asynchronous),
        "save_mbps": nbytes / sync_blocked / 1e6, "raw_write_mbps": nbytes / raw_write / 1e6,
        "load_mbps": nbytes / load / 1e6, "raw_read_mbps": nbytes / raw_read / 1e6,
    }


def main(quick: bool) -> str:
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    shapes = {"10m": SHAPES["10m"]} if quick else SHAPES
    reps = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        rows = {name: _measure(name, shape, Path(tmp), reps) for name, shape in shapes.items()}
    lines = [
        "## Checkpoints",
        "",
        "Command: `.venv/bin/python -m bench checkpoint` (one process, the real checkpoint code, "
        f"median of {reps}; files in the system temp folder).",
        "",
        "| model | params | checkpoint | sync save: loop blocked | async save: loop blocked | async / sync "
        "| async write (background) | async first save blocked |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['params'] / 1e6:.1f} M | {r['bytes'] / 2**20:.0f} MiB | {r['sync_blocked']:.3f} s "
            f"| {r['async_blocked']:.3f} s | **{r['async_blocked'] / r['sync_blocked']:.1%}** "
            f"| {r['async_write']:.3f} s | {r['async_first_blocked']:.3f} s |")
    lines += [
        "",
        "Target: async blocked time at most 10 % of the synchronous save.",
        "",
        "| model | save (write + sha256 + fsync + publish) | raw sequential write + fsync | save / raw "
        "| load (verify sha256 + DCP read + restore), cold | raw sequential read, cold | load / raw |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['save_mbps']:.0f} MB/s | {r['raw_write_mbps']:.0f} MB/s "
            f"| **{r['save_mbps'] / r['raw_write_mbps']:.2f}** | {r['load_mbps']:.0f} MB/s "
            f"| {r['raw_read_mbps']:.0f} MB/s | **{r['load_mbps'] / r['raw_read_mbps']:.2f}** |")
    return "\n".join(lines)
