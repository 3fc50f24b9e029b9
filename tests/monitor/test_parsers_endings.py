"""How attempts end and begin, the same in every text format: tracebacks, OOM, NCCL timeouts,
Killed, torchrun, Slurm, our own records; attempts, timestamps, colour codes, rank prefixes."""

import subprocess
import sys
from datetime import timezone
from pathlib import Path

import pytest

from monitor.parsers import registry
from monitor.parsers.nanogpt import NanoGPTParser
from monitor.parsers.fields import clean, find_timestamp, split_rank
from monitor.parsers.text import TextParser
from parser_checks import parse_valid

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
TEXT_PARSERS = [p for p in registry() if issubclass(p, TextParser)]
CLOCK = 1_700_000_000.0


def parse(lines, parser_class=NanoGPTParser, **kwargs):
    parser = parser_class(run="run", attempt_prefix="log", clock=lambda: CLOCK, tz=timezone.utc, **kwargs)
    return parse_valid(parser, lines)


def fixture(name):
    return (LOGS / name).read_text().splitlines()


@pytest.mark.parametrize("parser_class", TEXT_PARSERS, ids=lambda p: p.name)
def test_every_format_reads_every_ending(parser_class):
    expected = {
        "faults/childfailed_sigkill.log": ("fault", "killed"),
        "faults/cuda_oom_traceback.log": ("fault", "oom"),
        "faults/multiline_message_traceback.log": ("fault", "exception"),
        "faults/nccl_watchdog_glog.log": ("fault", "nccl_timeout"),
        "faults/nccl_watchdog_nemo_progress.log": ("fault", "nccl_timeout"),
        "faults/rank_prefixed_chained_childfailed.log": ("fault", "exception"),
        "faults/torchrun_sighup.log": ("stop", "SIGHUP"),
        "megatron/ctrl_c_sigint.log": ("stop", "SIGINT"),
    }
    for name, (kind, why) in expected.items():
        records = parse(fixture(name), parser_class)
        endings = [r for r in records if r.kind != "step"]  # NeMo's bar is a step to the Lightning format
        assert [(r.kind, r.fields.get("cause", r.fields.get("reason"))) for r in endings] == [(kind, why)], name


def test_child_failed_error_names_the_root_cause():
    (fault,) = parse(fixture("faults/childfailed_sigkill.log"))
    assert fault.fields["exc_type"] == "torch.distributed.elastic.multiprocessing.errors.ChildFailedError"
    assert fault.fields["message"] == "example_chat_completion.py failed: rank 0 on yan-ml, exit code -9"
    assert fault.host == "yan-ml" and fault.rank == 0
    assert fault.ts == 1711471850.0  # its "time : 2024-03-26_16:50:50"
    assert fault.fields["traceback"].startswith("Traceback (most recent call last):")
    assert "Signal 9 (SIGKILL)" in fault.fields["traceback"]


def test_rank_prefixed_chained_traceback_then_torchrun_is_one_fault_of_the_root_exception():
    (fault,) = parse(fixture("faults/rank_prefixed_chained_childfailed.log"))
    assert (fault.rank, fault.fields["exc_type"]) == (0, "RuntimeError")
    assert fault.fields["message"] == "Error building extension 'fused_adam'"
    assert "subprocess.CalledProcessError" in fault.fields["traceback"]  # the chained cause is kept
    assert fault.fields["traceback"].splitlines()[0] == "Traceback (most recent call last):"


def test_oom_fault_keeps_type_message_and_head_of_traceback():
    step, fault = parse(["iter 10: loss 2.0000, time 100.00ms, mfu 10.00%"] + fixture("faults/cuda_oom_traceback.log"))
    assert fault.fields["exc_type"] == "RuntimeError"
    assert fault.fields["message"].startswith("CUDA out of memory. Tried to allocate 86.00 MiB")
    assert fault.step == 10
    assert fault.fields["traceback"].splitlines()[1] == '  File "train.py", line 251, in <module>'


def test_multiline_message_ends_the_traceback_and_keeps_the_first_line():
    (fault,) = parse(fixture("faults/multiline_message_traceback.log"))
    assert fault.fields["message"] == "--load_best_model_at_end requires the save and eval strategy to match, but found"


