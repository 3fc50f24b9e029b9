"""Each rule of docs/accounting.md on a small hand-made timeline (UTC working hours)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from accounting_timelines import Run, at, spans
from monitor.accounting import LiveLedger, MaintenanceWindow, Policy, compute_ledger, segment

UTC = Policy(timezone="UTC")


def two_attempts(end: str, ends_at: str, relaunch: str) -> list:
    run = Run().launch(at("2024-06-03 20:00")).steps(at("2024-06-03 20:05"), at(ends_at))
    getattr(run, end)(at(ends_at))
    run.launch(at(relaunch)).steps(at(relaunch) + 300, at(relaunch) + 3600).finish(at(relaunch) + 3600)
    return run.sorted()


def test_downtime_beginning_after_22_is_off_hours_from_its_start():
    ledger = compute_ledger(two_attempts("fault", "2024-06-03 22:30", "2024-06-04 10:00"), UTC)
    assert spans(ledger, "off_hours") == [(at("2024-06-03 22:30"), at("2024-06-04 09:30"))]
    assert spans(ledger, "fault") == [(at("2024-06-04 09:30"), at("2024-06-04 10:00"))]


def test_downtime_beginning_in_working_hours_is_never_off_hours():
    ledger = compute_ledger(two_attempts("fault", "2024-06-03 21:00", "2024-06-04 10:00"), UTC)
    assert ledger.seconds["off_hours"] == 0
    assert spans(ledger, "fault") == [(at("2024-06-03 21:00"), at("2024-06-04 10:00"))]


def test_waiting_after_a_finish_at_night_is_off_hours_until_the_morning():
    ledger = compute_ledger(two_attempts("finish", "2024-06-03 23:00", "2024-06-04 11:00"), UTC)
    assert spans(ledger, "off_hours") == [(at("2024-06-03 23:00"), at("2024-06-04 09:30"))]
    assert spans(ledger, "waiting") == [(at("2024-06-04 09:30"), at("2024-06-04 11:00"))]


def test_manual_time_is_never_off_hours():
    ledger = compute_ledger(two_attempts("stop", "2024-06-03 23:00", "2024-06-04 10:00"), UTC)
    assert ledger.seconds["off_hours"] == 0
    assert spans(ledger, "manual") == [(at("2024-06-03 23:00"), at("2024-06-04 10:00"))]
    assert ledger.manual_stops == 1 and ledger.faults == 0


def test_a_holiday_is_off_hours_all_day():
    records = two_attempts("fault", "2024-06-04 12:00", "2024-06-05 11:00")
    workday = compute_ledger(records, UTC)
    holiday = compute_ledger(records, UTC.model_copy(update={"holidays": frozenset({date(2024, 6, 4)})}))
    assert workday.seconds["off_hours"] == 0
    assert spans(holiday, "off_hours") == [(at("2024-06-04 12:00"), at("2024-06-05 09:30"))]


def test_working_hours_follow_the_run_timezone():
    # 22:30 UTC is 06:30 at UTC+8: off-hours until 09:30 there, i.e. 01:30 UTC.
    records = two_attempts("fault", "2024-06-03 22:30", "2024-06-04 03:00")
    ledger = compute_ledger(records, Policy(timezone="+08:00"))
    assert spans(ledger, "off_hours") == [(at("2024-06-03 22:30"), at("2024-06-04 01:30"))]


def test_stalled_gap_and_stalled_tail_use_ten_times_the_median_interval():
    run = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:01"), at("2024-06-03 11:00"), every=30)
    run.steps(at("2024-06-03 11:20"), at("2024-06-03 12:00"), every=30, first_step=500)  # 20 min > 300 s
    run.fault(at("2024-06-03 12:30"), cause="nccl_timeout")  # 30 min hang before the timeout
    ledger = compute_ledger(run.sorted(), UTC)
    assert spans(ledger, "stalled") == [(at("2024-06-03 11:00"), at("2024-06-03 11:20")),
                                        (at("2024-06-03 12:00"), at("2024-06-03 12:30"))]
    assert spans(ledger, "startup") == [(at("2024-06-03 10:00"), at("2024-06-03 10:01"))]
    assert ledger.faults == 1


def test_short_gaps_and_tail_stay_training_with_the_120s_floor():
    run = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:00"), at("2024-06-03 10:10"), every=1)
    run.steps(at("2024-06-03 10:12"), at("2024-06-03 10:20"), every=1, first_step=700)  # 2-min gap: not > 120 s
    run.finish(at("2024-06-03 10:21"))
    ledger = compute_ledger(run.sorted(), UTC)
    assert ledger.seconds["stalled"] == 0
    assert ledger.seconds["training"] == at("2024-06-03 10:21") - at("2024-06-03 10:00")


def test_an_attempt_without_steps_is_all_startup():
    run = Run().launch(at("2024-06-03 10:00")).fault(at("2024-06-03 10:40"))
    run.launch(at("2024-06-03 11:00")).steps(at("2024-06-03 11:10"), at("2024-06-03 12:00")).finish(at("2024-06-03 12:00"))
    ledger = compute_ledger(run.sorted(), UTC)
    assert spans(ledger, "startup") == [(at("2024-06-03 10:00"), at("2024-06-03 10:40")),
                                        (at("2024-06-03 11:00"), at("2024-06-03 11:10"))]
    assert spans(ledger, "fault") == [(at("2024-06-03 10:40"), at("2024-06-03 11:00"))]


def test_a_step_counter_going_backwards_opens_an_attempt_and_counts_wasted_progress():
    run = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:00"), at("2024-06-03 10:10"), every=6)  # 1..101
    run.steps(at("2024-06-03 10:15"), at("2024-06-03 10:25"), every=6, first_step=51)  # restarted from step 50
    records = run.sorted()
    attempts = segment(records)
    assert [a.split_from_backwards for a in attempts] == [False, True]
    ledger = compute_ledger(records, UTC)
    assert ledger.launches == 2 and ledger.faults == 1  # the first life ended without a word
    [wasted] = ledger.wasted
    assert (wasted.from_step, wasted.to_step) == (51, 101)
    assert wasted.seconds == pytest.approx(at("2024-06-03 10:10") - (at("2024-06-03 10:00") + 49 * 6))
    assert ledger.goodput < ledger.ettr


def test_resume_from_an_older_checkpoint_counts_wasted_progress_once():
    run = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:00"), at("2024-06-03 10:10"), every=6)
    run.fault(at("2024-06-03 10:10"))
    run.launch(at("2024-06-03 10:20"), resume_from="ckpt").resume(at("2024-06-03 10:21"), step=80)
    run.steps(at("2024-06-03 10:22"), at("2024-06-03 10:30"), every=6, first_step=81)
    ledger = compute_ledger(run.sorted(), UTC)
    assert ledger.wasted_steps == 101 - 80
    assert ledger.wasted_s == pytest.approx(21 * 6)


def test_restore_gaps_are_flagged():
    run = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:00"), at("2024-06-03 10:10")).stop(at("2024-06-03 10:10"))
    run.launch(at("2024-06-03 10:20"), resume_from="c").resume(at("2024-06-03 10:21"), 61, optimizer=False, rng=False)
    run.steps(at("2024-06-03 10:22"), at("2024-06-03 10:30"), first_step=62).stop(at("2024-06-03 10:30"))
    run.launch(at("2024-06-03 10:40"), resume_from="c")  # says it resumes, never reports what
    run.steps(at("2024-06-03 10:41"), at("2024-06-03 10:50"), first_step=111).stop(at("2024-06-03 10:50"))
    run.launch(at("2024-06-03 11:00"), resume_from="c").resume(at("2024-06-03 11:01"), 0)
    run.steps(at("2024-06-03 11:02"), at("2024-06-03 11:10"), first_step=1).finish(at("2024-06-03 11:10"))
    ledger = compute_ledger(run.sorted(), UTC)
    assert ledger.restore_gaps == {1: ["optimizer", "rng"], 2: ["resume record"]}
    causes = [row.cause for row in ledger.rows if row.state == "training"]
    assert causes == ["", "resumed without optimizer, rng",
                      "launched with resume_from but wrote no resume record: what it restored is unknown", ""]
    init = Run().launch(at("2024-06-03 10:00"), resume_from="w")
    init._add("resume", at("2024-06-03 10:01"), step=0, source="w", mode="init_from",
              restored=dict.fromkeys(("model", "optimizer", "lr_scheduler", "grad_scaler", "data_position", "rng"), True))
    init.steps(at("2024-06-03 10:02"), at("2024-06-03 10:05")).finish(at("2024-06-03 10:05"))
    assert compute_ledger(init.sorted(), UTC).restore_gaps == {0: ["weights only (init_from)"]}


def test_checkpoint_stall_lowers_goodput_not_the_states():
    run = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:00"), at("2024-06-03 11:00"))
    plain = compute_ledger(run.sorted(), UTC)
    run.checkpoint(at("2024-06-03 10:30"), 181, blocked_s=360.0).finish(at("2024-06-03 11:00"))
    saved = compute_ledger(run.sorted(), UTC)
    assert saved.checkpoint_stall_s == 360.0
    assert saved.seconds["training"] == plain.seconds["training"]
    assert saved.goodput == pytest.approx(saved.ettr - 360.0 / 3600)


def test_a_maintenance_window_is_shown_apart_and_left_out_of_the_denominator():
    window = MaintenanceWindow.parse("2024-06-04T10:00+00:00/2024-06-04T12:00+00:00")
    records = two_attempts("fault", "2024-06-04 09:50", "2024-06-04 12:30")
    plain = compute_ledger(records, UTC)
    planned = compute_ledger(records, UTC.model_copy(update={"maintenance": (window,)}))
    assert spans(planned, "maintenance") == [(at("2024-06-04 10:00"), at("2024-06-04 12:00"))]
    assert planned.seconds["fault"] == plain.seconds["fault"] - 7200
    assert planned.counted_s == plain.wall_s - 7200
    assert planned.ettr == pytest.approx(plain.seconds["training"] / (plain.wall_s - 7200))
    assert planned.pie_days["maintenance"] == pytest.approx(7200 / 86400)


def test_mean_time_to_relaunch_splits_notice_relaunch_and_startup():
    records = two_attempts("fault", "2024-06-03 23:00", "2024-06-04 10:00")
    ledger = compute_ledger(records, UTC)
    [relaunch] = ledger.relaunches
    assert relaunch.to_notice == at("2024-06-04 09:30") - at("2024-06-03 23:00")
    assert relaunch.to_relaunch == 1800
    assert relaunch.startup == 300
    assert ledger.mean_relaunch()["total_s"] == at("2024-06-04 10:05") - at("2024-06-03 23:00")


def test_a_live_open_segment_turns_from_training_to_stalled_to_fault():
    run = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:01"), at("2024-06-03 11:00"), every=10)
    live = LiveLedger(UTC)
    for record in run.sorted():
        live.add(record)
    last = at("2024-06-03 11:00")
    states = {}
    for after in (60, 119, 121, 1799, 1801, 7200):
        snap = live.snapshot(last + after)
        assert compute_ledger(run.sorted(), UTC, now=last + after).seconds == snap.seconds
        states[after] = snap.current_state
        assert sum(snap.seconds.values()) == pytest.approx(snap.wall_s)
    assert states == {60: "training", 119: "training", 121: "stalled", 1799: "stalled",
                      1801: "fault", 7200: "fault"}
    assert live.snapshot(last + 1801).faults == 1
    live.add(run._add("step", last + 7300, step=999, loss=1.0).records[-1])  # it was alive after all
    assert live.snapshot(last + 7310).current_state == "training"


def test_a_live_run_stalled_at_night_becomes_off_hours_once_declared_a_fault():
    run = Run().launch(at("2024-06-03 22:00")).steps(at("2024-06-03 22:01"), at("2024-06-03 23:00"), every=10)
    ledger = compute_ledger(run.sorted(), UTC, now=at("2024-06-04 02:00"))
    assert ledger.current_state == "off_hours"
    assert spans(ledger, "off_hours") == [(at("2024-06-03 23:00"), at("2024-06-04 02:00"))]


def test_a_run_that_ended_in_a_fault_shows_why_in_its_last_row():
    run = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:01"), at("2024-06-03 11:00"))
    run.fault(at("2024-06-03 11:00"), cause="oom")
    ledger = compute_ledger(run.sorted(), UTC)
    last = ledger.rows[-1]
    assert (last.state, last.duration) == ("fault", 0.0)
    assert last.cause == "fault: oom — RuntimeError: boom"  # the first line of the evidence only
    finished = Run().launch(at("2024-06-03 10:00")).steps(at("2024-06-03 10:01"), at("2024-06-03 11:00"))
    assert compute_ledger(finished.finish(at("2024-06-03 11:00")).sorted(), UTC).rows[-1].state == "training"


def test_a_split_attempt_keeps_its_own_launch_when_another_attempt_interleaves():
    run = Run().launch(at("2024-06-03 10:00"), batch="7").steps(at("2024-06-03 10:05"), at("2024-06-03 10:10"))
    run.launch(at("2024-06-03 10:20"), batch="8")  # a second attempt id opens in between
    records = run.sorted()
    records.append(replace(records[1], ts=at("2024-06-03 10:30"), step=1))  # a1's counter goes back
    attempts = segment(records)
    assert [(a.attempt_id, a.data_batch) for a in attempts] == [("a1", "7"), ("a2", "8"), ("a1~1", "7")]


def test_a_run_timezone_that_is_no_zone_falls_back_to_utc():
    records = two_attempts("fault", "2024-06-03 22:30", "2024-06-04 10:00")
    records[0] = replace(records[0], fields={**records[0].fields, "timezone": "Mars/Olympus"})
    ledger = compute_ledger(records)
    assert ledger.timezone == "UTC"
    assert spans(ledger, "off_hours") == [(at("2024-06-03 22:30"), at("2024-06-04 09:30"))]
