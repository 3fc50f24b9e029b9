"""The event schema: the one contract shared by the trainer and the monitor.

Both sides import this package; neither imports the other. See docs/events.md.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Iterable

SCHEMA_VERSION = 1
KINDS = ("launch", "step", "eval", "checkpoint", "resume", "stop", "fault", "finish")
COMMON_FIELDS = ("v", "kind", "run", "attempt", "ts", "host", "rank")


@cache
def schema() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("v1.json").read_text())


@cache
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def errors(record: dict[str, Any]) -> list[str]:
    """Human-readable schema violations of one record (empty when valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<record>'}: {e.message}"
        for e in sorted(_validator().iter_errors(record), key=lambda e: list(e.absolute_path))
    ]


def validate_lines(lines: Iterable[str | bytes], *, source: str = "<events>") -> list[dict[str, Any]]:
    """Parse and validate a JSONL event log; raise ValueError naming the first bad line."""
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}:{lineno}: not JSON: {exc}") from None
        problems = errors(record)
        if problems:
            raise ValueError(f"{source}:{lineno}: {problems[0]}")
        records.append(record)
    return records
