"""Each detector on runs with known answers, through `monitor.detectors` as the watcher runs
them (a record at a time, the live ledger beside them)."""

from __future__ import annotations

from datetime import time as time_of_day

import pytest

from monitor.accounting import LiveLedger, Policy
from monitor.config import RulesConfig
from monitor.detectors import RunDetectors, replay
from monitor.projections.regressions import find_throughput_regressions
from monitor.projections.series import step_series
from alert_runs import START, event, jitter, nanochat_records, step

ALL_DAY = Policy(work_start=time_of_day(0), work_end=time_of_day(23, 59, 59, 999999))


def _causes(findings) -> set[str]:
    return {f.cause for f in findings}


def test_the_nanochat_run_raises_its_throughput_drop_once_it_has_lasted_and_not_before(tmp_path):
    records = nanochat_records(tmp_path)
    steps = {r.step: r for r in records if r.kind == "step"}
    drop_ts = steps[4999].ts  # step 5000, the first slow one, starts when 4999 is logged
    first: dict[str, object] = {}
    for record, findings in replay(records, RulesConfig(), ALL_DAY):
        for finding in findings:
            first.setdefault(finding.cause, (record, finding))
    record, finding = first["throughput"]
    assert record.step > 5000
    rules = RulesConfig()
    assert rules.throughput_persist_s <= record.ts - drop_ts <= rules.throughput_persist_s + 5
    assert "below the run's baseline" in finding.message and "since step 500" in finding.message
    assert 0.40 < finding.payload["current"] / finding.payload["baseline"] < 0.60  # 35k of ~65k tokens/s
    assert first["mfu"][0].step > 5000
    # the report's regression is the same rule's: the same step; the same baseline as the
    # detectors fed the whole run at once (a record at a time, the baseline is re-learnt at
    # other moments: within 0.1 %)
    regressions = find_throughput_regressions(step_series(records))
    seeded = RunDetectors()
    seeded.add_all(records)
    drop = seeded.throughput.drop()
    assert [(r.step, r.before) for r in regressions] == [(drop.since_step, drop.baseline)]
    assert regressions[0].step == finding.payload["since_step"]
    assert regressions[0].before == pytest.approx(finding.payload["baseline"], rel=1e-3)
    # nothing else about the figures, ever; the run's end is information
    assert set(first) - {"stalled"} == {"throughput", "mfu", "finished"}
    assert first["finished"][1].severity == "info"


def _pauses_run() -> list:
    """1 s steps at ~50k tokens/s; a 90 s checkpoint save every 100 steps and a 60 s eval every
    150, the step after each reporting its rate over the pause."""
    records, ts = [event("launch", START)], START + 30
    for i in range(1, 601):
        ts += 1.0
        after_pause = records[-1].kind in ("checkpoint", "eval")
        records.append(step(i, ts, tokens_per_s=(900.0 if after_pause else 50_000 * jitter(i)),
                            mfu=(0.01 if after_pause else 0.4 * jitter(i))))
        if i % 100 == 0:
            ts += 90
            records.append(event("checkpoint", ts, step=i, blocked_s=90.0))
        elif i % 150 == 0:
            ts += 60
            records.append(event("eval", ts, step=i, val_loss=2.0))
    return records


def test_long_checkpoint_pauses_and_evals_raise_no_stall_and_no_regression():
    records = _pauses_run()
    detectors, live = RunDetectors(RulesConfig(throughput_persist_s=10)), LiveLedger(ALL_DAY)
    seen = set()
    for record, following in zip(records, records[1:] + [None]):
        detectors.add(record)
        live.add(record)
        # the latest moment before the next record: the longest the watcher waits in a pause
        for now in (record.ts, (following.ts - 0.01) if following else record.ts):
            seen |= _causes(detectors.findings(live, now))
    assert seen == set()


def _stopped(detectors: RunDetectors, live: LiveLedger) -> float:
    for i in range(200):
        record = step(i, START + i)
        detectors.add(record)
        live.add(record)
    return START + 199


