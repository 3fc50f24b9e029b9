"""The watcher's live tables: each followed run's current state and its projected finish, as the
watcher last saw them."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from monitor.models import LiveEta, LiveState

_LIVE = LiveState.__table__
_ETAS = LiveEta.__table__


def _upsert(conn: Connection, table: Table, rows: list[dict]) -> None:
    """Insert or replace rows keyed by run (inside the caller's transaction)."""
    if not rows:
        return
    stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)
    stmt = stmt.on_conflict_do_update(index_elements=["run"], set_={
        column.name: stmt.excluded[column.name] for column in table.columns if column.name != "run"})
    conn.execute(stmt, rows)


def _list(engine: Engine, table: Table, model: type[SQLModel]) -> list:
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.run)).mappings().all()
    return [model.model_validate(dict(row)) for row in rows]


def save_live_states(conn: Connection, states: Iterable[LiveState]) -> None:
    """Insert or replace these runs' rows (inside the caller's transaction)."""
    _upsert(conn, _LIVE, [state.model_dump() for state in states])


def list_live_states(engine: Engine) -> list[LiveState]:
    """Every run's last recorded live state, by run name."""
    return _list(engine, _LIVE, LiveState)


def save_live_etas(engine: Engine, etas: Iterable[LiveEta]) -> None:
    """Insert or replace these runs' projected finishes, in one transaction."""
    rows = [eta.model_dump() for eta in etas]
    if rows:
        with engine.begin() as conn:
            _upsert(conn, _ETAS, rows)


def list_live_etas(engine: Engine) -> list[LiveEta]:
    """Every run's last projected finish, by run name."""
    return _list(engine, _ETAS, LiveEta)
