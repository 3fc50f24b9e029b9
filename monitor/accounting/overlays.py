"""Overlays: facts laid over the states without changing them.

- wasted progress: steps (and their training time) redone because an attempt resumed from an
  older step than an earlier attempt had reached;
- checkpoint stall: seconds the loop was blocked saving, as the trainer recorded them;
- restore gaps: resumes that did not restore optimizer, scheduler, data position or RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.accounting.attempts import NO_RESUME_RECORD, WEIGHTS_ONLY, Attempt
from monitor.accounting.states import Timeline


@dataclass(frozen=True)
class Wasted:
    attempt: int
    """the attempt whose progress was lost"""
    from_step: int
    to_step: int
    seconds: float


def wasted_progress(attempts: list[Attempt], timeline: Timeline) -> list[Wasted]:
    """For each attempt, the suffix of its steps that a later resume went back over."""
    resumed_below: dict[int, int] = {}
    lowest_later: int | None = None  # the lowest step any later attempt resumed from
    for i in range(len(attempts) - 1, -1, -1):
        attempt = attempts[i]
        if lowest_later is not None and attempt.steps and attempt.steps[-1] > lowest_later:
            resumed_below[i] = lowest_later
        s0 = attempt.resumed_from
        if s0 is not None and (lowest_later is None or s0 < lowest_later):
            lowest_later = s0
    stalled: dict[int, list[tuple[float, float]]] = {}
    for s in timeline.segments:
        if s.state == "stalled" and s.attempt in resumed_below:
            stalled.setdefault(s.attempt, []).append((s.start, s.end))
    out = []
    for i, s0 in sorted(resumed_below.items()):
        attempt = attempts[i]
        steps, ts = attempt.steps_array(), attempt.ts_array()
        k = int(np.searchsorted(steps, s0, side="right")) - 1
        t0 = float(ts[max(k, 0)])
        t1 = float(ts[-1])
        lost = (t1 - t0) - sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in stalled.get(i, ()))
        out.append(Wasted(i, max(s0, int(steps[0]) - 1) + 1, int(steps[-1]), max(lost, 0.0)))
    return out


def checkpoint_stall_s(attempts: list[Attempt]) -> float:
    return sum(a.checkpoint_blocked_s for a in attempts)


def restore_gaps(attempts: list[Attempt]) -> dict[int, list[str]]:
    """attempt index -> the parts its resume left out."""
    return {a.index: gaps for a in attempts if (gaps := a.restore_gaps())}


def describe_gap(missing: list[str]) -> str:
    """A restore gap as the ledger's rows and figures word it."""
    if missing == [NO_RESUME_RECORD]:
        return "launched with resume_from but wrote no resume record: what it restored is unknown"
    if missing == [WEIGHTS_ONLY]:
        return "started from weights only (init_from): optimizer, schedule, data position and RNG fresh"
    return f"resumed without {', '.join(missing)}"
