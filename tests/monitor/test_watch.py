"""`trainledger watch` as a real process on real files under a real watchdog observer.

Every wait polls the store (or the process) against a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from intake_helpers import sources, step_line, stored_steps, write_steps
from polling import wait_for

from monitor.intake import Intake
from monitor.sources import Targets, run_name
from monitor.store import count_records, load_records, open_store

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))


def _watch(db: Path, *targets, extra=()) -> subprocess.Popen:
    return subprocess.Popen([TRAINLEDGER, "watch", *map(str, targets), "--db", str(db), "--poll", "1",
                             "--idle-flush", "1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())


def _stop(proc: subprocess.Popen) -> str:
    """SIGTERM, then the exit: it must be clean (status 0, no traceback)."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "stopped" in out
    return out


def _steps(db: Path):
    def steps():
        try:
            return stored_steps(open_store(db, read_only=True))
        except Exception:  # noqa: BLE001 — the watcher may not have created the store yet
            return []
    return steps


@pytest.fixture
def watched(tmp_path):
    folder = tmp_path / "runs" / "run-a"
    folder.mkdir(parents=True)
    return folder, tmp_path / "store.db"


WRITER = """
import sys, time
path, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, {tests!r})
from intake_helpers import step_line
with open(path, "a") as f:
    for step in range(first, last + 1):
        f.write(step_line(step)); f.flush()
        if step % 10 == 0:
            time.sleep(0.01)
"""


def test_lines_appended_by_another_process_reach_the_store(watched):
    folder, db = watched
    proc = _watch(db, folder)
    try:
        log = folder / "events.jsonl"
        writer = subprocess.run([sys.executable, "-c", WRITER.format(tests=str(Path(__file__).parent)),
                                 str(log), "1", "200"], check=True)
        assert writer.returncode == 0
        assert wait_for(lambda: _steps(db)() == list(range(1, 201)))
        # a partial line is held: append half a line, then a whole line to another file, and
        # once that one is stored the partial one has been seen and must not be
        half = step_line(201)
        with open(log, "a") as f:
            f.write(half[:30])
        write_steps(folder / "other.jsonl", [1], run="run-b")
        wait_for(lambda: stored_steps(open_store(db, read_only=True), "run-b") == [1])
        assert _steps(db)() == list(range(1, 201))
        with open(log, "a") as f:
            f.write(half[30:])
        assert wait_for(lambda: _steps(db)() == list(range(1, 202)))
    finally:
        out = _stop(proc)
    assert "watching" in out


def test_rotation_by_rename_and_deletion_under_watch(watched):
    folder, db = watched
    log = folder / "train.jsonl"
    write_steps(log, range(1, 101))
    proc = _watch(db, log)
    try:
        wait_for(lambda: _steps(db)() == list(range(1, 101)))
        write_steps(log, range(101, 151))
        os.rename(log, folder / "train.jsonl.1")  # the watcher follows train.jsonl only
        write_steps(log, range(151, 201))
        wait_for(lambda: sorted(_steps(db)()) == list(range(1, 201)))
        write_steps(log, range(201, 211))
        log.unlink()
        write_steps(log, range(211, 221))
        wait_for(lambda: sorted(_steps(db)()) == list(range(1, 221)))
    finally:
        _stop(proc)
    assert sorted(stored_steps(open_store(db))) == list(range(1, 221))  # and nothing doubled


def _write_then_rotate(db, writer, log, rotated) -> None:
    """Steps 1–100 through `writer`, stored; then `log` renamed to `rotated`, and the watcher
    has seen it go (the writer keeps its descriptor)."""
    writer.write("".join(step_line(step) for step in range(1, 101)))
    writer.flush()
    wait_for(lambda: _steps(db)() == list(range(1, 101)))
    os.rename(log, rotated)
    wait_for(lambda: [s["status"] for s in sources(open_store(db, read_only=True))] == ["rotated"])