def _python_stderr(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return result.stderr.splitlines()


def test_chained_exception_from_a_real_python_is_one_fault_with_the_last_type():
    lines = _python_stderr(
        "def load():\n    raise KeyError('shard_07')\n"
        "try:\n    load()\nexcept KeyError as e:\n    raise RuntimeError('data loader died') from e\n")
    (fault,) = parse(lines + ["iter 5: loss 1.0000, time 1.00ms, mfu 1.00%"])[:1]
    assert fault.fields["exc_type"] == "RuntimeError" and fault.fields["message"] == "data loader died"
    assert "KeyError: 'shard_07'" in fault.fields["traceback"]
    assert fault.fields["cause"] == "exception"


def test_keyboard_interrupt_from_a_real_python_is_a_sigint_stop():
    records = parse(_python_stderr("raise KeyboardInterrupt"))
    assert [(r.kind, r.fields["reason"]) for r in records] == [("stop", "SIGINT")]


def test_traceback_still_open_at_the_end_comes_out_at_flush():
    parser = NanoGPTParser(run="run", attempt_prefix="log", clock=lambda: CLOCK)
    assert parser.feed("Traceback (most recent call last):") == []
    assert parser.feed('  File "train.py", line 1, in <module>') == []
    assert parser.feed("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB") == []
    (fault,) = parser.flush()
    assert fault.fields["cause"] == "oom" and fault.fields["exc_type"] == "torch.OutOfMemoryError"
    assert parser.flush() == []


def test_tracebacks_of_several_ranks_interleaved():
    lines = ["[rank0]:Traceback (most recent call last):",
             "[rank1]:Traceback (most recent call last):",
             '[rank0]:  File "train.py", line 9, in <module>',
             '[rank1]:  File "train.py", line 9, in <module>',
             "[rank1]:torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB",
             "[rank0]:torch.distributed.DistBackendError: NCCL error: Timeout waiting for peer",
             "[rank1]:[titan] 2025-01-01 00:00:00,000 - root - INFO - something else"]
    records = parse(lines)
    assert sorted((r.rank, r.fields["cause"]) for r in records) == [(0, "nccl_timeout"), (1, "oom")]


def test_same_ending_on_every_rank_is_one_record_per_attempt():
    line = "[rank{}]:[E1206 18:44:12.715298746 ProcessGroupNCCL.cpp:607] [Rank {}] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1) ran for 600061 milliseconds before timing out."
    records = parse([line.format(r, r) for r in range(8)] + ["tokens per iteration will be: 8"] + [line.format(3, 3)])
    assert [(r.kind, r.attempt) for r in records] == [("fault", "log#1"), ("launch", "log#2"), ("fault", "log#2")]


@pytest.mark.parametrize("line, kind, why", [
    ("Killed", "fault", "killed"),
    ("/bin/bash: line 1: 123456 Killed                  python train.py", "fault", "killed"),
    ("slurmstepd: error: *** JOB 42 ON node3 CANCELLED AT 2024-05-20T03:12:00 DUE TO NODE FAILURE ***", "fault", "node_lost"),
    ("slurmstepd: error: *** JOB 42 ON node3 CANCELLED AT 2024-05-20T03:12:00 ***", "stop", "cancelled"),
    ("slurmstepd: error: Detected 1 oom_kill event in StepId=42.0. Some of the step tasks have been OOM Killed.", "fault", "oom"),
    ("W0616 00:44:57.749000 4026234 torch/distributed/elastic/agent/server/api.py:704] Received Signals.SIGTERM death signal, shutting down workers", "stop", "SIGTERM"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB", "fault", "oom"),
    ("/bin/bash: line 1: 2345 Terminated              python train.py", "stop", "SIGTERM"),
    ("Terminated", "stop", "SIGTERM"),
])
def test_single_line_endings(line, kind, why):
    (record,) = parse([line])
    assert (record.kind, record.fields.get("cause", record.fields.get("reason"))) == (kind, why)


def test_lines_that_only_mention_an_ending_are_not_one():
    assert parse(["we were not Killed", "no out-of-memory here", "Traceback summary: none",
                  "Terminated workers are restarted by the agent"]) == []


def test_one_stop_per_attempt_later_ones_are_echoes():
    records = parse(["slurmstepd: error: *** STEP 1.0 ON n1 CANCELLED AT 2025-11-14T12:05:16 DUE TO TIME LIMIT ***",
                     "srun: error: n1: tasks 0-7: Terminated", "KeyboardInterrupt"])
    assert [(r.kind, r.fields["reason"]) for r in records] == [("stop", "time_limit")]


def test_our_own_records_inside_a_text_log_are_kept_as_they_are():
    own = ('{"v":1,"kind":"finish","run":"gpt-small","attempt":"a7","ts":1700000005.0,"host":"n1","rank":0,'
           '"step":100,"reason":"total_steps"}')
    (record,) = parse([own])
    assert (record.kind, record.run, record.attempt, record.step) == ("finish", "gpt-small", "a7", 100)


def test_step_counter_going_backwards_starts_a_new_attempt():
    records = parse(["iter 10: loss 2.0, time 1.00ms", "iter 20: loss 1.9, time 1.00ms",
                     "iter 10: loss 2.1, time 1.00ms", "iter 20: loss 1.8, time 1.00ms"])
    assert [(r.step, r.attempt) for r in records] == [(10, "log#1"), (20, "log#1"), (10, "log#2"), (20, "log#2")]


def test_launch_line_starts_a_new_attempt_only_after_records():
    records = parse(["tokens per iteration will be: 1,024", "iter 0: loss 2.0, time 1.00ms",
                     "tokens per iteration will be: 1,024", "iter 50: loss 1.0, time 1.00ms"])
    assert [(r.kind, r.attempt) for r in records] == [("launch", "log#1"), ("step", "log#1"),
                                                      ("launch", "log#2"), ("step", "log#2")]


def test_run_id_from_the_log_only_before_the_first_record():
    assert {r.run for r in parse(["Overriding: wandb_run_name = owt-1", "iter 0: loss 2.0, time 1.00ms"])} == {"owt-1"}
    late = parse(["iter 0: loss 2.0, time 1.00ms", "Overriding: wandb_run_name = owt-1", "iter 1: loss 2.0, time 1.00ms"])
    assert {r.run for r in late} == {"run"}


def test_cleaning_colour_codes_cr_and_rank_prefixes():
    assert clean("\x1b[31mstep:  1\x1b[39m\r") == "step:  1"
    assert clean("Model llama3 8B [31msize: 8,030,261,248") == "Model llama3 8B size: 8,030,261,248"
    assert clean("[rank0]:[titan] 2025") == "[rank0]:[titan] 2025"
    assert split_rank("[default3]:[rank3]:hello") == (3, "hello")
    assert split_rank("[rank12]: x") == (12, "x")
    assert split_rank("[rank0]:   File \"t.py\"") == (0, '  File "t.py"')


def test_timestamps():
    utc = timezone.utc
    assert find_timestamp("2023-11-10T11:46:16.409+08:00 INFO", None, None) == pytest.approx(1699587976.409)
    assert find_timestamp(" [2024-04-06 03:02:12] iteration", utc, None) == 1712372532.0
    assert find_timestamp("03/22/2024 15:02:20 - INFO - __main__", utc, None) == 1711119740.0
    assert find_timestamp("[E1206 18:44:12.715 ProcessGroupNCCL.cpp:607]", utc, None) is None  # no year known
    assert find_timestamp("[E1206 18:44:12.5 x]", utc, 1733000000.0) == pytest.approx(1733510652.5)
    assert find_timestamp("[E0101 00:00:01.0 x]", utc, 1735689000.0) == pytest.approx(1735689601.0)  # new year
    assert find_timestamp("2023-13-45 99:99:99 nonsense", utc, None) is None
    assert find_timestamp("step 2023-11-10", utc, None) is None


def test_lines_without_time_follow_the_files_own_clock_not_the_reading_clock():
    records = parse(["2024-05-20 03:00:00 iter 1: loss 2.0, time 250.00ms", "iter 3: loss 2.0, time 250.00ms", "Killed"])
    # iter 3: the stamp of iter 1 plus two iterations of 250 ms; "Killed": the last known time
    assert [r.ts for r in records] == [1716174000.0, 1716174000.5, 1716174000.5]


def test_a_file_with_no_time_at_all_takes_the_clock():
    records = parse(["iter 1: loss 2.0, time 1.00ms", "iter 2: loss 2.0, time 1.00ms", "Killed"])
    assert [r.ts for r in records] == [CLOCK, CLOCK, CLOCK]
