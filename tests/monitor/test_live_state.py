"""Live states: `trainledger watch` classifies each run as its records are stored and while
they stop coming, keeps the state in the store, and `trainledger status` shows it.

A real watcher process under a real watchdog observer, on SQLite and PostgreSQL. Every wait
polls the store against a deadline.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from datetime import time as time_of_day
from pathlib import Path

import orjson

from monitor.accounting import Policy
from monitor.intake import Intake
from monitor.live import LiveRuns
from monitor.records import Record
from monitor.sources import Targets
from monitor.store import insert_records, list_live_states, load_records, open_store
from polling import wait_for

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
ALL_DAY = "00:00-23:59:59.999999"
"""Working hours all day, so no state depends on when the test runs."""
ENDS = {"fault": ({"exc_type": "RuntimeError", "message": "CUDA error: an illegal memory access"}, "fault"),
        "stop": ({"reason": "SIGTERM"}, "manual"),
        "finish": ({"step": 0, "reason": "total_steps"}, "waiting")}
"""End record kind → its fields and the state the run is in after it."""


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), COLUMNS="200")


def _record(kind: str, run: str, **fields) -> str:
    return orjson.dumps({"v": 1, "kind": kind, "run": run, "attempt": f"{run}-1", "ts": time.time(),
                         "host": "node1", "rank": 0, **fields}).decode() + "\n"


class Runs:
    """One JSONL log per run, each in its own output folder, appended to as the trainer would."""

    def __init__(self, root: Path, names) -> None:
        self.logs = {}
        self.steps = dict.fromkeys(names, 0)
        for name in names:
            (root / name).mkdir(parents=True)
            self.logs[name] = root / name / "events.jsonl"

    def append(self, name: str, text: str) -> None:
        with open(self.logs[name], "a") as f:
            f.write(text)

    def step_all(self) -> None:
        for name in self.logs:
            self.steps[name] += 1
            self.append(name, _record("step", name, step=self.steps[name], loss=2.0))


def _states(url: str):
    def states() -> dict[str, str]:
        try:
            engine = open_store(url, read_only=True)
        except Exception:  # noqa: BLE001 — the watcher may not have created the store yet
            return {}
        try:
            return {s.run: s for s in list_live_states(engine)}
        finally:
            engine.dispose()
    return states


def test_a_run_turns_stalled_when_its_steps_stop_and_its_end_record_sets_its_state(tmp_path, store_url):
    root = tmp_path / "runs"
    runs = Runs(root, ENDS)
    proc = subprocess.Popen([TRAINLEDGER, "watch", str(root), "--db", store_url, "--poll", "1", "--idle-flush", "1",
                             "--stall-after", "1", "--live-every", "0.2", "--work-hours", ALL_DAY],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    states = _states(store_url)
    try:
        def training():
            """every run is training while its steps keep coming"""
            runs.step_all()
            now = states()
            return all(name in now and now[name].state == "training" for name in ENDS) and now
        seen = wait_for(training, timeout=60)
        assert all(seen[name].step is not None and seen[name].step >= 1 for name in ENDS)

        def stalled():
            """every run stalled once its steps stopped"""
            now = states()
            return all(now.get(name) and now[name].state == "stalled" for name in ENDS) and now
        now = wait_for(stalled, timeout=30)
        for name in ENDS:  # the stall began at the last step; nothing was stored since
            assert now[name].step == runs.steps[name]
            assert now[name].since == now[name].last_record_ts
            assert now[name].updated - now[name].since >= 1.0

        for name, (fields, _state) in ENDS.items():
            runs.append(name, _record(name, name, **fields))

        def ended():
            """each run's end record set its state"""
            now = states()
            return all(now.get(name) and now[name].state == state for name, (_f, state) in ENDS.items()) and now
        now = wait_for(ended, timeout=30)
        for name in ENDS:
            assert now[name].since == now[name].last_record_ts  # the downtime began at the end record
            assert now[name].step == runs.steps[name]

        status = subprocess.run([TRAINLEDGER, "status", "--db", store_url], capture_output=True, text=True,
                                env=_env(), timeout=60)
        assert status.returncode == 0, status.stderr
        for name, (_fields, state) in ENDS.items():
            since = datetime.fromtimestamp(now[name].since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            line = next(line for line in status.stdout.splitlines() if f" {name} " in line and since in line)
            assert f" {state} " in line and f" {runs.steps[name]} " in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in out, out
    for name, (_fields, state) in ENDS.items():  # each change is logged once, in order
        assert f"run {name}: training since " in out, out
        assert f"run {name}: training → stalled since " in out, out
        assert f"run {name}: stalled → {state} since " in out, out


def test_a_restarted_watcher_carries_on_where_the_last_one_left_each_run(tmp_path, sqlite_url):
    root = tmp_path / "runs"
    runs = Runs(root, ["quiet"])
    states = _states(sqlite_url)
    args = [TRAINLEDGER, "watch", str(root), "--db", sqlite_url, "--poll", "1", "--idle-flush", "1",
            "--stall-after", "1", "--live-every", "0.2", "--work-hours", ALL_DAY]
    first = subprocess.Popen([*args, "--fault-after", "600"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=_env())
    try:
        def training():
            """the run is training while its steps keep coming"""
            runs.step_all()
            return "quiet" in states() and states()["quiet"].state == "training"
        wait_for(training, timeout=60)
        wait_for(lambda: states()["quiet"].state == "stalled", timeout=30)
    finally:
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=30)
    assert first.returncode == 0 and "run quiet: training → stalled since " in out, out

    # no new record: the next watcher still moves the stalled run on, to fault after the silence
    second = subprocess.Popen([*args, "--fault-after", "3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=_env())
    try:
        fault = wait_for(lambda: states()["quiet"].state == "fault" and states()["quiet"], timeout=60)
        assert fault.step == runs.steps["quiet"]
        last = runs.steps["quiet"]
        runs.step_all()  # the run comes back: a new step in the same attempt
        back = wait_for(lambda: states()["quiet"].step == last + 1 and states()["quiet"], timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, out
    assert back.last_record_ts > fault.last_record_ts
    assert "run quiet: stalled → fault since " in out and "run quiet: fault → " in out, out


def test_a_backlog_line_without_a_time_is_dated_by_the_files_modification_time(tmp_path, sqlite_url):
    folder = tmp_path / "nanogpt_run"
    folder.mkdir()
    log = folder / "train.log"  # no stamp in the name, none in the lines: no anchor
    log.write_text("".join(f"iter {i}: loss {4.0 - i / 10:.4f}, time 250.00ms, mfu 31.00%\n" for i in range(5)))
    written = datetime(2024, 5, 20, 21, 28, tzinfo=timezone.utc).timestamp()
    os.utime(log, (written, written))
    engine = open_store(sqlite_url)
    Intake(engine).ingest(Targets([folder]))
    records = load_records(engine, "nanogpt_run")
    assert [r.step for r in records if r.kind == "step"] == [0, 1, 2, 3, 4]
    assert all(abs(r.ts - written) < 3600 for r in records), [r.ts for r in records]
    assert all(r.attempt.startswith("train.log:") for r in records)
    engine.dispose()


def _step(run: str, step: int, ts: float, rank: int = 0) -> Record:
    return Record(kind="step", run=run, attempt="a1", ts=ts, host="node1", rank=rank, step=step, fields={"loss": 2.0})


def test_live_runs_classify_committed_batches_and_refold_a_late_record_from_the_store(store, caplog):
    """In process, with the clock in the test's hands: each state at an exact moment."""
    start = 1_700_000_000.0
    now = [start]
    live = LiveRuns(store, Policy(work_start=time_of_day(0), work_end=time_of_day(23, 59, 59, 999999),
                                  stall_min_s=60.0), clock=lambda: now[0])

    def commit(records):
        with store.begin() as conn:
            insert_records(conn, records)
        live.committed(records)

    caplog.set_level(logging.INFO, logger="trainledger.live")
    now[0] = start + 95
    commit([_step("r", i, start + 10 * i) for i in range(10)])
    (state,) = list_live_states(store)
    assert (state.run, state.state, state.since, state.step, state.last_record_ts, state.updated) == \
        ("r", "training", start, 9, start + 90, start + 95)

    now[0] = start + 90 + 99  # not yet past the stall threshold, max(60 s, 10 x the 10 s median)
    live.tick()
    assert list_live_states(store)[0].state == "training"
    now[0] = start + 90 + 101
    live.tick()
    (state,) = list_live_states(store)
    assert (state.state, state.since) == ("stalled", start + 90)

    now[0] = start + 200  # a fault another rank wrote before the last step arrives late
    late = Record(kind="fault", run="r", attempt="a1", ts=start + 85, host="node2", rank=1, step=None,
                  fields={"exc_type": "RuntimeError", "message": "NCCL timeout"})
    commit([late])
    assert list_live_states(store)[0].state == "stalled"  # not folded out of order …
    live.tick()  # … but refolded from the store
    (state,) = list_live_states(store)
    assert (state.state, state.last_record_ts, state.updated) == ("fault", start + 90, start + 200)
    assert [r.getMessage() for r in caplog.records] == [
        "run r: training since 2023-11-14 22:13:20", "run r: training → stalled since 2023-11-14 22:14:50",
        "run r: stalled → fault since 2023-11-14 22:14:50"]
