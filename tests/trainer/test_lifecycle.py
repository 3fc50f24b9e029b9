"""Lifecycle records from real processes: stop on SIGTERM, fault on an exception, finish, run ids."""

import signal
import subprocess

import numpy as np
import pytest

import eventschema
from polling import wait_for
from trainer_procs import REPO, env, prepare_sample, read_events, run_train, steps_in, train_cmd

pytestmark = pytest.mark.slow


def _start(sample_data, out, *overrides, nproc=None):
    return subprocess.Popen(train_cmd(sample_data, out, "data.total_steps=100000", "train.print_every=0",
                                      *overrides, nproc=nproc),
                            env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_mid_run_records_stop_and_exits_cleanly(sample_data, tmp_path):
    out = tmp_path / "run"
    proc = _start(sample_data, out)
    try:
        wait_for(lambda: steps_in(out / "events.jsonl") >= 3)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    records = eventschema.validate_lines((out / "events.jsonl").read_text().splitlines())
    last_step = [r for r in records if r["kind"] == "step"][-1]
    assert records[-1]["kind"] == "stop"
    assert records[-1]["reason"] == "SIGTERM" and records[-1]["step"] == last_step["step"]
    assert not any(r["kind"] in ("finish", "fault") for r in records)


def test_sigterm_to_one_torchrun_worker_stops_every_rank_at_the_same_step(sample_data, tmp_path):
    out = tmp_path / "run"
    proc = _start(sample_data, out, nproc=2)
    try:
        wait_for(lambda: steps_in(out / "events.jsonl") >= 3)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2
        subprocess.run(["kill", "-TERM", workers[-1]], check=True)  # only one rank gets the signal
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]  # both workers left the loop together and exited 0
    records = read_events(out / "events.jsonl")
    assert records[-1]["kind"] == "stop"
    assert records[-1]["step"] == [r for r in records if r["kind"] == "step"][-1]["step"]


def test_injected_exception_records_fault_and_reraises(sample_data, tmp_path):
    out = tmp_path / "run"
    proc = run_train(sample_data, out, "debug.fail_at_step=5")
    assert proc.returncode != 0
    assert "injected failure at step 5" in proc.stderr  # re-raised: the traceback reaches stderr
    records = eventschema.validate_lines((out / "events.jsonl").read_text().splitlines())
    assert [r["kind"] for r in records] == ["launch"] + ["step"] * 4 + ["fault"]
    fault = records[-1]
    assert fault["exc_type"] == "RuntimeError" and "debug.fail_at_step" in fault["message"]
    assert fault["step"] == 4 and "Traceback" in fault["traceback"]


def test_run_id_is_stable_across_launches_and_attempt_is_new(sample_data, tmp_path):
    out = tmp_path / "run"
    for _ in range(2):
        proc = run_train(sample_data, out, "data.total_steps=2", "data.valid_every=0")
        assert proc.returncode == 0, proc.stderr[-2000:]
    launches = [r for r in read_events(out / "events.jsonl") if r["kind"] == "launch"]
    assert len(launches) == 2
    assert launches[0]["run"] == launches[1]["run"] == (out / "run_id").read_text().strip()
    assert launches[0]["attempt"] != launches[1]["attempt"]


def test_finish_when_the_data_batch_is_exhausted(tmp_path):
    small = prepare_sample(tmp_path / "small", "--sample", "40", "--seed", "1")
    out = tmp_path / "run"
    proc = run_train(small, out, "data.total_steps=100000", "data.valid_every=0", "train.print_every=0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_events(out / "events.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    samples = (sum(np.fromfile(p, dtype=np.uint16).size for p in (small / "batch_0" / "slice_0").glob("*.bin")) - 1) // 64
    assert len(steps) == samples // 8  # micro_bsz × micro_num samples per step, one process
    assert records[-1] == records[-1] | {"kind": "finish", "reason": "data_exhausted", "step": len(steps)}


def test_fault_on_another_rank_goes_to_that_ranks_event_file(sample_data, tmp_path):
    out = tmp_path / "run"
    proc = run_train(sample_data, out, "debug.fail_at_step=3", "debug.fail_rank=1", nproc=2)
    assert proc.returncode != 0
    rank1 = eventschema.validate_lines((out / "events.rank1.jsonl").read_text().splitlines())
    assert [(r["kind"], r["rank"], r["step"]) for r in rank1] == [("fault", 1, 2)]
    assert "injected failure" in rank1[0]["message"]
    rank0 = read_events(out / "events.jsonl")
    assert [r["step"] for r in rank0 if r["kind"] == "step"] == [1, 2]
    assert not any(r["kind"] in ("finish", "stop") for r in rank0)
