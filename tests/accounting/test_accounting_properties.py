"""Property tests: for random event timelines the states tile the run's wall time exactly,
the figures add up, and the live fold agrees with a full recomputation."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.accounting import DAY, LiveLedger, MaintenanceWindow, Policy, compute_ledger
from monitor.records import Record

T0 = datetime(2024, 6, 3, tzinfo=timezone.utc).timestamp()
END_KINDS = ("finish", "stop", "fault", None)


@st.composite
def timelines(draw):
    records: list[Record] = []
    ts = T0 + draw(st.floats(0, DAY))
    step = 0
    for n in range(draw(st.integers(1, 5))):
        attempt = f"a{n}"
        launched = draw(st.booleans()) or n == 0
        if launched:
            records.append(Record("launch", "r", attempt, ts, fields={"nodes": 2, "data_batch": "0",
                                                                       "resume_from": "c" if n else None}))
        ts += draw(st.floats(0, 3600))
        if n and draw(st.booleans()):
            step = max(0, step - draw(st.integers(0, 50)))
            records.append(Record("resume", "r", attempt, ts, step=step, fields={
                "restored": {"optimizer": draw(st.booleans()), "lr_scheduler": True, "data_position": True, "rng": True}}))
        for _ in range(draw(st.integers(0, 40))):
            step += draw(st.integers(1, 5)) if draw(st.integers(0, 9)) else -draw(st.integers(0, 20))
            step = max(step, 0)
            records.append(Record("step", "r", attempt, ts, step=step, fields={"loss": 1.0}))
            ts += draw(st.sampled_from([1.0, 5.0, 30.0, 200.0, 3000.0])) * draw(st.floats(0.5, 1.5))
            if draw(st.integers(0, 14)) == 0:
                records.append(Record("checkpoint", "r", attempt, ts, step=step, fields={"blocked_s": 3.0}))
        end = draw(st.sampled_from(END_KINDS))
        if end:
            ts += draw(st.sampled_from([0.0, 60.0, 2000.0]))
            records.append(Record(end, "r", attempt, ts, step=step, fields={"reason": "x", "message": "m"}))
        ts += draw(st.sampled_from([0.0, 600.0, 20000.0, 2 * DAY])) * draw(st.floats(0, 1))
    records.sort(key=lambda r: r.ts)
    return records


@st.composite
def policies(draw):
    holidays = frozenset(date(2024, 6, 3) + timedelta(days=d) for d in draw(st.sets(st.integers(0, 6), max_size=2)))
    windows = ()
    if draw(st.booleans()):
        start = datetime.fromtimestamp(T0 + draw(st.floats(0, 4 * DAY)), timezone.utc)
        windows = (MaintenanceWindow(start=start, end=start + timedelta(hours=draw(st.floats(0.1, 30)))),)
    return Policy(timezone=draw(st.sampled_from(["UTC", "+08:00", "-05:00", "Europe/Paris"])),
                  holidays=holidays, maintenance=windows)


def assert_tiles(ledger) -> None:
    segments = ledger.segments
    if ledger.wall_s == 0:
        assert segments == [] and ledger.goodput == 0.0
        return
    assert segments[0].start == ledger.start
    assert segments[-1].end == pytest.approx(ledger.end, abs=1e-6)
    for before, after in zip(segments, segments[1:]):
        assert before.end == after.start, (before, after)  # no gap, no overlap
    assert all(s.end > s.start for s in segments)
    assert sum(ledger.seconds.values()) == pytest.approx(ledger.wall_s, abs=1e-6)
    assert sum(ledger.pie_days.values()) * DAY == pytest.approx(ledger.wall_s, abs=1e-6)
    assert 0.0 <= ledger.goodput <= ledger.ettr <= 1.0 + 1e-9
    assert ledger.faults + ledger.manual_stops <= ledger.launches
    rows = sum(r.duration for r in ledger.rows)
    assert rows == pytest.approx(ledger.wall_s, abs=1e-6)  # the ledger rows tile the run too


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(timelines(), policies())
def test_states_tile_the_wall_time_and_figures_add_up(records, policy):
    ledger = compute_ledger(records, policy)
    assert ledger.end == max(r.ts for r in records)
    assert_tiles(ledger)


@FAST
@given(timelines(), policies(), st.floats(0, 2 * DAY))
def test_live_fold_agrees_with_full_recomputation(records, policy, later):
    now = records[-1].ts + later
    full = compute_ledger(records, policy, now=now)
    assert_tiles(full)
    live = LiveLedger(policy)
    for record in records:
        live.add(record)
    assert live.snapshot(now).segments == full.segments
    half = len(records) // 2
    resumed = LiveLedger.from_records(records[:half], policy)
    for record in records[half:]:
        resumed.add(record)
    snap = resumed.snapshot(now)
    assert snap.segments == full.segments
    assert snap.to_dict() == full.to_dict()


@FAST
@given(timelines(), st.lists(st.booleans(), min_size=1), st.integers(0, 2))
def test_the_columnar_fold_gives_the_ledger_of_the_records(records, echoed, first_rank):
    """Step records as columns (what a million-step run's projections fold) give the ledger of
    the same records one by one: attempts split where a step counter goes backwards, only the
    first rank's steps counted (other ranks echo some steps), events after same-ts steps."""
    from types import SimpleNamespace

    import numpy as np

    from monitor.accounting import compute_ledger_from_columns

    with_ranks: list[Record] = []
    for i, r in enumerate(records):
        if r.kind == "step":
            r = Record("step", r.run, r.attempt, r.ts, rank=first_rank, step=r.step)
            if echoed[i % len(echoed)]:
                with_ranks += [r, Record("step", r.run, r.attempt, r.ts, rank=first_rank + 1, step=r.step + 7)]
                continue
        with_ranks.append(r)
    ordered = sorted(with_ranks, key=lambda r: (r.ts, r.kind != "step"))
    steps = [r for r in ordered if r.kind == "step"]
    names = sorted({r.attempt for r in steps})
    columns = SimpleNamespace(ts=np.array([r.ts for r in steps], dtype=float),
                              step=np.array([r.step for r in steps], dtype=np.int64),
                              rank=np.array([r.rank for r in steps], dtype=np.int64),
                              attempt=np.array([names.index(r.attempt) for r in steps], dtype=np.int64),
                              attempts=names)
    events = [r for r in ordered if r.kind != "step"]
    expected = compute_ledger(ordered)
    fast = compute_ledger_from_columns("r", columns, events)
    assert (fast and fast.to_dict()) == (expected and expected.to_dict())
