"""`source_files`: the intake's row per followed file, read and written only here.

Any number of writers (`watch`, `ingest`; one host or many) may share a store. Two rules make
every record stored once among them:
- a followed file has ONE row: its creation is an insert that a unique index on
  (host, device, inode) over the followed statuses settles (`add_source` returns None to the
  writer that lost the race, which then reads the winner's row);
- a row's reading moves on by compare-and-swap: `update_source(..., expected_version=v)`
  changes it only if its `version` is still `v`, in the transaction that inserts the records
  those bytes produced. A writer whose swap fails rolls back and re-reads the row.

Each writer sees only its own host's rows: two nodes' files with the same path or inode are
different files.
"""

from __future__ import annotations

import os
import socket
from functools import cache, lru_cache
from typing import Any, Callable

from sqlalchemy import and_, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from monitor.models import _ONE_FOLLOWED_ROW, FOLLOWED_STATUSES, SourceFile, SourceStatus
from monitor.store.engine import json_dumps

HOST_ENV = "TRAINLEDGER_HOST"
_SOURCES = SourceFile.__table__
_FOLLOWED = [str(status) for status in FOLLOWED_STATUSES]
_COPY_ORIGINS = [str(s) for s in (SourceStatus.ACTIVE, SourceStatus.ROTATED, SourceStatus.TRUNCATED,
                                  SourceStatus.REPLACED)]


_NEW_ROW_COLUMNS = tuple(column.name for column in _SOURCES.columns if column.name != "id")
_FOLLOWED_ROW = select(_SOURCES).where(
    _SOURCES.c.host == bindparam("host"), _SOURCES.c.device == bindparam("device"),
    _SOURCES.c.inode == bindparam("inode"), _SOURCES.c.status.in_(_FOLLOWED))
_CANDIDATE = and_(_SOURCES.c.host == bindparam("host"), _SOURCES.c.parser.is_not(None),
                  _SOURCES.c.status.in_(_COPY_ORIGINS),
                  ~and_(_SOURCES.c.device == bindparam("device"), _SOURCES.c.inode == bindparam("inode")))
_SAME_HEAD_IDS = select(_SOURCES.c.id).where(
    _CANDIDATE, _SOURCES.c.head_len == bindparam("length"), _SOURCES.c.head_hash == bindparam("head_hash"))
_SHORTER_HEAD_LENGTHS = select(_SOURCES.c.head_len).distinct().where(
    _CANDIDATE, _SOURCES.c.head_len >= 1, _SOURCES.c.head_len < bindparam("head_len"))
"""Statements built once: building one costs more than running it, for every file of thousands."""


@cache
def _add_statement(dialect: str) -> Any:
    make_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return make_insert(_SOURCES).values({name: bindparam(name) for name in _NEW_ROW_COLUMNS}).on_conflict_do_nothing(
        index_elements=["host", "device", "inode"], index_where=_ONE_FOLLOWED_ROW).returning(_SOURCES.c.id)


def this_host() -> str:
    """The node this process reads files on: $TRAINLEDGER_HOST, else the host name."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Statuses as their text (a driver may bind an enum by its name)."""
    return {k: (str(v) if isinstance(v, SourceStatus) else v) for k, v in values.items()}


def new_source_row() -> dict[str, Any]:
    """Every column of a row, unset."""
    return {column.name: None for column in _SOURCES.columns}


def add_source(conn: Connection, **values: Any) -> int | None:
    """A new followed row; its id, or None when another writer's row for this file came first."""
    row = dict.fromkeys(_NEW_ROW_COLUMNS)
    row.update(version=0, **_plain(values))
    return conn.execute(_add_statement(conn.dialect.name), row).scalar()


def update_source(conn: Connection, source_id: int, *, expected_version: int | None = None,
                  **values: Any) -> int | None:
    """Write these values and bump the row's version; the new version. With `expected_version`,
    a compare-and-swap: None, and nothing written, when the row is no longer at that version.
    Straight to the driver (a statement cached per set of columns): it runs for every batch
    of every file, and building the statement cost more than running it."""
    sql = _update_sql(conn.dialect.name, conn.dialect.paramstyle, tuple(values), expected_version is not None)
    params = [json_dumps(value) if name == "parser_state" and value is not None else value
              for name, value in _plain(values).items()]
    params.append(source_id)
    if expected_version is not None:
        params.append(expected_version)
    return conn.exec_driver_sql(sql, tuple(params)).scalar()


@lru_cache(maxsize=64)
def _update_sql(dialect: str, paramstyle: str, columns: tuple[str, ...], swap: bool) -> str:
    mark = "?" if paramstyle == "qmark" else "%s"
    assignments = ", ".join(f'"{name}" = {mark}' for name in columns)
    condition = f"id = {mark}" + (f" AND version = {mark}" if swap else "")
    return f"UPDATE source_files SET {assignments}, version = version + 1 WHERE {condition} RETURNING version"


def source_row(conn: Connection, source_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(_SOURCES).where(_SOURCES.c.id == source_id)).mappings().first()
    return dict(row) if row is not None else None


