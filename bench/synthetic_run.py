"""A synthetic long run written straight into a store, for the dashboard's tests and benchmark:
`steps` steps of 8 figures over three attempts (the second resumed 10,000 steps before the
first stopped, so those steps are redone), a checkpoint every 10,000 steps, and one loss spike."""

from __future__ import annotations

import math
import random

from monitor.records import Record
from monitor.store import insert_records
from monitor.store.read import insert_step_rows

COLUMNS = ("source_id", "seq", "run", "attempt", "ts", "host", "rank", "step", "loss", "lr", "grad_norm",
           "loss_scale", "tflops", "tgs", "tokens_per_s", "mfu", "num_consumed_tokens")
TOKENS_PER_STEP = 4096
T0 = 1_750_000_000.0


def spike_step(steps: int) -> int:
    return steps * 3 // 7


def write_run(engine, run: str, steps: int, *, spike: float = 50.0, seed: int = 0, chunk: int = 100_000) -> None:
    """The run into `engine`'s store: attempts [1, 0.4 N], [0.4 N − 10k, 0.7 N], [0.7 N, N]."""
    rng = random.Random(seed)
    redo = min(10_000, steps // 10)
    attempts = [(f"{run}-a1", 1, steps * 4 // 10, 0.0), (f"{run}-a2", steps * 4 // 10 - redo + 1, steps * 7 // 10, 900.0),
                (f"{run}-a3", steps * 7 // 10 + 1, steps, 1800.0)]
    events, seq = [], 0
    with engine.begin() as conn:
        for attempt, first, last, delay in attempts:
            start = T0 + first + delay
            events.append(Record("launch", run, attempt, start - 60, rank=0, fields={"nodes": 1, "world_size": 8}))
            if first > 1:
                events.append(Record("resume", run, attempt, start - 30, step=first - 1,
                                     fields={"restored": {"optimizer": True}}))
            rows = []
            for step in range(first, last + 1):
                loss = 2.0 + 8.0 * math.exp(-step / (steps / 10)) + rng.random() * 0.05
                if step == spike_step(steps):
                    loss = spike
                rows.append((None, seq, run, attempt, start + (step - first), "", 0, step, loss, 3e-4, 1.0 + rng.random(),
                             65536.0, 150.0 + rng.random(), 3000.0 + rng.random() * 100, 24000.0 + rng.random() * 800,
                             0.45 + rng.random() * 0.01, step * TOKENS_PER_STEP))
                seq += 1
                if step % 10_000 == 0:
                    events.append(Record("checkpoint", run, attempt, start + (step - first) + 0.5, step=step,
                                         fields={"blocked_s": 0.5}))
                if len(rows) == chunk:
                    insert_step_rows(conn, COLUMNS, rows)
                    rows = []
            insert_step_rows(conn, COLUMNS, rows)
        events.append(Record("finish", run, attempts[-1][0], T0 + steps + 1800.0 + 1, step=steps, fields={}))
        insert_records(conn, events, first_seq=seq)
