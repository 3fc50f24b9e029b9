"""The same single-process run twice with one seed gives identical losses."""

import pytest

from trainer_procs import read_events, run_train

pytestmark = pytest.mark.slow


def _losses(sample_data, out, *overrides):
    proc = run_train(sample_data, out, "data.total_steps=15", "data.valid_every=5", *overrides)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_events(out / "events.jsonl")
    return ([r["loss"] for r in records if r["kind"] == "step"],
            [r["val_loss"] for r in records if r["kind"] == "eval"])


def test_same_seed_same_losses(sample_data, tmp_path):
    first = _losses(sample_data, tmp_path / "a")
    second = _losses(sample_data, tmp_path / "b")
    assert len(first[0]) == 15 and len(first[1]) == 3
    assert first == second


def test_another_seed_other_losses(sample_data, tmp_path):
    assert _losses(sample_data, tmp_path / "a")[0] != _losses(sample_data, tmp_path / "b", "train.seed=7")[0]
