"""A run's step figures as numpy columns, in one query and without a Record per step: what the
projections and the report read for a long run (a million steps). The dashboard's `step_series`
(monitor/store/read.py, built in parallel) reads charts the same way; the two may become one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from monitor.models import StepMetric

_STEPS = StepMetric.__table__
FIGURE_COLUMNS = ("step_time", "tokens_per_s", "tgs", "mfu", "loss", "peak_mem_bytes", "num_consumed_tokens")
LOSS_IN_EXTRA = "loss_smoothed"
"""a loss some formats log instead of `loss` (nanochat's smoothed loss), kept in `extra`"""


@dataclass
class StepColumns:
    """Every step row of a run in (ts, source, seq) order, the order `load_records` gives."""

    ts: np.ndarray
    step: np.ndarray
    rank: np.ndarray
    source_id: np.ndarray
    seq: np.ndarray
    attempt: np.ndarray
    """codes into `attempts`"""
    attempts: list[str]
    host: list[str]
    figures: dict[str, np.ndarray]
    total_steps_logged: int | None


def _floats(values) -> np.ndarray:
    return np.fromiter((math.nan if v is None else v for v in values), dtype=np.float64, count=len(values))


def load_step_columns(engine: Engine, run: str) -> StepColumns:
    c = _STEPS.c
    order = (c.ts, c.source_id, c.seq)
    with engine.connect() as conn:
        rows = conn.execute(select(c.ts, c.step, c.rank, c.source_id, c.seq, c.attempt, c.host,
                                   *(c[name] for name in FIGURE_COLUMNS)).where(c.run == run).order_by(*order)).all()
        position, newest = {}, None
        if rows:
            extras = conn.execute(select(c.ts, c.source_id, c.seq, c.extra).where(c.run == run)
                                  .where(c.loss.is_(None)).where(c.extra.is_not(None)).order_by(*order)).all()
            position = {(r.ts, r.source_id, r.seq): r.extra for r in extras}
            newest = conn.execute(select(c.extra).where(c.run == run).order_by(*(o.desc() for o in order)).limit(1)).scalar()
    columns = list(zip(*rows)) if rows else [()] * (7 + len(FIGURE_COLUMNS))
    names, codes = np.unique(np.asarray(columns[5], dtype=object).astype(str), return_inverse=True) if rows else \
        (np.empty(0, dtype=str), np.empty(0, np.int64))
    figures = {name: _floats(columns[7 + i]) for i, name in enumerate(FIGURE_COLUMNS)}
    if position:
        keys = list(zip(columns[0], columns[3], columns[4]))
        loss = figures["loss"]
        for i, key in enumerate(keys):
            extra = position.get(key)
            if extra is not None and extra.get(LOSS_IN_EXTRA) is not None:
                loss[i] = extra[LOSS_IN_EXTRA]
    total = (newest or {}).get("total_steps")
    return StepColumns(
        ts=np.asarray(columns[0], dtype=np.float64), step=np.asarray(columns[1], dtype=np.int64),
        rank=np.asarray(columns[2], dtype=np.int64),
        source_id=np.asarray([s if s is not None else 0 for s in columns[3]], dtype=np.int64),
        seq=np.asarray(columns[4], dtype=np.int64), attempt=np.asarray(codes, dtype=np.int64).reshape(-1),
        attempts=[str(n) for n in names], host=list(columns[6]), figures=figures,
        total_steps_logged=int(total) if total else None)
