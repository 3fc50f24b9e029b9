"""A record's time is when its line was written, not when it was read: lines without a stamp
follow the file's own clock (its last real time, advanced by the trainer's own durations)."""

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from monitor.accounting import Policy, compute_ledger
from monitor.parsers import parse_lines, sniff
from monitor.parsers.hf_trainer import HFTrainerParser
from monitor.parsers.megatron import MegatronParser
from monitor.parsers.nanogpt import NanoGPTParser

ROOT = Path(__file__).parents[2]
LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
SAMPLE = ROOT / "sample_logs" / "nanochat_2gpu" / "logs" / "train_dual_gpu_20251025_153513.log"
CHINA = timezone(timedelta(hours=8))
START = datetime(2025, 10, 25, 15, 35, 13, tzinfo=CHINA).timestamp()  # the sample's README / generate.py
STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - ")


def never() -> float:
    raise AssertionError("a file that offers its own times must not take the reading clock")


def parse(parser_class, lines, name, **options):
    parser = parser_class(run="r", attempt_prefix=f"{name}:1", clock=never, **options)
    records, bad = parse_lines(parser, lines)
    assert bad == []
    return records


def sample_records(tz=CHINA):
    lines = SAMPLE.read_text().splitlines()
    return lines, parse(sniff(lines[:50]), lines, SAMPLE.name, tz=tz)


def test_nanochat_backlog_gets_the_runs_own_times():
    lines, records = sample_records()
    steps = [r for r in records if r.kind == "step"]
    assert len(steps) == 12_000 and all(a.ts < b.ts for a, b in zip(steps, steps[1:]))
    launch = records[0]
    assert launch.kind == "launch" and 0 <= launch.ts - START < 60  # its first stamped line
    end = datetime.strptime(STAMP_RE.match(lines[-4]).group(1) + "000", "%Y-%m-%d %H:%M:%S,%f")
    end = end.replace(tzinfo=CHINA).timestamp()  # the last checkpoint line: the run's real end
    assert records[-1].kind == "finish" and records[-1].ts == pytest.approx(end)
    # step 0 comes after start-up, evaluation and its 31 s compile step
    assert START + steps[0].fields["step_time"] < steps[0].ts < START + 120
    # between stamps, the clock advances by each step's dt (nanochat's dt leaves out evaluation)
    printed = sum(s.fields["step_time"] for s in steps[1:])
    assert printed <= steps[-1].ts - steps[0].ts <= end - START
    assert end - steps[-1].ts < 10 * 60
    # after each stamped checkpoint line, the next step is that stamp plus its own dt
    for index, line in enumerate(lines):
        if (match := STAMP_RE.match(line)) and lines[index + 1].startswith("step "):
            after = next(s for s in steps if s.step == int(lines[index + 1][5:10]))
            stamp = datetime.strptime(match.group(1) + "000", "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=CHINA)
            assert after.ts == pytest.approx(stamp.timestamp() + after.fields["step_time"])


def test_nanochat_backlog_ledger_has_minutes_of_startup_not_days():
    _, records = sample_records(tz=None)  # as the intake builds it: no zone, naive stamps in this host's
    ledger = compute_ledger(sorted(records, key=lambda r: r.ts), Policy())
    assert ledger.launches == 1 and ledger.faults == 0
    assert 0 < ledger.seconds["startup"] < 5 * 60
    assert 2.6 * 3600 < ledger.wall_s < 2.8 * 3600  # 15:35 to 18:19, as the log says
    assert ledger.seconds["training"] > 0.8 * ledger.wall_s


def test_nanochat_file_clock_survives_a_restart_at_any_point():
    lines = SAMPLE.read_text().splitlines()
    parser_class = sniff(lines[:50])
    whole = parse(parser_class, lines, SAMPLE.name)
    for cut in (1, 7, 8, 24, 4_300, 11_990):
        first = parser_class(run="r", attempt_prefix=f"{SAMPLE.name}:1", clock=never)
        records = [record for line in lines[:cut] for record in first.feed(line)]
        second = parser_class(run="r", attempt_prefix=f"{SAMPLE.name}:1", clock=never)
        second.set_state(orjson.loads(orjson.dumps(first.get_state())))  # as the intake commits it
        more, _ = parse_lines(second, lines[cut:])
        assert records + more == whole, cut


def test_nanogpt_steps_are_spaced_by_their_printed_time_from_the_file_name():
    lines = (LOGS / "nanogpt" / "shakespeare_char.log").read_text().splitlines()
    records = parse(NanoGPTParser, lines, "train_20230322_093000.log", tz=timezone.utc)
    steps = [r for r in records if r.kind == "step"]
    anchor = datetime(2023, 3, 22, 9, 30, tzinfo=timezone.utc).timestamp()
    assert steps[0].ts == pytest.approx(anchor + 9.37181)  # iter 0: its own time (it compiled)
    for before, after in zip(steps, steps[1:]):
        # ten iterations between printed lines; the compile step's time is not one of them
        ordinary = min(after.fields["step_time"], before.fields["step_time"])
        assert after.ts - before.ts == pytest.approx(after.fields["step_time"] + 9 * ordinary)
        assert 10 * 0.89 < after.ts - before.ts < 10 * 0.93
    evaluation = records[-1]
    assert evaluation.kind == "eval" and evaluation.ts == steps[-1].ts


def test_megatron_without_stamps_advances_by_its_mean_iteration_time():
    lines = (LOGS / "megatron" / "issue_epfLLM_11.log").read_text().splitlines()
    steps = [r for r in parse(MegatronParser, lines, "gpt-2024-04-06T03-02-12.log", tz=timezone.utc)
             if r.kind == "step"]
    anchor = datetime(2024, 4, 6, 3, 2, 12, tzinfo=timezone.utc).timestamp()
    assert steps[0].ts == pytest.approx(anchor + steps[0].fields["step_time"])
    for before, after in zip(steps, steps[1:]):
        gap = after.step - before.step
        assert after.ts - before.ts == pytest.approx(gap * after.fields["step_time"])


def test_hugging_face_steps_take_the_progress_bars_elapsed_time():
    lines = (LOGS / "hf_trainer" / "translation_progress_bar_dicts.log").read_text().splitlines()
    records = parse(HFTrainerParser, lines, "train-2024-01-05_10-00-00.log", tz=timezone.utc)
    anchor = datetime(2024, 1, 5, 10, tzinfo=timezone.utc).timestamp()
    steps = [r for r in records if r.kind == "step"]
    assert [(s.step, s.ts - anchor) for s in steps] == [(500, 90.0), (1000, 180.0), (1500, 271.0)]  # [01:30<…
    assert records[0].kind == "launch" and records[0].ts == anchor


def test_a_stamped_line_resets_the_file_clock_and_the_file_name_only_starts_it():
    lines = ["tokens per iteration will be: 1,000", "iter 0: loss 4.0, time 2000.00ms",
             "2024-05-20 03:00:00 iter 10: loss 3.0, time 100.00ms", "iter 20: loss 2.0, time 100.00ms"]
    records = parse(NanoGPTParser, lines, "run_20240520_025900.log", tz=timezone.utc)
    start = datetime(2024, 5, 20, 2, 59, tzinfo=timezone.utc).timestamp()
    stamp = datetime(2024, 5, 20, 3, 0, tzinfo=timezone.utc).timestamp()
    # the launch record leaves with the first step, before any stamp: the file name dates it
    assert [(r.kind, r.ts) for r in records] == [("launch", start), ("step", start + 2.0), ("step", stamp),
                                                 ("step", pytest.approx(stamp + 1.0))]
