"""How the intake follows a file that moved, was truncated, copied or deleted.

A mixin of `Intake` (monitor/intake.py), apart because it is the delicate part: every case
hands a source row's reading over — to the same inode elsewhere, to a copy-truncate copy, or
to nobody — without reading any byte twice or skipping one that was still there.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from monitor.models import SourceFile
from monitor.sources import head_hash, open_file, same_file_in, siblings, tail_hash
from monitor.store import update_source

if TYPE_CHECKING:
    from monitor.intake import Tail

log = logging.getLogger("trainledger.intake")
_SOURCES = SourceFile.__table__
FOLLOWED = ("active", "unknown_format", "copy", "rotated")
"""Statuses whose row still describes the file at (device, inode)."""


class Rotation:
    """The `Intake` methods for files that left their path or lost their content."""

    def _copied_from(self, path: str, fd: int, st: os.stat_result, patience: bool) -> dict[str, Any] | str | None:
        """The row of the file this one is a copy of (same head, same bytes before its offset),
        "wait" while it may still be being copied, or None for a genuinely new file."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_SOURCES).where(
                _SOURCES.c.head_len > 0, _SOURCES.c.parser.is_not(None),
                _SOURCES.c.status.in_(("active", "rotated", "truncated", "replaced")),
                ~((_SOURCES.c.device == st.st_dev) & (_SOURCES.c.inode == st.st_ino)),
            ).order_by(_SOURCES.c.id.desc())).mappings().all()
        heads: dict[int, str] = {}
        folder = os.path.dirname(path)
        for row in rows:
            if os.path.dirname(row["path"]) != folder:
                continue  # copy-truncate leaves its copy beside the original
            if st.st_size < row["head_len"]:  # too short to tell by hash: compare with the original
                original = self._tails.get((row["device"], row["inode"]))
                if (patience and original is not None and st.st_size > 0
                        and os.pread(original.fd, st.st_size, 0) == os.pread(fd, st.st_size, 0)):
                    return "wait"
                continue
            if row["head_len"] not in heads:
                heads[row["head_len"]] = head_hash(fd, row["head_len"])
            if heads[row["head_len"]] != row["head_hash"]:
                continue
            if st.st_size < row["offset"]:
                return "wait" if patience else None
            if tail_hash(fd, row["offset"]) == row["tail_hash"]:
                return dict(row)
        return None

    # ---- files that left or changed ---------------------------------------------------------
    def _file_left(self, tail: Tail) -> None:
        """The path no longer holds this file: follow it, drain it or find its copy."""
        self._by_path.pop(tail.path, None)
        moved_to = same_file_in(os.path.dirname(tail.path), *tail.key)
        if moved_to and self.targets.matches(moved_to):
            tail.path = moved_to  # renamed within what we follow: it goes on there
            self._by_path[moved_to] = tail
            self._advance(tail, final=False)
            return
        if tail.row["status"] == "copy":
            self._close(tail)
            return
        unchanged = self._unchanged(tail.fd, os.fstat(tail.fd).st_size, tail.row)
        if unchanged and self._following and not self._stop.is_set():
            tail.path = moved_to or tail.path
            self._start_lingering(tail, "rotated" if moved_to else "deleted")
            return
        if unchanged:
            self._advance(tail, final=True)  # drain what it still holds, through our descriptor
            if not self._stop.is_set():  # stopped midway: the next start drains the rest
                self._retire(tail.row, "rotated" if moved_to else "deleted")
        else:
            self._content_lost(tail.row, "truncated")
        self._close(tail)

    def _start_lingering(self, tail: Tail, status: str) -> None:
        """Retire the row, but read on through our descriptor until idle (`_linger`): the file's
        writer may not have reopened its log yet."""
        self._retire(tail.row, status)
        self._lingering[tail.key] = tail
        self._advance(tail, final=False)

    def _linger(self) -> None:
        """A file renamed away or deleted still takes the lines of a writer that has not reopened
        its log (`>> train.log`, a handler that rotates late): read through our descriptor until
        it has been idle `linger_s`, then stored to its end and let go."""
        for tail in list(self._lingering.values()):
            st = os.fstat(tail.fd)
            if (st.st_size, st.st_mtime_ns) != (tail.size, tail.mtime_ns):  # hashed only when it changed
                if not self._unchanged(tail.fd, st.st_size, tail.row):
                    self._close(tail)  # rewritten in place: what it held was read
                    continue
                self._advance(tail, final=False)
            if time.monotonic() - tail.last_growth >= self.linger_s:
                self._flush(tail)
                self._close(tail)

    def _resume_lingering(self) -> None:
        """At start: a file renamed away less than `linger_s` before the watcher stopped (or was
        killed) may still be written to: it lingers again, found by its inode in its folder."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_SOURCES).where(
                _SOURCES.c.status == "rotated", _SOURCES.c.parser.is_not(None),
                _SOURCES.c.updated >= time.time() - self.linger_s)).mappings().all()
        for row in map(dict, rows):
            path = same_file_in(os.path.dirname(row["path"]), row["device"], row["inode"])
            if path is None or (row["device"], row["inode"]) in self._tails or self.targets.matches(path):
                continue  # gone, already held, or followed by its name anyway
            opened = open_file(path)
            if opened is None:
                continue
            fd, st = opened
            if (st.st_dev, st.st_ino) != (row["device"], row["inode"]) or not self._unchanged(fd, st.st_size, row):
                os.close(fd)
                continue
            tail = self._track(row, path, fd)
            self._by_path.pop(path, None)
            self._lingering[tail.key] = tail

    def _content_lost(self, row: dict[str, Any], status: str) -> None:
        """The bytes after this row's offset are gone from its file (copy-truncate, rewrite):
        hand its reading over to a copy of it, if there is one, and retire the row."""
        tail = self._tails.get((row["device"], row["inode"]))
        if tail is not None:
            self._close(tail)
        with self.engine.begin() as conn:
            held = conn.execute(select(_SOURCES.c.id, _SOURCES.c.path).where(
                _SOURCES.c.copy_of == row["id"], _SOURCES.c.status == "copy")).all()
            for copy_id, _ in held:
                update_source(conn, copy_id, status="active", **self._continuation(row))
            update_source(conn, row["id"], status=status, updated=time.time())
        for copy_id, copy_path in held:
            copy_tail = next((t for t in self._tails.values() if t.row["id"] == copy_id), None)
            if copy_tail is not None:
                self._close(copy_tail)
            log.info("%s: %s; its copy %s continues from byte %d", row["path"], status, copy_path, row["offset"])
            self.sync(copy_path, final=True)
        if not held:  # a copy not seen yet, beside the original (logrotate's train.log.1)
            for path, st in siblings(os.path.dirname(row["path"])):
                if (st.st_dev, st.st_ino) in self._tails or (st.st_dev, st.st_ino) == (row["device"], row["inode"]):
                    continue
                opened = open_file(path)
                if opened is None:
                    continue
                fd, _ = opened
                with self.engine.connect() as conn:
                    known = conn.execute(select(_SOURCES.c.id).where(
                        _SOURCES.c.device == st.st_dev, _SOURCES.c.inode == st.st_ino,
                        _SOURCES.c.status.in_(FOLLOWED))).first()
                is_copy = known is None and self._unchanged(fd, st.st_size, row)
                os.close(fd)
                if is_copy:
                    log.info("%s: %s; its copy %s continues from byte %d", row["path"], status, path, row["offset"])
                    self.sync(path, final=True)
                    return

    @staticmethod
    def _continuation(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in ("offset", "tail_hash", "lines", "parser", "parser_state", "run", "attempt_prefix")}

    def _retire(self, row: dict[str, Any], status: str) -> None:
        with self.engine.begin() as conn:
            held = conn.execute(select(_SOURCES.c.id).where(
                _SOURCES.c.copy_of == row["id"], _SOURCES.c.status == "copy")).scalars().all()
            for copy_id in held:  # nothing to add: the original was read to its end
                update_source(conn, copy_id, status="active", **self._continuation(row))
            update_source(conn, row["id"], status=status, updated=time.time())
        row["status"] = status

    def _reconcile(self) -> None:
        """At start: rows of followed paths whose file went away while we were not running."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_SOURCES).where(_SOURCES.c.status.in_(("active", "unknown_format")))
                                .order_by(_SOURCES.c.id)).mappings().all()
        for row in map(dict, rows):
            if not self.targets.matches(row["path"]):
                continue
            try:
                st = os.stat(row["path"])
                if (st.st_dev, st.st_ino) == (row["device"], row["inode"]):
                    continue  # the same file: `sync` checks its content
            except OSError:
                pass
            moved_to = same_file_in(os.path.dirname(row["path"]), row["device"], row["inode"])
            if moved_to and self.targets.matches(moved_to):
                continue  # `sync` finds it by inode at its new name
            if moved_to and (opened := open_file(moved_to)):
                tail = self._track(row, moved_to, opened[0])
                self._by_path.pop(moved_to, None)
                if self._unchanged(tail.fd, os.fstat(tail.fd).st_size, row):
                    if self._following and not self._stop.is_set():
                        self._start_lingering(tail, "rotated")  # not closed, to be reopened at once
                        continue
                    self._advance(tail, final=True)
                    if not self._stop.is_set():
                        self._retire(tail.row, "rotated")
                    self._close(tail)
                    continue
                self._close(tail)
            self._content_lost(row, "deleted")
