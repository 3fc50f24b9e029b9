"""File → parser → store, exactly once.

Each followed file has a row in `source_files` holding its identity, the byte offset read
so far and its parser's state. A batch of whole lines is parsed and its records inserted
in ONE transaction with the new offset and state, only if the row is still at the version
read (a compare-and-swap, monitor/store/sources.py), so a process killed at any moment
resumes exactly where the last commit left it, and any number of writers share files:
nothing lost, nothing doubled. Files synced together share transactions
(monitor/sharing.py); a bounded number are held open (monitor/descriptors.py).

A file met for the first time becomes a source in monitor/new_files.py. Files change under
us in three ways, all recognised by identity (see monitor/sources.py) and handled in
monitor/rotation.py:
- renamed away (rotation): the same inode elsewhere — followed there if watched, else read
  through the descriptor we hold (while watching: until idle `linger_s`, as its writer may
  not have reopened its log), then left as `rotated`;
- truncated or rewritten in place (copy-truncate): the offset's bytes changed — the copy
  (same head, same bytes before our offset) continues from our offset, the file restarts;
- deleted: drained through the descriptor we hold, then left as `deleted`.
Bad lines (binary, invalid UTF-8, over-long, unparsable) are counted per file with the
first one kept as an example; they never stop the intake.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.descriptors import Descriptors
from monitor.escape import example
from monitor.live import Listener
from monitor.models import SourceStatus
from monitor.new_files import NewFiles
from monitor.parsers import BadLine, Parser, by_name
from monitor.rotation import Rotation
from monitor.sharing import SharedTransactions
from monitor.sources import (HEAD_BYTES, MAX_LINE_BYTES, RESCAN, Batch, ChangeFeed, Targets, TooLong, digest,
                             file_clock, head_hash, read_batch, tail_hash)
from monitor.store import insert_records, this_host
from monitor.store.sources import followed_offsets, followed_row, forget_unreadable, update_source

log = logging.getLogger("trainledger.intake")
FLUSHED = (SourceStatus.ACTIVE, SourceStatus.ROTATED, SourceStatus.DELETED)
"""Statuses whose parser's buffered lines (a traceback) are stored when the file goes idle."""


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A batch allocates thousands of small containers and frees them all, none in a cycle: the
    cyclic collector would only trace them over and over (~3 µs of an InternLM line's ~40)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass
class Tail:
    """A followed file: its descriptor and everything its row says, as last read or written."""

    row: dict[str, Any]
    path: str
    fd: int | None
    """None: closed while idle (monitor/descriptors.py), reopened by its path when it changes."""
    parser: Parser | None = None
    size: int = -1
    mtime_ns: int = -1
    last_growth: float = field(default_factory=time.monotonic)
    flushed: bool = True
    current_in: int = -1
    """The shared transaction in which the row was last read from (or written to) the store."""

    @property
    def key(self) -> tuple[int, int]:
        return self.row["device"], self.row["inode"]


class Intake(NewFiles, Rotation, SharedTransactions, Descriptors):
    """Brings files into the store. `ingest` once, or `watch` until stopped."""

    def __init__(self, engine: Engine, *, format: str | type[Parser] | None = None, host: str | None = None,
                 batch_bytes: int = 1 << 20, idle_flush_s: float = 5.0,
                 on_bytes: Callable[[int], None] | None = None, live: Listener | None = None,
                 live_tick_s: float = 5.0, linger_s: float = 300.0, max_open: int | None = None) -> None:
        self.engine = engine
        self.format = by_name(format) if isinstance(format, str) else format
        """Every new file is read as this format; None: sniffed per file."""
        self.host = host if host is not None else this_host()
        """Whose files these are: the store keeps each host's files apart (and parsers date
        records that name no host with it)."""
        self.batch_bytes = batch_bytes
        self.idle_flush_s = idle_flush_s
        self.on_bytes = on_bytes
        self.live = live
        """Told of each committed batch and each tick: the live accounting and the alerts
        (monitor/live.py Listeners); None: no one."""
        self.live_tick_s = live_tick_s
        self.linger_s = linger_s
        """While watching, a file renamed away or deleted is read on until idle this long."""
        self._following = False
        self._lingering: dict[tuple[int, int], Tail] = {}
        self.targets = Targets([])
        self._tails: dict[tuple[int, int], Tail] = {}
        self._by_path: dict[str, Tail] = {}
        self._waiting: dict[tuple[int, int], tuple[float, int]] = {}
        self._stop = threading.Event()
        SharedTransactions.__init__(self)
        Descriptors.__init__(self, max_open)

    # ---- entry points -------------------------------------------------------------------
    def ingest(self, targets: Targets) -> None:
        """Everything the targets hold now, to the end of each file (buffered records flushed)."""
        self.targets = targets
        try:
            self._retrying(self._reconcile)
            self._retrying(self._sync_all, targets.files(), True)
        finally:
            self.close()

    def watch(self, targets: Targets, stop: threading.Event, poll_s: float = 2.0) -> None:
        """Follow the targets until `stop` is set; a failing database is retried, not fatal."""
        self.targets, self._stop, self._following = targets, stop, True
        self._use_more_descriptors()
        feed = ChangeFeed(targets)
        feed.start()  # before catching up, so no change falls between the two
        try:
            paths: set[str] = set()
            self._safely(self._reconcile)
            self._safely(self._resume_lingering)
            next_scan = next_tick = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_scan or RESCAN in paths:
                    paths = set(targets.files()) | set(self._by_path)
                    next_scan = time.monotonic() + poll_s
                self._safely(self._sync_all, sorted(path for path in paths if path != RESCAN and (
                    path in self._by_path or targets.matches(path))))
                self._safely(self._flush_idle)
                self._safely(self._linger)
                if self.live is not None and time.monotonic() >= next_tick:
                    self._safely(self.live.tick, shared=False)  # a run gone silent turns stalled, then fault
                    next_tick = time.monotonic() + self.live_tick_s
                paths = feed.changed(timeout=min(0.5, poll_s, self.live_tick_s))
        finally:
            feed.stop()
            self.close()

    def pending_bytes(self, targets: Targets) -> int:
        """Bytes the targets hold beyond what is stored (for a progress bar)."""
        total = 0
        with self.engine.connect() as conn:
            offsets = followed_offsets(conn, self.host)
        for path in targets.files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            total += max(0, st.st_size - offsets.get((st.st_dev, st.st_ino), 0))
        return total

    def close(self) -> None:
        for tail in list(self._tails.values()):
            self._close(tail)
        if self._reader is not None:
            self._reader.dispose()
            self._reader = None

    def _sync_all(self, paths: list[str], final: bool = False) -> None:
        """Sync these paths in shared transactions (thousands of small files: not one commit
        each); a file that cannot be read is logged and skipped, the others go on."""
        with self._sharing():
            for path in paths:
                if self._stop.is_set():
                    break
                try:
                    self.sync(path, final=final)
                except OSError as exc:
                    log.error("%s (will retry)", exc)
                    if (tail := self._by_path.get(os.path.abspath(path))) is not None:
                        self._close(tail)
                if final and (tail := self._by_path.get(os.path.abspath(path))) is not None:
                    self._release(tail)  # read to its end: no descriptor needed any more

    def _safely(self, action: Callable, *args: Any, shared: bool = True) -> None:
        """The daemon's guard: an unreachable store or an unreadable file is logged, then
        retried on the next change or rescan; what was committed says where to resume. The
        intake's own actions (`shared`) store in shared transactions."""
        try:
            if shared:
                with self._sharing():
                    action(*args)
            else:
                action(*args)
        except SQLAlchemyError as exc:
            log.error("store error (will retry): %s", str(getattr(exc, "orig", None) or exc).splitlines()[0])
            self.close()
        except OSError as exc:
            log.error("%s (will retry)", exc)
            self.close()
        except Exception:  # noqa: BLE001 — a bug must not stop the watcher of every other file
            log.exception("unexpected error (will retry)")
            self.close()

    # ---- one path -----------------------------------------------------------------------
    def sync(self, path: str, *, final: bool = False) -> None:
        """Bring the file now at `path` up to date in the store."""
        path = os.path.abspath(path)
        old = self._by_path.get(path)
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if old is not None and (st is None or (st.st_dev, st.st_ino) != old.key):
            self._file_left(old)
        if st is None:
            return
        tail = self._tails.get((st.st_dev, st.st_ino))
        if tail is None:
            tail = self._open(path, final)
            if tail is None:
                return
        elif tail.path != path:
            self._by_path.pop(tail.path, None)
            self._lingering.pop(tail.key, None)  # back where we follow
            tail.path = path
        self._by_path[path] = tail
        self._advance(tail, final)

    def _open(self, path: str, final: bool) -> Tail | None:
        opened = self._open_file(path)
        if opened is None:
            return None
        fd, st = opened
        with self._lookup() as conn:
            row = followed_row(conn, self.host, st.st_dev, st.st_ino)
        if row is not None and row["status"] == SourceStatus.UNREADABLE:
            with self._store() as conn:
                forget_unreadable(conn, self.host, st.st_dev, st.st_ino)
            row = None
        if row is not None:
            if self._unchanged(fd, row):
                return self._track(row, path, fd)
            self._content_lost(row, SourceStatus.TRUNCATED)
        row = self._new_row(path, fd, st, final)
        if row is None:
            os.close(fd)
            return None
        return self._track(row, path, fd)

    def _track(self, row: dict[str, Any], path: str, fd: int) -> Tail:
        tail = Tail(row=row, path=path, fd=fd, parser=self._parser(row), current_in=self._shared_number)
        self._tails[tail.key] = tail
        self._by_path[path] = tail
        self._opened(tail)
        return tail

    def _parser(self, row: dict[str, Any]) -> Parser | None:
        if not row["parser"]:
            return None
        cls = self.format if self.format and self.format.name == row["parser"] else by_name(row["parser"])
        options: dict[str, Any] = {}
        if "clock" in inspect.signature(cls).parameters:
            options["clock"] = file_clock(row)
        parser = cls(run=row["run"], attempt_prefix=row["attempt_prefix"], host=self.host, **options)
        if row["parser_state"]:
            parser.set_state(row["parser_state"])
        return parser

    @staticmethod
    def _unchanged(fd: int, row: Any) -> bool:
        """Does the file still hold, up to the row's offset, the bytes the row has read? (Its
        size taken now: another writer may have read further than a size taken before the row.)"""
        return (os.fstat(fd).st_size >= row["offset"]
                and (not row["head_len"] or head_hash(fd, row["head_len"]) == row["head_hash"])
                and (not row["offset"] or tail_hash(fd, row["offset"]) == row["tail_hash"]))

    # ---- reading --------------------------------------------------------------------------
    def _advance(self, tail: Tail, final: bool) -> None:
        if tail.row["status"] == SourceStatus.COPY:
            return  # held until its original is truncated
        st = self._current_stat(tail, final)
        if st is None:
            return
        grew = (st.st_size, st.st_mtime_ns) != (tail.size, tail.mtime_ns)
        if grew and tail.current_in != self._shared_number:
            if not self._reread(tail):
                return  # another writer of this host found its content gone
            st = os.fstat(tail.fd)  # as of now: the row read may be further on than the stat above
        tail.size, tail.mtime_ns = st.st_size, st.st_mtime_ns
        if grew:
            tail.last_growth, tail.flushed = time.monotonic(), False
        if tail.parser is None:
            if grew or final:
                self._resniff(tail, final)
            return
        if grew and not self._unchanged(tail.fd, tail.row):
            self._start_over(tail, final)
            return
        while not self._stop.is_set():
            batch = read_batch(tail.fd, tail.row["offset"], self.batch_bytes, tail.row["tail_hash"])
            if batch is None:  # rewritten since the check above
                self._start_over(tail, final)
                return
            if not batch.lines:
                break
            consumed = batch.end - tail.row["offset"]
            if not self._commit(tail, batch):
                if self._tails.get(tail.key) is not tail:
                    return  # the row was retired by another writer
                continue  # another writer stored these lines first: on from where it stopped
            if self.on_bytes:
                self.on_bytes(consumed)
        if final and not self._stop.is_set():
            self._flush(tail)

    def _start_over(self, tail: Tail, final: bool) -> None:
        """The bytes read from this file are gone: its copy (if any) goes on, the file is new."""
        path = tail.path
        self._content_lost(tail.row, SourceStatus.TRUNCATED)
        self.sync(path, final=final)

    def _flush(self, tail: Tail) -> None:
        if not tail.flushed and tail.parser is not None and tail.row["status"] in FLUSHED:
            self._commit(tail, None)
        tail.flushed = True

    def _flush_idle(self) -> None:
        now = time.monotonic()
        with self._sharing():
            for tail in list(self._tails.values()):
                if not tail.flushed and now - tail.last_growth >= self.idle_flush_s:
                    self._flush(tail)

    def _commit(self, tail: Tail, batch: Batch | None) -> bool:
        """Parse the batch's lines (None: flush the parser) and store their records with the new
        offset, in one transaction; False when another writer had moved the file's row on
        (nothing stored: the tail is re-read from the store)."""
        with _collector_paused():
            return self._parse_and_store(tail, batch)

    def _parse_and_store(self, tail: Tail, batch: Batch | None) -> bool:
        row, parser = tail.row, tail.parser
        records, bad = [], []
        lineno = row["lines"]
        for raw in batch.lines if batch else ():
            lineno += 1
            if type(raw) is TooLong:
                bad.append((lineno, f"a line of {raw.length} bytes, longer than {MAX_LINE_BYTES}", b""))
                continue
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                records += parser.read(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                bad.append((lineno, f"invalid UTF-8 at byte {exc.start}", raw))
            except BadLine as exc:
                bad.append((lineno, str(exc) or "unreadable line", raw))
            except Exception as exc:  # noqa: BLE001 — a parser bug must not stop the intake
                bad.append((lineno, f"{parser.name} parser failed: {type(exc).__name__}: {exc}", raw))
        if batch is None:
            try:
                records += parser.drain()
            except Exception as exc:  # noqa: BLE001
                log.error("%s: %s parser failed to flush: %s: %s", tail.path, parser.name, type(exc).__name__, exc)
            if not records and parser.get_state() == row["parser_state"]:
                return True  # nothing was buffered: nothing to store
        values: dict[str, Any] = dict(path=tail.path, lines=lineno, records=row["records"] + len(records),
                                      parser_state=parser.get_state(), size=tail.size, updated=time.time())
        if batch is not None:
            values.update(offset=batch.end, tail_hash=batch.tail_hash)
            if row["head_len"] < HEAD_BYTES and batch.end > row["head_len"]:
                values["head_len"] = min(batch.end, HEAD_BYTES)
                values["head_hash"] = digest(batch.head[:values["head_len"]])
        if bad:
            values["bad_lines"] = row["bad_lines"] + len(bad)
            if row["first_bad_line"] is None:
                values.update(first_bad_line=bad[0][0], first_bad_reason=example(bad[0][1]),
                              first_bad_example=example(bad[0][2]))
        if records:
            values["last_record_ts"] = max(r.ts for r in records)
        self._save(row)
        try:
            with self._store() as conn:  # the swap first: a writer that lost it inserts nothing
                version = update_source(conn, row["id"], expected_version=row["version"], **values)
                if version is not None:
                    insert_records(conn, records, source_id=row["id"], first_seq=row["records"])
        except BaseException:
            tail.parser = self._parser(row)  # back to the state committed with the offset
            raise
        if version is None:
            log.debug("%s: another writer stored these lines first", tail.path)
            self._reread(tail)
            return False
        if "first_bad_line" in values:
            log.warning("%s:%d: bad line skipped (%s); `trainledger status` counts them",
                        tail.path, values["first_bad_line"], values["first_bad_reason"])
        consumed = batch.end - row["offset"] if batch else 0
        row.update(values, version=version)
        tail.current_in = self._shared_number
        self._stored(consumed, records)
        return True
