"""torchtitan: real training logs (colour codes, rank prefixes, CRLF), field by field."""

from datetime import timezone
from pathlib import Path

import pytest

from monitor.parsers import parse_lines, sniff
from monitor.parsers.torchtitan import TorchtitanParser
from parser_checks import parse_valid

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
CLOCK = 1_700_000_000.0
GIB = 2**30


def parse(name: str):
    parser = TorchtitanParser(run="llama3_8b", attempt_prefix=name, clock=lambda: CLOCK, tz=timezone.utc)
    lines = (LOGS / name).read_bytes().decode().split("\n")  # keeps any CR: the parser strips it
    return parse_valid(parser, lines)


def test_llama3_run_from_launch_to_finish():
    records = parse("torchtitan/llama3_8b_h200.log")
    assert [r.kind for r in records] == ["launch"] + ["step"] * 11 + ["finish"]
    launch = records[0]
    assert launch.ts == 1739446391.198  # 2025-02-13 11:33:11,198
    assert launch.fields["world_size"] == 8
    assert launch.fields["device"] == "NVIDIA H200"
    assert launch.fields["peak_flops"] == 9.89e14
    assert launch.fields["n_params"] == 8_030_261_248  # behind a colour code that lost its ESC
    assert launch.fields["job"] == "Llama 3 8B training"
    first, tenth = records[1], records[2]
    assert first.step == 1 and first.rank == 0 and first.ts == 1739446415.026
    assert first.fields["loss"] == 12.2417
    assert first.fields["peak_mem_bytes"] == round(42.08 * GIB) and first.fields["peak_mem_pct"] == 30.10
    assert first.fields["tgs"] == 1478 and first.fields["tokens_per_s"] == 1478 * 8
    assert first.fields["mfu"] == pytest.approx(0.0865)
    assert tenth.step == 10 and tenth.fields["peak_mem_bytes"] == round(49.59 * GIB)  # "mmemory:" line
    finish = records[-1]
    assert finish.step == 100 and finish.fields == {"reason": "total_steps"} and finish.ts == 1739446533.22


def test_ranks_repeating_a_step_count_once():
    records = parse("torchtitan/moe_eight_ranks_unprefixed.log")
    assert [r.step for r in records] == [4, 5]
    assert records[0].fields == {"loss": 7.62585, "grad_norm": 26.625, "peak_mem_bytes": round(66.91 * GIB),
                                 "peak_mem_pct": 37.51, "tgs": 10050, "tflops": 314.71,
                                 "mfu": pytest.approx(0.1399)}


def test_colour_codes_and_crlf():
    records = parse("torchtitan/colour_codes_crlf.log")
    assert [r.step for r in records] == [14, 15, 16]
    assert records[0].fields == {"loss": 3.24405, "grad_norm": 0.8319, "peak_mem_bytes": round(9.46 * GIB),
                                 "peak_mem_pct": 64.99, "tgs": 7282, "tflops": 0.52, "mfu": pytest.approx(0.0017)}
    assert records[0].ts == 1779120286.338 and records[0].rank == 0


def test_mfu_not_available_and_validation():
    parser = TorchtitanParser(run="r", attempt_prefix="a", clock=lambda: CLOCK, tz=timezone.utc)
    lines = ["[titan] 2025-06-10 21:58:27,008 - root - INFO - step: 700  loss:  0.7052  memory: 76.79GiB(96.97%)  "
             "tps: 1,541,366  tflops: 0.00  mfu: N/A",
             "[titan] 2025-06-10 21:58:30,000 - root - INFO - validate step: 700  loss:  0.7100  memory: 76.79GiB(96.97%)  tps: 9,000"]
    (step, evaluation), bad = parse_lines(parser, lines)
    assert bad == [] and step.fields["mfu"] is None and step.fields["tgs"] == 1541366
    assert evaluation.kind == "eval" and evaluation.step == 700 and evaluation.fields["val_loss"] == 0.71


def test_sniff():
    assert sniff((LOGS / "torchtitan/colour_codes_crlf.log").read_text().splitlines()) is TorchtitanParser
    assert sniff((LOGS / "torchtitan/llama3_8b_h200.log").read_text().splitlines()[:12]) is TorchtitanParser


def test_2024_lines_with_wps_and_rank_prefixes():
    (step,) = parse("torchtitan/wps_2024_two_ranks.log")
    assert step.step == 1 and step.rank == 1 and step.ts == 1711994092.734
    assert step.fields == {"loss": 10.9746, "peak_mem_bytes": round(9.53 * GIB), "peak_mem_pct": 10.03,
                           "tgs": 1228, "mfu": pytest.approx(0.0002)}


def test_newer_mesh_line_gives_the_world_size_and_negative_loss_is_no_value():
    lines = (LOGS / "torchtitan/observability_2026_mesh.log").read_text().splitlines()
    parser = TorchtitanParser(run="r", attempt_prefix="a", clock=lambda: CLOCK, tz=timezone.utc)
    records, bad = parse_lines(parser, lines + [
        "[rank0]:[titan] 2026-09-11 23:05:50,000 - torchtitan.trainer - INFO - step:  1  loss: -2.0000  memory: 1.00GiB(1.00%)  tps: 1,000  tflops: 1.00  mfu: 1.00%"])
    (step,) = records
    assert bad == [] and step.fields["loss"] is None and step.fields["tokens_per_s"] == 7000  # dp_shard=7
