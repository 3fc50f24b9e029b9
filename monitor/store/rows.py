"""Records ↔ table rows. Round-trips exactly: `to_record(step_row(r)) == r`.

A step figure goes to its column only when it is a finite number of the column's type;
anything else (a string, an explicit null, a bool, a number too big for BIGINT) is kept
as-is in `extra`, and a NaN/inf in `extra["_nonfinite"]` (JSON cannot hold it).
"""

from __future__ import annotations

import math
from typing import Any

from monitor.models import FLOAT_FIGURES, INT_FIGURES
from monitor.records import Record

_NONFINITE = "_nonfinite"
_BIGINT = 1 << 63


STEP_COLUMNS = ("source_id", "seq", "run", "attempt", "ts", "host", "rank", "step",
                *FLOAT_FIGURES, *INT_FIGURES, "extra")
EVENT_COLUMNS = ("source_id", "seq", "kind", "run", "attempt", "ts", "host", "rank", "step", "payload")
_INDEX = {name: 8 + i for i, name in enumerate(FLOAT_FIGURES + INT_FIGURES)}
_FIRST_INT = 8 + len(FLOAT_FIGURES)
_EMPTY_FIGURES = [None] * (len(FLOAT_FIGURES) + len(INT_FIGURES))
_INF = math.inf


def step_values(record: Record, source_id: int | None, seq: int) -> list[Any]:
    """The row of `step_metrics` for a step record, in STEP_COLUMNS order, its `extra` still
    a dict (on the hot path of every ingest: plain comparisons rather than calls)."""
    values = [source_id, seq, record.run, record.attempt, record.ts, record.host, record.rank, record.step,
              *_EMPTY_FIGURES, None]
    extra: dict[str, Any] | None = None
    for name, value in record.fields.items():
        index = _INDEX.get(name)
        if index is not None:
            kind = type(value)
            if index < _FIRST_INT:
                if kind is float or kind is int:
                    if -_INF < value < _INF:  # false for NaN too
                        values[index] = value
                        continue
                    if extra is None:
                        extra = {}
                    extra.setdefault(_NONFINITE, {})[name] = repr(float(value))
                    continue
            elif kind is int and -_BIGINT <= value < _BIGINT:
                values[index] = value
                continue
        if extra is None:
            extra = {}
        extra[name] = value
    values[-1] = extra
    return values


def event_values(record: Record, source_id: int | None, seq: int) -> list[Any]:
    """The row of `events` for a record of any other kind, in EVENT_COLUMNS order."""
    return [source_id, seq, record.kind, record.run, record.attempt, record.ts, record.host, record.rank,
            record.step, record.fields]


def step_row(record: Record, source_id: int | None, seq: int) -> dict[str, Any]:
    return dict(zip(STEP_COLUMNS, step_values(record, source_id, seq)))


def event_row(record: Record, source_id: int | None, seq: int) -> dict[str, Any]:
    return dict(zip(EVENT_COLUMNS, event_values(record, source_id, seq)))


def step_record(row: Any) -> Record:
    """A `step_metrics` row (mapping) back into its Record."""
    fields = {name: row[name] for name in _COLUMN_ORDER if row[name] is not None}
    extra = row["extra"]
    if extra:
        fields.update(extra)
        for name, text in fields.pop(_NONFINITE, {}).items():
            fields[name] = float(text)
    return Record(kind="step", run=row["run"], attempt=row["attempt"], ts=row["ts"], host=row["host"],
                  rank=row["rank"], step=row["step"], fields=fields)


def event_record(row: Any) -> Record:
    return Record(kind=row["kind"], run=row["run"], attempt=row["attempt"], ts=row["ts"],
                  host=row["host"], rank=row["rank"], step=row["step"], fields=dict(row["payload"]))


_COLUMN_ORDER = FLOAT_FIGURES + INT_FIGURES
