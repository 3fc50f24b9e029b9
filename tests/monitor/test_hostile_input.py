"""Hostile input: a record whose time cannot be true, and one run the live accounting cannot
classify, never break another run's ledger or live state.

Real watcher processes on a real SQLite store; every wait polls against a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import time as time_of_day
from pathlib import Path

import orjson
from sqlalchemy import text

from monitor.accounting import Policy
from monitor.live import LiveRuns
from monitor.records import Record
from monitor.models import LiveState
from monitor.store import insert_records, list_live_states, list_sources, open_store, save_live_states
from polling import wait_for

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
ALL_DAY = "00:00-23:59:59.999999"
POISONED_TS = (1_700_000_000_000.0, -5.0, 1e300)
"""A `ts` in milliseconds, a negative one and one far past any calendar."""


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), COLUMNS="200")


def _step(run: str, step: int, ts: float) -> str:
    return orjson.dumps({"v": 1, "kind": "step", "run": run, "attempt": f"{run}-1", "ts": ts, "host": "node1",
                         "rank": 0, "step": step, "loss": 2.0}).decode() + "\n"


def _states(url: str):
    def states() -> dict:
        try:
            engine = open_store(url, read_only=True)
        except Exception:  # noqa: BLE001 — the watcher may not have created the store yet
            return {}
        try:
            return {s.run: s for s in list_live_states(engine)}
        finally:
            engine.dispose()
    return states


def test_poisoned_times_are_bad_lines_and_the_other_runs_still_move_on(tmp_path, sqlite_url):
    root = tmp_path / "runs"
    for name in ("healthy", "poisoned"):
        (root / name).mkdir(parents=True)
    healthy, poisoned = root / "healthy" / "events.jsonl", root / "poisoned" / "events.jsonl"
    now = time.time()
    poisoned.write_text(_step("poisoned", 1, now - 30) + "".join(_step("poisoned", 2 + i, ts)
                                                                 for i, ts in enumerate(POISONED_TS))
                        + _step("poisoned", 5, now - 20))
    proc = subprocess.Popen([TRAINLEDGER, "watch", str(root), "--db", sqlite_url, "--poll", "1", "--idle-flush", "1",
                             "--stall-after", "1", "--live-every", "0.2", "--work-hours", ALL_DAY],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    states = _states(sqlite_url)
    steps = iter(range(1, 10_000))
    try:
        def training():
            """the healthy run is training while its steps keep coming"""
            with open(healthy, "a") as f:
                f.write(_step("healthy", next(steps), time.time()))
            return states().get("healthy") and states()["healthy"].state == "training"
        wait_for(training, timeout=60)
        wait_for(lambda: states()["healthy"].state == "stalled", timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "run healthy: training → stalled since " in out, out

    engine = open_store(sqlite_url, read_only=True)
    (source,) = [s for s in list_sources(engine) if s.path == str(poisoned)]
    assert (source.bad_lines, source.first_bad_line, source.records) == (3, 2, 2)
    assert "impossible ts" in source.first_bad_reason and "milliseconds" in source.first_bad_reason
    engine.dispose()
    for fmt in ("table", "json"):
        ledger = subprocess.run([TRAINLEDGER, "ledger", "poisoned", "--db", sqlite_url, "--format", fmt],
                                capture_output=True, text=True, env=_env(), timeout=60)
        assert ledger.returncode == 0 and "Traceback" not in ledger.stderr, ledger.stderr
    assert '"launches": 1' in ledger.stdout


def _live(store, clock):
    return LiveRuns(store, Policy(work_start=time_of_day(0), work_end=time_of_day(23, 59, 59, 999999),
                                  stall_min_s=60.0), clock=lambda: clock[0])


def _good_run(start: float) -> list[Record]:
    return [Record("step", "good", "a1", start + 10 * i, "node1", 0, i, {"loss": 2.0}) for i in range(10)]


def test_a_run_that_cannot_be_classified_is_logged_once_and_the_others_carry_on(tmp_path, caplog):
    """A damaged row (a fault record's payload that is no longer JSON) breaks only its own run."""
    store = open_store(tmp_path / "store.db")
    start = time.time() - 1000
    clock = [start + 95]
    live = _live(store, clock)
    broken = [Record("step", "broken", "a1", start, "node1", 0, 1, {"loss": 2.0}),
              Record("fault", "broken", "a1", start + 5, "node1", 0, None, {"exc_type": "X", "message": "m"})]
    with store.begin() as conn:
        insert_records(conn, broken + _good_run(start))
        conn.execute(text("UPDATE events SET payload = '{damaged' WHERE run = 'broken'"))
    caplog.set_level(logging.INFO, logger="trainledger.live")
    live.committed(broken + _good_run(start))
    assert {s.run: s.state for s in list_live_states(store)} == {"good": "training"}

    clock[0] = start + 90 + 101
    live.tick()
    live.tick()  # a run that still fails is not logged again on every tick
    assert {s.run: s.state for s in list_live_states(store)} == {"good": "stalled"}
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("run good: training → stalled since ") for m in messages), messages
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and failures[0].startswith("run broken: live state not classified: "), failures
    store.dispose()


def test_records_stored_with_impossible_times_are_left_out_of_ledger_and_live_state(store, store_url, caplog):
    """A store written before times were checked (an older watcher) still gives every ledger."""
    start = time.time() - 1000
    clock = [start + 95]
    poisoned = [Record("step", "good", "a1", ts, "node1", 0, 100 + i, {"loss": 2.0})
                for i, ts in enumerate(POISONED_TS)]
    with store.begin() as conn:
        insert_records(conn, _good_run(start) + poisoned)
    caplog.set_level(logging.INFO, logger="trainledger.live")
    live = _live(store, clock)
    live.committed(_good_run(start))
    (state,) = list_live_states(store)
    assert (state.state, state.step, state.last_record_ts) == ("training", 9, start + 90)
    live.tick()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["run good: 3 stored records have times that cannot be true; left out"]

    ledger = subprocess.run([TRAINLEDGER, "ledger", "good", "--db", store_url, "--format", "json"],
                            capture_output=True, text=True, env=_env(), timeout=60)
    assert ledger.returncode == 0, ledger.stderr
    assert ledger.stderr.startswith("warning: 3 records of good have times that cannot be true")
    assert json.loads(ledger.stdout)["end"] == start + 90

    with store.begin() as conn:  # the live state an older watcher saved from those records
        save_live_states(conn, [LiveState(run="old", state="training", since=POISONED_TS[0], attempt="a1",
                                          last_record_ts=POISONED_TS[0], step=1, updated=start)])
    status = subprocess.run([TRAINLEDGER, "status", "--db", store_url], capture_output=True, text=True, env=_env(),
                            timeout=60)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert "ts 1700000000000.0" in status.stdout, status.stdout
