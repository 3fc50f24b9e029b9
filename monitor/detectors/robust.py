"""Robust drops in a step figure (tokens/s, MFU) against the run's own baseline.

The baseline is the median of the last `window` healthy samples (recomputed every `refresh`
accepted samples), its floor `median x (1 - margin)`, lowered further when the figure is
noisy (median - 3 x 1.4826 x MAD). The figure is "below" while most of the last `recent`
samples are under the floor — the same as their median being under it, kept as a count so a
step costs O(1). It fires once it has stayed below for `persist_s` seconds and `persist_steps`
steps, counted from the first of the low samples. Samples never enter the baseline while
below, so a lasting regression does not become the new normal.

What must not fire it: the first `warmup_steps` of every attempt (compilation, a restart's
warm-up) and the step right after an eval or a checkpoint save are neither tested nor learnt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

MIN_BASELINE = 20


@dataclass
class Drop:
    """An active regression: where it began and how far below the baseline it sits."""

    since_ts: float
    since_step: int
    baseline: float
    current: float

    @property
    def fraction(self) -> float:
        return 1.0 - self.current / self.baseline if self.baseline else 0.0


class RobustDrop:
    def __init__(self, margin: float, persist_s: float, persist_steps: int, warmup_steps: int, *,
                 window: int = 200, recent: int = 20, refresh: int = 50) -> None:
        self.margin, self.persist_s, self.persist_steps = margin, persist_s, persist_steps
        self.warmup_steps, self.refresh = warmup_steps, refresh
        self.accepted: deque[float] = deque(maxlen=window)
        self.recent: deque[tuple[float, int, float]] = deque(maxlen=recent)
        self.low = 0
        """How many of `recent` are under the floor."""
        self.baseline: float | None = None
        self.floor = 0.0
        self.fresh = 0
        self.warmup_left = warmup_steps
        self.skip_next = False
        self.since: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None

    def restart(self) -> None:
        """A new attempt: its warm-up is not judged; the baseline carries over."""
        self.warmup_left = self.warmup_steps
        self.recent.clear()
        self.low = 0
        self.since = None

    def pause(self) -> None:
        """An eval or a checkpoint save: the next step's figure may include it."""
        self.skip_next = True

    def add(self, ts: float, step: int, value: float) -> None:
        if self.warmup_left > 0 or self.skip_next:
            self.warmup_left -= self.warmup_left > 0
            self.skip_next = False
            return
        self.last = (ts, step)
        if len(self.recent) == self.recent.maxlen and self.recent[0][2] < self.floor:
            self.low -= 1
        self.recent.append((ts, step, value))
        self.low += value < self.floor
        if self.baseline is None or self.low * 2 <= len(self.recent):
            self.since = None
            self.accepted.append(value)
            self.fresh += 1
            if self.baseline is None and len(self.accepted) >= MIN_BASELINE or self.fresh >= self.refresh:
                self._rebase()
        elif self.since is None:
            first = len(self.recent) - 1
            while first > 0 and self.recent[first - 1][2] < self.floor:
                first -= 1
            self.since = self.recent[first][:2]

    def _rebase(self) -> None:
        values = np.fromiter(self.accepted, float, len(self.accepted))
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        self.baseline, self.fresh = median, 0
        self.floor = min(median * (1 - self.margin), median - 3 * 1.4826 * mad)
        self.low = sum(v < self.floor for _t, _s, v in self.recent)

    def current(self) -> float:
        return float(np.median([v for _t, _s, v in self.recent])) if self.recent else 0.0

    def drop(self) -> Drop | None:
        """The regression, once it has persisted; None otherwise."""
        if self.since is None or self.last is None or self.baseline is None:
            return None
        if self.last[0] - self.since[0] < self.persist_s or self.last[1] - self.since[1] < self.persist_steps:
            return None
        return Drop(self.since[0], self.since[1], self.baseline, self.current())


class RobustSpike:
    """A value far above its recent robust level: z = (x - median) / (1.4826 x MAD) > `z`."""

    def __init__(self, z: float, *, window: int = 200, refresh: int = 50, hold_steps: int = 20) -> None:
        self.z, self.refresh, self.hold_steps = z, refresh, hold_steps
        self.values: deque[float] = deque(maxlen=window)
        self.median: float | None = None
        self.limit = float("inf")
        self.fresh = 0
        self.spike: tuple[int, float, float] | None = None
        """(step, value, median) of the latest spike."""
        self.last_step = 0

    def add(self, step: int, value: float) -> None:
        self.last_step = step
        if value > self.limit:
            self.spike = (step, value, self.median)
            return
        self.values.append(value)
        self.fresh += 1
        if self.fresh >= self.refresh or self.median is None and len(self.values) >= MIN_BASELINE:
            values = np.fromiter(self.values, float, len(self.values))
            self.median = float(np.median(values))
            mad = float(np.median(np.abs(values - self.median))) or 1e-12
            self.limit, self.fresh = self.median + self.z * 1.4826 * mad, 0

    def active(self) -> tuple[int, float, float] | None:
        """The latest spike while it is recent (within `hold_steps` steps)."""
        if self.spike is not None and 0 <= self.last_step - self.spike[0] <= self.hold_steps:
            return self.spike
        return None
