"""The normalised record: what every parser produces, the store keeps, and accounting reads.

It is the event schema v1 record (see eventschema/ and docs/events.md) as a typed value.
After a parser, nothing knows which trainer wrote the line: foreign formats map their
lines onto the same kinds (a CUDA OOM traceback becomes a `fault` with cause `oom`,
a KeyboardInterrupt a `stop`, and so on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from eventschema import COMMON_FIELDS


@dataclass(slots=True)
class Record:
    """Treat as immutable once made. Not `frozen=True`: a frozen dataclass sets each field through
    `object.__setattr__`, 1.26 µs to build one against 0.50 µs, and a backlog builds millions."""

    kind: str
    run: str
    attempt: str
    ts: float
    host: str = ""
    rank: int = 0
    step: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    """Every kind-specific field of the schema except `step`."""

    @classmethod
    def from_event(cls, event: dict[str, Any], host: str = "") -> Record:
        """The record of a schema-v1 event dict, which it takes over as its fields (the common
        fields popped, the rest not copied: a large backlog's hot path); `host` where the event
        names none."""
        pop = event.pop
        for name in _UNREAD_COMMON:
            pop(name, None)
        return cls(kind=pop("kind"), run=pop("run"), attempt=pop("attempt"), ts=float(pop("ts")),
                   host=pop("host", host), rank=int(pop("rank", 0)), step=pop("step", None), fields=event)

    def to_event(self) -> dict[str, Any]:
        event = {"v": 1, "kind": self.kind, "run": self.run, "attempt": self.attempt,
                 "ts": self.ts, "host": self.host, "rank": self.rank, **self.fields}
        if self.step is not None:
            event["step"] = self.step
        return event


_UNREAD_COMMON = tuple(name for name in COMMON_FIELDS if name not in ("kind", "run", "attempt", "ts", "host", "rank"))
"""Common fields with no place on a Record (the schema version `v`)."""


EARLIEST_TS = 946_684_800.0
"""2000-01-01 00:00 UTC: no training run this product follows wrote a record before it."""
FUTURE_SLACK_S = 86_400.0
"""How far ahead of this host's clock a record may be (a node whose clock runs ahead)."""


def impossible_time(ts: float, now: float) -> str | None:
    """Why a record's `ts` cannot be true at `now` (before 2000, more than a day ahead, not a
    number), or None when it can."""
    latest = now + FUTURE_SLACK_S
    if EARLIEST_TS <= ts <= latest:  # NaN fails too
        return None
    if math.isnan(ts):
        return "not a number"
    if ts < EARLIEST_TS:
        return "before 2000-01-01 (seconds since 1970 expected)"
    if ts / 1000 <= latest:
        return "more than a day ahead of this host's clock (milliseconds? seconds since 1970 expected)"
    return "more than a day ahead of this host's clock"


class PossibleTimes:
    """The records whose time can be true, streamed; `dropped` counts the others once iterated.
    A store written before times were checked may hold such records, and one would break every
    ledger of its run."""

    def __init__(self, records: Iterable[Record], now: float) -> None:
        self.records, self.latest, self.dropped = records, now + FUTURE_SLACK_S, 0

    def __iter__(self) -> Iterator[Record]:
        for record in self.records:
            if EARLIEST_TS <= record.ts <= self.latest:
                yield record
            else:
                self.dropped += 1


def with_possible_times(records: Iterable[Record], now: float) -> list[Record]:
    """PossibleTimes, as a list."""
    return list(PossibleTimes(records, now))