def test_a_writer_that_keeps_its_log_open_across_rotation_loses_nothing(watched):
    """`>> train.jsonl` (or a handler that reopens late) writes on into the renamed file: the
    watcher, following the path only, reads on through its descriptor."""
    folder, db = watched
    log, rotated = folder / "train.jsonl", folder / "train.jsonl.1"
    proc = _watch(db, log)
    try:
        with open(log, "a") as writer:
            _write_then_rotate(db, writer, log, rotated)
            writer.write("".join(step_line(step) for step in range(101, 151)))  # the old descriptor
        write_steps(log, range(151, 161))
        wait_for(lambda: sorted(_steps(db)()) == list(range(1, 161)))
    finally:
        _stop(proc)
    assert sorted(stored_steps(open_store(db))) == list(range(1, 161))
    assert {s["path"]: s["status"] for s in sources(open_store(db))} == {str(rotated): "rotated", str(log): "active"}


def test_a_rotated_log_still_written_while_the_watcher_was_killed_is_read_after_restart(watched):
    folder, db = watched
    log, rotated = folder / "train.jsonl", folder / "train.jsonl.1"
    proc = _watch(db, log)
    try:
        with open(log, "a") as writer:
            _write_then_rotate(db, writer, log, rotated)
            proc.kill()
            proc.wait(timeout=30)
            writer.write("".join(step_line(step) for step in range(101, 151)))  # while nobody watches
        proc = _watch(db, log)
        wait_for(lambda: sorted(_steps(db)()) == list(range(1, 151)))
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert sorted(stored_steps(open_store(db))) == list(range(1, 151))


def test_a_log_rotated_while_no_watcher_ran_is_read_on_while_its_writer_writes(watched):
    folder, db = watched
    log, rotated = folder / "train.jsonl", folder / "train.jsonl.1"
    with open(log, "a") as writer:
        writer.write("".join(step_line(step) for step in range(1, 101)))
        writer.flush()
        proc = _watch(db, log)
        wait_for(lambda: _steps(db)() == list(range(1, 101)))
        _stop(proc)
        os.rename(log, rotated)  # while nobody watches
        writer.write("".join(step_line(step) for step in range(101, 121)))
        writer.flush()
        proc = _watch(db, log)
        try:
            wait_for(lambda: sorted(_steps(db)()) == list(range(1, 121)))
            writer.write("".join(step_line(step) for step in range(121, 151)))  # and on, once it runs
            writer.flush()
            wait_for(lambda: sorted(_steps(db)()) == list(range(1, 151)))
        finally:
            _stop(proc)
    assert sorted(stored_steps(open_store(db))) == list(range(1, 151))


def test_copy_truncate_under_watch_loses_nothing(watched):
    folder, db = watched
    log = folder / "train.jsonl"
    write_steps(log, range(1, 101))
    proc = _watch(db, folder)  # the folder: the copy is followed too, and must not double
    try:
        wait_for(lambda: _steps(db)() == list(range(1, 101)))
        write_steps(log, range(101, 151))
        shutil.copyfile(log, folder / "train.jsonl.1")
        os.truncate(log, 0)
        write_steps(log, range(151, 201))
        wait_for(lambda: sorted(_steps(db)()) == list(range(1, 201)))
    finally:
        _stop(proc)
    steps = stored_steps(open_store(db))
    assert sorted(steps) == list(range(1, 201))
    assert {s["status"] for s in sources(open_store(db))} <= {"active", "truncated"}


def test_sigterm_stops_a_watch_with_nothing_to_do(tmp_path):
    proc = _watch(tmp_path / "store.db", tmp_path / "not-yet.log")
    wait_for(lambda: (tmp_path / "store.db").exists())
    _stop(proc)


# ---- SIGKILL at random points of a large ingest, then a restart ---------------------------------

KILL_LINES = 12_000


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """A ~3 MB log and the records a clean, uninterrupted ingest stores from it."""
    folder = tmp_path_factory.mktemp("big") / "run-big"
    folder.mkdir()
    log = folder / "events.jsonl"
    rng = random.Random(0)
    with open(log, "w") as f:
        for step in range(1, KILL_LINES + 1):
            f.write(step_line(step, run="run-big", pad=rng.randrange(0, 200)))
            if step % 1000 == 0:
                f.write("not json at all\n")
    clean_db = folder.parent / "clean.db"
    engine = open_store(clean_db)
    Intake(engine).ingest(Targets([str(log)]))
    return log, load_records(engine, "run-big"), sources(engine)[0]


