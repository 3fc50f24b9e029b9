"""Writing records: bulk Core inserts, runs and attempts upserted once per batch.

Every function here runs inside the caller's transaction (`with engine.begin() as conn`),
so the intake can commit the records and the file offset that produced them together.
"""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import case, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from monitor.models import Attempt, Run, SourceFile
from monitor.records import Record
from monitor.store.engine import json_dumps as dumps
from monitor.store.rows import EVENT_COLUMNS, STEP_COLUMNS, event_values, step_values

_RUNS = Run.__table__
_ATTEMPTS = Attempt.__table__
_SOURCES = SourceFile.__table__


def insert_records(conn: Connection, records: Iterable[Record], *, source_id: int | None = None,
                   first_seq: int = 0) -> int:
    """Insert these records (numbered from `first_seq` within their source); the count.
    On the hot path of every ingest: plain comparisons rather than calls per record."""
    steps: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    spans: dict[tuple[str, str], list[Any]] = {}
    span: list[Any] = []
    run = attempt = None
    seq = first_seq
    for record in records:
        if record.kind == "step" and record.step is not None:
            row = step_values(record, source_id, seq)
            if row[-1] is not None:
                row[-1] = dumps(row[-1])
            steps.append(tuple(row))
        else:
            row = event_values(record, source_id, seq)
            row[-1] = dumps(row[-1])
            events.append(tuple(row))
        seq += 1
        ts = record.ts
        if record.run != run or record.attempt != attempt:  # runs of records share a span
            run, attempt = record.run, record.attempt
            span = spans.get((run, attempt))
            if span is None:
                span = spans[(run, attempt)] = [ts, ts, record.host]
        if ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
    for table, columns, rows in (("step_metrics", STEP_COLUMNS, steps), ("events", EVENT_COLUMNS, events)):
        if rows:
            # straight to the driver's executemany: per-row parameter processing would cost
            # more than the insert itself (bench/bench_ingest.py)
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) "
                                 f"VALUES ({', '.join([mark] * len(columns))})", rows)
    if spans:
        _upsert_spans(conn, spans)
    return seq - first_seq


def _upsert_spans(conn: Connection, spans: dict[tuple[str, str], list[Any]]) -> None:
    """Runs and attempts widen to cover the batch's first and last timestamps."""
    runs: dict[str, list[float]] = {}
    for (run, _attempt), (first, last, _host) in spans.items():
        span = runs.setdefault(run, [first, last])
        span[0], span[1] = min(span[0], first), max(span[1], last)
    make_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for table, keys, rows in (
        (_RUNS, ["name"], [{"name": run, "first_ts": f, "last_ts": l} for run, (f, l) in sorted(runs.items())]),
        (_ATTEMPTS, ["run", "attempt"], [{"run": run, "attempt": attempt, "host": host, "first_ts": f, "last_ts": l}
                                         for (run, attempt), (f, l, host) in sorted(spans.items())]),
    ):
        stmt = make_insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={
            "first_ts": case((stmt.excluded.first_ts < table.c.first_ts, stmt.excluded.first_ts),
                             else_=table.c.first_ts),
            "last_ts": case((stmt.excluded.last_ts > table.c.last_ts, stmt.excluded.last_ts),
                            else_=table.c.last_ts),
        })
        for row in rows:  # a handful per batch: one statement each keeps both dialects simple
            conn.execute(stmt, row)


def add_source(conn: Connection, **values: Any) -> int:
    """A new source file row; its id."""
    return conn.execute(insert(_SOURCES).values(**values).returning(_SOURCES.c.id)).scalar_one()


def update_source(conn: Connection, source_id: int, **values: Any) -> None:
    conn.execute(update(_SOURCES).where(_SOURCES.c.id == source_id).values(**values))
