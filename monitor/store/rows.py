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

_FLOATS = frozenset(FLOAT_FIGURES)
_INTS = frozenset(INT_FIGURES)
_NONFINITE = "_nonfinite"
_BIGINT = 1 << 63
EMPTY_FIGURES = dict.fromkeys(FLOAT_FIGURES + INT_FIGURES)


def step_row(record: Record, source_id: int | None, seq: int) -> dict[str, Any]:
    row = {"source_id": source_id, "seq": seq, "run": record.run, "attempt": record.attempt,
           "ts": record.ts, "host": record.host, "rank": record.rank, "step": record.step,
           **EMPTY_FIGURES}
    extra: dict[str, Any] = {}
    for name, value in record.fields.items():
        kind = type(value)
        if name in _FLOATS and (kind is float or kind is int):
            if math.isfinite(value):
                row[name] = value
            else:
                extra.setdefault(_NONFINITE, {})[name] = repr(float(value))
        elif name in _INTS and kind is int and -_BIGINT <= value < _BIGINT:
            row[name] = value
        else:
            extra[name] = value
    row["extra"] = extra or None
    return row


def event_row(record: Record, source_id: int | None, seq: int) -> dict[str, Any]:
    return {"source_id": source_id, "seq": seq, "kind": record.kind, "run": record.run,
            "attempt": record.attempt, "ts": record.ts, "host": record.host, "rank": record.rank,
            "step": record.step, "payload": record.fields}


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