def followed_row(conn: Connection, host: str, device: int, inode: int) -> dict[str, Any] | None:
    """The row following the file (device, inode) on `host`, if any."""
    row = conn.execute(_FOLLOWED_ROW, {"host": host, "device": device, "inode": inode}).mappings().first()
    return dict(row) if row is not None else None


def followed_offsets(conn: Connection, host: str) -> dict[tuple[int, int], int]:
    """(device, inode) → offset read, for every file `host` follows."""
    rows = conn.execute(select(_SOURCES.c.device, _SOURCES.c.inode, _SOURCES.c.offset).where(
        _SOURCES.c.host == host, _SOURCES.c.status.in_(_FOLLOWED)))
    return {(device, inode): offset for device, inode, offset in rows}


def rows_with_status(conn: Connection, host: str, statuses: tuple[SourceStatus, ...], *,
                     updated_since: float | None = None, parsed: bool = False) -> list[dict[str, Any]]:
    """`host`'s rows in these statuses (updated since then; with a parser only), oldest first."""
    query = select(_SOURCES).where(_SOURCES.c.host == host, _SOURCES.c.status.in_([str(s) for s in statuses]))
    if updated_since is not None:
        query = query.where(_SOURCES.c.updated >= updated_since)
    if parsed:
        query = query.where(_SOURCES.c.parser.is_not(None))
    return [dict(row) for row in conn.execute(query.order_by(_SOURCES.c.id)).mappings()]


def held_copies(conn: Connection, source_id: int) -> list[tuple[int, str]]:
    """(id, path) of the copy-truncate copies waiting for this source to be truncated."""
    return [tuple(row) for row in conn.execute(select(_SOURCES.c.id, _SOURCES.c.path).where(
        _SOURCES.c.copy_of == source_id, _SOURCES.c.status == str(SourceStatus.COPY)))]


def copy_candidates(conn: Connection, host: str, device: int, inode: int, folder: str, head_len: int,
                    head_of: Callable[[int], str]) -> list[dict[str, Any]]:
    """Rows in `folder` that the file (device, inode), its first `head_len` bytes read, may be a
    copy-truncate copy of, newest first: those whose head (first n bytes, n ≤ `head_len`) hashes
    like the file's first n bytes, `head_of(n)`. Found through the (host, head_len, head_hash)
    index, one lookup per length that heads have: never a scan of the folder's rows per new
    file, which made a folder of thousands of small logs quadratic."""
    params = {"host": host, "device": device, "inode": inode, "head_len": head_len}
    lengths = [head_len, *conn.execute(_SHORTER_HEAD_LENGTHS, params).scalars()]
    ids = set()
    for length in lengths:
        params.update(length=length, head_hash=head_of(length))
        ids.update(conn.execute(_SAME_HEAD_IDS, params).scalars())
    if not ids:
        return []
    rows = conn.execute(select(_SOURCES).where(_SOURCES.c.id.in_(sorted(ids))).order_by(_SOURCES.c.id.desc()))
    return [dict(row) for row in rows.mappings() if os.path.dirname(row["path"]) == folder]


def last_parser_state(conn: Connection, host: str, parser: str, run: str) -> tuple[Any, str] | None:
    """(parser_state, attempt_prefix) of `host`'s newest file of `run` in this format that has a state."""
    row = conn.execute(select(_SOURCES.c.parser_state, _SOURCES.c.attempt_prefix).where(
        _SOURCES.c.host == host, _SOURCES.c.run == run, _SOURCES.c.parser == parser,
        _SOURCES.c.parser_state.is_not(None)).order_by(_SOURCES.c.id.desc()).limit(1)).first()
    return None if row is None else (row.parser_state, row.attempt_prefix)


def mark_unreadable(conn: Connection, host: str, path: str, st: os.stat_result, reason: str, now: float) -> None:
    """Say in the store that this file cannot be opened (`status` shows it), once."""
    add_source(conn, host=host, path=path, device=st.st_dev, inode=st.st_ino, head_len=0, head_hash="",
               offset=0, tail_hash="", size=st.st_size, lines=0, records=0, run="", attempt_prefix="",
               status=SourceStatus.UNREADABLE, bad_lines=0, first_bad_reason=reason, first_seen=now, updated=now)


def forget_unreadable(conn: Connection, host: str, device: int, inode: int) -> None:
    """The file can be opened now: its `unreadable` row gives way to a real one."""
    conn.execute(delete(_SOURCES).where(
        _SOURCES.c.host == host, _SOURCES.c.device == device, _SOURCES.c.inode == inode,
        _SOURCES.c.status == str(SourceStatus.UNREADABLE)))


def list_sources(engine: Engine) -> list[SourceFile]:
    """Every source file the intake has seen, on any host, by path (what `trainledger status` shows)."""
    with engine.connect() as conn:
        rows = conn.execute(select(_SOURCES).order_by(_SOURCES.c.path, _SOURCES.c.host, _SOURCES.c.id)).mappings()
        return [SourceFile.model_validate(dict(row)) for row in rows]
