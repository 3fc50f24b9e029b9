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

from monitor.models import SourceStatus
from monitor.sources import HEAD_BYTES, head_hash, same_file_in, siblings, tail_hash
from monitor.store.sources import (copy_candidates, followed_row, held_copies, rows_with_status, source_row,
                                   update_source)

if TYPE_CHECKING:
    from monitor.intake import Tail

log = logging.getLogger("trainledger.intake")


class Rotation:
    """The `Intake` methods for files that left their path or lost their content."""

    def _copied_from(self, path: str, fd: int, st: os.stat_result, patience: bool) -> dict[str, Any] | str | None:
        """The row of the file this one is a copy of (same head, same bytes before its offset),
        "wait" while it may still be being copied, or None for a genuinely new file."""
        heads: dict[int, str] = {}

        def head_of(length: int) -> str:
            if length not in heads:
                heads[length] = head_hash(fd, length)
            return heads[length]

        folder = os.path.dirname(path)
        with self._lookup() as conn:  # copy-truncate leaves its copy beside the original
            rows = copy_candidates(conn, self.host, st.st_dev, st.st_ino, folder, min(st.st_size, HEAD_BYTES), head_of)
        for row in rows:
            if st.st_size < row["offset"]:
                return "wait" if patience else None
            if tail_hash(fd, row["offset"]) == row["tail_hash"]:
                return row
        if patience and st.st_size > 0:  # shorter than an original's head: still being copied?
            for original in list(self._tails.values()):
                if (original.fd is not None and original.row["head_len"] > st.st_size
                        and os.path.dirname(original.path) == folder and original.key != (st.st_dev, st.st_ino)
                        and os.pread(original.fd, st.st_size, 0) == os.pread(fd, st.st_size, 0)):
                    return "wait"
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
        if tail.row["status"] == SourceStatus.COPY:
            self._close(tail)
            return
        if tail.fd is None and not (moved_to and self._reopen(tail, moved_to)):
            self._retire(tail.row, SourceStatus.DELETED)  # went while closed (idle, read to its end)
            self._close(tail)
            return
        unchanged = self._unchanged(tail.fd, tail.row)
        if unchanged and self._following and not self._stop.is_set():
            tail.path = moved_to or tail.path
            self._start_lingering(tail, SourceStatus.ROTATED if moved_to else SourceStatus.DELETED)
            return
        if unchanged:
            self._advance(tail, final=True)  # drain what it still holds, through our descriptor
            if not self._stop.is_set():  # stopped midway: the next start drains the rest
                self._retire(tail.row, SourceStatus.ROTATED if moved_to else SourceStatus.DELETED)
        else:
            self._content_lost(tail.row, SourceStatus.TRUNCATED)
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
                if not self._unchanged(tail.fd, tail.row):
                    self._close(tail)  # rewritten in place: what it held was read
                    continue
                self._advance(tail, final=False)
            if time.monotonic() - tail.last_growth >= self.linger_s:
                self._flush(tail)
                self._close(tail)

    def _resume_lingering(self) -> None:
        """At start: a file renamed away less than `linger_s` before the watcher stopped (or was
        killed) may still be written to: it lingers again, found by its inode in its folder."""
        with self._store() as conn:
            rows = rows_with_status(conn, self.host, (SourceStatus.ROTATED,), parsed=True,
                                    updated_since=time.time() - self.linger_s)
        for row in rows:
            path = same_file_in(os.path.dirname(row["path"]), row["device"], row["inode"])
            if path is None or (row["device"], row["inode"]) in self._tails or self.targets.matches(path):
                continue  # gone, already held, or followed by its name anyway
            opened = self._open_file(path)
            if opened is None:
                continue
            fd, st = opened
            if (st.st_dev, st.st_ino) != (row["device"], row["inode"]) or not self._unchanged(fd, row):
                os.close(fd)
                continue
            tail = self._track(row, path, fd)
            self._by_path.pop(path, None)
            self._lingering[tail.key] = tail

    def _content_lost(self, row: dict[str, Any], status: SourceStatus) -> None:
        """The bytes after this row's offset are gone from its file (copy-truncate, rewrite):
        hand its reading over to a copy of it, if there is one, and retire the row."""
        tail = self._tails.get((row["device"], row["inode"]))
        if tail is not None:
            self._close(tail)
        held = self._hand_over(row, status)
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
                opened = self._open_file(path)
                if opened is None:
                    continue
                fd, _ = opened
                with self._store() as conn:
                    known = followed_row(conn, self.host, st.st_dev, st.st_ino)
                is_copy = known is None and self._unchanged(fd, row)
                os.close(fd)
                if is_copy:
                    log.info("%s: %s; its copy %s continues from byte %d", row["path"], status, path, row["offset"])
                    self.sync(path, final=True)
                    return

    @staticmethod
    def _continuation(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in ("offset", "tail_hash", "lines", "parser", "parser_state", "run", "attempt_prefix")}

    def _retire(self, row: dict[str, Any], status: SourceStatus) -> None:
        """The row no longer follows its file; a copy waiting for it goes on from where it
        stopped (nothing to add: the original was read to its end)."""
        self._hand_over(row, status)

    def _hand_over(self, row: dict[str, Any], status: SourceStatus) -> list[tuple[int, str]]:
        """Retire the row with `status` and activate its held copies from its offset, as the
        store has it (another writer of this host may have read further than `row` says);
        the copies, (id, path)."""
        self._save(row)
        with self._store() as conn:
            fresh = source_row(conn, row["id"]) or row
            row.update(fresh)
            held = held_copies(conn, row["id"])
            for copy_id, _ in held:
                update_source(conn, copy_id, status=SourceStatus.ACTIVE, **self._continuation(row))
            row["version"] = update_source(conn, row["id"], status=status, updated=time.time())
        row["status"] = status
        return held

    def _reconcile(self) -> None:
        """At start: rows of followed paths whose file went away while we were not running."""
        with self._store() as conn:
            rows = rows_with_status(conn, self.host, (SourceStatus.ACTIVE, SourceStatus.UNKNOWN_FORMAT))
        for row in rows:
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
            if moved_to and (opened := self._open_file(moved_to)):
                tail = self._track(row, moved_to, opened[0])
                self._by_path.pop(moved_to, None)
                if self._unchanged(tail.fd, row):
                    if self._following and not self._stop.is_set():
                        self._start_lingering(tail, SourceStatus.ROTATED)  # not closed, to be reopened at once
                        continue
                    self._advance(tail, final=True)
                    if not self._stop.is_set():
                        self._retire(tail.row, SourceStatus.ROTATED)
                    self._close(tail)
                    continue
                self._close(tail)
            self._content_lost(row, SourceStatus.DELETED)
