"""States: every second of a run, from its first launch to its last record (or to now while
it is live), in exactly one state — the rules of docs/accounting.md, as pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from monitor.accounting.attempts import Attempt
from monitor.accounting.policy import Policy

STATES = ("training", "stalled", "startup", "fault", "waiting", "manual", "off_hours", "maintenance")
DOWNTIME_OF_END = {"finished": "waiting", "manual": "manual", "fault": "fault"}


class Segment(NamedTuple):
    state: str
    start: float
    end: float
    attempt: int
    """index of the attempt whose life or following downtime holds this segment"""


@dataclass(frozen=True)
class StepView:
    """What the rules need of an attempt's step timeline."""

    threshold: float
    stall_gaps: list[tuple[float, float]]
    """(from step ts, to next step ts) for every gap longer than the threshold, in order"""


def step_view(attempt: Attempt, policy: Policy) -> StepView:
    """Stall threshold and stalled gaps, computed over the whole attempt with numpy."""
    if attempt.live is not None:
        return attempt.live.view(policy)
    ts = attempt.ts_array()
    if len(ts) < 2:
        return StepView(policy.stall_threshold(None), [])
    gaps = np.diff(ts)
    threshold = policy.stall_threshold(float(np.median(gaps)))
    stalled = np.flatnonzero(gaps > threshold)
    return StepView(threshold, [(float(ts[i]), float(ts[i + 1])) for i in stalled])


@dataclass
class Outcome:
    """How one attempt ended and what followed it, as the rules classified it."""

    attempt: Attempt
    end: str | None
    """'finished' | 'manual' | 'fault'; None while live and open, or when the run's final
    attempt wrote no end record"""
    silent: bool
    """the fault was inferred: no end record (the attempt just went quiet)"""
    threshold: float
    down_begin: float | None
    noticed: float | None
    """first moment someone could see the downtime: its start, or the first working moment
    when it began outside working hours (never later than the next launch)"""
    next_start: float | None
    segments: list[Segment] = field(default_factory=list)


def _carve(pieces: list[Segment], lo: float, hi: float, state: str) -> list[Segment]:
    """`pieces` with the part inside [lo, hi) relabelled `state`."""
    out: list[Segment] = []
    for piece in pieces:
        a, b = piece.start, piece.end
        if b <= lo or a >= hi:
            out.append(piece)
            continue
        if a < lo:
            out.append(piece._replace(end=lo))
        out.append(piece._replace(state=state, start=max(a, lo), end=min(b, hi)))
        if b > hi:
            out.append(piece._replace(start=hi))
    return out


def classify_attempt(attempt: Attempt, view: StepView, stop: float, policy: Policy, *,
                     final: bool, now: float | None, read_at: float | None = None) -> Outcome:
    """Segments of [attempt.start, stop): its life, then the downtime up to the next launch
    (`stop`), or up to the run's end when it is the final attempt. A final attempt without an
    end record is a (silent) fault once the fault threshold has passed since its last record:
    by `now` when the run is live, else by `read_at` (when the stored run is read), so that a
    run gives the same fault count live or not."""
    i = attempt.index
    last_ts = min(attempt.last_ts, stop)
    end, silent, open_live = attempt.end, False, False
    silent_by = now if now is not None else read_at
    if end is None and final and silent_by is not None and silent_by - attempt.last_ts > policy.silence_fault_s:
        end, silent = "fault", True
    elif end is None and final and now is not None:
        open_live, last_ts = True, stop
    elif end is None and not final:
        end, silent = "fault", True

    life: list[Segment] = []
    tail: list[Segment] = []
    first = attempt.first_step_ts
    if first is None or first >= last_ts:
        life.append(Segment("startup", attempt.start, last_ts, i))
        down_begin = last_ts
    else:
        last_step = min(attempt.last_step_ts, last_ts)
        life.append(Segment("startup", attempt.start, first, i))
        cursor = first
        for g0, g1 in view.stall_gaps:
            if g0 >= last_step:
                break
            life.append(Segment("training", cursor, g0, i))
            cursor = min(g1, last_step)
            life.append(Segment("stalled", g0, cursor, i))
        life.append(Segment("training", cursor, last_step, i))
        if last_ts - last_step > view.threshold:
            tail.append(Segment("stalled", last_step, last_ts, i))
            down_begin = last_step
        else:
            life.append(Segment("training", last_step, last_ts, i))
            down_begin = last_ts

    noticed = None
    if not open_live and end is not None:
        if stop > last_ts:
            tail.append(Segment(DOWNTIME_OF_END[end], last_ts, stop, i))
        noticed = down_begin
        if end in ("fault", "finished") and not policy.is_working(down_begin):
            noticed = min(policy.next_working_moment(down_begin), stop)
            tail = _carve(tail, down_begin, noticed, "off_hours")
    segments = [s for s in life + tail if s.end > s.start]
    return Outcome(attempt, None if open_live else end, silent, view.threshold,
                   None if open_live or end is None else down_begin, noticed,
                   None if final else stop, segments)


@dataclass
class Timeline:
    start: float
    end: float
    live: bool
    outcomes: list[Outcome]
    segments: list[Segment]


def carve_maintenance(segments: list[Segment], policy: Policy) -> list[Segment]:
    """Planned windows take every second that was not training."""
    for lo, hi in policy.maintenance_ts:
        idle = [s for s in segments if s.state != "training"]
        if not any(s.start < hi and s.end > lo for s in idle):
            continue
        segments = [c for s in segments
                    for c in ([s] if s.state == "training" else _carve([s], lo, hi, "maintenance"))]
    return segments


def run_end(attempts: list[Attempt], now: float | None) -> float:
    final = attempts[-1]
    end = max(final.last_ts, final.start)
    return end if now is None else max(end, now)


def classify(attempts: list[Attempt], policy: Policy, now: float | None = None,
             read_at: float | None = None) -> Timeline:
    """The whole run's timeline. `now` given: the run is live and ends now. `read_at` given
    (not live): the moment by which a final attempt's silence counts as a fault."""
    if not attempts:
        return Timeline(0.0, 0.0, now is not None, [], [])
    end = run_end(attempts, now)
    outcomes = []
    for attempt, following in zip(attempts, attempts[1:] + [None]):
        stop = following.start if following is not None else end
        outcomes.append(classify_attempt(attempt, step_view(attempt, policy), stop, policy,
                                         final=following is None, now=now, read_at=read_at))
    segments = carve_maintenance([s for o in outcomes for s in o.segments], policy)
    return Timeline(attempts[0].start, end, now is not None, outcomes, segments)