def test_a_stopped_run_stalls_within_the_threshold_then_faults_after_the_fault_threshold():
    policy = Policy(work_start=time_of_day(0), work_end=time_of_day(23, 59, 59, 999999),
                    stall_min_s=30.0, silence_fault_s=90.0)
    detectors, live = RunDetectors(), LiveLedger(policy)
    last = _stopped(detectors, live)
    assert _causes(detectors.findings(live, last + 29)) == set()
    stalled = {f.cause: f for f in detectors.findings(live, last + 31)}
    assert set(stalled) == {"stalled"}
    assert "since step 199" in stalled["stalled"].message and "threshold 30 s" in stalled["stalled"].message
    assert _causes(detectors.findings(live, last + 89)) == {"stalled"}
    both = {f.cause: f for f in detectors.findings(live, last + 91)}
    assert set(both) == {"stalled", "fault"}
    assert both["fault"].severity == "critical" and "silence (no record after step 199)" in both["fault"].message


def test_a_fault_at_night_is_still_a_fault_with_its_evidence():
    """Off hours, the ledger files the downtime as off_hours: the alert must not care."""
    night = Policy(timezone="+00:00", work_start=time_of_day(9), work_end=time_of_day(10), stall_min_s=30.0)
    detectors, live = RunDetectors(), LiveLedger(night)
    last = _stopped(detectors, live)
    crash = event("fault", last + 5, cause="oom", exc_type="OutOfMemoryError", message="CUDA out of memory")
    detectors.add(crash)
    live.add(crash)
    found = {f.cause: f for f in detectors.findings(live, last + 60)}
    assert set(found) == {"fault"}  # an explicit end, not a silence: no stall
    assert "oom — OutOfMemoryError: CUDA out of memory" in found["fault"].message


def _attempt(detectors, live, n: int, launch_ts: float, resume_step: int, **restored) -> None:
    attempt = f"a{n}"
    records = [event("launch", launch_ts, attempt=attempt, resume_from="ckpt"),
               event("resume", launch_ts + 10, attempt=attempt, step=resume_step,
                     restored={"optimizer": True, "lr_scheduler": True, "data_position": True, "rng": True,
                               **restored})]
    records += [step(resume_step + 1 + i, launch_ts + 20 + i, attempt=attempt) for i in range(5)]
    for record in records:
        detectors.add(record)
        live.add(record)


@pytest.mark.parametrize("checkpoint_between", [False, True])
def test_relaunches_that_do_not_pass_the_last_checkpoint_are_a_restart_storm(checkpoint_between):
    rules = RulesConfig(restart_storm_count=3, restart_storm_window_s=600)
    detectors, live = RunDetectors(rules), LiveLedger(ALL_DAY)
    _attempt(detectors, live, 1, START, 100)
    if checkpoint_between:
        saved = event("checkpoint", START + 100, attempt="a1", step=105)
        detectors.add(saved)
        live.add(saved)
    _attempt(detectors, live, 2, START + 200, 100)
    _attempt(detectors, live, 3, START + 400, 100)
    found = {f.cause: f for f in detectors.findings(live, START + 430)}
    if checkpoint_between:
        assert "restart_storm" not in found
    else:
        assert found["restart_storm"].severity == "critical"
        assert "3 launches in 6.7 min, none past the checkpoint at step 100" in found["restart_storm"].message


def test_a_resume_that_left_out_the_optimizer_and_rng_is_a_restore_gap():
    detectors, live = RunDetectors(), LiveLedger(ALL_DAY)
    _attempt(detectors, live, 1, START, 100, optimizer=False, rng=False)
    found = {f.cause: f for f in detectors.findings(live, START + 30)}
    assert found["restore_gap"].message == "attempt a1 resumed without optimizer, rng"
    _attempt(detectors, live, 2, START + 3600, 100)  # the fix: a full restore clears it
    assert "restore_gap" not in _causes(detectors.findings(live, START + 3630))


