"""The formats added for issue 16, each on real excerpts (tests/fixtures/logs/README.md), field by
field: modded-nanogpt, torchtune, MindFormers, DeepSpeed, LLaMA-Factory's trainer_log.jsonl,
ms-swift, PyTorch Lightning's bar and metrics.csv. Their endings are the shared ones
(test_parsers_device_endings.py and test_parsers_endings.py run every text format)."""

from datetime import timezone
from pathlib import Path

import pytest

from monitor.parsers import by_name, sniff
from parser_checks import parse_valid

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
CLOCK = 1_700_000_000.0


def read(name, fmt, lines=None, prefix="log"):
    lines = lines if lines is not None else (LOGS / name).read_bytes().decode().split("\n")
    parser = by_name(fmt)(run="run", attempt_prefix=prefix, clock=lambda: CLOCK, tz=timezone.utc)
    return parse_valid(parser, lines)


def steps(records, kind="step"):
    return {r.step: r.fields for r in records if r.kind == kind}


@pytest.mark.parametrize("name, fmt", [
    ("modded_nanogpt/parameter_golf_issue839.log", "modded_nanogpt"),
    ("modded_nanogpt/val_lines_pr65.log", "modded_nanogpt"),
    ("torchtune/codellama_pr1358.log", "torchtune"),
    ("torchtune/gpu_resources_pr640.log", "torchtune"),
    ("mindformers/llama2_13b_msrun_worker0.log", "mindformers"),
    ("mindformers/print_output_info_2023.log", "mindformers"),
    ("deepspeed/bert_issue1825.log", "deepspeed"),
    ("deepspeed/pipeline_steps_moe.log", "deepspeed"),
    ("llamafactory/trainer_log_issue774.jsonl", "llamafactory"),
    ("swift/dpo_issue4146.log", "swift"),
    ("lightning/progress_bar_issue3866.log", "lightning"),
    ("lightning/metrics_csv_layout.csv", "lightning_csv"),
])
def test_each_file_is_recognised_as_its_format(name, fmt):
    assert sniff((LOGS / name).read_text().split("\n")[:50]).name == fmt


def test_modded_nanogpt_train_and_val_lines():
    records = read("modded_nanogpt/parameter_golf_issue839.log", "modded_nanogpt", prefix="train_20250101_000000.log:1")
    by_step, evals = steps(records), steps(records, "eval")
    assert sorted(by_step) == [5050, 5100, 5150, 5200, 5250, 5300]
    assert by_step[5050] == {"total_steps": 20000, "total_training_time_s": 219.627, "step_time_avg": 0.04349,
                             "loss": 2.0232}
    assert by_step[5100]["step_time"] == pytest.approx((221.774 - 219.627) / 50)
    assert evals[5200] == {"total_steps": 20000, "total_training_time_s": 226.207, "step_time_avg": 0.0435,
                           "val_loss": 2.1501, "val_bpb": 1.2701}
    # the file clock (anchored by the name) moves on by the growth of train_time
    times = [r.ts for r in records]
    assert times[-1] - times[0] == pytest.approx(230.476 - 219.627)


def test_modded_nanogpt_first_validation_has_no_step_average():
    evals = steps(read("modded_nanogpt/val_lines_pr65.log", "modded_nanogpt"), "eval")
    assert evals[0] == {"total_steps": 1480, "total_training_time_s": 0.0, "step_time_avg": None, "val_loss": 7.7109}
    assert evals[375]["val_loss"] == 3.8241 and evals[375]["step_time_avg"] == pytest.approx(0.26331)


def test_torchtune_step_lines_and_launch():
    records = read("torchtune/codellama_pr1358.log", "torchtune")
    assert records[0].kind == "launch" and records[0].fields["format"] == "torchtune"
    by_step = steps(records)
    assert sorted(by_step) == [1, 2, 3, 4, 5]
    assert by_step[1] == {"loss": 2.085338592529297, "lr": 2e-05, "tgs": 57.828881833956174}
    assert steps(read("torchtune/gpu_resources_pr640.log", "torchtune"))[2] == {
        "loss": 0.9040272831916809, "lr": 2e-05, "gpu_resources": 40708667904.0}


def test_mindformers_per_step_line():
    records = read("mindformers/llama2_13b_msrun_worker0.log", "mindformers")
    by_step = steps(records)
    assert by_step[2] == {"epoch": 1.0, "loss": 10.633, "step_time": pytest.approx(1.752), "lr": 1e-05,
                          "overflow": False, "loss_scale": 1.0, "tflops": 170.738}  # `[1 508834]`: garbled, no value
    assert by_step[3]["grad_norm"] == 10.579812
    assert records[0].ts == 1744040067.308  # 2025-04-07 15:34:27,308 UTC


def test_mindformers_2023_line_takes_this_steps_loss():
    [step] = read("mindformers/print_output_info_2023.log", "mindformers")
    assert step.step == 116 and step.fields == {"epoch": 1.0, "loss": 2.22, "step_time": pytest.approx(1.951612),
                                                "lr": 2.4499998e-06, "overflow": False, "loss_scale": 16384.0}


def test_mindformers_step_counts_across_epochs():
    line = "{ Epoch:[  2/  2], step:[    3/   19], loss: 8.0, per_step_time: 1750ms, lr: 1e-05, overflow cond: True, loss_scale: 0.5"
    [step] = read("", "mindformers", [line])
    assert step.step == 19 + 3 and step.fields["overflow"] is True and step.fields["epoch"] == 2.0


