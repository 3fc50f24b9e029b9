"""Small ledger truths, through the real commands on a real SQLite store: a stored run whose
last attempt went silent has the same fault count in `ledger` as in `ledger --live`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]


def _event(kind: str, attempt: str, ts: float, **fields) -> str:
    return orjson.dumps({"v": 1, "kind": kind, "run": "quiet", "attempt": attempt, "ts": ts, "host": "node1",
                         "rank": 0, **fields}).decode() + "\n"


def _ledger(db: Path, *options: str) -> dict:
    done = subprocess.run([TRAINLEDGER, "ledger", "quiet", "--db", str(db), "--format", "json",
                           "--work-hours", "00:00-23:59:59.999999", *options], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_silent_last_attempt_is_a_fault_in_ledger_as_in_ledger_live(tmp_path):
    """Attempt 1 ends with a fault record; attempt 2 stopped writing three hours ago, with no
    end record: past the default 30-minute fault threshold, both commands count two faults."""
    start = time.time() - 4 * 3600
    lines = [_event("step", "a1", start + 60 + i, step=i, loss=2.0) for i in range(1, 11)]
    lines.append(_event("fault", "a1", start + 80, exc_type="RuntimeError", message="NCCL timeout"))
    lines += [_event("step", "a2", start + 3600 + i, step=10 + i, loss=2.0) for i in range(1, 11)]
    folder = tmp_path / "runs" / "quiet"
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(lines))
    db = tmp_path / "store.db"
    ingest = subprocess.run([TRAINLEDGER, "ingest", str(folder), "--db", str(db)], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert ingest.returncode == 0, ingest.stderr

    stored, live = _ledger(db), _ledger(db, "--live")
    assert stored["faults"] == live["faults"] == 2
    assert stored["rows"][-1]["state"] == "fault" and stored["rows"][-1]["cause"].startswith("fault: silence")
    assert stored["end"] == start + 3610  # not live: the stored run still ends at its last record

    longer = _ledger(db, "--fault-after", str(5 * 3600))  # not yet silent for long enough
    assert longer["faults"] == _ledger(db, "--live", "--fault-after", str(5 * 3600))["faults"] == 1
