"""The parser contract: one module per log format, each a `Parser` subclass.

A parser turns complete lines (newline stripped, CR stripped) of one file into normalised
`Record`s. It is stateful (multi-line tracebacks, the attempt counter, the last step seen)
and that state round-trips through `get_state`/`set_state` as plain JSON, because the intake
commits it in the same transaction as the file offset: after a crash, parsing resumes exactly.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from monitor.records import Record, impossible_time


class BadLine(ValueError):
    """A line this parser cannot read (garbage, truncated JSON, …): counted, never fatal."""


class Parser:
    name: ClassVar[str]

    def __init__(self, *, run: str, attempt_prefix: str, host: str = "") -> None:
        """`run` is the fallback run id (the log's output folder) for formats that carry none;
        `attempt_prefix` identifies the file, so attempts of different files never collide."""
        self.run = run
        self.attempt_prefix = attempt_prefix
        self.host = host

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        """Confidence 0..1 that a file starting with these lines is in this format."""
        raise NotImplementedError

    def read(self, line: str) -> list[Record]:
        """What the intake calls: `feed`, then `plausible` on its records (one check for every format)."""
        return plausible(self.feed(line))

    def drain(self) -> list[Record]:
        """`flush`, checked like `read`."""
        return plausible(self.flush())

    def feed(self, line: str) -> list[Record]:
        """Records completed by this line; raise BadLine for an unreadable line."""
        raise NotImplementedError

    def flush(self) -> list[Record]:
        """Records still buffered (e.g. a traceback) when the file ends or goes idle."""
        return []

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def carried_over(cls, state: dict[str, Any]) -> dict[str, Any] | None:
        """The state a new file of the same run starts from, given the state of the run's last
        file in this format; None (here: always) to read it afresh. A format whose files are
        successive versions of one document (trainer_state.json) carries over what was read."""
        return None


def plausible(records: list[Record]) -> list[Record]:
    """The records, or BadLine for the first whose time cannot be true (`impossible_time`).
    One such record (a `ts` in milliseconds, say) would otherwise be stored and break every
    ledger and live state of its run."""
    if not records:
        return records
    now = time.time()
    for record in records:
        if (why := impossible_time(record.ts, now)) is not None:
            raise BadLine(f"{record.kind} record with an impossible ts {record.ts!r}: {why}")
    return records
