"""Hugging Face Trainer: console dicts and trainer_state.json, field by field."""

from datetime import timezone
from pathlib import Path

import orjson
import pytest

import eventschema
from monitor.parsers import BadLine, parse_lines, sniff
from monitor.parsers.hf_trainer import HFTrainerParser, HFTrainerStateParser
from parser_checks import parse_valid

LOGS = Path(__file__).parents[1] / "fixtures" / "logs" / "hf_trainer"
CLOCK = 1_700_000_000.0


def parse(name: str | None, lines: list[str] | None = None):
    parser = HFTrainerParser(run="results", attempt_prefix="stdout", clock=lambda: CLOCK, tz=timezone.utc)
    return parse_valid(parser, lines if lines is not None else (LOGS / name).read_text().splitlines())


def test_logged_dicts_without_progress_bar_are_counted_steps():
    steps = parse("videollama2_logged_dicts.log")
    assert [r.step for r in steps] == list(range(1, 14))
    assert steps[0].fields == {"loss": 1.5214, "grad_norm": 82.93941089686794, "lr": 1.4285714285714286e-06,
                               "epoch": 0.01, "step_source": "count"}
    assert steps[6].fields["lr"] == 1e-05 and steps[6].fields["loss"] == 0.6321


def test_banner_world_size_and_metrics_printed_as_strings():
    launch, finish = parse("transformers5_string_metrics.log")
    assert launch.fields["world_size"] == 1  # 32 / (1 per device × 32 accumulation)
    assert launch.fields["n_params"] == 619_570_176
    assert finish.kind == "finish" and finish.step == 13  # the progress bar's count
    assert finish.fields == {"reason": "total_steps", "train_runtime": 98.37, "train_samples_per_second": 4.066,
                             "train_steps_per_second": 0.132, "train_loss": -59.87, "epoch": 1.0}


def test_syslog_progress_bar_and_logger_timestamps():
    launch, finish = parse("sagemaker_glue_2020.log")
    assert launch.ts == 1609403323.68  # [INFO|trainer.py:703] 2020-12-31 08:28:43,680
    assert launch.fields["world_size"] == 1
    assert finish.kind == "finish" and finish.step == 345  # the evaluation bar (0/51…) is not the training bar


def test_progress_bar_gives_the_step_of_the_next_dict():
    lines = ["***** Running training *****",
             "  Total optimization steps = 1000",
             "\r  5%|▌         | 50/1000 [00:30<09:30,  1.67it/s]\r"
             "{'loss': 2.1, 'grad_norm': 1.3, 'learning_rate': 5e-05, 'epoch': 0.5}",
             "{'eval_loss': '2.25', 'eval_runtime': 1.2, 'epoch': 0.5}"]
    launch, step, evaluation = parse(None, lines)
    assert step.step == 50 and step.fields["step_source"] == "progress_bar" and step.fields["loss"] == 2.1
    assert evaluation.step == 50 and evaluation.fields["val_loss"] == 2.25


def test_unreadable_dict_is_a_bad_line():
    parser = HFTrainerParser(run="r", attempt_prefix="a", clock=lambda: CLOCK)
    with pytest.raises(BadLine, match="unreadable logged dict"):
        parser.feed("{'loss': 2.1, 'grad_norm': __import__('os')}")


