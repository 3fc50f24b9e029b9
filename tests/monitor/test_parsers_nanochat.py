"""nanochat: real base_train output, numbers checked field by field."""

from pathlib import Path

import pytest

from monitor.parsers import sniff
from monitor.parsers.nanochat import NanochatParser
from parser_checks import parse_valid

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
CLOCK = 1_700_000_000.0


def parse(name: str, lines: list[str] | None = None):
    parser = NanochatParser(run="d32", attempt_prefix=name, clock=lambda: CLOCK)
    return parse_valid(parser, lines if lines is not None else (LOGS / name).read_text().splitlines())


def test_smoothed_loss_is_stored_as_smoothed_and_throughput_both_ways():
    launch, first, second = parse("nanochat/run1000_d32_8xh100.log")
    assert launch.kind == "launch"
    assert launch.fields["world_size"] == 8  # 131,072 / 16,384 tokens per micro-batch
    assert launch.fields["flops_per_token"] == pytest.approx(1.207960e10)
    assert launch.fields["n_params"] == 1_879_048_192
    assert first.step == 4 and first.fields["loss"] is None
    assert first.fields["loss_smoothed"] == 8.813754
    assert first.fields["lr_multiplier"] == 1.0
    assert first.fields["step_time"] == pytest.approx(1.57188)
    assert first.fields["tokens_per_s"] == 83385
    assert first.fields["tgs"] == pytest.approx(83385 / 8)
    assert first.fields["mfu"] == pytest.approx(0.5092)
    assert first.fields["total_steps"] == 71680 and first.fields["total_training_time_s"] == 0.0
    assert second.fields["loss_smoothed"] == 8.488074


def test_newer_format_eval_and_a_step_counter_that_goes_backwards():
    records = parse("nanochat/d4_500_steps.log")
    steps = [r for r in records if r.kind == "step"]
    assert steps[0].step == 5 and steps[0].fields["data_epoch"] == 1
    assert (steps[0].fields["data_file"], steps[0].fields["data_row_group"]) == (0, 3)  # `pq: 0 rg: 3`
    assert steps[1].fields["data_row_group"] == 4
    assert steps[0].fields["mfu"] is None  # bf16_mfu 0.00: nanochat could not measure it
    eta = next(r for r in steps if r.step == 11)
    assert eta.fields["total_training_time_s"] == pytest.approx(2.4)
    assert eta.fields["eta_s"] == pytest.approx(20.3 * 60)
    evaluation = next(r for r in records if r.kind == "eval")
    assert evaluation.step == 500 and evaluation.fields == {"val_bpb": 1.147239, "val_loss": None}
    assert evaluation.attempt.endswith("#1")
    restarted = records[-1]
    assert restarted.step == 100 and restarted.attempt == "nanochat/d4_500_steps.log#2"


def test_lines_without_total_time():
    steps = parse("nanochat/npu_sdpa.log")
    assert [r.step for r in steps] == [200, 210, 220, 230, 240, 249]
    assert steps[-1].fields["step_time"] == pytest.approx(0.58764)
    assert steps[-1].fields["tokens_per_s"] == 55761
    assert steps[-1].fields.get("tgs") is None  # world size never printed in this excerpt


def test_gpu_line_core_metric_and_the_end_of_training():
    records = parse("synthetic", [
        "Autodetected device type: cuda",
        "GPU: NVIDIA H100 80GB HBM3 | Peak FLOPS (BF16): 9.89e+14",
        "Vocab size: 65,536",
        "Resuming optimization from step 2000",
        "step 02000/21400 (9.35%) | loss: 3.100000 | lrm: 1.00 | dt: 1000.00ms | tok/sec: 524,288 | mfu: 3.30 | total time: 1.00m",
        "Step 02000 | CORE metric: 0.1545",
        "Peak memory usage: 19456.00MiB",
    ])
    launch, step, core, finish = records
    assert launch.fields["device"] == "NVIDIA H100 80GB HBM3" and launch.fields["peak_flops"] == 9.89e14
    assert launch.fields["resume_from"] == "step 2000"
    assert step.fields["mfu"] == pytest.approx(0.033)
    assert core.kind == "eval" and core.fields["core_metric"] == 0.1545
    assert finish.kind == "finish" and finish.step == 2000 and finish.fields["peak_mem_bytes"] == 19456 * 2**20


def test_sniff():
    assert sniff((LOGS / "nanochat/npu_sdpa.log").read_text().splitlines()) is NanochatParser
