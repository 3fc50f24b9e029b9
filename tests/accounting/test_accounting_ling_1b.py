"""The sample logs: generated deterministically, valid, and seed 000 followed live.
The acceptance (ingest, then ledger) is test_accounting_acceptance.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import eventschema
from monitor.records import Record

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "sample_logs" / "ling_1b"


def test_the_committed_logs_are_what_the_generator_writes(tmp_path):
    subprocess.run([sys.executable, str(SEED / "generate.py"), str(tmp_path)], check=True, capture_output=True)
    written = sorted(tmp_path.glob("*.jsonl"))
    assert [p.name for p in written] == sorted(p.name for p in (SEED / "logs").glob("*.jsonl"))
    for path in written:
        assert path.read_bytes() == (SEED / "logs" / path.name).read_bytes(), path.name


def test_every_line_of_the_ling_1b_logs_is_a_valid_schema_v1_event():
    for path in sorted((SEED / "logs").glob("*.jsonl")):
        with path.open() as lines:
            events = eventschema.validate_lines(lines, source=str(path))
        assert events[0]["kind"] == "launch" and events[0]["timezone"] == "+08:00"


@pytest.mark.parametrize("folder, name", [("internlm_20b", "train_20B.log"),
                                          ("nanochat_2gpu", "train_dual_gpu_20251025_153513.log")])
def test_the_other_sample_logs_are_what_their_generators_write(tmp_path, folder, name):
    generator = ROOT / "sample_logs" / folder / "generate.py"
    subprocess.run([sys.executable, str(generator), str(tmp_path)], check=True, capture_output=True)
    assert (tmp_path / name).read_bytes() == (ROOT / "sample_logs" / folder / "logs" / name).read_bytes()


def test_ling_1b_followed_live_through_the_night_the_switch_tripped():
    from datetime import datetime, timedelta, timezone

    from monitor.accounting import LiveLedger

    def local(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=timezone(timedelta(hours=8))).timestamp()

    records = []
    for path in sorted((SEED / "logs").glob("launch-0[12].jsonl")):
        records += [Record.from_event(json.loads(line)) for line in path.read_text().splitlines()]
    records.sort(key=lambda r: r.ts)
    live = LiveLedger()
    seen = {}
    fed = 0
    for moment in ("2024-05-20 03:00", "2024-05-20 03:20", "2024-05-20 03:30", "2024-05-20 04:00",
                   "2024-05-20 12:00", "2024-05-20 21:20"):
        now = local(moment)
        while fed < len(records) and records[fed].ts <= now:
            live.add(records[fed])
            fed += 1
        seen[moment[-5:]] = live.snapshot(now).current_state
    # last step 03:05:31; threshold 10 x 120 s; NCCL timeout record 03:35:31; relaunch 21:08
    assert seen == {"03:00": "training", "03:20": "training", "03:30": "stalled", "04:00": "off_hours",
                    "12:00": "fault", "21:20": "startup"}
