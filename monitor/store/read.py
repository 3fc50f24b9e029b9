"""Reads for what draws (the dashboard, reports): step series downsampled inside the query,
the light loader accounting needs, and the small per-run lookups of the dashboard's pages.

`step_series` buckets the x axis into `max_points / 4` buckets and returns, per bucket and
figure, its first, last, minimum and maximum (the M4 scheme): a line through those four
points covers the same pixels as one through every point, so a single-step spike in a
million-step series is still drawn. Steps redone after a resume from an older checkpoint
appear once, with the newest attempt's values; the redone stretches come back with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import and_, func, not_, or_, select, text
from sqlalchemy.engine import Connection, Engine

from monitor.models import FLOAT_FIGURES, INT_FIGURES, Attempt, Event, StepMetric
from monitor.records import Record
from monitor.store.columns import rows_into_array
from monitor.store.rows import event_record
from monitor.store.write import _upsert_spans as upsert_spans, insert_rows

_STEPS = StepMetric.__table__
_EVENTS = Event.__table__
_ATTEMPTS = Attempt.__table__
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
    attempts: list[tuple[str, float, int | None]] = field(default_factory=list)
    """(attempt, first timestamp, first step) of every attempt, in the order they started"""


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
        # the step test first: most rows fail it, and a number compares faster than a string
        clause = and_(clause, not_(or_(*(and_(_STEPS.c.step.between(r.from_step, r.to_step), _STEPS.c.attempt == r.attempt)
                                         for r in redone))))
    return clause


@dataclass(frozen=True)
class Window:
    """Which steps a series covers: a step range and/or those logged since a time (unix s)."""

    first_step: int | None = None
    last_step: int | None = None
    since_ts: float | None = None

    def where(self, clause):
        if self.first_step is not None:
            clause = and_(clause, _STEPS.c.step >= self.first_step)
        if self.last_step is not None:
            clause = and_(clause, _STEPS.c.step <= self.last_step)
        if self.since_ts is not None:
            clause = and_(clause, _STEPS.c.ts >= self.since_ts)
        return clause


def _bucket_edges(x0: float, x1: float, buckets: int, integral: bool) -> list[tuple[float, float]]:
    """[lo, hi) of each bucket, evenly cut from x0 to x1 (inclusive)."""
    width = ((x1 - x0 + 1) if integral else (x1 - x0) * (1 + 1e-12) + 1e-9) / buckets
    return [(x0 + i * width, x0 + (i + 1) * width) for i in range(buckets)]


def _per_bucket_sqlite(conn: Connection, where, dim, figures: Sequence[str], edges, counted: list[int]) -> list[list]:
    """Each bucket's aggregates through one statement in which every bucket is a correlated
    subquery over an index range: SQLite would sort a million rows for a GROUP BY on an
    expression, and a range scan per bucket needs no sort. printf's %!.17g carries each
    double exactly. Each bucket's row count is appended to `counted`."""
    values = ", ".join(["(?, ?, ?)"] * len(edges))
    parts = ["count(*)", "min(step)", "max(step)"]
    for figure in figures:
        parts += [f"count({figure})", f"min({figure})", f"max({figure})"]
    fmt = "|".join(["%d|%d|%d"] + ["%d|%!.17g|%!.17g"] * len(figures))
    condition = where.compile(conn, compile_kwargs={"render_postcompile": True})
    # the time axis scans (run, ts): rank must not pull the planner onto (run, rank, step)
    condition_sql = str(condition).replace("step_metrics.rank =", "+step_metrics.rank =") if dim.name == "ts" else str(condition)
    sql = (f"WITH b(i, lo, hi) AS (VALUES {values}) SELECT b.i, (SELECT printf('{fmt}', {', '.join(parts)}) "
           f"FROM step_metrics WHERE {condition_sql} AND step_metrics.{dim.name} >= b.lo AND step_metrics.{dim.name} < b.hi) "
           "FROM b ORDER BY b.i")
    params = [v for i, (lo, hi) in enumerate(edges) for v in (i, lo, hi)]
    params += [condition.params[name] for name in condition.positiontup]
    out = []
    for _i, packed in conn.exec_driver_sql(sql, tuple(params)):
        cells = packed.split("|")
        if cells[0] == "0":
            continue
        first, last = int(cells[1]), int(cells[2])
        counted.append(int(cells[0]))
        out.append([None if cells[3 + 3 * k] == "0" else (float(cells[4 + 3 * k]), float(cells[5 + 3 * k]), first, last)
                    for k in range(len(figures))])
    return out


