"""Megatron-LM: real training logs, numbers checked field by field."""

from datetime import timezone
from pathlib import Path

import pytest

from monitor.parsers import parse_lines, sniff
from monitor.parsers.megatron import MegatronParser
from parser_checks import parse_valid

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
CLOCK = 1_700_000_000.0


def parse(name: str):
    parser = MegatronParser(run="gpt-2", attempt_prefix=name, clock=lambda: CLOCK, tz=timezone.utc)
    return parse_valid(parser, (LOGS / name).read_text().splitlines())


def test_iteration_lines_without_timestamps():
    steps = parse("megatron/issue_epfLLM_11.log")
    assert [r.step for r in steps] == [122, 123, 124, 125]
    assert steps[0].fields == {
        "consumed_samples": 124928, "step_time": pytest.approx(86.5452), "lr": 9.15e-06,
        "global_batch_size": 1024, "loss": 2.50422, "loss_scale": 1.0, "grad_norm": 0.231,
        "skipped_iterations": 0, "nan_iterations": 0}
    assert steps[0].ts == CLOCK


def test_timestamped_lines_with_throughput_and_moe_loss():
    steps = parse("megatron/issue_756_mixtral.log")
    first = steps[0]
    assert first.step == 71 and first.ts == 1712372532.0  # [2024-04-06 03:02:12] read as UTC here
    assert first.fields["tflops"] == 243.6
    assert first.fields["loss"] == pytest.approx(1.818812)
    assert first.fields["load_balancing_loss"] == pytest.approx(1.013377)
    assert first.fields["num_zeros"] == 0.0
    assert first.fields.get("tokens_per_s") is None  # no seq_length known: no token throughput


def test_arguments_dump_gives_token_throughput_and_slurm_time_limit_is_a_stop():
    records = parse("megatron/mi300x_time_limit.log")
    assert [r.kind for r in records] == ["launch", "step", "step", "step", "step", "stop"]
    launch = records[0]
    assert launch.fields["world_size"] == 8
    assert launch.ts == 1763114741.0  # dated by the first timestamp after "using world size"
    step = records[1]
    assert step.step == 1 and step.fields["step_time"] == pytest.approx(450.8465)
    assert step.fields["tokens_per_s"] == pytest.approx(512 * 8192 / 450.8465)
    assert step.fields["tgs"] == pytest.approx(512 * 8192 / 450.8465 / 8)
    assert step.fields["tflops"] == 233.3 and step.fields["mem_usages"] == pytest.approx(0.441)
    assert "loss_window" not in step.fields  # log_interval 1: the loss is that iteration's
    stop = records[-1]
    assert stop.fields["reason"] == "time_limit" and stop.step == 17
    assert stop.ts == 1763121916.0  # CANCELLED AT 2025-11-14T12:05:16


def test_ctrl_c_under_torchrun_is_one_sigint_stop():
    records = parse("megatron/ctrl_c_sigint.log")
    assert [(r.kind, r.fields["reason"]) for r in records] == [("stop", "SIGINT")]


def test_resume_and_validation_lines():
    launch, evaluation = parse("megatron/validation_and_resume.log")
    assert launch.fields["resume_from"] == "./checkpoints/gpt-2" and launch.fields["world_size"] == 1
    assert evaluation.kind == "eval" and evaluation.step == 4
    assert evaluation.fields == {"val_loss": pytest.approx(11.0296), "val_perplexity": pytest.approx(61672.97)}


def test_log_interval_marks_the_loss_as_a_window_mean():
    parser = MegatronParser(run="r", attempt_prefix="a", clock=lambda: CLOCK)
    lines = ["------------------------ arguments ------------------------",
             "  log_interval .................................... 100",
             "  seq_length ...................................... 2048",
             "-------------------- end of arguments ---------------------",
             " iteration      100/  1000 | consumed samples: 6400 | elapsed time per iteration (ms): 500.0 "
             "| learning rate: 1.0E-04 | global batch size:    64 | lm loss: 7.5E+00 | loss scale: 1.0 |"]
    (step,), bad = parse_lines(parser, lines)
    assert bad == [] and step.fields["loss_window"] == 100 and step.fields["tokens_per_s"] == 64 * 2048 / 0.5


def test_sniff():
    assert sniff((LOGS / "megatron/mi300x_time_limit.log").read_text().splitlines()) is MegatronParser


def test_fork_printing_this_and_average_figures():
    (step,) = parse("megatron/rocm_fork_slash_values.log")
    f = step.fields
    assert step.step == 126 and f["step_time"] == pytest.approx(13.3728) and f["tflops"] == 567.6
    assert f["tgs"] == 9801.4 and f["loss"] == pytest.approx(6.548988e-03) and f["grad_norm"] == 0.061
    assert f["hip_mem_usage_free_total_usage_ratio"] == "153.81GB"  # not a number: kept as printed
