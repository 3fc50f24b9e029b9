"""Our own format: one event-schema v1 record per line (what `trainer/` writes).

Checked here, cheaply, per line: it is a JSON object of schema version 1 with a known kind,
the common fields have the right types, the kind's required fields are present, and its
numeric figures are numbers or null — a number written as a string ("2.5") is taken as the
number, anything else is a bad line, so the store never receives a figure it cannot hold.
Full JSON-Schema validation (`eventschema.errors`) is too slow for a million-line backlog and
is the trainer's tests' job. A truncated or non-JSON line is a `BadLine`.
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


def _typed_fields(kind: str, wanted: str) -> tuple[str, ...]:
    """The kind's fields the schema types as nullable numbers ("number") or integers."""
    properties = schema()["$defs"][kind].get("properties", {})
    if wanted == "number":
        return tuple(name for name, spec in properties.items() if spec.get("$ref") == "#/$defs/num")
    return tuple(name for name, spec in properties.items()
                 if spec.get("type") == ["integer", "null"] and name != "step")


_REQUIRED_SET = {kind: frozenset(names) for kind, names in _REQUIRED_BY_KIND.items()}
_KIND_SET = frozenset(KINDS)
_NUMBERS = {kind: _typed_fields(kind, "number") for kind in KINDS}
_INTEGERS = {kind: _typed_fields(kind, "integer") for kind in KINDS}


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
    if type(kind) is not str or kind not in _KIND_SET:
        raise BadLine(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    for name in ("run", "attempt"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise BadLine(f"{kind} record without a non-empty string {name!r}")
    ts = event.get("ts")
    if type(ts) is not float and not _is_number(ts):
        raise BadLine(f"{kind} record without a numeric 'ts'")
    rank = event.get("rank", 0)
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise BadLine(f"{kind} record with a bad rank {rank!r}")
    if not isinstance(event.get("host", ""), str):
        raise BadLine(f"{kind} record with a non-string host")
    if not event.keys() >= _REQUIRED_SET[kind]:
        missing = [name for name in _REQUIRED_BY_KIND[kind] if name not in event]
        raise BadLine(f"{kind} record without {', '.join(missing)}")
    step = event.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < 2**53):
        raise BadLine(f"{kind} record with a step that is not a step number: {str(step)[:40]!r}")
    for name in _NUMBERS[kind]:  # checked inline: a function call per figure would cost more
        value = event.get(name, event)  # than the rest of the line (bench/bench_parsers.py)
        if value is not event and value is not None and type(value) is not float and type(value) is not int:
            event[name] = _number(kind, name, value, float)
    for name in _INTEGERS[kind]:
        value = event.get(name, event)
        if value is not event and value is not None and not (type(value) is int and -_INT64 < value < _INT64):
            event[name] = _number(kind, name, value, int)
    return event


_INT64 = 1 << 63


def _number(kind: str, name: str, value: Any, type_: type) -> Any:
    """The figure as the schema types it; a numeric string becomes the number ("nan" → null)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadLine(f"{kind} record with a {name} that is not a number: {value[:40]!r}") from None
        if value - value != 0.0:
            return None
        if type_ is int and value.is_integer():
            value = int(value)
    if value is None or type_ is float and _is_number(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
        return value
    raise BadLine(f"{kind} record with a {name} that is not {'an integer' if type_ is int else 'a number'}: "
                  f"{str(value)[:40]!r}")


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
        return [Record.from_event(parse_event(line), self.host)]
