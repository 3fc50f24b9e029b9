"""Throughput regressions in a finished or running series: where per-device throughput fell
and stayed down (the nanochat run: 65k → 35k tok/s at some step, noticed only when the report was written).

This should share its rule with the live throughput-regression detector of `monitor/detectors/`
(built in parallel): one rule, two callers. Until they are unified, the rule here is:
robust baseline = median of the current regime's block medians, spread = their MAD; a drop is a
block median below baseline × (1 − max(MIN_DROP, 3 × MAD-σ ÷ baseline)) that persists for
PERSIST blocks in a row; the regime then restarts at the new level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.projections.series import StepSeries

MIN_DROP = 0.10
"""a drop under 10 % is noise or a node change, not a regression"""
BLOCKS = 1000
PERSIST = 5
MIN_REGIME = 10


@dataclass(frozen=True)
class Regression:
    step: int
    """the first step at the lower level"""
    ts: float
    before: float
    after: float
    unit: str

    @property
    def drop(self) -> float:
        return 1 - self.after / self.before if self.before else 0.0

    def to_dict(self) -> dict:
        return {"step": self.step, "ts": self.ts, "before": self.before, "after": self.after, "unit": self.unit,
                "drop": self.drop}


def throughput(series: StepSeries) -> tuple[np.ndarray, str]:
    """Per-step throughput, each attempt's first record left out (compilation, warm-up): global
    tokens/s where logged (per-device tokens/s when the node count changed), else steps/s."""
    first = np.ones(len(series), dtype=bool)
    first[1:] = series.attempt[1:] != series.attempt[:-1]
    if series.has("tgs") and len(np.unique(series.nodes)) > 1:
        values, unit = series.figures["tgs"], "tokens/s per device"
    elif series.has("tokens_per_s"):
        values, unit = series.figures["tokens_per_s"], "tokens/s"
    else:
        with np.errstate(divide="ignore"):
            values, unit = 1.0 / series.figures["step_time"], "steps/s"
    return np.where(first, np.nan, values), unit


def find_throughput_regressions(series: StepSeries) -> list[Regression]:
    """Every persistent drop of throughput, in order, with the levels before and after."""
    values, unit = throughput(series)
    valid = np.flatnonzero(np.isfinite(values))
    if len(valid) < PERSIST * 2:
        return []
    x = values[valid]
    size = max(1, len(x) // BLOCKS)
    n_blocks = len(x) // size
    medians = np.median(x[:n_blocks * size].reshape(n_blocks, size), axis=1)
    found: list[tuple[int, float]] = []  # (index into x of the first low value, level before)
    regime_start = 0
    b = MIN_REGIME
    while b + PERSIST <= n_blocks:
        regime = medians[regime_start:b]
        if len(regime) < MIN_REGIME:
            b += 1
            continue
        level = float(np.median(regime))
        sigma = 1.4826 * float(np.median(np.abs(regime - level)))
        threshold = level * (1 - max(MIN_DROP, 3 * sigma / level if level else 0.0))
        if (medians[b:b + PERSIST] < threshold).all():
            lo = (b - 1) * size
            window = x[lo:(b + 1) * size]
            below = np.flatnonzero(window < threshold)
            # the first low value from which most of what follows in the window stays low
            start = next((int(i) for i in below if np.median(window[i:i + size]) < threshold), int(below[0]))
            found.append((lo + start, level))
            regime_start = b + 1
            b = regime_start + MIN_REGIME
        else:
            b += 1
    out = []
    for k, (index, before) in enumerate(found):
        end = found[k + 1][0] if k + 1 < len(found) else len(x)
        position = valid[index]
        out.append(Regression(int(series.step[position]), float(series.ts[position]), before,
                              float(np.median(x[index:end])), unit))
    return out
