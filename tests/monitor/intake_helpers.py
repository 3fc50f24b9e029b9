"""Helpers shared by the intake, watch and CLI tests: event lines and what the store holds."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import select

from monitor.models import SourceFile
from monitor.store import list_runs, load_records


def step_line(step: int, run: str = "run-a", attempt: str = "a1", pad: int = 0) -> str:
    """One event-schema step record as a JSONL line (newline included)."""
    event = {"v": 1, "kind": "step", "run": run, "attempt": attempt, "ts": 1_700_000_000.0 + step,
             "host": "node1", "rank": 0, "step": step, "loss": 10.0 - step * 1e-4, "lr": 3e-4,
             "tokens_per_s": 1000.0 + step, "per_source": {"web": {"loss": 9.5, "tokens": step}}}
    if pad:
        event["note"] = "x" * pad
    return orjson.dumps(event).decode() + "\n"


def write_steps(path: Path, steps, mode: str = "a", **kw) -> None:
    with open(path, mode) as f:
        f.write("".join(step_line(s, **kw) for s in steps))


def stored_steps(engine, run: str = "run-a") -> list[int]:
    """The step numbers stored for `run`, in order (duplicates kept, so doubles show)."""
    return [r.step for r in load_records(engine, run) if r.kind == "step"]


def all_records(engine) -> list:
    return [r for run in list_runs(engine) for r in load_records(engine, run.name)]


def sources(engine) -> list[dict]:
    table = SourceFile.__table__
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(table).order_by(table.c.id)).mappings()]