def test_deepspeed_step_and_timer_lines_make_one_record():
    by_step = steps(read("deepspeed/bert_issue1825.log", "deepspeed"))
    assert by_step[40] == {"lr": 5e-05, "skipped_steps": 2, "samples_per_s": 83.48609168106144,
                           "peak_mem_bytes": round(9.02 * 2**30), "loss": None}
    chatglm = read("deepspeed/chatglm_issue12.log", "deepspeed")
    assert steps(chatglm)[170]["samples_per_s"] == 0.9075004102820523  # this step's, not the running mean
    assert chatglm[0].ts == 1680693756.058


def test_deepspeed_pipeline_line_and_the_flops_profile():
    [step] = read("deepspeed/pipeline_steps_moe.log", "deepspeed")
    assert step.step == 200 and step.fields == {"loss": 5.5508, "step_time": 0.936, "samples_per_s": 136.706,
                                                "lm_loss": 5.5103, "moe_loss": 0.0405}
    # the profiler's summary (real, a T5 run on 3 workers), then a step line (real, another run)
    profile = (LOGS / "deepspeed/flops_profiler_t5_summary.log").read_text().split("\n")
    step_line = (LOGS / "deepspeed/bert_issue1825.log").read_text().split("\n")[0]
    records = read("", "deepspeed", profile + [step_line])
    assert steps(records)[40] == {"lr": 5e-05, "skipped_steps": 2, "profiler_step_time": pytest.approx(0.48761),
                                  "profiler_tflops": pytest.approx(2.35), "profiler_samples_per_s": 196.88, "loss": None}
    head = (LOGS / "deepspeed/flops_profiler_megatron_issue98.log").read_text().split("\n")
    parser = by_name("deepspeed")(run="run", attempt_prefix="log", clock=lambda: CLOCK, tz=timezone.utc)
    parse_valid(parser, head)
    assert parser.s["world_size"] == 128


def test_llamafactory_trainer_log_steps_and_the_finish():
    records = read("llamafactory/trainer_log_issue774.jsonl", "llamafactory")
    by_step = steps(records)
    assert by_step[3200] == {"loss": 4.4671, "total_steps": 3235, "epoch": 0.99, "lr": 1.4439610072863874e-08}
    assert [r.kind for r in records][-1] == "finish" and records[-1].step == 3235
    assert steps(read("llamafactory/trainer_log_issue4350.jsonl", "llamafactory"))[44]["lr"] == 6.736526264224101e-06


def test_llamafactory_elapsed_time_moves_the_clock():
    records = read("llamafactory/trainer_log_issue774.jsonl", "llamafactory", prefix="run_20240101_000000.log:1")
    assert records[1].ts - records[0].ts == 62  # 5:13:22 → 5:14:24


def test_swift_steps_are_exact_and_memory_is_bytes():
    by_step = steps(read("swift/dpo_issue4146.log", "swift"))
    assert sorted(by_step) == [78, 79]
    first = by_step[78]
    assert (first["loss"], first["grad_norm"], first["lr"], first["epoch"]) == (0.21932983, 0.57172734, 6.8e-07, 0.89)
    assert first["peak_mem_bytes"] == round(63.16 * 2**30) and first["steps_per_s"] == 0.011239
    assert first["total_steps"] == 176 and first["nll_loss"] == 0.875 and first["rewards/margins"] == 10.0625
    assert "step_source" not in first


def test_lightning_progress_bar():
    by_step = steps(read("lightning/progress_bar_issue3866.log", "lightning"))
    assert by_step[1651] == {"loss_smoothed": 0.158, "loss": 0.149, "epoch": 0.0, "step_source": "progress_bar"}
    joined = steps(read("lightning/progress_bar_cr_issue4225.log", "lightning"))
    assert {step: f["loss_smoothed"] for step, f in joined.items()} == {1: 10.473, 2: 10.224}


def test_lightning_metrics_csv_rows():
    records = read("lightning/metrics_csv_layout.csv", "lightning_csv")
    assert [(r.kind, r.step) for r in records] == [("step", 0), ("eval", 0), ("step", 1), ("eval", 1)]
    assert records[1].fields == {"epoch": 0.0, "val_loss": 2.41, "val_acc": 0.52}
    assert records[2].fields == {"epoch": 1.0, "loss": 1.87}


def test_axolotl_and_llamafactory_consoles_are_the_trainers_and_read_as_hf_trainer():
    for name in ("axolotl/issue592_bar_dicts.log", "axolotl/pr3148_eval_memory.log", "llamafactory/console_issue3529.log"):
        assert sniff((LOGS / name).read_bytes().decode().split("\n")[:50]).name == "hf_trainer"
    [step] = [r for r in read("axolotl/issue592_bar_dicts.log", "hf_trainer") if r.kind == "step"]
    assert (step.step, step.fields["loss"], step.fields["lr"], step.fields["epoch"]) == (283, 0.8635, 0.0001369640787949015, 0.97)
    assert step.fields["step_source"] == "progress_bar"
    [evaluation] = read("axolotl/pr3148_eval_memory.log", "hf_trainer")
    assert evaluation.fields["val_loss"] == 1.3642939329147339
    assert evaluation.fields["peak_mem_bytes"] == round(10.97 * 2**30)
    console = steps(read("llamafactory/console_issue3529.log", "hf_trainer"))
    assert [f["loss"] for f in console.values()] == [1.7319, 1.7129, 1.8102]
    assert console[min(console)]["grad_norm"] == 0.547949492931366
