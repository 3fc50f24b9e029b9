"""Acceptance, end to end: seed 000's rebuilt logs through the real ingest path
(`trainledger ingest` into a real SQLite file), then `trainledger ledger`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "sample_logs" / "ling_1b" / "logs"
RUN = "ling-1b-v1"


def trainledger(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", "from trainledger.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_ingest_then_ledger_gives_ling_1b(tmp_path):
    db = str(tmp_path / "ling_1b.db")
    ingested = trainledger("ingest", str(LOGS), "--db", db)
    assert ingested.returncode == 0, ingested.stderr
    result = trainledger("ledger", RUN, "--db", db, "--format", "json")
    assert result.returncode == 0, result.stderr
    ledger = json.loads(result.stdout)
    assert ledger["pie_days"]["training"] == pytest.approx(26.41, abs=0.01)
    assert ledger["pie_days"]["interrupted_or_waiting"] == pytest.approx(6.60, abs=0.01)
    assert ledger["pie_days"]["nobody_at_work"] == pytest.approx(1.54, abs=0.01)
    assert (ledger["launches"], ledger["faults"], ledger["manual_stops"]) == (18, 5, 2)
    assert ledger["restore_gaps"] == [{"attempt": f"{RUN}-launch-{n:02d}", "missing": ["optimizer", "lr_scheduler"]}
                                      for n in (2, 3, 4)]
    table = trainledger("ledger", RUN, "--db", db)
    assert table.returncode == 0 and "26.41 days" in table.stdout and "1.54 days" in table.stdout
    again = trainledger("ingest", str(LOGS), "--db", db)  # nothing is stored twice
    assert again.returncode == 0
    assert json.loads(trainledger("ledger", RUN, "--db", db, "-f", "json").stdout)["launches"] == 18
