"""InternLM/InternEvo: seed 002's real log, numbers checked field by field."""

import math
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from monitor.parsers import parse_lines, sniff
from monitor.parsers.internlm import InternLMParser
from parser_checks import parse_valid

LOG = Path(__file__).parents[1] / "fixtures" / "logs" / "internlm" / "seed002_20b_demo.log"
CHINA = timezone(timedelta(hours=8))


def parse(lines=None):
    parser = InternLMParser(run="20b_train", attempt_prefix="seed002", clock=lambda: 0.0, tz=CHINA)
    return parse_valid(parser, lines if lines is not None else LOG.read_text().splitlines())


def test_launch_gives_hosts_and_world_size():
    launch = parse()[0]
    assert launch.kind == "launch"
    assert launch.fields["hosts"] == ["HOST-10-140-60-69", "HOST-10-140-60-95"]
    assert launch.fields["nodes"] == 2 and launch.fields["world_size"] == 16
    assert launch.ts == pytest.approx(1699587920.248)  # 2023-11-10 11:45:20,248 +08:00
    assert launch.fields["timezone"] == "+08:00"  # for the accounting's working hours


def test_step_line_field_by_field():
    steps = [r for r in parse() if r.kind == "step"]
    assert [r.step for r in steps] == [0, 1, 2, 3, 4, 5]
    s = steps[0]
    assert s.ts == pytest.approx(1699587976.409)  # 2023-11-10T11:46:16.409+08:00
    assert s.host == "HOST-10-140-60-69"  # rank 0's host from the launch lines
    f = s.fields
    assert f["tflops"] == 30.535171880622176 and f["loss"] == 11.542577743530273
    assert f["tgs"] == 246.32 and f["tokens_per_s"] == pytest.approx(246.32 * 16)
    assert f["tgs_SMA"] == 246.32 and f["tgs_avg"] == 246.32 and f["last_tgs_10"] == 0
    assert f["lr"] == 4.0000000000000003e-07 and f["loss_scale"] == 65536.0
    assert f["grad_norm"] == pytest.approx(math.hypot(87.3189924662012, 0.0))
    assert f["grad_norm_groups"] == {"0_default": 87.3189924662012, "1_fp32": 0.0}
    assert f["num_consumed_tokens"] == 65536 and f["inf_nan_skip_batches"] == 0
    assert f["num_samples_in_batch"] == 18 and f["largest_length"] == 2048
    assert f["fwd_bwd_time"] == 13.47 and f["acc"] == 0.0 and f["perplexity"] == 104321.0312
    assert f["micro_num"] == 4 and f["loss_from_metric"] == 11.5552
    assert f["per_source"] == {".git": {"acc": 0.0, "tokens": 60571, "loss": 11.5552}}
    last = steps[-1].fields
    assert last["acc"] == 0.0726 and last["per_source"][".git"] == {"acc": 0.0726, "tokens": 61004, "loss": 7.0646}
    assert last["grad_norm"] == pytest.approx(32.49300931426443)


def test_a_second_launch_in_the_same_file_is_a_new_attempt():
    lines = LOG.read_text().splitlines()
    records = parse(lines + lines[:1] + lines[-1:])
    attempts = [(r.kind, r.attempt) for r in records]
    assert attempts[-2:] == [("launch", "seed002#2"), ("step", "seed002#2")]


def test_nan_total_loss_is_flagged():
    line = ("2023-11-10T11:46:16.409+08:00 INFO [training_internlm.py, line 600, in record_current_batch_training_metrics]"
            " - pid=1 : tflops=1.0 step=7 loss=nan tgs (tokens/gpu/second)=1.0 grad_norm={'0_default': nan}")
    (step,) = parse([line])
    assert step.fields["loss"] is None and step.fields["loss_nonfinite"] is True and step.fields["grad_norm"] is None


def test_sniff():
    assert sniff(LOG.read_text().splitlines()[:10]) is InternLMParser


def test_naive_launch_times_take_the_zone_the_step_lines_name(monkeypatch):
    """Launch lines are naive, step lines say +08:00: without a configured zone the launch is
    re-dated once the file's zone is known, whatever this host's zone is."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        parser = InternLMParser(run="20b_train", attempt_prefix="seed002", clock=lambda: 0.0)
        records, bad = parse_lines(parser, LOG.read_text().splitlines())
    finally:
        monkeypatch.undo()
        time.tzset()
    assert bad == [] and records[0].kind == "launch"
    assert records[0].ts == pytest.approx(1699587920.248) and records[1].ts == pytest.approx(1699587976.409)
    assert records[0].fields["timezone"] == "+08:00"  # learned from the step lines' stamps


def test_internevo_pipeline_line_with_one_data_source():
    parser = InternLMParser(run="r", attempt_prefix="a", clock=lambda: 0.0, tz=CHINA)
    (step,), bad = parse_lines(parser, (LOG.parent / "internevo_issue375.log").read_text().splitlines())
    f = step.fields
    assert bad == [] and step.step == 642 and step.ts == pytest.approx(1732386928.531)  # 02:35:28,531 +08:00
    assert f["loss"] == 2.1725409030914307 and f["tgs"] == 720.46 and f["real_tgs"] == 719.84
    assert f["inf_nan_skip_batches"] == 3 and f["largest_length"] == 7543 and f["bwd_time"] == 120.98
    assert f["grad_norm"] == pytest.approx(2.156615516531637)
    assert f["per_source"] == {"zh": {"tokens": 1047661, "acc": 0.5494, "loss": 2.207}}


def test_early_internlm_comma_separated_lines():
    parser = InternLMParser(run="r", attempt_prefix="a", clock=lambda: 1_700_000_000.0, tz=timezone.utc)
    records, bad = parse_lines(parser, (LOG.parent / "internlm_issue22_comma_format.log").read_text().splitlines())
    assert bad == [] and [r.step for r in records] == [9, 36]
    first, second = (r.fields for r in records)
    assert first["tflops"] == 93.48098385143103 and first["loss"] == 7.502509117126465
    assert first["tgs"] == 2104.89 and first["grad_norm"] == 20.60409540743281 and first["lr"] == 2.2e-06
    assert first["num_consumed_tokens"] == 2621440 and first["fwd_bwd_time"] == 6.15
    assert first["per_source"] == {} and records[0].ts == 1_700_000_000.0  # no timestamp on that line: the clock
    assert second["tgs"] == 4233.73 and records[1].ts == 1688999188.977  # 2023-07-10 14:26:28,977 UTC
