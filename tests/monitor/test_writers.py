"""Many writers on one store: `watch` and `ingest` processes at once on overlapping files, on
SQLite and PostgreSQL, while this test appends — and one of them SIGKILLed at a random moment:
the store ends up exactly as one clean ingest leaves it. Two hosts' files that share paths and
inodes stay apart. Thousands of files under a 1,024 open-file limit are all followed.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from intake_helpers import step_line, stored_steps, write_steps
from polling import wait_for
from sqlalchemy import select

from monitor.intake import Intake
from monitor.models import Alert, Attempt, Event, Run, SourceFile, StepMetric
from monitor.sources import Targets
from monitor.store import count_records, list_runs, list_sources, load_records, open_store

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
RUNS = ("run-a", "run-b", "run-c")
BOOKKEEPING = {"id", "version", "first_seen", "updated", "size", "first_mtime", "first_size", "copy_of",
               "attempt_prefix"}
"""`source_files` columns that say when and in which order a writer got there, not what it read
(`attempt_prefix` names the row's id; JSON lines carry their own attempts)."""


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), **extra)


def eval_line(step: int, run: str) -> str:
    return orjson.dumps({"v": 1, "kind": "eval", "run": run, "attempt": "a1", "ts": 1_700_000_000.5 + step,
                         "host": "node1", "rank": 0, "step": step, "val_loss": 2.0 + 1 / step}).decode() + "\n"


def _append(folder: Path, first: int, last: int) -> None:
    """Steps first..last to each run's log, an eval every 25 steps and a bad line every 40."""
    for run in RUNS:
        lines = []
        for step in range(first, last + 1):
            lines.append(step_line(step, run=run))
            if step % 25 == 0:
                lines.append(eval_line(step, run))
            if step % 40 == 0:
                lines.append('{"not": "an event"\n')
        with open(folder / run / "events.jsonl", "a") as f:
            f.write("".join(lines))


