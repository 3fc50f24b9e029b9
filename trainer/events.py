"""The event recorder: schema v1 records, one JSON object per line (docs/events.md).

Rank 0 of every node writes its node's records into the node's log folder (`train.log_dir`,
by default the output folder): launch, step, eval, stop, finish and its own faults — global
rank 0 as `events.jsonl`, the first rank r of another node as `events.rank{r}.jsonl`, so a
watcher on every node sees the whole job and a fault on any node has a witness there. Any
other rank opens `events.rank{r}.jsonl` only when it has something to say (a fault of its own).
Each record is one `write` of one line followed by a flush, so a watcher tailing the file never
sees half a record unless the process dies mid-write.
Serialisation is orjson (NaN and ±inf become null, which the schema allows).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from eventschema import SCHEMA_VERSION

TRACEBACK_HEAD_LINES = 20


def host_name() -> str:
    """This node's name in the records: $TRAINLEDGER_HOST (several "nodes" on one machine, or a
    scheduler's node name) or the host name."""
    return os.environ.get("TRAINLEDGER_HOST") or socket.gethostname()


def events_path(out_dir: Path, rank: int) -> Path:
    return out_dir / ("events.jsonl" if rank == 0 else f"events.rank{rank}.jsonl")


def run_id_for(out_dir: Path) -> str:
    """The run id stored in the output folder; created on the first launch (call on rank 0)."""
    path = out_dir / "run_id"
    if path.exists():
        return path.read_text().strip()
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{out_dir.resolve().name}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(run_id + "\n")
    tmp.replace(path)
    return run_id


def new_attempt_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class Recorder:
    """Writes records for one rank of one attempt; `enabled=False` writes nothing at all."""

    def __init__(self, out_dir: Path, run: str, attempt: str, rank: int, enabled: bool = True,
                 host: str | None = None):
        self.path = events_path(out_dir, rank)
        self.run, self.attempt = run, attempt
        self.enabled = enabled
        self.rank = rank
        self._file: BinaryIO | None = None
        self._common = {"v": SCHEMA_VERSION, "kind": "", "run": run, "attempt": attempt, "ts": 0.0,
                        "host": host or host_name(), "rank": rank}

    def record(self, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
        record = dict(self._common, kind=kind, ts=time.time())
        record.update(fields)
        self._file.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        self._file.flush()

    def fault(self, exc: BaseException, step: int | None, **classified: Any) -> None:
        """`classified`: what the trainer knows better than the message (cause `node_lost` and
        the lost node, see distributed.lost_peer); cause `exception` otherwise."""
        lines = "".join(traceback.format_exception(exc)).splitlines()
        if len(lines) > TRACEBACK_HEAD_LINES:  # keep the outermost frames and the exception itself
            half = TRACEBACK_HEAD_LINES // 2
            lines = lines[:half] + ["  ..."] + lines[-half:]
        self.record("fault", exc_type=type(exc).__name__, message=str(exc), traceback="\n".join(lines), step=step,
                    **{"cause": "exception", **classified})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