@pytest.mark.parametrize("seed", range(20))
def test_sigkill_at_a_random_point_then_restart_stores_exactly_the_clean_result(big_log, tmp_path, seed):
    log, clean, clean_source = big_log
    assert len(clean) == KILL_LINES
    rng = random.Random(seed)
    db = tmp_path / "killed.db"
    proc = _watch(db, log, extra=("--batch-bytes", str(rng.choice([4096, 16384, 65536]))))
    if seed % 4 == 0:  # anywhere, start-up and migration included
        deadline = time.monotonic() + rng.uniform(0.0, 1.5)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
    else:  # after a random number of committed records, in the first half: the intake commits
        # every --batch-bytes of lines, fast enough to finish a short tail between a poll and the kill
        target = rng.randrange(1, KILL_LINES // 2)
        wait_for(lambda: _count(db) >= target, timeout=60, interval=0.005)
    proc.kill()
    proc.wait(timeout=30)
    if seed % 4:
        assert _count(db) < KILL_LINES, "killed too late to interrupt anything"
    engine = open_store(db)
    Intake(engine).ingest(Targets([str(log)]))
    assert count_records(engine) == {"step": KILL_LINES}
    assert load_records(engine, "run-big") == clean
    [src] = sources(engine)
    assert {k: src[k] for k in ("offset", "lines", "records", "bad_lines", "first_bad_line")} == \
           {k: clean_source[k] for k in ("offset", "lines", "records", "bad_lines", "first_bad_line")}


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return sum(count_records(open_store(db, read_only=True)).values())
    except Exception:  # noqa: BLE001 — not migrated yet
        return 0


def test_targets_expand_files_folders_and_globs(tmp_path):
    for name in ("a/train.log", "a/events.jsonl", "a/.hidden.log", "a/ckpt/model.pt", "a/store.db-wal", "a/README.md",
                 "a/config.json", "a/checkpoint-5/trainer_state.json", "a/checkpoint-5/tokenizer.json",
                 "a/checkpoints/step_5/meta.json", "a/run_id", "a/run_id.tmp", "b/train.log", "b/deep/x/train.log",
                 "c.log"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    files = Targets([tmp_path / "a"]).files()
    assert files == [str(tmp_path / "a" / "checkpoint-5" / "trainer_state.json"),
                     str(tmp_path / "a" / "events.jsonl"), str(tmp_path / "a" / "train.log")]
    assert Targets([tmp_path / "a" / "config.json"]).files() == [str(tmp_path / "a" / "config.json")]
    glob_targets = Targets([f"{tmp_path}/*/train.log", tmp_path / "later.log"])
    assert glob_targets.files() == [str(tmp_path / "a" / "train.log"), str(tmp_path / "b" / "train.log")]
    assert glob_targets.matches(str(tmp_path / "z" / "train.log"))
    assert not glob_targets.matches(str(tmp_path / "b" / "deep" / "x" / "train.log"))
    assert glob_targets.matches(str(tmp_path / "later.log"))
    assert str(tmp_path / "b" / "deep" / "x" / "train.log") in Targets([f"{tmp_path}/**/train.log"]).files()
    assert glob_targets.roots() == [(str(tmp_path), True)]
    with pytest.raises(FileNotFoundError, match="no/such"):
        Targets([tmp_path / "no" / "such" / "file.log"])


def test_a_foreign_log_belongs_to_its_output_folder():
    assert run_name("/data/runs/gpt-small/train.log") == "gpt-small"
    assert run_name("/data/internlm_20b/logs/train.log") == "internlm_20b/logs"
    assert run_name("/data/exp7/outputs/logs/train.log") == "exp7/outputs/logs"
    assert run_name("/train.log") == "default"
