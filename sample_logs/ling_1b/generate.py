"""Rebuild the ling-1b run (2024-05-19 .. 06-22) as the event logs its trainer would
have written: one JSONL file per launch, schema v1. Deterministic: same output every time.

    .venv/bin/python sample_logs/ling_1b/generate.py [OUT]   # (re)writes sample_logs/ling_1b/logs/

Every number comes from the team's hand-kept table; README.md explains row by row.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

LOCAL = timezone(timedelta(hours=8))  # the team's clock (UTC+8)
RUN = "ling-1b-v1"
RECORD_EVERY_S = 120.0  # the trainer logs one step record every ~2 minutes (30 steps of ~4 s)
STEPS_PER_RECORD = 30
CHECKPOINT_EVERY = 50 * STEPS_PER_RECORD  # every 1500 steps (~100 min)
NCCL_TIMEOUT_S = 1800.0
OUT = Path(__file__).parent / "logs"


def local(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=LOCAL).timestamp()


def hms(text: str) -> float:
    h, m, s = (int(x) for x in text.split(":"))
    return h * 3600 + m * 60 + s


@dataclass
class Launch:
    """One row of the table with the check mark: an attempt. `first_step` is the table's time,
    `train` its duration (first step to last step); `launch` = first_step - startup."""

    first_step: float
    train: float
    startup: float
    batch: str
    nodes: int
    end: str  # finish | stop | fault | silence | hang
    end_after_s: float = 0.0  # end record this long after the last step
    restored_opt: bool = True
    note: str = ""
    evidence: tuple[str, str, str] | None = None  # exc_type, message, cause


# The chain of the table: each row starts where the one before it ended.
T0 = local("2024-05-19 09:55:00")
A7_FIRST, A8_FIRST = local("2024-05-26 04:20:00"), local("2024-05-29 18:00:00")
A7_LAST = local("2024-05-27 10:44:10")
A8_LAST = local("2024-05-30 08:40:00")
LAUNCHES = [
    Launch(T0 + 300, hms("17:10:31") - 300, 300, "0", 10, "fault", NCCL_TIMEOUT_S,
           evidence=("DistBackendError",
                     "[Rank 37] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=914203, "
                     "OpType=ALLREDUCE, NumelIn=262144000, NumelOut=262144000, Timeout(ms)=1800000) ran for "
                     "1800021 milliseconds before timing out.", "nccl_timeout"),
           note="switch tripped"),
    Launch(local("2024-05-20 21:28:00"), hms("19:42:29"), 1200, "0", 14, "stop", 5, restored_opt=False),
    Launch(local("2024-05-21 17:13:00"), hms("24:29:28"), 120, "0", 15, "finish", restored_opt=False),
    Launch(local("2024-05-23 22:20:00"), hms("15:44:13"), 1500, "1", 15, "stop", 5, restored_opt=False),
    Launch(local("2024-05-24 14:09:00"), hms("7:59:37"), 180, "1", 15, "silence"),
    Launch(local("2024-05-24 23:39:00"), hms("28:19:59"), 120, "1", 15, "finish"),
    Launch(A7_FIRST, A7_LAST - A7_FIRST, A7_FIRST - (local("2024-05-26 03:58:59") + 1), "2", 15, "hang",
           local("2024-05-29 10:05:00") - A7_LAST,
           evidence=("ChildFailedError",
                     "train.py FAILED: rank 0 (local_rank 0) exitcode -9: Signal 9 (SIGKILL) received by "
                     "PID 48213 after 47 h without progress (dataloader stuck on 64-core/512 GB nodes)",
                     "killed"),
           note="hung over the holiday on the 64-core/512 GB spec"),
    Launch(A8_FIRST, A8_LAST - A8_FIRST, 1800, "2", 15, "finish", note="48-core/900 GB spec"),
    Launch(local("2024-05-30 08:59:00"), hms("48:30:43"), local("2024-05-30 08:59:00") - (A8_LAST + 1),
           "3", 15, "finish"),
    Launch(local("2024-06-01 11:57:00"), hms("44:49:23"), 1800, "4", 15, "finish"),
    Launch(local("2024-06-03 10:46:00"), hms("44:22:30"), 3600, "5", 15, "finish"),
    Launch(local("2024-06-05 13:57:00"), hms("34:02:29"), 1800, "6", 15, "fault",
           evidence=("ChildFailedError",
                     "train.py FAILED: rank 88 (local_rank 0) exitcode -6 (pid: 20931): Signal 6 (SIGABRT)",
                     "exception")),
    Launch(local("2024-06-07 11:08:00"), hms("8:19:31"), 5400, "6", 15, "finish"),
    Launch(local("2024-06-09 13:25:00"), hms("43:54:30"), 1500, "7", 15, "finish"),
    Launch(local("2024-06-11 09:56:00"), hms("43:12:28"), 960, "8", 15, "finish"),
    Launch(local("2024-06-13 13:32:00"), hms("38:05:12"), 1920, "9,10", 15, "silence"),
    Launch(local("2024-06-15 11:53:00"), hms("63:34:32"), 7200, "9,10", 15, "finish"),
    Launch(local("2024-06-18 12:38:00"), hms("106:35:30"), 1800, "11,12", 15, "finish"),
]
# The rows in the table whose downtime is a stop chosen by a person: two stops (1 and 3);
# launches 1, 2 and 3 (05-20 21:28, 05-21 17:13, 05-23 22:20) resumed without optimizer and
# scheduler state; launch 4 (05-24 14:09) is the first with the fixed resume.


def loss_at(step: int, rng: random.Random) -> float:
    return round(2.0 + 9.0 * math.exp(-step / 4000) + 0.9 / math.sqrt(1 + step / 2000)
                 + rng.uniform(-0.03, 0.03), 4)


def write_run(out: Path = OUT) -> list[Path]:
    rng = random.Random(0)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    step = 0
    last_ckpt: tuple[int, str] | None = None
    for n, spec in enumerate(LAUNCHES):
        attempt = f"{RUN}-launch-{n + 1:02d}"
        hosts = [f"node-{h:02d}" for h in range(spec.nodes)]
        launch_ts = spec.first_step - spec.startup
        records: list[dict] = []

        def rec(kind: str, ts: float, **fields) -> None:
            records.append({"v": 1, "kind": kind, "run": RUN, "attempt": attempt, "ts": round(ts, 3),
                            "host": "node-00", "rank": 0, **fields})

        rec("launch", launch_ts, world_size=spec.nodes * 8, nodes=spec.nodes, hosts=hosts,
            device="NVIDIA A800-SXM4-80GB", peak_flops=312e12, flops_per_token=6 * 1.1e9,
            n_params=1_100_000_000, config_digest="ling-1b-v1-cfg-7c9341", data_batch=spec.batch,
            data_slice="full copy on each node's local disk",
            resume_from=last_ckpt[1] if last_ckpt else None, timezone="+08:00")
        if last_ckpt:
            ok = spec.restored_opt
            step = last_ckpt[0]
            rec("resume", spec.first_step - 30, step=step, source=last_ckpt[1], mode="path",
                restored={"model": True, "optimizer": ok, "lr_scheduler": ok, "grad_scaler": True,
                          "data_position": True, "rng": True})
        last_step_ts = spec.first_step + spec.train
        ts = spec.first_step
        while True:
            step += STEPS_PER_RECORD
            tokens_per_s = spec.nodes * 8 * rng.uniform(3300, 3500)
            rec("step", ts, step=step, loss=loss_at(step, rng), lr=3e-4, tgs=round(tokens_per_s / (spec.nodes * 8), 1),
                tokens_per_s=round(tokens_per_s), step_time=round(RECORD_EVERY_S / STEPS_PER_RECORD, 3))
            if step % CHECKPOINT_EVERY == 0:
                path = f"/ckpt/{RUN}/step-{step:07d}"
                rec("checkpoint", ts + 1, step=step, path=path, bytes=13_200_000_000,
                    blocked_s=round(rng.uniform(25, 35), 1), write_s=round(rng.uniform(80, 100), 1))
                last_ckpt = (step, path)
            if ts >= last_step_ts:
                break
            ts = min(ts + RECORD_EVERY_S + rng.uniform(-2, 2), last_step_ts)
        end_ts = last_step_ts + spec.end_after_s
        if spec.end == "finish":
            path = f"/ckpt/{RUN}/step-{step:07d}"
            rec("checkpoint", end_ts, step=step, path=path, bytes=13_200_000_000, blocked_s=0.0, write_s=90.0)
            last_ckpt = (step, path)
            rec("finish", end_ts, step=step, reason="data_exhausted")
        elif spec.end == "stop":
            rec("stop", end_ts, reason="SIGTERM", step=step)
        elif spec.end in ("fault", "hang"):
            exc_type, message, cause = spec.evidence
            rec("fault", end_ts, exc_type=exc_type, message=message, cause=cause, step=step)
        records.sort(key=lambda r: r["ts"])
        path = out / f"launch-{n + 1:02d}.jsonl"
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys

    for p in write_run(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(p)
