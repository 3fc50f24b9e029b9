"""Ledger benchmark: full recomputation of a 1M-step run, and the live update cost per new
record at 10k vs 1M records already folded (it should not grow with the run)."""

from __future__ import annotations

import time

from monitor.accounting import LiveLedger, Policy, compute_ledger
from monitor.records import Record

POLICY = Policy(timezone="+08:00")
T0 = 1_716_083_700.0  # 2024-05-19 09:55 UTC+8
STEP_S = 1.0
ATTEMPTS = 20


def synthetic_run(n_steps: int) -> list[Record]:
    """`n_steps` step records over ATTEMPTS launches, with stalls, checkpoints, faults and stops."""
    records: list[Record] = []
    fields = {"loss": 2.0}
    per = n_steps // ATTEMPTS
    ts, step = T0, 0
    for a in range(ATTEMPTS):
        attempt = f"a{a:02d}"
        records.append(Record("launch", "bench", attempt, ts, fields={"nodes": 15, "data_batch": str(a),
                                                                    "resume_from": "c" if a else None}))
        ts += 600
        if a:
            step -= 500
            records.append(Record("resume", "bench", attempt, ts - 1, step=step, fields={"restored": {}}))
        for i in range(per):
            step += 1
            records.append(Record("step", "bench", attempt, ts, step=step, fields=fields))
            ts += STEP_S if i % 50_000 else 900.0  # a stall now and then
            if i % 5000 == 4999:
                records.append(Record("checkpoint", "bench", attempt, ts, step=step, fields={"blocked_s": 20.0}))
        kind = ("fault", "stop", "finish")[a % 3]
        records.append(Record(kind, "bench", attempt, ts, step=step, fields={"reason": "x", "message": "m"}))
        ts += 3 * 3600
    return records


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def live_cost_per_record(records: list[Record], new: int) -> float:
    """Seconds per new step record (add + snapshot) once `records` are folded, the newest
    attempt still running (its end record left out)."""
    live = LiveLedger.from_records(records[:-1], POLICY)
    last = records[-2]
    step, ts = (last.step or 0), last.ts
    extra = [Record("step", "bench", last.attempt, ts + i + 1, step=step + i + 1, fields={"loss": 2.0})
             for i in range(new)]
    t = time.perf_counter()
    for record in extra:
        live.add(record)
        live.snapshot(record.ts + 0.5)
    return (time.perf_counter() - t) / new


def main(quick: bool = False) -> str:
    n = 100_000 if quick else 1_000_000
    records = synthetic_run(n)
    repeat = 1 if quick else 3
    full = _best(lambda: compute_ledger(records, POLICY), repeat)
    small_run = synthetic_run(10_000)
    small = min(live_cost_per_record(small_run, 2000) for _ in range(3))
    large = min(live_cost_per_record(records, 2000) for _ in range(3))
    return "\n".join([
        "## Ledger (time accounting)",
        "",
        "`.venv/bin/python -m bench ledger` (add `--quick` for 100k steps). Synthetic run: "
        f"{n:,} step records over {ATTEMPTS} launches ({len(records):,} records in all, with stalls, "
        "checkpoints, faults, stops and resumes); Records already in memory. The live runs have the "
        "same shape (20 launches) at 10k and at the full size, so only the record count differs.",
        "",
        "| measure | value | target |",
        "| -- | -- | -- |",
        f"| full recomputation of the ledger, {n:,} steps (best of {repeat}) | {full:.2f} s | ≤ 2 s |",
        f"| live update per new record (add + snapshot), 10k-step run folded | {small * 1e6:.0f} µs | — |",
        f"| live update per new record (add + snapshot), {n // 1000:,}k-step run folded | {large * 1e6:.0f} µs | — |",
        f"| ratio large / small | {large / small:.2f} | ≈ 1 (constant) |",
    ])


if __name__ == "__main__":
    print(main())
