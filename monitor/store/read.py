"""Reads for what draws (the dashboard, reports): step series downsampled inside the query,
the light loader accounting needs, and the small per-run lookups of the dashboard's pages.

`step_series` buckets the x axis into `max_points / 4` buckets and returns, per bucket and
figure, its first, last, minimum and maximum (the M4 scheme): a line through those four
points covers the same pixels as one through every point, so a single-step spike in a
million-step series is still drawn. Steps redone after a resume from an older checkpoint
appear once, with the newest attempt's values; the redone stretches come back with it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from sqlalchemy import Integer, and_, cast, func, not_, or_, select, text
from sqlalchemy.engine import Connection, Engine

from monitor.models import FLOAT_FIGURES, INT_FIGURES, Alert, Attempt, Event, StepMetric
from monitor.records import Record
from monitor.store.rows import event_record
from monitor.store.write import _upsert_spans as upsert_spans

_STEPS = StepMetric.__table__
_EVENTS = Event.__table__
_ATTEMPTS = Attempt.__table__
_ALERTS = Alert.__table__
STEP_FIGURES = FLOAT_FIGURES + INT_FIGURES
X_AXES = ("step", "time", "tokens")
_X_COLUMN = {"step": "step", "time": "ts", "tokens": "num_consumed_tokens"}
_NO_FIELDS: dict = {}


@dataclass(frozen=True)
class Redone:
    """Steps an attempt ran that a later attempt ran again (it resumed from an older step)."""

    attempt: str
    from_step: int
    to_step: int


@dataclass
class StepSeries:
    """Per figure, the points to draw (x and y in x order); `rows` is how many steps the
    window holds, `exact` whether every one of them is among the points."""

    x: str
    points: dict[str, tuple[list[float], list[float]]]
    rows: int
    exact: bool
    last_step: int | None
    redone: list[Redone] = field(default_factory=list)


@dataclass(frozen=True)
class _Span:
    attempt: str
    first_ts: float
    lo: int | None
    hi: int | None


def _spans(conn: Connection, run: str) -> list[_Span]:
    """Each attempt's first timestamp and step range, through the (run, attempt, step) index."""
    lo = (select(func.min(_STEPS.c.step)).where(_STEPS.c.run == run, _STEPS.c.attempt == _ATTEMPTS.c.attempt)
          .scalar_subquery())
    hi = (select(func.max(_STEPS.c.step)).where(_STEPS.c.run == run, _STEPS.c.attempt == _ATTEMPTS.c.attempt)
          .scalar_subquery())
    query = (select(_ATTEMPTS.c.attempt, _ATTEMPTS.c.first_ts, lo, hi).where(_ATTEMPTS.c.run == run)
             .order_by(_ATTEMPTS.c.first_ts, _ATTEMPTS.c.attempt))
    return [_Span(*row) for row in conn.execute(query)]


def redone_stretches(spans: Sequence[_Span]) -> list[Redone]:
    """For each attempt, the parts of its step range that a later-started attempt covers."""
    out = []
    for i, span in enumerate(spans):
        if span.lo is None:
            continue
        covered = sorted((max(later.lo, span.lo), min(later.hi, span.hi)) for later in spans[i + 1:]
                         if later.lo is not None and later.lo <= span.hi and later.hi >= span.lo)
        for lo, hi in covered:
            if out and out[-1].attempt == span.attempt and lo <= out[-1].to_step + 1:
                out[-1] = Redone(span.attempt, out[-1].from_step, max(hi, out[-1].to_step))
            else:
                out.append(Redone(span.attempt, lo, hi))
    return out


def _step_rank(conn: Connection, run: str) -> int | None:
    """The rank whose steps make the series: the lowest that logged one (usually rank 0)."""
    return conn.execute(select(func.min(_STEPS.c.rank)).where(_STEPS.c.run == run)).scalar()


def _kept(run: str, rank: int, redone: list[Redone]):
    """The WHERE clause of the series: this run's rank, without the redone rows."""
    clause = and_(_STEPS.c.run == run, _STEPS.c.rank == rank)
    if redone:
        clause = and_(clause, not_(or_(*(and_(_STEPS.c.attempt == r.attempt, _STEPS.c.step.between(r.from_step, r.to_step))
                                         for r in redone))))
    return clause


def _bounds(conn: Connection, where, x_column, window) -> tuple[float, float] | None:
    lo, hi = window or (None, None)
    if lo is not None:
        where = and_(where, x_column >= lo)
    if hi is not None:
        where = and_(where, x_column <= hi)
    first = conn.execute(select(x_column).where(where, x_column.is_not(None)).order_by(_STEPS.c.step).limit(1)).scalar()
    last = conn.execute(select(x_column).where(where, x_column.is_not(None))
                        .order_by(_STEPS.c.step.desc()).limit(1)).scalar()
    if first is None or last is None:
        return None
    return (float(lo) if lo is not None else float(first)), (float(hi) if hi is not None else float(last))


