"""A run's step figures as numpy columns, in one query and without a Record per step: what the
projections, the report and their ledger read for a long run (a million steps). `rows_into_array`
is the store's one way from step rows to numpy: the dashboard's `raw_series` (monitor/store/read.py)
reads through it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
from sqlalchemy import Float, Select, case, cast, func, literal, select
from sqlalchemy.engine import Connection, Engine

from monitor.models import StepMetric

_STEPS = StepMetric.__table__
FIGURE_COLUMNS = ("step_time", "tokens_per_s", "tgs", "mfu", "loss", "peak_mem_bytes", "num_consumed_tokens")
LOSS_IN_EXTRA = "loss_smoothed"
"""a loss some formats log instead of `loss` (nanochat's smoothed loss), kept in `extra`"""
TOTAL_STEPS_LOOKBACK = 1000
"""the newest rows searched for a `total_steps` in `extra` (a format that has it writes it on
every step line; a run of our schema, which has none there, is not scanned whole)"""


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


MISSING = -1.7976931348623157e308
"""what a NULL figure is read as (the lowest float, which no figure is), then turned into NaN:
numpy fills its columns straight from the driver's rows only when every value is a number"""


def _figure(name: str):
    """A figure's column, NULL as MISSING; `loss` falls back to the one some formats keep in `extra`."""
    column = _STEPS.c[name]
    if name == "loss":
        column = func.coalesce(column, _STEPS.c.extra[LOSS_IN_EXTRA].as_float())
    return func.coalesce(cast(column, Float), MISSING)


def rows_into_array(conn: Connection, query: Select, dtype: np.dtype | list) -> np.ndarray:
    """The rows straight from the driver's cursor into one structured array: no Row object, no
    list of a million tuples, no transposition."""
    return np.fromiter(conn.execute(query).cursor, dtype=dtype)


def _json(value):
    """A JSON column's value as the driver gives it: text (SQLite) or already decoded (PostgreSQL)."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def load_step_columns(engine: Engine, run: str, figures: tuple[str, ...] = FIGURE_COLUMNS) -> StepColumns:
    """The run's step rows as columns: ts, step, rank, attempt and `figures` (of FIGURE_COLUMNS;
    the fewer, the less to read: the driver's rows are most of the cost). Attempts come coded in
    the query (a small int per row rather than a string)."""
    c = _STEPS.c
    with engine.connect() as conn:
        attempts = sorted(conn.execute(select(c.attempt).where(c.run == run).distinct()).scalars())
        code = case({name: i for i, name in enumerate(attempts)}, value=c.attempt, else_=-1) if attempts \
            else literal(-1)
        dtype = np.dtype([("ts", "f8"), ("step", "i8"), ("rank", "i8"), ("attempt", "i8")]
                         + [(name, "f8") for name in figures])
        rows = rows_into_array(conn, select(c.ts, c.step, c.rank, code, *(_figure(name) for name in figures))
                           .where(c.run == run).order_by(c.ts, c.source_id, c.seq), dtype)
        recent = select(c.extra, c.ts).where(c.run == run).order_by(c.ts.desc()).limit(TOTAL_STEPS_LOOKBACK).subquery()
        newest = conn.execute(select(recent.c.extra).where(recent.c.extra.is_not(None))
                              .order_by(recent.c.ts.desc()).limit(1)).scalar()
    missing = np.full(len(rows), np.nan)
    values = {name: np.where(rows[name] == MISSING, np.nan, rows[name]) for name in figures}
    total = (_json(newest) or {}).get("total_steps") if newest is not None else None
    return StepColumns(
        ts=rows["ts"].copy(), step=rows["step"].copy(), rank=rows["rank"].copy(), attempt=rows["attempt"].copy(),
        attempts=attempts, figures={name: values.get(name, missing) for name in FIGURE_COLUMNS},
        total_steps_logged=int(total) if total else None)
