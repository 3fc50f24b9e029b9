"""Mixed precision: bf16 and fp16 autocast runs train; fp16 scales the loss, the others do not."""

import math

import pytest

from trainer_procs import read_events, run_train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("dtype, scale", [("bf16", 1.0), ("fp16", 65536.0)])
def test_mixed_precision_run(sample_data, tmp_path, dtype, scale):
    proc = run_train(sample_data, tmp_path / dtype, f"model.dtype={dtype}", "data.total_steps=4", "data.valid_every=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_events(tmp_path / dtype / "events.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    assert len(steps) == 4 and all(math.isfinite(r["loss"]) for r in steps)
    assert steps[0]["loss_scale"] == scale
    assert records[0]["dtype"] == dtype
