"""Writing records: bulk Core inserts, runs and attempts upserted once per batch.

Every function here runs inside the caller's transaction (`with engine.begin() as conn`),
so the intake can commit the records and the file offset that produced them together.
"""

from __future__ import annotations

import sqlite3
from functools import cache
from itertools import chain
from typing import Any, Iterable

from sqlalchemy import bindparam, case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from monitor.models import Attempt, Run
from monitor.records import Record
from monitor.store.engine import json_dumps as dumps
from monitor.store.rows import EVENT_COLUMNS, STEP_COLUMNS, event_values, step_values

_RUNS = Run.__table__
_ATTEMPTS = Attempt.__table__
_ROWS_PER_STATEMENT = 200
_SQLITE_VARIABLES = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
"""How many bound variables one SQLite statement takes (its compile-time default)."""


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
            insert_rows(conn, table, columns, rows)
    if spans:
        _upsert_spans(conn, spans)
    return seq - first_seq


def insert_rows(conn: Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Straight to the driver: per-row parameter processing would cost more than the insert
    itself. On SQLite, whole chunks of rows go in as one multi-row INSERT, 17% less CPU than
    `executemany` of the same rows (docs/benchmarks.md, "Intake"); the rest, and PostgreSQL
    (psycopg pipelines `executemany`), by `executemany`."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    one = f"({', '.join([mark] * len(columns))})"
    if conn.dialect.name == "sqlite":
        per = min(_ROWS_PER_STATEMENT, _SQLITE_VARIABLES // len(columns))
        whole = len(rows) - len(rows) % per
        if whole:
            statement = head + ", ".join([one] * per)
            for start in range(0, whole, per):
                conn.exec_driver_sql(statement, tuple(chain.from_iterable(rows[start:start + per])))
            rows = rows[whole:]
    if rows:
        conn.exec_driver_sql(head + one, rows)


def _upsert_spans(conn: Connection, spans: dict[tuple[str, str], list[Any]]) -> None:
    """Runs and attempts widen to cover the batch's first and last timestamps."""
    runs: dict[str, list[float]] = {}
    for (run, _attempt), (first, last, _host) in spans.items():
        span = runs.setdefault(run, [first, last])
        span[0], span[1] = min(span[0], first), max(span[1], last)
    statements = _span_statements(conn.dialect.name)
    for run, (first, last) in sorted(runs.items()):  # a handful per batch: one statement each
        conn.execute(statements[0], {"name": run, "first_ts": first, "last_ts": last})
    for (run, attempt), (first, last, host) in sorted(spans.items()):
        conn.execute(statements[1], {"run": run, "attempt": attempt, "host": host, "first_ts": first, "last_ts": last})


@cache
def _span_statements(dialect: str) -> tuple[Any, Any]:
    """The upserts of a run's and an attempt's span, built once (building one costs more
    than running it, for every batch of every file of thousands)."""
    make_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statements = []
    for table, keys in ((_RUNS, ["name"]), (_ATTEMPTS, ["run", "attempt"])):
        stmt = make_insert(table).values({column.name: bindparam(column.name) for column in table.columns})
        statements.append(stmt.on_conflict_do_update(index_elements=keys, set_={
            "first_ts": case((stmt.excluded.first_ts < table.c.first_ts, stmt.excluded.first_ts),
                             else_=table.c.first_ts),
            "last_ts": case((stmt.excluded.last_ts > table.c.last_ts, stmt.excluded.last_ts),
                            else_=table.c.last_ts),
        }))
    return statements[0], statements[1]
