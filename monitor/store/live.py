"""The live-state table: each followed run's current state, as the watcher last saw it."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from monitor.models import LiveState

_LIVE = LiveState.__table__


def save_live_states(conn: Connection, states: Iterable[LiveState]) -> None:
    """Insert or replace these runs' rows (inside the caller's transaction)."""
    rows = [state.model_dump() for state in states]
    if not rows:
        return
    stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(_LIVE)
    stmt = stmt.on_conflict_do_update(index_elements=["run"], set_={
        column.name: stmt.excluded[column.name] for column in _LIVE.columns if column.name != "run"})
    conn.execute(stmt, rows)


def list_live_states(engine: Engine) -> list[LiveState]:
    """Every run's last recorded live state, by run name."""
    with engine.connect() as conn:
        rows = conn.execute(select(_LIVE).order_by(_LIVE.c.run)).mappings().all()
    return [LiveState.model_validate(dict(row)) for row in rows]
