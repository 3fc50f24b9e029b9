"""Device and launcher endings (monitor/parsers/device_endings.py) in every text format, on real
excerpts: torchrun's SIGKILL, CUDA illegal memory access, NCCL errors that are not timeouts; and
stray control bytes that must never lose a line."""

from datetime import timezone
from pathlib import Path

import pytest

from monitor.parsers import registry
from monitor.parsers.nanochat import NanochatParser
from monitor.parsers.text import TextParser
from parser_checks import parse_valid

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
TEXT_PARSERS = [p for p in registry() if issubclass(p, TextParser)]
CLOCK = 1_700_000_000.0


def parse(parser_class, lines):
    parser = parser_class(run="run", attempt_prefix="log", clock=lambda: CLOCK, tz=timezone.utc)
    return parse_valid(parser, lines)


def ends(parser_class, name):
    records = parse(parser_class, (LOGS / name).read_text().splitlines())
    return [(r.kind, r.fields.get("cause") or r.fields.get("reason"), r.rank) for r in records
            if r.kind in ("fault", "stop")]


@pytest.mark.parametrize("parser_class", TEXT_PARSERS, ids=lambda p: p.name)
def test_every_text_format_reads_the_device_endings(parser_class):
    assert ends(parser_class, "faults/sigkill_received_by_pid.log") == [("fault", "killed", 0)]
    assert ends(parser_class, "faults/cuda_illegal_memory_access.log") == [("fault", "cuda_error", 0)]
    assert ends(parser_class, "faults/nccl_system_error.log") == [("fault", "nccl_error", 0)]
    assert ends(parser_class, "faults/codegeex_illegal_memory_traceback.log") == [("fault", "cuda_error", 0)]


def test_the_fault_keeps_the_message_and_the_traceback_its_exception():
    [fault] = [r for r in parse(NanochatParser, (LOGS / "faults/codegeex_illegal_memory_traceback.log")
                                .read_text().splitlines()) if r.kind == "fault"]
    assert fault.fields["exc_type"] == "RuntimeError"
    assert fault.fields["message"] == "CUDA error: an illegal memory access was encountered"
    [single] = [r for r in parse(NanochatParser, (LOGS / "faults/nccl_system_error.log").read_text().splitlines())]
    assert single.fields["message"].startswith("NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1333")


@pytest.mark.parametrize("line", [
    "NCCL_DEBUG=INFO set",  # configuration, not an error
    "[2024-03-18 17:38:50] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>",
    "WARNING:torch.distributed.elastic.multiprocessing.api:Sending process 812914 closing signal SIGTERM",
])
def test_lines_that_only_mention_nccl_or_signals_are_no_ending(line):
    assert parse(NanochatParser, [line]) == []


@pytest.mark.parametrize("junk", ["\x1b", "\x07", "\x08", "\x1b\x1b", "\x7f"])
def test_a_stray_control_byte_at_the_start_or_inside_never_loses_the_line(junk):
    line = "step 00001/00500 (0.20%) | loss: 6.891 | lrm: 1.00 | dt: 312.50ms | tok/sec: 16,777 | mfu: 1.20"
    for dirty in (junk + line, line.replace("| dt", junk + "| dt"), line.replace("6.891", "6." + junk + "891")):
        [step] = parse(NanochatParser, [dirty])
        assert (step.step, step.fields["loss_smoothed"], step.fields["step_time"]) == (1, 6.891, 0.3125)