def test_trainer_state_json_whole_and_incrementally():
    text = (LOGS / "trainer_state.json").read_text()
    parser = HFTrainerStateParser(run="results", attempt_prefix="trainer_state.json", clock=lambda: CLOCK)
    records = parser.parse_document(text)
    assert [(r.kind, r.step) for r in records] == [("step", 15), ("step", 30), ("step", 45), ("step", 195),
                                                   ("eval", 200), ("step", 210), ("step", 2790), ("eval", 2800)]
    first = records[0]
    assert first.fields == {"loss": 2.0762, "epoch": 0.010690423162583519, "grad_norm": 1.0048305988311768,
                            "lr": 2.456140350877193e-06, "acc": 0.5809640631079673, "num_consumed_tokens": 61440}
    assert records[4].fields["val_loss"] == 1.622266411781311 and records[4].fields["eval_runtime"] == 311.107
    for record in records:
        assert eventschema.errors(record.to_event()) == []
    assert parser.parse_document(text) == []  # the same file again: nothing new

    document = orjson.loads(text)
    document["log_history"].append({"epoch": 2.0, "train_runtime": 100.0, "train_loss": 1.3, "step": 2808})
    document["global_step"] = 2808
    restored = HFTrainerStateParser(run="results", attempt_prefix="trainer_state.json", clock=lambda: CLOCK)
    restored.set_state(orjson.loads(orjson.dumps(parser.get_state())))
    (finish,) = restored.parse_document(orjson.dumps(document))
    assert finish.kind == "finish" and finish.step == 2808 and finish.fields["train_runtime"] == 100.0


def test_trainer_state_fed_line_by_line_and_a_new_training():
    lines = (LOGS / "trainer_state.json").read_text().splitlines()
    parser = HFTrainerStateParser(run="r", attempt_prefix="ts", clock=lambda: CLOCK)
    records, bad = parse_lines(parser, lines)
    assert bad == [] and len(records) == 8 and {r.attempt for r in records} == {"ts#1"}
    restarted = orjson.loads("\n".join(lines))
    restarted["global_step"] = 15
    restarted["log_history"] = restarted["log_history"][:1]
    (again,) = parser.parse_document(orjson.dumps(restarted))
    assert again.attempt == "ts#2" and again.step == 15


def test_trainer_state_refuses_other_json():
    parser = HFTrainerStateParser(run="r", attempt_prefix="ts")
    with pytest.raises(BadLine, match="no log_history"):
        parser.parse_document('{"a": 1}')
    with pytest.raises(BadLine, match="not JSON"):
        parser.parse_document('{"log_history": [')


def test_sniff_tells_console_from_trainer_state():
    assert sniff((LOGS / "trainer_state.json").read_text().splitlines()[:30]) is HFTrainerStateParser
    assert sniff((LOGS / "videollama2_logged_dicts.log").read_text().splitlines()) is HFTrainerParser
    assert sniff((LOGS / "sagemaker_glue_2020.log").read_text().splitlines()) is HFTrainerParser


def test_a_nan_loss_dict_is_read_not_refused():
    """Python prints a NaN loss as bare `nan`, which ast.literal_eval refuses."""
    (step,) = parse(None, ["{'loss': nan, 'grad_norm': inf, 'learning_rate': 2e-05, 'epoch': 0.02}"])
    assert step.fields["loss"] is None and step.fields["loss_nonfinite"] is True
    assert step.fields["grad_norm"] is None and step.fields["lr"] == 2e-05


def test_progress_bar_and_dict_on_one_line():
    launch, *steps = parse("translation_progress_bar_dicts.log")
    assert launch.fields["world_size"] == 1 and launch.fields["n_params"] == 77_419_008
    assert [(s.step, s.fields["loss"], s.fields["step_source"]) for s in steps] == [
        (500, 1.6771, "progress_bar"), (1000, 1.5235, "progress_bar"), (1500, 1.4469, "progress_bar")]
    assert steps[0].fields["lr"] == 7.039668442865602e-06 and steps[0].fields["epoch"] == 0.89


def test_two_bar_updates_glued_and_string_values():
    step, evaluation = parse("transformers5_glued_bars.log")
    assert step.step == 1272  # the last bar update on the line
    assert step.fields["loss"] == 1.178 and step.fields["num_consumed_tokens"] == 185_800
    assert step.fields["acc"] == 0.7347 and step.fields["entropy"] == 1.18
    assert evaluation.step == 1272 and evaluation.fields["val_loss"] == 1.137
    assert evaluation.fields["eval_mean_token_accuracy"] == 0.7406


def test_a_dict_that_prints_its_step_is_taken_at_its_word():
    (step,) = parse(None, ["{'loss': 0.5, 'learning_rate': 1e-05, 'epoch': 0.1, 'step': 42}"])
    assert step.step == 42 and "step_source" not in step.fields
