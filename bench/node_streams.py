"""Per-node record streams of one multi-node run, as our trainer writes them: each node's rank 0
appends its node's `launch`, `step`, `resume`, `fault` and `finish` records to its own log
folder (`node{k}/logs/events.jsonl` for node 0, `events.rank{r}.jsonl` for the others).
Shared by the multi-node benchmark and the multi-node tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

RANKS_PER_NODE = 8


def log_path(root: Path, node: int) -> Path:
    rank = node * RANKS_PER_NODE
    return root / f"node{node}" / "logs" / ("events.jsonl" if rank == 0 else f"events.rank{rank}.jsonl")


def record(kind: str, run: str, attempt: str, ts: float, node: int, **fields: Any) -> bytes:
    event = {"v": 1, "kind": kind, "run": run, "attempt": attempt, "ts": ts, "host": f"node{node}",
             "rank": node * RANKS_PER_NODE, **fields}
    return orjson.dumps(event) + b"\n"


def launch(run: str, attempt: str, ts: float, node: int, nodes: list[int], **fields: Any) -> bytes:
    return record("launch", run, attempt, ts, node, world_size=len(nodes) * RANKS_PER_NODE, nodes=len(nodes),
                  hosts=[f"node{k}" for k in nodes], node_rank=nodes.index(node), device="NVIDIA H800",
                  peak_flops=989e12, flops_per_token=7.9e9, n_params=1_300_000_000, config_digest="3529b4edba92bf1d",
                  data_batch="9", data_slice="; ".join(map(str, nodes)), resume_from=fields.pop("resume_from", None),
                  start_step=fields.pop("start_step", 0), total_steps=100_000, seq_len=4096,
                  global_batch_tokens=len(nodes) * RANKS_PER_NODE * 4 * 4096, dtype="bf16", **fields)


def step(run: str, attempt: str, ts: float, node: int, n: int, nodes: int) -> bytes:
    """A step record with every figure our trainer writes (the same on every node but host and rank)."""
    return record("step", run, attempt, ts, node, step=n, loss=2.0 + 1.0 / n, lr=3e-4, loss_scale=1.0,
                  grad_norm=0.91, num_consumed_tokens=n * nodes * RANKS_PER_NODE * 16384, inf_nan_skip_batches=0,
                  num_samples_in_batch=412, largest_length=4096, fwd_bwd_time=0.93, acc=0.55, perplexity=7.39,
                  tgs=3912.4, tokens_per_s=3912.4 * nodes * RANKS_PER_NODE, tflops=309.1, mfu=0.3125,
                  step_time=1.01, peak_mem_bytes=61_000_000_000,
                  per_source={"web": {"loss": 2.1, "acc": 0.54, "tokens": 9000},
                              "code": {"loss": 1.4, "acc": 0.66, "tokens": 4000},
                              "books": {"loss": 2.4, "acc": 0.50, "tokens": 3384}})