def _bucket(conn: Connection, x_column, x0: float, x1: float, buckets: int, integral: bool):
    """The bucket number of a row: its x scaled onto [0, buckets), floored in SQL."""
    width = (x1 - x0 + 1) if integral else (x1 - x0) * (1 + 1e-12) + 1e-9
    scaled = (x_column - x0) * (buckets / width)
    return func.floor(scaled) if conn.dialect.name == "postgresql" else cast(scaled, Integer)


def step_series(engine: Engine, run: str, figures: Sequence[str], *, x: str = "step",
                window: tuple[float | None, float | None] | None = None, max_points: int = 2000) -> StepSeries:
    """The figures of `run`'s steps against x ("step", "time" — unix seconds — or "tokens"),
    within `window` (inclusive x bounds, None for open), at most about `max_points` points per
    figure: every row when the window holds no more than that, else per bucket of x its first,
    last, minimum and maximum, computed in one grouped query."""
    unknown = [f for f in figures if f not in STEP_FIGURES]
    if unknown or x not in X_AXES:
        raise ValueError(f"unknown figure or x axis: {', '.join(unknown) or x}")
    x_column = _STEPS.c[_X_COLUMN[x]]
    with engine.connect() as conn:
        spans = _spans(conn, run)
        redone = redone_stretches(spans)
        rank = _step_rank(conn, run)
        empty = StepSeries(x, {f: ([], []) for f in figures}, 0, True, None, redone)
        if rank is None:
            return empty
        where = _kept(run, rank, redone)
        bounds = _bounds(conn, where, x_column, window)
        if bounds is None:
            return empty
        where = and_(where, x_column.between(*bounds))
        rows, last_step = conn.execute(select(func.count(), func.max(_STEPS.c.step)).where(where)).one()
        columns = [_STEPS.c[f] for f in figures]
        if rows <= max_points:
            data = conn.execute(select(x_column, *columns).where(where).order_by(_STEPS.c.step)).all()
            points = {f: ([r[0] for r in data if r[i + 1] is not None], [r[i + 1] for r in data if r[i + 1] is not None])
                      for i, f in enumerate(figures)}
            return StepSeries(x, points, rows, True, last_step, redone)
        buckets = max(max_points // 4, 1)
        bucket = _bucket(conn, x_column, *bounds, buckets, integral=x != "time").label("bucket")
        aggregates = []
        for column in columns:
            present = column.is_not(None)
            aggregates += [func.min(column), func.max(column), func.min(_STEPS.c.step).filter(present),
                           func.max(_STEPS.c.step).filter(present)]
        grouped = conn.execute(select(bucket, *aggregates).where(where).group_by(text("bucket")).order_by(text("bucket"))).all()
        ends = sorted({step for row in grouped for step in row[3::4] + row[4::4] if step is not None})
        at_step = {}
        for start in range(0, len(ends), 5000):
            chunk = ends[start:start + 5000]
            for row in conn.execute(select(_STEPS.c.step, x_column, *columns).where(where, _STEPS.c.step.in_(chunk))):
                at_step[row[0]] = row[1:]
    points = {}
    for i, f in enumerate(figures):
        xs: list[float] = []
        ys: list[float] = []
        for row in grouped:
            low, high, first_step, last_step_of_bucket = row[1 + 4 * i: 5 + 4 * i]
            if first_step is None:
                continue
            first, last = at_step[first_step], at_step[last_step_of_bucket]
            _m4_points(xs, ys, (first[0], first[i + 1]), (last[0], last[i + 1]), low, high)
        points[f] = (xs, ys)
    return StepSeries(x, points, rows, False, last_step, redone)


def _m4_points(xs: list, ys: list, first: tuple, last: tuple, low, high) -> None:
    """Appends one bucket's points: its first, its extremes between first and last (in the
    order that keeps the line short; a bucket is narrower than a pixel), its last."""
    (x_first, y_first), (x_last, y_last) = first, last
    inner = [low, high] if abs(y_first - low) <= abs(y_first - high) else [high, low]
    inner = [y for y in inner if y not in (y_first, y_last)] if x_first != x_last else []
    xs.append(x_first)
    ys.append(y_first)
    for k, y in enumerate(inner, start=1):
        xs.append(x_first + (x_last - x_first) * k / (len(inner) + 1))
        ys.append(y)
    if x_last != x_first or y_last != y_first:
        xs.append(x_last)
        ys.append(y_last)


def raw_series(engine: Engine, run: str, figure: str | tuple[str, ...], *, x: str = "step"
               ) -> tuple[list[int], list[float], list[float]]:
    """Every (step, x, value) of one figure of the series (redone steps left out), in step
    order: what a smoothing that must see every point (the debiased EMA) reads. `figure` is a
    step column, or a path into the `extra` JSON (("loss_smoothed",), ("per_source", S, "loss"))."""
    if x not in X_AXES or (isinstance(figure, str) and figure not in STEP_FIGURES):
        raise ValueError(f"unknown figure or x axis: {figure}, {x}")
    column = _STEPS.c[figure] if isinstance(figure, str) else _STEPS.c.extra[figure].as_float()
    x_column = _STEPS.c[_X_COLUMN[x]]
    with engine.connect() as conn:
        rank = _step_rank(conn, run)
        if rank is None:
            return [], [], []
        where = and_(_kept(run, rank, redone_stretches(_spans(conn, run))), x_column.is_not(None))
        if not isinstance(figure, str):
            where = and_(where, _STEPS.c.extra.is_not(None))
        rows = conn.execute(select(_STEPS.c.step, x_column, column).where(where).order_by(_STEPS.c.step)).all()
    rows = [r for r in rows if r[2] is not None]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def accounting_records(engine: Engine, run: str) -> Iterator[Record]:
    """`run`'s records in the order `load_records` gives them, for accounting: step records
    carry kind, attempt, ts, rank and step only (their figures are not read), and are streamed
    rather than held, so a million-step run's ledger needs neither a full Record per step nor
    the rows in memory. The connection stays open until the iterator is exhausted."""
    order = (_STEPS.c.ts, _STEPS.c.source_id, _STEPS.c.seq)
    with engine.connect() as conn:
        events = conn.execute(select(_EVENTS).where(_EVENTS.c.run == run)
                              .order_by(_EVENTS.c.ts, _EVENTS.c.source_id, _EVENTS.c.seq)).mappings().all()
        event_rows = ((row["ts"], row["source_id"] or 0, row["seq"], event_record(row)) for row in events)
        steps = conn.execution_options(stream_results=True, yield_per=20_000).execute(
            select(_STEPS.c.ts, _STEPS.c.source_id, _STEPS.c.seq, _STEPS.c.attempt, _STEPS.c.rank, _STEPS.c.step)
            .where(_STEPS.c.run == run).order_by(*order))
        step_rows = ((ts, source or 0, seq, Record("step", run, attempt, ts, "", rank, step, _NO_FIELDS))
                     for ts, source, seq, attempt, rank, step in steps)
        for *_key, record in heapq.merge(step_rows, event_rows, key=lambda row: row[:3]):
            yield record


@dataclass(frozen=True)
class LatestStep:
    run: str
    step: int
    ts: float
    tokens_per_s: float | None
    mfu: float | None
    loss: float | None


def latest_steps(engine: Engine, runs: Iterable[str]) -> dict[str, LatestStep]:
    """Each run's newest step row (through the (run, ts) index)."""
    out = {}
    with engine.connect() as conn:
        for run in runs:
            row = conn.execute(select(_STEPS.c.step, _STEPS.c.ts, _STEPS.c.tokens_per_s, _STEPS.c.mfu, _STEPS.c.loss)
                               .where(_STEPS.c.run == run).order_by(_STEPS.c.ts.desc()).limit(1)).first()
            if row is not None:
                out[run] = LatestStep(run, *row)
    return out


def step_sources(engine: Engine, run: str) -> list[str]:
    """The data sources named in the run's newest per-source step figures (InternLM's)."""
    with engine.connect() as conn:
        extra = conn.execute(select(_STEPS.c.extra).where(_STEPS.c.run == run, _STEPS.c.extra.is_not(None))
                             .order_by(_STEPS.c.ts.desc()).limit(1)).scalar()
    return sorted((extra or {}).get("per_source") or {})


def run_alerts(engine: Engine, run: str | None = None, *, open_only: bool = False) -> list[Alert]:
    """Alerts raised (by monitor/alerts.py), newest first; of one run, or still open."""
    query = select(_ALERTS).order_by(_ALERTS.c.ts.desc())
    if run is not None:
        query = query.where(_ALERTS.c.run == run)
    if open_only:
        query = query.where(_ALERTS.c.resolved_ts.is_(None))
    with engine.connect() as conn:
        return [Alert.model_validate(dict(row)) for row in conn.execute(query).mappings()]


def insert_step_rows(conn: Connection, rows: Sequence[dict]) -> None:
    """Bulk step rows for benchmarks and tests (columns of step_metrics by name), inside the
    caller's transaction: one executemany, no Record per row; runs and attempts widened to
    cover them."""
    if not rows:
        return
    conn.execute(_STEPS.insert(), rows)
    spans: dict[tuple[str, str], list] = {}
    for row in rows:
        span = spans.setdefault((row["run"], row["attempt"]), [row["ts"], row["ts"], row.get("host", "")])
        span[0], span[1] = min(span[0], row["ts"]), max(span[1], row["ts"])
    upsert_spans(conn, spans)