def _writer(kind: str, db: str, targets: list[str], **env) -> subprocess.Popen:
    extra = ["--poll", "0.5", "--idle-flush", "0.5"] if kind == "watch" else []
    return subprocess.Popen([TRAINLEDGER, kind, *targets, "--db", db, *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env(**env))


def _targets(folder: Path, i: int) -> list[str]:
    """Overlapping targets: the folder, or one log by name plus a glob over them all."""
    if i % 2 == 0:
        return [str(folder)]
    return [str(folder / "run-a" / "events.jsonl"), f"{folder}/*/events.jsonl"]


_readers: dict[str, object] = {}


def _count(url: str) -> int:
    """Records stored so far (0 while the store is not created or migrated yet)."""
    try:
        if url not in _readers:
            _readers[url] = open_store(url, read_only=True)
        return sum(count_records(_readers[url]).values())
    except Exception:  # noqa: BLE001
        return 0


def _plain(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def tables(url: str) -> dict[str, Counter]:
    """Every table as a multiset of rows, without surrogate ids or bookkeeping times; a record's
    source named by its host and path."""
    engine = open_store(url, read_only=True)
    with engine.connect() as conn:
        sources = {row.id: (row.host, row.path) for row in conn.execute(select(SourceFile.__table__))}
        out = {}
        for model in (Run, Attempt, StepMetric, Event, SourceFile, Alert):
            table = model.__table__
            rows = Counter()
            for row in conn.execute(select(table)).mappings():
                values = {k: _plain(v) for k, v in row.items() if k not in BOOKKEEPING or model is not SourceFile}
                if model in (StepMetric, Event):
                    del values["id"]
                    values["source_id"] = sources.get(values["source_id"])
                rows[tuple(sorted(values.items()))] += 1
            out[table.name] = rows
    engine.dispose()
    return out


def _clean(tmp_path: Path, folder: Path) -> tuple[dict[str, Counter], int]:
    """What one clean ingest of the files as they are now stores, and its record count."""
    db = str(tmp_path / "clean.db")
    engine = open_store(db)
    Intake(engine).ingest(Targets([str(folder)]))
    engine.dispose()
    return tables(db), _count(db)


@pytest.fixture
def logs(tmp_path) -> Path:
    folder = tmp_path / "logs"
    for run in RUNS:
        (folder / run).mkdir(parents=True)
    _append(folder, 1, 150)
    return folder


def _stop(proc: subprocess.Popen, kind: str) -> None:
    """A watcher stopped by SIGTERM, an ingest waited for: either exits 0 without a traceback."""
    if kind == "watch":
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err


def _append_while_running(url: str, folder: Path, procs: list[subprocess.Popen], rng: random.Random) -> None:
    """Appends in rounds once the writers store, each round waiting (within a deadline) for
    the store to move or every writer to be done, so that appending and storing overlap."""
    wait_for(lambda: _count(url) > 0 or all(p.poll() is not None for p in procs), timeout=60)
    step = 150
    for _ in range(4):
        more = rng.randrange(5, 40)
        _append(folder, step + 1, step + more)
        step += more
        before, deadline = _count(url), time.monotonic() + 1
        while _count(url) == before and any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.02)


def _finish(url: str, folder: Path, procs: list[subprocess.Popen], kinds: tuple[str, ...], expected: int) -> None:
    """Watchers run until the store holds everything, then stop; ingests exit by themselves;
    where only ingests ran, what was appended after they finished needs one more ingest."""
    live = [p for p, kind in zip(procs, kinds) if kind == "watch" and p.poll() is None]
    if live:
        wait_for(lambda: _count(url) >= expected, timeout=60)
    for proc, kind in zip(procs, kinds):
        _stop(proc, kind)
    if not live:
        engine = open_store(url)
        Intake(engine).ingest(Targets([str(folder)]))
        engine.dispose()


COMBINATIONS = [("watch", "watch"), ("watch", "ingest"), ("ingest", "ingest"), ("watch", "ingest", "watch", "ingest")]


@pytest.mark.parametrize("kinds", COMBINATIONS, ids=["+".join(c) for c in COMBINATIONS])
def test_writers_at_once_store_exactly_what_one_clean_ingest_stores(store_url, logs, tmp_path, kinds):
    procs = [_writer(kind, store_url, _targets(logs, i)) for i, kind in enumerate(kinds)]
    try:
        _append_while_running(store_url, logs, procs, random.Random(len(kinds)))
        clean, expected = _clean(tmp_path, logs)
        _finish(store_url, logs, procs, kinds, expected)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    got = tables(store_url)
    assert got == clean, _diff(got, clean)


@pytest.mark.parametrize("seed", range(10))
def test_a_writer_killed_at_a_random_moment_leaves_nothing_doubled_or_lost(store_url, logs, tmp_path, seed):
    rng = random.Random(seed)
    kinds = COMBINATIONS[seed % 3]
    procs = [_writer(kind, store_url, _targets(logs, i)) for i, kind in enumerate(kinds)]
    victim = rng.randrange(len(procs))
    try:
        if seed % 2:  # once it has stored a random number of records
            target = rng.randrange(1, 400)
            wait_for(lambda: _count(store_url) >= target or procs[victim].poll() is not None, timeout=60,
                     interval=0.005)
        else:  # anywhere, start-up and migration included
            deadline = time.monotonic() + rng.uniform(0.0, 2.0)
            while time.monotonic() < deadline and procs[victim].poll() is None:
                time.sleep(0.005)
        procs[victim].kill()
        procs[victim].wait()
        _append_while_running(store_url, logs, procs, rng)
        clean, expected = _clean(tmp_path, logs)
        survivors = [(p, k) for i, (p, k) in enumerate(zip(procs, kinds)) if i != victim]
        _finish(store_url, logs, [p for p, _ in survivors], tuple(k for _, k in survivors), expected)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    got = tables(store_url)
    assert got == clean, _diff(got, clean)



def _diff(got: dict[str, Counter], want: dict[str, Counter]) -> list[str]:
    """The rows one has more of than the other (a readable assertion message)."""
    out = []
    for name in want:
        for sign, rows in (("+", got[name] - want[name]), ("-", want[name] - got[name])):
            out += [f"{name} {sign}{n}: {dict(row)}" for row, n in list(rows.items())[:5]]
    return out


def _ingest_as(host: str, db: str, *targets) -> None:
    result = subprocess.run([TRAINLEDGER, "ingest", *map(str, targets), "--db", db], capture_output=True, text=True,
                            timeout=120, env=_env(TRAINLEDGER_HOST=host))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_two_hosts_files_with_the_same_path_and_inode_are_different_files(store_url, tmp_path):
    """Node a's and node b's `runs/x/events.jsonl` are two files, even with the same inode
    number (here: one file rewritten in place, read as node a, then as node b); neither node
    retires the other's rows when its own file is rewritten, rotated or replaced."""
    folder = tmp_path / "runs" / "x"
    folder.mkdir(parents=True)
    log = folder / "events.jsonl"
    write_steps(log, range(1, 21), run="run-on-a")
    _ingest_as("node-a", store_url, folder)
    inode = log.stat().st_ino
    with open(log, "r+") as f:  # node b's own log: the same path, the same inode, other lines
        f.truncate(0)
        f.write("".join(step_line(step, run="run-on-b") for step in range(1, 31)))
    assert log.stat().st_ino == inode
    _ingest_as("node-b", store_url, folder)
    os.rename(log, folder / "events.jsonl.1")  # node b rotates its log, and writes on in a new one
    write_steps(log, range(31, 41), run="run-on-b")
    _ingest_as("node-b", store_url, log)
    log.unlink()  # and deletes it
    _ingest_as("node-b", store_url, log)
    engine = open_store(store_url)
    rows = {(s.host, s.path, s.inode): (s.status, s.records) for s in list_sources(engine)}
    assert rows[("node-a", str(log), inode)] == ("active", 20)
    assert rows[("node-b", str(log), inode)] == ("rotated", 30)
    assert sorted(status for (host, *_), (status, _) in rows.items() if host == "node-b") == ["deleted", "rotated"]
    assert {run.name for run in list_runs(engine)} == {"run-on-a", "run-on-b"}
    assert stored_steps(engine, "run-on-a") == list(range(1, 21))
    assert sorted(stored_steps(engine, "run-on-b")) == list(range(1, 41))
    engine.dispose()


def _one_k_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_thousands_of_files_under_a_1024_descriptor_limit_all_take_appends(tmp_path):
    folder, db = tmp_path / "many", tmp_path / "store.db"
    folder.mkdir()
    files = [folder / f"rank{i:04d}.jsonl" for i in range(5000)]
    for i, path in enumerate(files):
        path.write_text(step_line(1, run=f"many-{i % 50}", attempt=f"a{i}"))
    proc = subprocess.Popen([TRAINLEDGER, "watch", str(folder), "--db", str(db), "--poll", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            preexec_fn=_one_k_descriptors)
    try:
        wait_for(lambda: _count(str(db)) == len(files), timeout=300)
        held = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert held < 1024
        picked = random.Random(11).sample(range(len(files)), 25) + [0, len(files) - 1]
        for i in picked:
            with open(files[i], "a") as f:
                f.write(step_line(2, run=f"many-{i % 50}", attempt=f"a{i}"))
        wait_for(lambda: _count(str(db)) == len(files) + len(picked), timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in out and "Too many open files" not in out, out[-2000:]
    assert "followed files held open at once" in out
    engine = open_store(db)
    steps = Counter((r.attempt, r.step) for run in list_runs(engine) for r in load_records(engine, run.name))
    assert set(steps.values()) == {1} and {attempt for attempt, step in steps if step == 2} == {f"a{i}" for i in picked}
