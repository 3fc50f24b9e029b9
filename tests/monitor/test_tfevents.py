"""TensorBoard event files (monitor/tfevents.py): a file written by torch's SummaryWriter is read
with every scalar at its step and wall time, `trainledger ingest` stores it once (also when it
was cut short and completed later), tags are mapped by name and the mapping is overridable, and
random bytes are refused cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.store import load_records, open_store
from monitor.tfevents import TFEventsError, read_records

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
START = 1_715_000_000.0
TAGS = ("train/loss", "train/learning_rate", "throughput", "custom/Tokens Seen")


def value(tag_index: int, step: int) -> float:
    return round(1.0 / (step + 1) + tag_index, 3)


def write_run(folder: Path, steps: range, eval_every: int = 10) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    for step in steps:
        for index, tag in enumerate(TAGS):
            writer.add_scalar(tag, value(index, step), step, walltime=START + 2.0 * step + 0.25 * index)
        if step % eval_every == 0:
            writer.add_scalar("eval/loss", 3.0 - step / 100, step, walltime=START + 2.0 * step + 1.5)
    writer.close()
    [path] = folder.glob("events.out.tfevents.*")
    return path


def cli(*args):
    return subprocess.run([TRAINLEDGER, *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_every_scalar_at_its_step_and_wall_time(tmp_path):
    path = write_run(tmp_path / "run", range(0, 30))
    records = read_records(str(path), run="run")
    assert records[0].kind == "launch" and records[0].fields["format"] == "tfevents"
    steps = {r.step: r for r in records if r.kind == "step"}
    evals = {r.step: r for r in records if r.kind == "eval"}
    assert sorted(steps) == list(range(30)) and sorted(evals) == [0, 10, 20]
    for step, record in steps.items():
        assert record.fields["loss"] == pytest.approx(value(0, step), rel=1e-6)
        assert record.fields["lr"] == pytest.approx(value(1, step), rel=1e-6)
        assert record.fields["tokens_per_s"] == pytest.approx(value(2, step), rel=1e-6)
        assert record.fields["custom_tokens_seen"] == pytest.approx(value(3, step), rel=1e-6)
        assert record.ts == START + 2.0 * step + 0.25 * 3  # the step's latest scalar
    assert evals[20].fields == {"val_loss": pytest.approx(2.8)} and evals[20].ts == START + 41.5


def test_ingest_stores_a_run_once_also_when_cut_short_and_completed(tmp_path):
    source = write_run(tmp_path / "written", range(0, 40))
    run = tmp_path / "tb-run"
    run.mkdir()
    copy = run / source.name
    data = source.read_bytes()
    copy.write_bytes(data[: len(data) * 2 // 3 + 7])  # cut inside a record, as a live writer leaves it
    db = tmp_path / "s.db"
    first = cli("ingest", run, "--db", db)
    assert first.returncode == 0, first.stderr
    copy.write_bytes(data)
    assert cli("ingest", run, "--db", db).returncode == 0
    again = cli("ingest", run, "--db", db)
    assert again.returncode == 0 and again.stdout.startswith("0 new records")
    stored = [r for r in load_records(open_store(db), "tb-run") if r.kind == "step"]
    assert [r.step for r in stored] == list(range(40))
    assert stored[39].fields["loss"] == pytest.approx(value(0, 39), rel=1e-6)


def test_the_tag_mapping_is_overridable_in_the_formats_file(tmp_path):
    run = tmp_path / "tb-run"
    write_run(run, range(0, 3))
    formats = tmp_path / "formats.toml"
    formats.write_text('[tfevents.tags]\nloss = "custom/Tokens Seen"\n')
    db = tmp_path / "s.db"
    assert cli("ingest", run, "--db", db, "--formats", formats).returncode == 0
    [first, *_] = [r for r in load_records(open_store(db), "tb-run") if r.kind == "step"]
    assert first.fields["loss"] == pytest.approx(value(3, 0), rel=1e-6)
    assert first.fields["train_loss"] == pytest.approx(value(0, 0), rel=1e-6)  # the default tag keeps its name


def test_a_corrupt_event_file_is_one_line_exit_2(tmp_path):
    run = tmp_path / "tb-run"
    path = write_run(run, range(0, 3))
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF
    path.write_bytes(bytes(data))
    result = cli("ingest", run, "--db", tmp_path / "s.db")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "checksum" in result.stderr
    assert "Traceback" not in result.stderr


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_refused_or_read_never_a_crash(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("tf") / "events.out.tfevents.1.h"
    path.write_bytes(data)
    try:
        read_records(str(path))
    except TFEventsError:
        pass
