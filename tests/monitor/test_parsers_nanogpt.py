"""nanoGPT: real train.py output, numbers checked field by field."""

from datetime import timezone
from pathlib import Path

import pytest

import eventschema
from monitor.parsers import parse_lines, sniff
from monitor.parsers.nanogpt import NanoGPTParser

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
CLOCK = 1_700_000_000.0


def parse(name: str, lines: list[str] | None = None):
    parser = NanoGPTParser(run="out-shakespeare", attempt_prefix=name, host="gpu1", clock=lambda: CLOCK,
                           tz=timezone.utc)
    records, bad = parse_lines(parser, lines if lines is not None else (LOGS / name).read_text().splitlines())
    assert bad == []
    for record in records:
        assert schema_errors(record) == [], record
    return records


def schema_errors(record):
    """Schema errors, except the nulls a foreign launch record has where its log says nothing
    (device, peak FLOPs, config digest…): see docs/parsers.md."""
    errors = eventschema.errors(record.to_event())
    if record.kind == "launch":
        errors = [e for e in errors if not e.endswith("None is not of type 'string'")
                  and "None is not of type" not in e]
    return errors


def test_iter_lines_become_steps_and_the_mfu_sentinel_is_no_value():
    records = parse("nanogpt/shakespeare_char.log")
    steps = [r for r in records if r.kind == "step"]
    assert [r.step for r in steps] == list(range(0, 250, 10))
    first, second = steps[0], steps[1]
    assert first.fields["loss"] == 4.2648
    assert first.fields["step_time"] == pytest.approx(9.37181)
    assert first.fields["mfu_smoothed"] is None  # "mfu -100.00%": not measured yet
    assert "mfu" not in first.fields  # nanoGPT's figure is a running (EMA) MFU
    assert second.fields["loss"] == 3.2202
    assert second.fields["step_time"] == pytest.approx(0.89376)
    assert second.fields["mfu_smoothed"] == pytest.approx(0.1668)
    assert (first.run, first.attempt, first.host, first.rank, first.ts) == (
        "out-shakespeare", "nanogpt/shakespeare_char.log#1", "gpu1", 0, CLOCK)


def test_eval_line_carries_train_and_val_loss():
    evals = [r for r in parse("nanogpt/shakespeare_char.log") if r.kind == "eval"]
    assert len(evals) == 1
    assert evals[0].step == 250
    assert evals[0].fields == {"val_loss": 1.722, "train_loss": 1.544}


def test_nan_loss_is_null_but_flagged_and_leading_timestamps_are_used():
    records = parse("nanogpt/gpt2_fp16_nan.log")
    by_step = {r.step: r for r in records if r.kind == "step"}
    assert by_step[3000].fields["loss"] == 4.249 and by_step[3000].fields["step_time"] == pytest.approx(35.39233)
    assert by_step[3010].fields["loss"] is None and by_step[3010].fields["loss_nonfinite"] is True
    assert by_step[2920].ts == 1679477439.0  # 2023-03-22 09:30:39 UTC
    assert [r.kind for r in records].count("eval") == 1
    assert {r.attempt for r in records} == {"nanogpt/gpt2_fp16_nan.log#1"}


def test_old_lines_without_mfu():
    steps = parse("nanogpt/torchrun_8gpu_no_mfu.log")
    assert [r.step for r in steps] == list(range(1631, 1642))
    assert steps[0].fields == {"loss": 4.0863, "step_time": pytest.approx(0.56194), "mfu_smoothed": None,
                               "tokens_per_s": None}


def test_launch_line_gives_tokens_per_step_and_global_throughput():
    records = parse("synthetic", ["Overriding: wandb_run_name = gpt2-124M",
                                  "tokens per iteration will be: 491,520",
                                  "Resuming training from out",
                                  "number of parameters: 123.69M",
                                  "iter 2000: loss 3.1000, time 500.00ms, mfu 40.00%"])
    launch, step = records
    assert launch.kind == "launch" and launch.run == "gpt2-124M"
    assert launch.fields["tokens_per_step"] == 491520 and launch.fields["resume_from"] == "out"
    assert launch.fields["n_params"] == 123_690_000
    assert step.fields["tokens_per_s"] == pytest.approx(491520 / 0.5)
    assert step.fields.get("tgs") is None  # nanoGPT never prints its world size


def test_sniff_picks_nanogpt():
    assert sniff((LOGS / "nanogpt/shakespeare_char.log").read_text().splitlines()[:20]) is NanoGPTParser
