"""Shared transactions: the files the intake syncs together commit together.

One commit per file (and one per batch of it) made a folder of 5,000 small logs cost minutes;
the files synced in one pass share a transaction instead, committed once it holds about
`batch_bytes` of lines (so a large file still commits every batch) or 500 batches, and at
the end of the pass. Every source row written in it is remembered as it was, so that a failed commit (a
store gone away, a deadlock between writers) puts each back and the next pass redoes it.

A mixin of `Intake` (monitor/intake.py).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from monitor.models import SourceStatus
from monitor.records import Record
from monitor.store import open_store
from monitor.store.sources import source_row

if TYPE_CHECKING:
    from monitor.intake import Tail

log = logging.getLogger("trainledger.intake")
BATCHES_PER_COMMIT = 500
"""…or once it holds this many batches: a catch-up of thousands of small files shows as it goes."""
CONTENT_LOST = (SourceStatus.TRUNCATED, SourceStatus.REPLACED)
_RETRIED_SQLSTATES = frozenset({"40P01", "40001"})
"""PostgreSQL's deadlock and serialization failures: another writer's transaction crossed ours."""


class _Shared:
    """The open shared transaction and what to undo or do once it ends."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.bytes = 0
        self.batches = 0
        self.saved: dict[int, tuple[dict[str, Any], dict[str, Any] | None]] = {}
        """id(row) → (the row, as it was before this transaction wrote it; None: made in it)."""
        self.committed: list[list[Record]] = []
        """Batches to classify once committed."""


class SharedTransactions:
    """The `Intake` methods that open, commit and undo shared transactions."""

    def __init__(self) -> None:
        self._shared: _Shared | None = None
        self._shared_number = 0
        self._reader: Engine | None = None
        """Counts the shared transactions: a tail read from the store in an earlier one is re-read."""

    @contextmanager
    def _sharing(self) -> Iterator[None]:
        """Everything stored inside shares transactions (nested: the outer one's)."""
        if self._shared is not None:
            yield
            return
        self._shared = _Shared()
        try:
            yield
            self._commit_shared()
        except BaseException:
            self._roll_back_shared()
            raise
        finally:
            self._shared = None

    @contextmanager
    def _store(self) -> Iterator[Connection]:
        """The shared transaction's connection (begun on first use), or a transaction of its own."""
        shared = self._shared
        if shared is None:
            with self.engine.begin() as conn:
                yield conn
            return
        if shared.conn is None:
            shared.conn = self.engine.connect()
            shared.conn.begin()
        yield shared.conn

    @contextmanager
    def _lookup(self) -> Iterator[Connection]:
        """A connection for reading. On SQLite, until the shared transaction has begun, one of
        a read-only engine: a transaction there takes the store's one write lock at once, and
        a writer that finds a file already read by another must not stall that one to find it
        out. A read that is stale by the time of a write is safe: the write is a swap on the
        row's version, or an insert that the unique index settles."""
        shared = self._shared
        if self.engine.dialect.name != "sqlite" or shared is None or shared.conn is not None:
            with self._store() as conn:
                yield conn
            return
        if self._reader is None:
            self._reader = open_store(self.engine.url.render_as_string(hide_password=False), read_only=True)
        with self._reader.connect() as conn:
            yield conn

    def _save(self, row: dict[str, Any], *, made: bool = False) -> None:
        """Remember the row as it is before this transaction writes it (`made`: it creates it)."""
        if self._shared is not None and id(row) not in self._shared.saved:
            self._shared.saved[id(row)] = (row, None if made else dict(row))

    def _stored(self, consumed: int, records: list[Record]) -> None:
        """A batch is written: classify it once committed; commit once the transaction is full."""
        shared = self._shared
        if shared is None:
            self._after_commit([records])
            return
        if records and self.live is not None:
            shared.committed.append(records)
        shared.bytes += consumed
        shared.batches += 1
        if shared.bytes >= self.batch_bytes or shared.batches >= BATCHES_PER_COMMIT:
            self._commit_shared()

    def _commit_shared(self) -> None:
        shared = self._shared
        if shared.conn is not None:
            try:
                shared.conn.commit()
            except BaseException:
                self._roll_back_shared()
                raise
            shared.conn.close()
        committed = shared.committed
        self._shared_number += 1
        self._shared.__init__()
        self._after_commit(committed)

    def _roll_back_shared(self) -> None:
        """Every row written in the failed transaction back as committed; tails of rows it made
        are closed (their files are met anew); parsers restart from their rows' state."""
        shared = self._shared
        if shared.conn is not None:
            try:
                shared.conn.rollback()
                shared.conn.close()
            except Exception:  # noqa: BLE001 — a connection already gone: nothing to roll back
                pass
        made = set()
        for key, (row, before) in shared.saved.items():
            if before is None:
                made.add(key)
            else:
                row.clear()
                row.update(before)
        for tail in list(self._tails.values()):
            if id(tail.row) in made:
                self._close(tail)
            elif id(tail.row) in shared.saved:
                tail.parser = self._parser(tail.row)
        self._shared_number += 1
        shared.__init__()

    def _after_commit(self, batches: list[list[Record]]) -> None:
        """The committed records to the live accounting, all at once (per batch, thousands of
        small files would refold and record their runs thousands of times)."""
        records = [record for batch in batches for record in batch]
        if self.live is not None and records:
            self._classify(records)

    def _classify(self, records: list) -> None:
        """Hand the committed batch to the live accounting; its failure never undoes the intake."""
        try:
            self.live.committed(records)
        except SQLAlchemyError as exc:
            log.error("live state not recorded (will retry): %s",
                      str(getattr(exc, "orig", None) or exc).splitlines()[0])
        except Exception:  # noqa: BLE001 — an accounting bug must not stop the intake
            log.exception("live state not recorded")

    def _reread(self, tail: Tail) -> bool:
        """The tail's row as the store has it now (another writer may have moved it on);
        False, the tail closed, when another writer found the file's content gone."""
        with self._store() as conn:
            fresh = source_row(conn, tail.row["id"])
        tail.current_in = self._shared_number
        if fresh is None or fresh["status"] in CONTENT_LOST:
            self._close(tail)
            return False
        if fresh["version"] != tail.row["version"]:
            tail.row.clear()
            tail.row.update(fresh)  # in place: the parser's file clock reads this dict
            tail.parser = self._parser(tail.row)
        return True

    def _retrying(self, action: Callable, *args: Any, attempts: int = 5) -> None:
        """Run `action` in shared transactions, again when another writer's transaction crossed
        it (a PostgreSQL deadlock or serialization failure: what was committed says where to go on)."""
        for attempt in range(attempts):
            try:
                with self._sharing():
                    action(*args)
                return
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) not in _RETRIED_SQLSTATES or attempt == attempts - 1:
                    raise
                log.info("another writer's transaction crossed ours; retrying")
                time.sleep(0.05 * (attempt + 1))
