"""Our own format: one event-schema v1 record per line (what `trainer/` writes).

Checked here, cheaply, per line: it is a JSON object of schema version 1 with a known kind,
the common fields have the right types and the kind's required fields are present. Full
JSON-Schema validation (`eventschema.errors`) is too slow for a million-line backlog and is
the trainer's tests' job. A truncated or non-JSON line is a `BadLine`.
"""

from __future__ import annotations

from typing import Any

import orjson

from eventschema import KINDS, SCHEMA_VERSION, schema
from monitor.parsers.base import BadLine, Parser
from monitor.records import Record

_REQUIRED_BY_KIND: dict[str, tuple[str, ...]] = {
    kind: tuple(schema()["$defs"][kind].get("required", ())) for kind in KINDS
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_event(line: str | bytes) -> dict[str, Any]:
    """One JSONL line → the event dict, or BadLine saying what is wrong with it."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadLine(f"not JSON (truncated?): {exc}") from None
    if not isinstance(event, dict):
        raise BadLine(f"not a JSON object but {type(event).__name__}")
    version = event.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise BadLine(f"unsupported schema version v={version!r}")
    kind = event.get("kind")
    if kind not in KINDS:
        raise BadLine(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    for name in ("run", "attempt"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise BadLine(f"{kind} record without a non-empty string {name!r}")
    if not _is_number(event.get("ts")):
        raise BadLine(f"{kind} record without a numeric 'ts'")
    rank = event.get("rank", 0)
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise BadLine(f"{kind} record with a bad rank {rank!r}")
    if not isinstance(event.get("host", ""), str):
        raise BadLine(f"{kind} record with a non-string host")
    missing = [name for name in _REQUIRED_BY_KIND[kind] if name not in event]
    if missing:
        raise BadLine(f"{kind} record without {', '.join(missing)}")
    step = event.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        raise BadLine(f"{kind} record with a non-integer step {step!r}")
    return event


class JsonlParser(Parser):
    """Event-schema v1 JSONL: each line already is a record; run and attempt come from it."""

    name = "jsonl"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        lines = [line for line in head if line.strip()][:10]
        if not lines:
            return 0.0
        good = 0
        for line in lines:
            try:
                parse_event(line)
            except BadLine:
                continue
            good += 1
        return good / len(lines)

    def feed(self, line: str) -> list[Record]:
        if not line.strip():
            return []
        event = parse_event(line)
        if "host" not in event:
            event["host"] = self.host
        return [Record.from_event(event)]