def _per_bucket_grouped(conn: Connection, where, dim, figures: Sequence[str], x0: float, x1: float, buckets: int,
                        integral: bool, counted: list[int]) -> list[list]:
    """Each bucket's aggregates by one GROUP BY (PostgreSQL hashes it, no sort); each
    bucket's row count appended to `counted`."""
    width = (x1 - x0 + 1) if integral else (x1 - x0) * (1 + 1e-12) + 1e-9
    bucket = func.floor((dim - x0) * (buckets / width)).label("bucket")
    aggregates = [func.min(_STEPS.c.step), func.max(_STEPS.c.step), func.count()]
    for figure in figures:
        aggregates += [func.min(_STEPS.c[figure]), func.max(_STEPS.c[figure])]
    out = []
    for row in conn.execute(select(bucket, *aggregates).where(where).group_by(text("bucket")).order_by(text("bucket"))):
        counted.append(row[3])
        out.append([None if row[4 + 2 * k] is None else (row[4 + 2 * k], row[5 + 2 * k], row[1], row[2])
                    for k in range(len(figures))])
    return out


def step_series(engine: Engine, run: str, figures: Sequence[str], *, x: str = "step",
                window: Window = Window(), max_points: int = 2000) -> StepSeries:
    """The figures of `run`'s steps against x ("step", "time" — unix seconds — or "tokens"),
    within `window`, at most about `max_points` points per figure: every row when the window
    holds no more than that, else per bucket its first, last, minimum and maximum, aggregated
    in the store. Buckets cut the step axis evenly (the time axis for x="time": downtimes are
    gaps); tokens grow with steps. A live page asks for what is new with
    `Window(first_step=last_step + 1)`."""
    unknown = [f for f in figures if f not in STEP_FIGURES]
    if unknown or x not in X_AXES:
        raise ValueError(f"unknown figure or x axis: {', '.join(unknown) or x}")
    x_column = _STEPS.c[_X_COLUMN[x]]
    dim = _STEPS.c.ts if x == "time" else _STEPS.c.step
    columns = [_STEPS.c[f] for f in figures]
    with engine.connect() as conn:
        spans = _spans(conn, run)
        redone = redone_stretches(spans)
        rank = _step_rank(conn, run)
        attempts = [(span.attempt, span.first_ts, span.lo) for span in spans]
        empty = StepSeries(x, {f: ([], []) for f in figures}, 0, True, None, redone, attempts)
        if rank is None:
            return empty
        where = and_(window.where(_kept(run, rank, redone)), x_column.is_not(None))
        head = conn.execute(select(_STEPS.c.step, x_column, *columns).where(where).order_by(_STEPS.c.step)
                            .limit(max_points + 1)).all()
        if len(head) <= max_points:
            points = {f: ([r[1] for r in head if r[i + 2] is not None], [r[i + 2] for r in head if r[i + 2] is not None])
                      for i, f in enumerate(figures)}
            return StepSeries(x, points, len(head), True, head[-1][0] if head else None, redone, attempts)
        last = conn.execute(select(_STEPS.c.step, dim, *columns).where(where).order_by(_STEPS.c.step.desc()).limit(1)).one()
        # a figure logged neither in the window's first rows nor its last is not aggregated
        logged = [f for i, f in enumerate(figures) if last[i + 2] is not None or any(r[i + 2] is not None for r in head)]
        x0 = float(head[0][0] if x != "time" else head[0][1])
        x1 = float(last[1])
        buckets = max(max_points // 4, 1)
        counted: list[int] = []
        if conn.dialect.name == "sqlite":
            grouped = _per_bucket_sqlite(conn, where, dim, logged, _bucket_edges(x0, x1, buckets, x != "time"), counted)
        else:
            grouped = _per_bucket_grouped(conn, where, dim, logged, x0, x1, buckets, x != "time", counted)
        ends = sorted({cell[k] for row in grouped for cell in row if cell is not None for k in (2, 3)})
        at_step = {}
        for start in range(0, len(ends), 5000):
            chunk = ends[start:start + 5000]
            for row in conn.execute(select(_STEPS.c.step, x_column, *columns).where(where, _STEPS.c.step.in_(chunk))):
                at_step[row[0]] = row[1:]
    rows = sum(counted)
    points = {f: ([], []) for f in figures}
    for k, f in enumerate(logged):
        i = figures.index(f)
        xs, ys = points[f]
        for row in grouped:
            if row[k] is not None:
                low, high, first_step, last_step_of_bucket = row[k]
                first, last_row = at_step[first_step], at_step[last_step_of_bucket]
                _m4_points(xs, ys, (first[0], first[i + 1]), (last_row[0], last_row[i + 1]), low, high)
    return StepSeries(x, points, rows, False, last[0], redone, attempts)


def _m4_points(xs: list, ys: list, first: tuple, last: tuple, low, high) -> None:
    """Appends one bucket's points: its first, its extremes between first and last (in the
    order that keeps the line short; a bucket is narrower than a pixel), its last."""
    (x_first, y_first), (x_last, y_last) = first, last
    if y_first is None:  # the bucket's first step did not log this figure
        y_first = low
    inner = [low, high] if abs(y_first - low) <= abs(y_first - high) else [high, low]
    inner = [y for y in inner if y not in (y_first, y_last)] if x_first != x_last else []
    xs.append(x_first)
    ys.append(y_first)
    for k, y in enumerate(inner, start=1):
        xs.append(x_first + (x_last - x_first) * k / (len(inner) + 1))
        ys.append(y)
    if y_last is not None and (x_last != x_first or y_last != y_first):
        xs.append(x_last)
        ys.append(y_last)


def raw_series(engine: Engine, run: str, figure: str | tuple[str, ...], *, x: str = "step",
               window: Window = Window()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (step, x, value) of one figure of the series (redone steps left out), in step
    order, as numpy arrays: what a smoothing that must see every point (the debiased EMA)
    reads. `figure` is a step column, or a path into the `extra` JSON (("loss_smoothed",),
    ("per_source", S, "loss")). The driver's rows go straight into numpy (`rows_into_array`)."""
    if x not in X_AXES or (isinstance(figure, str) and figure not in STEP_FIGURES):
        raise ValueError(f"unknown figure or x axis: {figure}, {x}")
    column = _STEPS.c[figure] if isinstance(figure, str) else _STEPS.c.extra[figure].as_float()
    x_column = _STEPS.c[_X_COLUMN[x]]
    empty = (np.empty(0, np.int64), np.empty(0), np.empty(0))
    with engine.connect() as conn:
        rank = _step_rank(conn, run)
        if rank is None:
            return empty
        where = and_(window.where(_kept(run, rank, redone_stretches(_spans(conn, run)))), x_column.is_not(None),
                     column.is_not(None))
        rows = rows_into_array(conn, select(_STEPS.c.step, x_column, column).where(where).order_by(_STEPS.c.step),
                               [("step", "i8"), ("x", "f8"), ("value", "f8")])
    return (rows["step"].copy(), rows["x"].copy(), rows["value"].copy()) if len(rows) else empty


def _driver_batches(conn: Connection, statement, size: int) -> Iterator[list[tuple]]:
    """The statement's rows as the driver returns them, `size` at a time: a million rows cost
    a third of what SQLAlchemy's Row objects do. SQLite's cursor steps through the result as it
    is fetched; on PostgreSQL a named (server-side) cursor does the same."""
    compiled = statement.compile(conn)
    dbapi = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite":
        cursor = dbapi.cursor()
        cursor.execute(str(compiled), [compiled.params[name] for name in compiled.positiontup])
    else:
        cursor = dbapi.cursor(name="trainledger_read")
        cursor.execute(str(compiled), compiled.params)
    try:
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


def accounting_records(engine: Engine, run: str) -> Iterator[Record]:
    """`run`'s records in the order `load_records` gives them, for accounting: step records
    carry kind, attempt, ts, rank and step only (their figures are not read), and are streamed
    from the driver's cursor rather than held, so a million-step run's ledger needs neither a
    full Record per step nor the rows in memory. The few other records are merged in where
    they belong. The connection stays open until the iterator is exhausted."""
    with engine.connect() as conn:
        events = conn.execute(select(_EVENTS).where(_EVENTS.c.run == run)
                              .order_by(_EVENTS.c.ts, _EVENTS.c.source_id, _EVENTS.c.seq)).mappings().all()
        pending = [((row["ts"], row["source_id"] or 0, row["seq"]), event_record(row)) for row in reversed(events)]
        steps = (select(_STEPS.c.ts, _STEPS.c.source_id, _STEPS.c.seq, _STEPS.c.attempt, _STEPS.c.rank, _STEPS.c.step)
                 .where(_STEPS.c.run == run).order_by(_STEPS.c.ts, _STEPS.c.source_id, _STEPS.c.seq))
        next_ts = pending[-1][0][0] if pending else math.inf
        for rows in _driver_batches(conn, steps, 20_000):
            for ts, source, seq, attempt, rank, step in rows:
                # an event goes first when its (ts, source, seq) is smaller; on a tie the step does
                while ts >= next_ts and (ts > next_ts or pending[-1][0] < (ts, source or 0, seq)):
                    yield pending.pop()[1]
                    next_ts = pending[-1][0][0] if pending else math.inf
                yield Record("step", run, attempt, ts, "", rank, step, _NO_FIELDS)
        while pending:
            yield pending.pop()[1]


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


def insert_step_rows(conn: Connection, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Bulk step rows for benchmarks and tests, inside the caller's transaction: tuples in
    `columns` order (which must hold run, attempt and ts) straight to the driver, no Record per
    row; the runs and attempts they belong to widened to cover them."""
    if not rows:
        return
    insert_rows(conn, "step_metrics", tuple(columns), list(rows))
    run_at, attempt_at, ts_at = (columns.index(name) for name in ("run", "attempt", "ts"))
    spans: dict[tuple[str, str], list] = {}
    for row in rows:
        span = spans.setdefault((row[run_at], row[attempt_at]), [row[ts_at], row[ts_at], ""])
        span[0], span[1] = min(span[0], row[ts_at]), max(span[1], row[ts_at])
    upsert_spans(conn, spans)
