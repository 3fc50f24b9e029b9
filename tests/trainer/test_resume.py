"""Checkpoints and resume of the real trainer, in real processes (plain python and torchrun/gloo).

The tiny preset, 2N = 16 steps. "Stop" is `debug.stop_at_step`, which stops exactly like a
SIGTERM does (checkpoint, `stop` record, exit 0) but at a known step.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import eventschema
from polling import wait_for
from trainer_procs import REPO, env, prepare_sample, read_events, run_train, steps_in, train_cmd

pytestmark = pytest.mark.slow

N = 8
BASE = ("data.valid_every=0", "train.print_every=0", "debug.record_sample_ids=true", f"data.total_steps={2 * N}")
PARTS = ("model", "optimizer", "lr_scheduler", "grad_scaler", "data_position", "rng")


def train(data, out, *args, nproc=None, ok=True):
    proc = run_train(data, out, *BASE, *args, nproc=nproc)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(out) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_events(out / "events.jsonl") if r["kind"] == "step"}


def samples_by_step(out) -> dict[int, list[int]]:
    """Every sample id trained on, per step, over every rank and attempt (a step seen twice fails)."""
    seen: dict[int, list[int]] = {}
    attempts: dict[int, str] = {}
    for path in sorted(out.glob("sample_ids.rank*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert attempts.setdefault(record["step"], record["attempt"]) == record["attempt"], "step trained twice"
            seen.setdefault(record["step"], []).extend(record["ids"])
    return {step: sorted(ids) for step, ids in seen.items()}


def events_of(out, kind) -> list[dict]:
    return [r for r in read_events(out / "events.jsonl") if r["kind"] == kind]


DTYPE = {None: "model.dtype=fp16", 2: "model.dtype=fp32"}  # one process: with the fp16 grad scaler's state


@pytest.fixture(scope="module")
def uninterrupted(sample_data, tmp_path_factory):
    """2N steps without a stop, one process and two, for reference."""
    runs = {}
    for nproc in (None, 2):
        out = tmp_path_factory.mktemp("whole") / "run"
        train(sample_data, out, DTYPE[nproc], nproc=nproc)
        runs[nproc] = out
    return runs


@pytest.mark.parametrize("nproc", [None, 2], ids=["1-process-fp16", "2-process-gloo"])
def test_stop_and_resume_continues_exactly(sample_data, uninterrupted, tmp_path, nproc):
    out = tmp_path / "run"
    train(sample_data, out, DTYPE[nproc], f"checkpoint.checkpoint_every={N}", f"debug.stop_at_step={N}", nproc=nproc)
    assert [r["step"] for r in events_of(out, "checkpoint")] == [N]
    assert events_of(out, "stop")[-1]["step"] == N
    train(sample_data, out, DTYPE[nproc], f"checkpoint.checkpoint_every={N}", "--resume", "auto", nproc=nproc)

    records = eventschema.validate_lines((out / "events.jsonl").read_text().splitlines())
    resume = next(r for r in records if r["kind"] == "resume")
    assert resume["step"] == N and resume["mode"] == "auto" and not resume["gap"]
    assert resume["restored"] == dict.fromkeys(PARTS, True)
    assert resume["source"].endswith(f"step_{N:08d}")
    launches = [r for r in records if r["kind"] == "launch"]
    assert launches[1]["resume_from"] == resume["source"] and launches[1]["start_step"] == N
    assert losses(out) == losses(uninterrupted[nproc])  # every step, bit for bit
    scales = [r["loss_scale"] for r in records if r["kind"] == "step"]
    assert scales == [r["loss_scale"] for r in events_of(uninterrupted[nproc], "step")]
    assert sorted(losses(out)) == list(range(1, 2 * N + 1))
    assert samples_by_step(out) == samples_by_step(uninterrupted[nproc])
    checkpoint = events_of(out, "checkpoint")[-1]
    assert checkpoint["step"] == 2 * N and checkpoint["bytes"] > 0
    assert 0 <= checkpoint["blocked_s"] and 0 <= checkpoint["write_s"]

    if nproc:  # resuming the finished run: one line (from rank 0), no traceback, exit 0
        again = train(sample_data, out, DTYPE[nproc], "--resume", "auto", nproc=nproc)
        assert f"run already complete at step {2 * N}" in again.stdout
        assert "Traceback" not in again.stderr and again.stdout.count("run already complete") == 1


def test_resume_at_another_world_size_sees_every_sample_once(tmp_path):
    """2 processes → 1 → 2, to the end of a small data batch: each sample exactly once."""
    small = prepare_sample(tmp_path / "small", "--sample", "40", "--seed", "1")
    out = tmp_path / "run"
    common = ("data.valid_every=0", "train.print_every=0", "debug.record_sample_ids=true",
              "data.total_steps=100000", "checkpoint.checkpoint_every=1000")
    for nproc, stop in ((2, 3), (None, 8), (2, -1)):
        proc = run_train(small, out, *common, f"debug.stop_at_step={stop}", *(["--resume", "auto"] if stop != 3 else []),
                         nproc=nproc)
        assert proc.returncode == 0, proc.stderr[-3000:]

    resumes = events_of(out, "resume")
    assert [r["step"] for r in resumes] == [3, 8]
    assert all(r["restored"]["data_position"] and r["restored"]["optimizer"] for r in resumes)
    assert [r["world_size"] for r in events_of(out, "launch")] == [2, 1, 2]
    assert events_of(out, "finish")[-1]["reason"] == "data_exhausted"
    seen = [i for ids in samples_by_step(out).values() for i in ids]
    num_samples = (sum(np.fromfile(p, dtype=np.uint16).size
                       for p in (small / "batch_0" / "slice_0").glob("*.bin")) - 1) // 64
    per_step = {2: 16, 1: 8}  # micro_bsz × micro_num × world size
    assert len(seen) == len(set(seen))  # nothing trained twice
    assert set(seen) <= set(range(num_samples))
    assert num_samples - len(seen) < per_step[2]  # nothing skipped but the last partial global batch
    steps = sorted(samples_by_step(out))
    assert steps == list(range(1, len(steps) + 1))
    assert len(seen) == 3 * per_step[2] + 5 * per_step[1] + (len(steps) - 8) * per_step[2]


def test_weights_only_and_no_optimizer_resumes_record_the_gap(sample_data, tmp_path):
    first = tmp_path / "first"
    train(sample_data, first, f"checkpoint.checkpoint_every={N}", f"debug.stop_at_step={N}")
    ckpt = first / "checkpoints" / f"step_{N:08d}"

    fresh = tmp_path / "fresh"
    train(sample_data, fresh, "--init-from", str(ckpt), "debug.stop_at_step=2")
    resume = eventschema.validate_lines((fresh / "events.jsonl").read_text().splitlines())[1]
    assert resume["kind"] == "resume" and resume["mode"] == "init_from" and resume["gap"]
    assert resume["restored"] == {**dict.fromkeys(PARTS, False), "model": True}
    assert resume["step"] == 0 and sorted(losses(fresh)) == [1, 2]
    assert losses(fresh)[1] < losses(first)[1]  # it did start from the trained weights

    train(sample_data, first, "--resume", str(ckpt), "--no-load-optimizer", f"debug.stop_at_step={N + 1}")
    resume = events_of(first, "resume")[-1]
    assert resume["mode"] == "path" and resume["gap"] and resume["step"] == N
    assert resume["restored"] == {**dict.fromkeys(PARTS, True), "optimizer": False}


def test_resume_path_must_be_a_whole_checkpoint(sample_data, tmp_path):
    missing = train(sample_data, tmp_path / "a", "--resume", str(tmp_path / "nowhere"), ok=False)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [f"error: --resume {tmp_path / 'nowhere'}: no such checkpoint folder"]

    out = tmp_path / "b"
    train(sample_data, out, "checkpoint.checkpoint_every=2", "debug.stop_at_step=4")
    ckpt = out / "checkpoints" / "step_00000004"
    (ckpt / "rank_0" / "extra.pt").write_bytes(b"")
    damaged = train(sample_data, out, "--resume", str(ckpt), ok=False)
    assert damaged.returncode == 2 and "Traceback" not in damaged.stderr
    size = json.loads((ckpt / "rank_0" / "manifest.json").read_text())["files"]["rank_0/extra.pt"]["bytes"]
    assert damaged.stderr.strip().splitlines() == [
        f"error: --resume {ckpt}: not a whole checkpoint: rank 0: rank_0/extra.pt truncated (0 of {size} bytes)"]

    fallback = train(sample_data, out, "--resume", "auto", "debug.stop_at_step=5")  # auto skips it, says why
    resume = events_of(out, "resume")[-1]
    assert resume["step"] == 2 and resume["skipped"][0]["step"] == 4
    assert resume["skipped"][0]["reason"].startswith("rank 0: rank_0/extra.pt truncated")
    assert fallback.returncode == 0


def test_sigterm_checkpoints_before_exiting(sample_data, tmp_path):
    out = tmp_path / "run"
    cmd = train_cmd(sample_data, out, "data.total_steps=100000", "train.print_every=0", "data.valid_every=0",
                    "checkpoint.checkpoint_every=100000", nproc=2)
    proc = subprocess.Popen(cmd, env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: steps_in(out / "events.jsonl") >= 3)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        subprocess.run(["kill", "-TERM", workers[0]], check=True)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    records = read_events(out / "events.jsonl")
    stop = records[-1]
    assert stop["kind"] == "stop" and records[-2]["kind"] == "checkpoint"
    assert records[-2]["step"] == stop["step"] >= 3
    assert (out / "checkpoints" / f"step_{stop['step']:08d}" / "meta.json").is_file()
