"""train.compile=true: the tiny preset compiled under `torchrun --nproc-per-node 2` (gloo),
stopped at step 8 and resumed, equals 16 uninterrupted compiled steps bit for bit; each
launch compiles after its launch record and before its first step record (startup)."""

import pytest

from trainer_procs import read_events, run_train

pytestmark = pytest.mark.slow

N = 8
COMPILED = ("train.compile=true", "data.valid_every=0", "train.print_every=0", f"data.total_steps={2 * N}")


def _train(data, out, *args):
    proc = run_train(data, out, *COMPILED, *args, nproc=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_compiled_run_resumes_exactly(sample_data, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _train(sample_data, whole)
    _train(sample_data, parts, f"checkpoint.checkpoint_every={N}", f"debug.stop_at_step={N}")
    _train(sample_data, parts, f"checkpoint.checkpoint_every={N}", "--resume", "auto")

    def losses(out):
        return {r["step"]: r["loss"] for r in read_events(out / "events.jsonl") if r["kind"] == "step"}

    assert sorted(losses(whole)) == list(range(1, 2 * N + 1))
    assert losses(parts) == losses(whole)
    records = read_events(parts / "events.jsonl")
    for attempt in {r["attempt"] for r in records}:
        mine = [r for r in records if r["attempt"] == attempt]
        launch = next(r for r in mine if r["kind"] == "launch")
        steps = [r for r in mine if r["kind"] == "step"]
        assert steps[0]["compile_s"] > 0 and all("compile_s" not in r for r in steps[1:])
        assert steps[0]["ts"] - launch["ts"] >= steps[0]["compile_s"]  # inside startup: launch → first step
        assert steps[0]["step_time"] < steps[0]["compile_s"]  # step 1 times a step, not the compile
