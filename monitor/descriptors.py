"""How many files the intake holds open: a bounded number, whatever it follows.

`watch` of a folder of thousands of logs once held a descriptor per file and, past the
common soft limit of 1,024, silently stopped storing what was appended. Now it raises its
soft limit toward the hard one at start (and says so), holds at most `max_open` descriptors,
closes the least recently grown idle files beyond that (their rows say where to go on; a
closed file is reopened by its path when it changes), and a file it cannot open (no
permission, no descriptor left) is logged once and listed by `trainledger status` as
`unreadable` until it can be read.

A mixin of `Intake` (monitor/intake.py).
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import time
from typing import TYPE_CHECKING

from monitor.sources import open_file
from monitor.store.sources import mark_unreadable

if TYPE_CHECKING:
    from monitor.intake import Tail

log = logging.getLogger("trainledger.intake")
WANTED_OPEN_FILES = 65_536
"""The soft limit `watch` asks for (never above the hard one)."""
_RESERVED = 64
"""Descriptors left for the store's connections, inotify, logs and the interpreter."""


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE toward its hard limit: (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, WANTED_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return soft, wanted
        except (ValueError, OSError):
            pass
    return soft, soft


def open_file_budget() -> int:
    """How many followed files to hold open under the current soft limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = WANTED_OPEN_FILES
    return max(16, min((soft - _RESERVED) // 2, 4096))


class Descriptors:
    """The `Intake` methods that open, close and reopen followed files."""

    def __init__(self, max_open: int | None) -> None:
        self.max_open = max_open if max_open is not None else open_file_budget()
        self._open_count = 0
        self._unopenable: dict[str, int] = {}
        """Files that could not be opened, with the errno (logged once each)."""

    def _use_more_descriptors(self) -> None:
        """At `watch` start: the soft limit raised toward the hard one, and said so."""
        before, after = raise_open_file_limit()
        if after != before:
            log.info("open-file limit raised from %d to %d", before, after)
        self.max_open = open_file_budget()
        log.info("at most %d followed files held open at once (idle ones are closed and reopened on change)",
                 self.max_open)

    def _open_file(self, path: str) -> tuple[int, os.stat_result] | None:
        """A descriptor on `path` and its stat, within the budget; None (logged once, and
        shown in the store as `unreadable`) when it cannot be opened or is not a regular file."""
        if self._open_count >= self.max_open:
            self._close_idle()
        try:
            opened = open_file(path)
        except OSError as exc:
            if exc.errno == errno.EMFILE and self._close_idle():
                return self._open_file(path)
            self._cannot_open(path, exc)
            return None
        if self._unopenable.pop(path, None) is not None:
            log.info("%s: readable again", path)
        return opened

    def _cannot_open(self, path: str, exc: OSError) -> None:
        if exc.errno == errno.ENOENT or self._unopenable.get(path) == exc.errno:
            return  # gone since listed; or said already
        self._unopenable[path] = exc.errno
        log.error("%s: cannot open (%s); `trainledger status` lists it, and it is retried when it changes",
                  path, exc.strerror)
        try:
            st = os.stat(path)
        except OSError:
            return
        with self._store() as conn:
            mark_unreadable(conn, self.host, path, st, f"cannot open: {exc.strerror}", time.time())

    def _opened(self, tail: Tail) -> None:
        self._open_count += 1

    def _close(self, tail: Tail) -> None:
        if self._lingering.get(tail.key) is tail:
            del self._lingering[tail.key]
        if self._tails.get(tail.key) is tail:
            del self._tails[tail.key]
        if self._by_path.get(tail.path) is tail:
            del self._by_path[tail.path]
        self._release(tail)

    def _release(self, tail: Tail) -> None:
        """Close the tail's descriptor; the tail (and its row) stays followed."""
        if tail.fd is None:
            return
        try:
            os.close(tail.fd)
        except OSError:
            pass
        tail.fd = None
        self._open_count -= 1

    def _reopen(self, tail: Tail, path: str) -> bool:
        """The tail's file again, at `path`, if it is still there (the same device and inode)."""
        opened = self._open_file(path)
        if opened is None:
            return False
        fd, st = opened
        if (st.st_dev, st.st_ino) != tail.key:
            os.close(fd)
            return False
        tail.fd = fd
        self._opened(tail)
        return True

    def _current_stat(self, tail: Tail, final: bool) -> os.stat_result | None:
        """The tail's file as it is now, reopened if it was closed and has changed since; None:
        closed and unchanged (or gone from its path: `sync` sees it left)."""
        if tail.fd is not None:
            return os.fstat(tail.fd)
        try:
            st = os.stat(tail.path)
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != tail.key:
            return None
        if (st.st_size, st.st_mtime_ns) == (tail.size, tail.mtime_ns) and not final:
            return None
        return os.fstat(tail.fd) if self._reopen(tail, tail.path) else None

    def _close_idle(self) -> bool:
        """Close the least recently grown quarter of the open followed files (never one that
        lingers: it is read through its descriptor); whether any was closed."""
        idle = sorted((tail for tail in self._tails.values()
                       if tail.fd is not None and tail.key not in self._lingering),
                      key=lambda tail: tail.last_growth)
        for tail in idle[:max(1, len(idle) // 4)]:
            self._release(tail)
        return bool(idle)
