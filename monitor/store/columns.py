"""A run's step figures as numpy columns, in one query and without a Record per step: what the
projections and the report read for a long run (a million steps). The dashboard's `step_series`
(monitor/store/read.py, built in parallel) reads charts the same way; the two may become one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import orjson
from sqlalchemy import Select, select
from sqlalchemy.engine import Connection, Engine

from monitor.models import StepMetric

_STEPS = StepMetric.__table__
FIGURE_COLUMNS = ("step_time", "tokens_per_s", "tgs", "mfu", "loss", "peak_mem_bytes", "num_consumed_tokens")
LOSS_IN_EXTRA = "loss_smoothed"
"""a loss some formats log instead of `loss` (nanochat's smoothed loss), kept in `extra`"""


@dataclass
class StepColumns:
    """Every step row of a run in (ts, source, seq) order, the order `load_records` gives; the
    figures not asked for are NaN."""

    ts: np.ndarray
    step: np.ndarray
    rank: np.ndarray
    attempt: np.ndarray
    """codes into `attempts`"""
    attempts: list[str]
    figures: dict[str, np.ndarray]
    total_steps_logged: int | None


def _floats(values) -> np.ndarray:
    return np.fromiter((math.nan if v is None else v for v in values), dtype=np.float64, count=len(values))


def _plain_rows(conn: Connection, query: Select) -> list[tuple]:
    """The rows as the driver's plain tuples: a million of them at half the cost of SQLAlchemy's
    Row objects (the columns here are plain numbers and strings, which need no conversion)."""
    compiled = query.compile(conn.engine)
    params = [compiled.params[key] for key in compiled.positiontup] if compiled.positional else compiled.params
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return cursor.fetchall()
    finally:
        cursor.close()


def _json(value):
    """A JSON column's value as the driver gives it: text (SQLite) or already decoded (PostgreSQL)."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def load_step_columns(engine: Engine, run: str, figures: tuple[str, ...] = FIGURE_COLUMNS) -> StepColumns:
    """The run's step rows as columns: ts, step, rank, attempt and `figures` (of FIGURE_COLUMNS;
    the fewer, the less to read: the driver's rows are most of the cost)."""
    c = _STEPS.c
    with_extra = "loss" in figures
    head = [c.ts, c.step, c.rank, c.attempt] + ([c.extra] if with_extra else [])
    with engine.connect() as conn:
        rows = _plain_rows(conn, select(*head, *(c[name] for name in figures))
                           .where(c.run == run).order_by(c.ts, c.source_id, c.seq))
        newest = conn.execute(select(c.extra).where(c.run == run).where(c.extra.is_not(None))
                              .order_by(c.ts.desc()).limit(1)).scalar()
    columns = list(zip(*rows)) if rows else [()] * (len(head) + len(figures))
    values = {name: _floats(columns[len(head) + i]) for i, name in enumerate(figures)}
    if with_extra:  # a loss some formats keep in `extra`, decoded only where `loss` is missing
        extras, loss = columns[4], values["loss"]
        for i in np.flatnonzero(np.isnan(loss)):
            if extras[i] is not None:
                value = _json(extras[i]).get(LOSS_IN_EXTRA)
                loss[i] = math.nan if value is None else value
    names, codes = np.unique(np.asarray(columns[3], dtype=object).astype(str), return_inverse=True) if rows else \
        (np.empty(0, dtype=str), np.empty(0, np.int64))
    total = (_json(newest) or {}).get("total_steps") if newest is not None else None
    missing = np.full(len(rows), math.nan)
    return StepColumns(
        ts=np.asarray(columns[0], dtype=np.float64), step=np.asarray(columns[1], dtype=np.int64),
        rank=np.asarray(columns[2], dtype=np.int64), attempt=np.asarray(codes, dtype=np.int64).reshape(-1),
        attempts=[str(n) for n in names],
        figures={name: values.get(name, missing) for name in FIGURE_COLUMNS},
        total_steps_logged=int(total) if total else None)
