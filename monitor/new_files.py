"""How a file the intake meets for the first time becomes a source: its format sniffed (or
refused, or recognised later), its run named, a copy-truncate copy recognised, a document's
state carried over.

A mixin of `Intake` (monitor/intake.py), like `Rotation` (monitor/rotation.py).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from monitor.escape import example
from monitor.models import SourceStatus
from monitor.parsers import Parser, registry, sniff
from monitor.sources import head_lines, run_name
from monitor.store.sources import add_source, followed_row, last_parser_state, new_source_row, update_source

if TYPE_CHECKING:
    from monitor.intake import Tail

log = logging.getLogger("trainledger.intake")
COPY_WAIT_S = 30.0
"""How long a file that starts like a known one but is still shorter may be a copy in progress."""


class NewFiles:
    """The `Intake` methods for a file not yet in the store."""

    def _new_row(self, path: str, fd: int, st: os.stat_result, final: bool) -> dict[str, Any] | None:
        key = (st.st_dev, st.st_ino)
        since, size = self._waiting.get(key, (time.monotonic(), -1))
        if size != st.st_size:
            since = time.monotonic()
        self._waiting[key] = (since, st.st_size)
        settled = final or time.monotonic() - since >= self.idle_flush_s
        origin = self._copied_from(path, fd, st, patience=not final and time.monotonic() - since < COPY_WAIT_S)
        if origin == "wait":
            return None
        now = time.time()
        base = dict(host=self.host, path=path, device=st.st_dev, inode=st.st_ino, head_len=0, head_hash="", offset=0,
                    tail_hash="", size=st.st_size, lines=0, records=0, status=SourceStatus.ACTIVE, bad_lines=0,
                    first_seen=now, updated=now, first_mtime=st.st_mtime, first_size=st.st_size)
        if origin is not None:  # a copy-truncate copy: it continues the original's reading
            values = dict(base, **{k: origin[k] for k in ("head_len", "head_hash", "offset", "tail_hash", "lines",
                                                          "parser", "parser_state", "run", "attempt_prefix")},
                          status=SourceStatus.COPY if origin["status"] == SourceStatus.ACTIVE else SourceStatus.ACTIVE,
                          copy_of=origin["id"])
            log.info("%s: a copy of %s, read from byte %d on", path, origin["path"], origin["offset"])
        else:
            lines, complete = head_lines(fd)
            if not any(line.strip() for line in lines) and not final:
                return None
            parser = self.format or sniff(lines)
            if parser is None and not (complete or settled):
                return None  # too little to tell yet
            values = dict(base, parser=parser.name if parser else None,
                          run=run_name(path), attempt_prefix="")
            if parser is None:
                values.update(self._unknown_format(lines))
            else:
                values.update(self._carried_over(parser, values["run"]))
        self._waiting.pop(key, None)
        with self._store() as conn:
            values["id"] = add_source(conn, **values)
            winner = followed_row(conn, self.host, st.st_dev, st.st_ino) if values["id"] is None else None
        if values["id"] is None:  # another writer made this file's row first: go on from it, and
            if self._shared is not None:  # commit at once, so as not to hold that writer up
                self._commit_shared()
            return winner
        with self._store() as conn:
            values["version"] = 0
            if not values["attempt_prefix"]:
                values["attempt_prefix"] = f"{os.path.basename(path)}:{values['id']}"
                values["version"] = update_source(conn, values["id"], attempt_prefix=values["attempt_prefix"])
        row = new_source_row()
        row.update(values)
        self._save(row, made=True)
        return row

    def _carried_over(self, parser: type[Parser], run: str) -> dict[str, Any]:
        """The parser state and attempt names a new file takes over from the run's last file in
        its format, where the format says so (`Parser.carried_over`); else nothing."""
        if parser.carried_over.__func__ is Parser.carried_over.__func__:
            return {}  # the format never carries over: no need to look
        with self._lookup() as conn:
            last = last_parser_state(conn, self.host, parser.name, run)
        state = parser.carried_over(last[0]) if last is not None else None
        return {} if state is None else {"parser_state": state, "attempt_prefix": last[1]}

    def _unknown_format(self, lines: list[str]) -> dict[str, Any]:
        first = next((line for line in lines if line.strip()), "")
        known = ", ".join(p.name for p in registry())
        return dict(status=SourceStatus.UNKNOWN_FORMAT, bad_lines=len(lines), first_bad_line=1,
                    first_bad_reason=f"unknown log format (known: {known}; choose one with --format)",
                    first_bad_example=example(first))

    def _resniff(self, tail: Tail, final: bool) -> None:
        lines, complete = head_lines(tail.fd)
        parser = sniff(lines)
        if parser is None:
            return
        values = dict(parser=parser.name, status=SourceStatus.ACTIVE, bad_lines=0, first_bad_line=None,
                      first_bad_reason=None, first_bad_example=None, updated=time.time(),
                      **self._carried_over(parser, tail.row["run"]))
        self._save(tail.row)
        with self._store() as conn:
            version = update_source(conn, tail.row["id"], expected_version=tail.row["version"], **values)
        if version is None:
            if self._reread(tail):
                self._advance(tail, final)
            return
        log.info("%s: recognised as %s after all", tail.path, parser.name)
        tail.row.update(values, version=version)
        tail.parser = self._parser(tail.row)
        self._advance(tail, final)
