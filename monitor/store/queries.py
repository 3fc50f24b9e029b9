"""Reading the store: what accounting, the CLI and the dashboard call. Nothing else runs SQL."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from monitor.models import Attempt, Event, Run, StepMetric
from monitor.records import Record
from monitor.store.rows import event_record, step_record

_STEPS = StepMetric.__table__
_EVENTS = Event.__table__


@dataclass(frozen=True)
class RunSummary:
    name: str
    first_ts: float
    last_ts: float
    attempts: list[str]
    """Attempt ids in the order they started."""


def list_runs(engine: Engine) -> list[RunSummary]:
    """Every run, most recently active first."""
    with engine.connect() as conn:
        runs = conn.execute(select(Run.__table__).order_by(Run.__table__.c.last_ts.desc(),
                                                           Run.__table__.c.name)).mappings().all()
        attempts: dict[str, list[str]] = {}
        table = Attempt.__table__
        for row in conn.execute(select(table.c.run, table.c.attempt)
                                .order_by(table.c.first_ts, table.c.attempt)):
            attempts.setdefault(row.run, []).append(row.attempt)
    return [RunSummary(r["name"], r["first_ts"], r["last_ts"], attempts.get(r["name"], [])) for r in runs]


def load_records(engine: Engine, run: str, *, since_ts: float | None = None,
                 kinds: Iterable[str] | None = None) -> list[Record]:
    """Every record of `run` (optionally from `since_ts` on, or only these kinds) in timestamp
    order — ties in the order they were read — with step figures reassembled into `fields`."""
    kinds = set(kinds) if kinds is not None else None
    with engine.connect() as conn:
        steps: Iterable = ()
        events: Iterable = ()
        if kinds is None or "step" in kinds:
            query = select(_STEPS).where(_STEPS.c.run == run)
            if since_ts is not None:
                query = query.where(_STEPS.c.ts >= since_ts)
            steps = conn.execute(query.order_by(_STEPS.c.ts, _STEPS.c.source_id, _STEPS.c.seq)).mappings().all()
        other = None if kinds is None else kinds - {"step"}
        if other is None or other:
            query = select(_EVENTS).where(_EVENTS.c.run == run)
            if since_ts is not None:
                query = query.where(_EVENTS.c.ts >= since_ts)
            if other is not None:
                query = query.where(_EVENTS.c.kind.in_(sorted(other)))
            events = conn.execute(query.order_by(_EVENTS.c.ts, _EVENTS.c.source_id, _EVENTS.c.seq)).mappings().all()
    def order(row):
        return row["ts"], row["source_id"] or 0, row["seq"]
    merged = heapq.merge(steps, events, key=order)
    return [step_record(row) if "payload" not in row else event_record(row) for row in merged]


def count_records(engine: Engine, run: str | None = None) -> dict[str, int]:
    """How many records of each kind are stored (in `run`, or in all runs)."""
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        steps = select(func.count()).select_from(_STEPS)
        events = select(_EVENTS.c.kind, func.count()).group_by(_EVENTS.c.kind)
        if run is not None:
            steps = steps.where(_STEPS.c.run == run)
            events = events.where(_EVENTS.c.run == run)
        if n := conn.execute(steps).scalar_one():
            counts["step"] = n
        for kind, n in conn.execute(events):
            counts[kind] = n
    return counts
