"""The intake in-process on real files and real stores: exactly once, bad input, rotation.

`Intake.sync(path)` is what the watcher calls on every change; here it is called directly,
so each file-system situation is set up exactly. tests/monitor/test_watch.py does the same
through a real watchdog observer in a separate process.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intake_helpers import all_records, sources, step_line, stored_steps, write_steps

from monitor.intake import Intake
from monitor.parsers.base import Parser
from monitor.parsers.jsonl import JsonlParser
from monitor.records import Record
from monitor.sources import HEAD_BYTES, Targets, read_batch, tail_hash


def _ingest(store, *paths, **kw) -> None:
    Intake(store, **kw).ingest(Targets([str(p) for p in paths]))


def test_ingest_stores_every_record_once_and_repeating_adds_nothing(store, tmp_path):
    log = tmp_path / "run" / "events.jsonl"
    log.parent.mkdir()
    write_steps(log, range(1, 301))
    _ingest(store, log, batch_bytes=4096)
    assert stored_steps(store) == list(range(1, 301))
    _ingest(store, log)
    assert stored_steps(store) == list(range(1, 301))
    [src] = sources(store)
    assert (src["offset"], src["lines"], src["records"], src["bad_lines"], src["parser"]) == (
        log.stat().st_size, 300, 300, 0, "jsonl")
    record = all_records(store)[0]
    assert record.fields["per_source"] == {"web": {"loss": 9.5, "tokens": 1}} and record.fields["lr"] == 3e-4


def test_a_partial_last_line_waits_for_its_newline(store, tmp_path):
    log = tmp_path / "events.jsonl"
    write_steps(log, range(1, 4))
    fourth = step_line(4)
    with open(log, "a") as f:
        f.write(fourth[:25])
    intake = Intake(store)
    intake.targets = Targets([str(log)])
    intake.sync(str(log))
    assert stored_steps(store) == [1, 2, 3]
    with open(log, "a") as f:
        f.write(fourth[25:])
    intake.sync(str(log))
    assert stored_steps(store) == [1, 2, 3, 4]
    assert sources(store)[0]["bad_lines"] == 0


def test_bad_input_is_counted_with_its_first_example_and_good_lines_are_kept(store, tmp_path):
    log = tmp_path / "events.jsonl"
    rng = random.Random(5)
    with open(log, "wb") as f:
        f.write(step_line(1).encode())
        f.write(bytes(rng.randrange(256) for _ in range(3000)).replace(b"\n", b"") + b"\n")  # binary garbage
        f.write(step_line(2).encode())
        f.write(b'{"v":1,"kind":"step","run":"run-a","note":"caf\xe9"}\n')  # invalid UTF-8
        f.write(b"x" * (10 << 20) + b"\n")  # a 10 MB line
        f.write(step_line(3).encode()[:40] + b"\n")  # truncated JSON
        f.write(b"\x1b[31m\x00\x01 colour and control\r\n")
        f.write(step_line(4).encode())
    _ingest(store, log)
    assert stored_steps(store) == [1, 2, 3 + 1]
    [src] = sources(store)
    assert src["bad_lines"] == 5 and src["lines"] == 8 and src["first_bad_line"] == 2
    assert src["first_bad_reason"].startswith("invalid UTF-8") or "JSON" in src["first_bad_reason"]
    assert "\n" not in src["first_bad_example"] and "\x00" not in src["first_bad_example"]
    assert len(src["first_bad_example"]) <= 200


def test_a_file_of_no_known_format_is_reported_not_read(store, tmp_path):
    log = tmp_path / "notes.txt"
    log.write_text("".join(f"dear diary, day {i} was long\n" for i in range(60)))
    _ingest(store, log)
    [src] = sources(store)
    assert src["status"] == "unknown_format" and src["records"] == 0 and src["bad_lines"] > 0
    assert "--format" in src["first_bad_reason"] and src["first_bad_example"] == "dear diary, day 0 was long"
    assert all_records(store) == []


class Summing(Parser):
    """A stateful test format: each line is an integer; each record carries the running sum."""

    name = "summing"
    crash_after: int | None = None
    fed = 0

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.total = self.count = 0

    @classmethod
    def sniff(cls, head):
        return 0.0

    def feed(self, line):
        Summing.fed += 1
        if Summing.crash_after is not None and Summing.fed > Summing.crash_after:
            raise KeyboardInterrupt  # stands for the process dying mid-batch
        self.total += int(line)
        self.count += 1
        return [Record("step", self.run, f"{self.attempt_prefix}#1", 1.7e9 + self.count, "", 0, self.count,
                       {"loss": float(self.total)})]

    def get_state(self):
        return {"total": self.total, "count": self.count}

    def set_state(self, state):
        self.total, self.count = state["total"], state["count"]


@pytest.mark.parametrize("crash_after", [1, 37, 250, 499])
def test_parser_state_commits_with_the_offset_so_a_crash_resumes_exactly(store, tmp_path, crash_after):
    log = tmp_path / "numbers.log"
    log.write_text("".join(f"{i}\n" for i in range(1, 501)))
    Summing.fed, Summing.crash_after = 0, crash_after
    with pytest.raises(KeyboardInterrupt):
        _ingest(store, log, format=Summing, batch_bytes=64)
    Summing.crash_after = None
    _ingest(store, log, format=Summing, batch_bytes=64)
    records = all_records(store)
    assert [r.step for r in records] == list(range(1, 501))
    assert [r.fields["loss"] for r in records] == [n * (n + 1) / 2 for n in range(1, 501)]


def _follow(store, *targets) -> Intake:
    intake = Intake(store)
    intake.targets = Targets([str(t) for t in targets])
    return intake


def test_rotation_by_rename_loses_nothing(store, tmp_path):
    log = tmp_path / "train.log.jsonl"
    write_steps(log, range(1, 51))
    intake = _follow(store, log)
    intake.sync(str(log))
    write_steps(log, range(51, 81))  # written before the rotation, not read yet
    os.rename(log, tmp_path / "train.log.jsonl.1")
    write_steps(log, range(81, 101))
    intake.sync(str(log))
    assert sorted(stored_steps(store)) == list(range(1, 101))
    assert [s["status"] for s in sources(store)] == ["rotated", "active"]


def test_copy_truncate_loses_nothing(store, tmp_path):
    log = tmp_path / "train.jsonl"
    write_steps(log, range(1, 51))
    intake = _follow(store, log)
    intake.sync(str(log))
    write_steps(log, range(51, 81))  # only the copy will hold these
    shutil.copyfile(log, tmp_path / "train.jsonl.1")
    os.truncate(log, 0)
    write_steps(log, range(81, 91))
    intake.sync(str(log))
    assert sorted(stored_steps(store)) == list(range(1, 91))
    assert [s["status"] for s in sources(store)] == ["truncated", "active", "active"]


def test_copy_truncate_with_the_copy_also_followed_doubles_nothing(store, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    log = folder / "train.jsonl"
    write_steps(log, range(1, 51))
    intake = _follow(store, folder)
    intake.sync(str(log))
    write_steps(log, range(51, 81))
    shutil.copyfile(log, folder / "train.jsonl.1")
    intake.sync(str(folder / "train.jsonl.1"))  # the copy is seen first: held, not read
    assert sorted(stored_steps(store)) == list(range(1, 51))
    write_steps(log, range(81, 84))  # still written before the truncation: lost to copy-truncate itself
    os.truncate(log, 0)
    write_steps(log, range(84, 91))
    for path in intake.targets.files():
        intake.sync(path)
    intake.sync(str(log))
    steps = stored_steps(store)
    assert len(steps) == len(set(steps))
    assert set(range(1, 81)) | set(range(84, 91)) <= set(steps)


@pytest.mark.parametrize("rewritten_to", [10, 120], ids=["shorter", "longer"])
def test_copy_truncate_while_a_batch_is_parsed_loses_and_doubles_nothing(store, tmp_path, rewritten_to):
    """logrotate's copy and truncate land between the batch's read and its commit: the offset's
    hash must describe the bytes parsed, not the file as it is by then (CI caught this once)."""
    folder = tmp_path / "logs"
    folder.mkdir()
    log = folder / "train.jsonl"

    class RotatedMidBatch(JsonlParser):
        def feed(self, line):
            records = super().feed(line)
            if records and records[0].step == 80:
                shutil.copyfile(log, folder / "train.jsonl.1")
                os.truncate(log, 0)
                write_steps(log, range(81, rewritten_to + 81))
            return records

    write_steps(log, range(1, 51))
    intake = Intake(store, format=RotatedMidBatch)
    intake.targets = Targets([str(folder)])
    intake.sync(str(log))
    write_steps(log, range(51, 81))
    intake.sync(str(log))
    for _ in range(2):
        for path in intake.targets.files():
            intake.sync(path)
    assert sorted(stored_steps(store)) == list(range(1, rewritten_to + 81))


def test_a_deleted_file_is_drained_through_the_open_descriptor(store, tmp_path):
    log = tmp_path / "train.jsonl"
    write_steps(log, range(1, 11))
    intake = _follow(store, log)
    intake.sync(str(log))
    write_steps(log, range(11, 21))
    log.unlink()
    intake.sync(str(log))
    assert stored_steps(store) == list(range(1, 21))
    assert sources(store)[0]["status"] == "deleted"


def test_rotation_while_not_running_is_caught_up_on_restart(store, tmp_path):
    log = tmp_path / "train.jsonl"
    write_steps(log, range(1, 21))
    _ingest(store, log)
    write_steps(log, range(21, 31))
    os.rename(log, tmp_path / "train.jsonl.1")
    write_steps(log, range(31, 41))
    _ingest(store, log)
    assert sorted(stored_steps(store)) == list(range(1, 41))


def test_copy_truncate_while_not_running_is_caught_up_on_restart(store, tmp_path):
    log = tmp_path / "train.jsonl"
    write_steps(log, range(1, 21))
    _ingest(store, log)
    write_steps(log, range(21, 31))
    shutil.copyfile(log, tmp_path / "train.jsonl.1")
    os.truncate(log, 0)
    write_steps(log, range(31, 61))  # grows past the old offset: only its bytes tell it apart
    _ingest(store, log)
    assert sorted(stored_steps(store)) == list(range(1, 61))


def test_a_file_replaced_under_the_same_name_is_a_new_source(store, tmp_path):
    log = tmp_path / "train.jsonl"
    write_steps(log, range(1, 11))
    _ingest(store, log)
    log.unlink()
    write_steps(log, range(100, 105))
    _ingest(store, log)
    assert sorted(stored_steps(store)) == list(range(1, 11)) + list(range(100, 105))


def test_a_byte_identical_log_in_another_folder_is_read_in_full(store, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_steps(tmp_path / name / "events.jsonl", range(1, 6), run=f"run-{name}")
    _ingest(store, tmp_path / "a" / "events.jsonl")
    (tmp_path / "b" / "events.jsonl").write_bytes((tmp_path / "a" / "events.jsonl").read_bytes())
    _ingest(store, tmp_path / "b" / "events.jsonl")
    assert [s["records"] for s in sources(store)] == [5, 5]


def test_a_file_first_of_no_known_format_is_read_once_it_becomes_one(store, tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_text("starting up\n")
    intake = _follow(store, log)
    intake.sync(str(log), final=True)
    assert sources(store)[0]["status"] == "unknown_format"
    write_steps(log, range(1, 11))
    intake.sync(str(log), final=True)
    [src] = sources(store)
    assert src["status"] == "active" and stored_steps(store) == list(range(1, 11)) and src["bad_lines"] == 1


def _trainer_state(path, last_step: int) -> None:
    """A trainer_state.json as transformers writes it (indented, sorted keys), its history up to
    `last_step`."""
    import json

    history = [{"epoch": step / 100, "grad_norm": 1.0, "learning_rate": 1e-4, "loss": 3 - step / 1000, "step": step}
               for step in range(50, last_step + 1, 50)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"global_step": last_step, "log_history": history, "max_steps": 1500}, indent=2,
                               sort_keys=True) + "\n")


def test_checkpoint_copies_of_trainer_state_store_the_history_once_in_the_output_folders_run(store, tmp_path):
    out = tmp_path / "gpt-ft" / "output"
    for checkpoint in (1000, 500, 1500):  # written out of order: read in the checkpoints' order
        _trainer_state(out / f"checkpoint-{checkpoint}" / "trainer_state.json", checkpoint)
    _ingest(store, out)
    records = all_records(store)
    assert sorted(r.step for r in records) == list(range(50, 1501, 50))
    assert {(r.run, r.attempt.split("#")[1]) for r in records} == {("gpt-ft/output", "1")}
    assert len({r.attempt for r in records}) == 1


def test_trainer_state_rewritten_in_place_adds_only_its_new_entries(store, tmp_path):
    state = tmp_path / "gpt-ft" / "trainer_state.json"
    _trainer_state(state, 500)
    _ingest(store, state)
    _trainer_state(state, 1000)  # transformers rewrites it whole
    _ingest(store, state)
    records = all_records(store)
    assert sorted(r.step for r in records) == list(range(50, 1001, 50))
    assert len({r.attempt for r in records}) == 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=700).map(lambda b: b.replace(b"\n", b"")), max_size=40),
       partial=st.binary(max_size=50).map(lambda b: b.replace(b"\n", b"")),
       max_bytes=st.integers(1, 2000))
def test_read_batch_returns_every_whole_line_once_with_the_hashes_of_what_it_read(tmp_path, lines, partial, max_bytes):
    path = tmp_path / "any.log"
    path.write_bytes(b"".join(line + b"\n" for line in lines) + partial)
    fd = os.open(path, os.O_RDONLY)
    try:
        read, offset, tail = [], 0, ""
        while (batch := read_batch(fd, offset, max_bytes, tail)) is not None and batch.lines:
            assert batch.tail_hash == tail_hash(fd, batch.end)
            if offset < HEAD_BYTES:
                head_len = min(batch.end, HEAD_BYTES)
                assert batch.head[:head_len] == os.pread(fd, head_len, 0)
            read += batch.lines
            offset, tail = batch.end, batch.tail_hash
        assert batch is not None and batch.end == offset
        assert read == lines and offset == path.stat().st_size - len(partial)
        if offset:  # a byte before the offset changed: the file is no longer the one read
            with open(path, "r+b") as f:
                f.seek(offset - 1)
                f.write(b"x")
            assert read_batch(fd, offset, max_bytes, tail) is None
    finally:
        os.close(fd)