def test_loss_nan_spike_scale_and_skipped_batches():
    detectors, live = RunDetectors(RulesConfig(skipped_batches=3, skipped_window_steps=50)), LiveLedger(ALL_DAY)
    records = [step(i, START + i, loss=2.0 * jitter(i), loss_scale=65536.0, inf_nan_skip_batches=0)
               for i in range(100)]
    records.append(step(100, START + 100, loss=9.0, loss_scale=65536.0, inf_nan_skip_batches=0))
    for record in records:
        detectors.add(record)
        live.add(record)
    found = {f.cause: f for f in detectors.findings(live, START + 100)}
    assert set(found) == {"loss_spike"} and "spiked to 9 at step 100" in found["loss_spike"].message
    for i, (loss, scale, skipped) in enumerate([(float("nan"), 1.0, 1), (2.0, 1.0, 2), (float("inf"), 1.0, 4)]):
        record = step(101 + i, START + 101 + i, loss=loss, loss_scale=scale, inf_nan_skip_batches=skipped)
        detectors.add(record)
        live.add(record)
    found = {f.cause: f for f in detectors.findings(live, START + 104)}
    assert {"loss_nonfinite", "loss_scale", "skipped_batches"} <= set(found)
    assert found["loss_nonfinite"].message == "loss is inf at step 103"
    assert found["skipped_batches"].message.startswith("4 batches skipped")
    for i in range(60):  # healthy again, past the skipped batches' window: every condition clears
        record = step(104 + i, START + 104 + i, loss=2.0, loss_scale=1024.0, inf_nan_skip_batches=4)
        detectors.add(record)
        live.add(record)
    assert _causes(detectors.findings(live, START + 164)) == set()


def test_a_finished_data_batch_is_information_to_start_the_next():
    detectors, live = RunDetectors(), LiveLedger(ALL_DAY)
    for record in [event("launch", START, data_batch="batch-07"), step(1, START + 10),
                   event("finish", START + 11, step=1, reason="data_exhausted")]:
        detectors.add(record)
        live.add(record)
    (found,) = detectors.findings(live, START + 20)
    assert (found.cause, found.severity) == ("data_exhausted", "info")
    assert found.message == "batch-07 exhausted at step 1: start the next batch"


def test_a_restarts_warm_up_does_not_fire_the_regression_but_a_slower_run_than_its_reference_does():
    rules = RulesConfig(throughput_persist_s=10, throughput_persist_steps=5, throughput_warmup_steps=20)
    detectors, live = RunDetectors(rules, reference_tps=100_000.0), LiveLedger(ALL_DAY)
    records = [step(i, START + i, tokens_per_s=50_000 * jitter(i)) for i in range(1, 301)]
    records.append(event("launch", START + 400, attempt="a2"))  # relaunched: 20 slow warm-up steps
    records += [step(300 + i, START + 420 + i, attempt="a2", tokens_per_s=(5_000.0 if i <= 20 else 50_000.0))
                for i in range(1, 101)]
    seen = set()
    for record in records:
        detectors.add(record)
        live.add(record)
        seen |= _causes(detectors.findings(live, record.ts))
    assert seen == {"throughput_vs_reference"}  # 50k against the comparable run's 100k, and nothing else
    (found,) = [f for f in detectors.findings(live, records[-1].ts) if f.cause == "throughput_vs_reference"]
    assert "50% below the comparable run's 1e+05" in found.message


def test_a_lasting_drop_fed_in_batches_leaves_the_detector_as_one_sample_at_a_time_does():
    """The numpy path for a long batch still under the floor (what the report's rule feeds a
    regression that lasts) ends in the state the per-sample loop reaches."""
    from monitor.detectors.robust import RobustDrop

    times = [float(i) for i in range(3000)]
    steps = list(range(3000))
    values = [100.0 + (i % 3) if i < 1000 else 50.0 + (i % 5) for i in range(3000)]
    batched, single = RobustDrop(0.1, 300.0, 20, 20), RobustDrop(0.1, 300.0, 20, 20)
    for lo in range(0, 3000, 256):
        batched.add_many(times[lo:lo + 256], steps[lo:lo + 256], values[lo:lo + 256])
    for t, s, v in zip(times, steps, values):
        single.add(t, s, v)
    assert batched.drop() is not None and batched.drop().since_step == 1000
    assert (batched.since, batched.low, list(batched.recent), batched.last) == \
        (single.since, single.low, list(single.recent), single.last)
    assert batched.drop() == single.drop()
