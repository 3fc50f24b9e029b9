"""What a run's own history says about the time it loses: faults per training hour, what each
fault cost (the downtime to the next first step, nights included, and the progress redone), and
the time inside training that is not stepping (checkpoint stalls, evals, other slow steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.accounting import Ledger, Policy
from monitor.projections.series import StepSeries


STALL_MIN_S = Policy().stall_min_s
STALL_FACTOR = Policy().stall_factor


@dataclass(frozen=True)
class Overheads:
    """Seconds per second of stepping spent, inside `training`, on something else: the excess of
    each gap between step records over the steps it holds, put down to a checkpoint or an eval
    record inside the gap, else to `other` (slow steps, logging, data waits)."""

    checkpoint: float
    eval: float
    other: float

    @property
    def total(self) -> float:
        return self.checkpoint + self.eval + self.other


@dataclass(frozen=True)
class FaultHistory:
    """The run's faults over its training time, and what each one cost."""

    faults: int
    training_s: float
    costs_s: tuple[float, ...]
    """per fault followed by a relaunch: downtime (fault to the next first step, off hours
    included) plus the progress redone after it"""
    downtime_s: tuple[float, ...]
    wasted_s: tuple[float, ...]

    @property
    def per_training_hour(self) -> float:
        return self.faults / (self.training_s / 3600) if self.training_s > 0 else 0.0

    @property
    def mean_cost_s(self) -> float | None:
        return float(np.mean(self.costs_s)) if self.costs_s else None


def overheads(series: StepSeries, step_time: float) -> Overheads:
    """Overheads measured over the whole run, with `step_time` for records that log none."""
    if len(series) < 2:
        return Overheads(0.0, 0.0, 0.0)
    same = series.attempt[1:] == series.attempt[:-1]
    dsteps = np.diff(series.step)
    keep = same & (dsteps > 0)
    logged = series.figures["step_time"][1:]
    per_step = np.where(np.isnan(logged), step_time, logged)
    expected = (per_step * np.maximum(dsteps, 0))[keep]
    gaps = np.diff(series.ts)[keep]
    excess = np.maximum(gaps - expected, 0.0)
    if len(gaps):  # a gap past the ledger's stall threshold is a hang (`stalled`), not overhead
        excess[gaps > max(STALL_MIN_S, STALL_FACTOR * float(np.median(gaps)))] = 0.0
    starts = series.ts[:-1][keep]
    ends = series.ts[1:][keep]
    stepping = float(expected.sum())
    if stepping <= 0:
        return Overheads(0.0, 0.0, 0.0)

    def inside(records) -> np.ndarray:
        marks = np.sort(np.asarray([r.ts for r in records], dtype=np.float64))
        return np.searchsorted(marks, ends, side="right") > np.searchsorted(marks, starts, side="right")

    with_checkpoint = inside(series.checkpoints)
    with_eval = inside(series.evals) & ~with_checkpoint
    rest = ~(with_checkpoint | with_eval)
    return Overheads(float(excess[with_checkpoint].sum()) / stepping, float(excess[with_eval].sum()) / stepping,
                     float(excess[rest].sum()) / stepping)


def fault_history(ledger: Ledger) -> FaultHistory:
    """Faults and their costs from the ledger: each relaunch that followed a fault gives one
    downtime sample (the time to notice, relaunch and start, nights included, as it happened)."""
    faulted = {row.attempt for row in ledger.rows if row.state == "fault"}
    wasted = {w.attempt: w.seconds for w in ledger.wasted}
    downtime, lost = [], []
    for relaunch in ledger.relaunches:
        if relaunch.after_attempt in faulted:
            downtime.append(relaunch.first_step - relaunch.begin)
            lost.append(wasted.get(relaunch.after_attempt, 0.0))
    costs = tuple(d + w for d, w in zip(downtime, lost))
    return FaultHistory(ledger.faults, ledger.seconds["training"], costs, tuple(downtime), tuple(lost))
