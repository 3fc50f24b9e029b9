"""The throughput-regression rule over a whole step series, for a report or a finished run: the
live detector's `RobustDrop`, fed as `RunDetectors` feeds it (restarted at each attempt and where
a step counter goes backwards, paused by evals, checkpoints and launches, in batches of CHUNK),
so the report and the alerts say the same about a run.

A regression ends when the figure is back above the baseline's floor; a new attempt's warm-up
does not end it (the baseline carries over), so a drop that lasts across restarts is one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.config import RulesConfig
from monitor.detectors import CHUNK
from monitor.detectors.robust import RobustDrop


@dataclass(frozen=True)
class SeriesDrop:
    start: int
    """index (into the series) of the first low sample"""
    end: int
    """index just past the drop: where the figure was back up, or the series' end"""
    baseline: float


def throughput_drops(ts: np.ndarray, steps: np.ndarray, attempts: np.ndarray, values: np.ndarray,
                     pauses: np.ndarray, rules: RulesConfig | None = None) -> list[SeriesDrop]:
    """Every drop of `values` (one per step record, NaN where none, in ts order; `attempts` any
    per-attempt code) that persisted as the throughput alert requires. `pauses` are the ts of
    the evals, checkpoints and launches: the sample after each is neither judged nor learnt."""
    rules = rules or RulesConfig()
    detector = RobustDrop(rules.throughput_margin, rules.throughput_persist_s, rules.throughput_persist_steps,
                          rules.throughput_warmup_steps)
    valid = np.flatnonzero(np.isfinite(values))
    restarts = np.ones(len(valid), dtype=bool)
    restarts[1:] = (attempts[valid][1:] != attempts[valid][:-1]) | (np.diff(steps[valid]) < 0)
    paused = np.zeros(len(valid) + 1, dtype=bool)
    paused[np.searchsorted(valid, np.searchsorted(ts, np.sort(pauses), side="right"))] = True
    starts = [*np.flatnonzero(restarts | paused[:-1]).tolist(), len(valid)]
    cuts = [cut for lo, hi in zip(starts, starts[1:]) for cut in range(lo, hi, CHUNK)] + [len(valid)]
    tsv = ts[valid]
    times, numbers, samples = tsv.tolist(), steps[valid].tolist(), values[valid].tolist()
    found: list[SeriesDrop] = []
    open_at: tuple[int, float] | None = None
    for lo, hi in zip(cuts, cuts[1:]):
        if restarts[lo]:
            detector.restart()
        if paused[lo]:
            detector.pause()
        detector.add_many(times[lo:hi], numbers[lo:hi], samples[lo:hi])
        if open_at is None and (drop := detector.drop()) is not None:
            since = int(np.searchsorted(tsv, drop.since_ts))
            while numbers[since] != drop.since_step:  # same-ts samples
                since += 1
            open_at = (since, drop.baseline)
        elif open_at is not None and detector.recent and detector.current() >= detector.floor:
            found.append(SeriesDrop(int(valid[open_at[0]]), int(valid[hi - 1]) + 1, open_at[1]))
            open_at = None
    if open_at is not None:
        found.append(SeriesDrop(int(valid[open_at[0]]), len(values), open_at[1]))
    return found
