"""Throughput regressions in a finished or running series: where throughput fell and stayed
down (the nanochat run: 65k → 35k tok/s at step 5,000, noticed only when the report was written).
The rule is the throughput alert's (monitor/detectors/drops.py): one rule, two callers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.config import RulesConfig
from monitor.detectors.drops import throughput_drops
from monitor.projections.series import StepSeries


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
    """Per-step throughput: global tokens/s where logged (per-device tokens/s when the node count
    changed), else steps/s. Each attempt's warm-up is the rule's to leave out."""
    if series.has("tgs") and len(np.unique(series.nodes)) > 1:
        return series.figures["tgs"], "tokens/s per device"
    if series.has("tokens_per_s"):
        return series.figures["tokens_per_s"], "tokens/s"
    with np.errstate(divide="ignore"):
        return 1.0 / series.figures["step_time"], "steps/s"


def find_throughput_regressions(series: StepSeries, rules: RulesConfig | None = None) -> list[Regression]:
    """Every persistent drop of throughput, in order, with the baseline before and the median
    level during the drop."""
    values, unit = throughput(series)
    pauses = np.asarray([r.ts for r in series.evals + series.checkpoints + series.launches], dtype=np.float64)
    return [Regression(int(series.step[drop.start]), float(series.ts[drop.start]), drop.baseline,
                       float(np.nanmedian(values[drop.start:drop.end])), unit)
            for drop in throughput_drops(series.ts, series.step, series.attempt, values, pauses, rules)]
