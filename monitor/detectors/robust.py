"""Robust drops in a step figure (tokens/s, MFU) against the run's own baseline.

The baseline is the median of the last `window` healthy samples (recomputed every `refresh`
accepted samples: two medians of 200 cost ~30 µs, too much for every step), its floor `median x (1 - margin)`, lowered further when the figure is
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
BULK = 64
"""A batch at least this long is first tried whole, in numpy (a backlog, a busy log)."""


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
                 window: int = 200, recent: int = 20, refresh: int = 100) -> None:
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
        self.add_many((ts,), (step,), (value,))

    def add_many(self, times, steps, values) -> None:
        """Samples in order (a value None is no sample): one call for a whole batch, its state in
        locals — this runs for every step record the watcher stores."""
        if self._all_healthy(times, steps, values) or self._all_still_low(times, steps, values):
            return
        recent, accepted, floor, low = self.recent, self.accepted, self.floor, self.low
        window, last, since, fresh = recent.maxlen, self.last, self.since, self.fresh
        skip = self.warmup_left + (not self.warmup_left and self.skip_next)
        """The warm-up, or the sample after a pause: the first ones of a call (both reset between calls)."""
        judged = 0
        for ts, step, value in zip(times, steps, values):
            if value is None:
                continue
            if judged < skip:
                judged += 1
                continue
            last = (ts, step)
            if len(recent) == window and recent[0][2] < floor:
                low -= 1
            recent.append((ts, step, value))
            if value < floor:
                low += 1
            if low * 2 <= len(recent) or self.baseline is None:
                since = None
                accepted.append(value)
                fresh += 1
                if fresh >= self.refresh or self.baseline is None and len(accepted) >= MIN_BASELINE:
                    self.low = low
                    self._rebase()
                    floor, low, fresh = self.floor, self.low, 0
            elif since is None:
                first = len(recent) - 1
                while first > 0 and recent[first - 1][2] < floor:
                    first -= 1
                since = recent[first][:2]
        self.warmup_left = max(0, self.warmup_left - judged)
        self.skip_next = self.skip_next and judged == 0
        self.low, self.last, self.since, self.fresh = low, last, since, fresh

    def _all_healthy(self, times, steps, values) -> bool:
        """The common case of a long batch, in numpy: nothing to skip, nothing low, no None —
        every sample is accepted, and the baseline is brought up to date once, at its end."""
        if len(values) < BULK or self.baseline is None or self.since is not None or self.low \
                or self.warmup_left or self.skip_next or None in values:
            return False
        array = np.asarray(values, dtype=float)
        if not (array >= self.floor).all():
            return False
        self.recent.extend(zip(times[-self.recent.maxlen:], steps[-self.recent.maxlen:],
                               values[-self.recent.maxlen:]))
        self.accepted.extend(values[-self.accepted.maxlen:])
        self.last = (times[-1], steps[-1])
        self.fresh += len(values)
        if self.fresh >= self.refresh:
            self._rebase()
        return True

    def _all_still_low(self, times, steps, values) -> bool:
        """A long batch while the figure is already below, every sample under the floor (a
        regression that lasts): the recent window fills with lows and nothing is learnt, as the
        loop would leave it."""
        if len(values) < BULK or self.since is None or self.warmup_left or self.skip_next or None in values \
                or not (np.asarray(values, dtype=float) < self.floor).all():
            return False
        window = self.recent.maxlen
        self.recent.extend(zip(times[-window:], steps[-window:], values[-window:]))
        self.low = len(self.recent)
        self.last = (times[-1], steps[-1])
        return True

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

    def __init__(self, z: float, *, window: int = 200, refresh: int = 100, hold_steps: int = 20) -> None:
        self.z, self.refresh, self.hold_steps = z, refresh, hold_steps
        self.values: deque[float] = deque(maxlen=window)
        self.median: float | None = None
        self.limit = float("inf")
        self.fresh = 0
        self.spike: tuple[int, float, float] | None = None
        """(step, value, median) of the latest spike."""
        self.last_step = 0

    def add(self, step: int, value: float) -> None:
        self.add_many((step,), (value,))

    def add_many(self, steps, values) -> None:
        """Finite values in order (None: no sample), in one call, as RobustDrop.add_many."""
        if len(values) >= BULK and self.median is not None and None not in values \
                and (np.asarray(values, dtype=float) <= self.limit).all():
            self.values.extend(values[-self.values.maxlen:])
            self.last_step = steps[-1]
            self.fresh += len(values)
            if self.fresh >= self.refresh:
                self._rebase()
            return
        keep, limit = self.values.append, self.limit
        for step, value in zip(steps, values):
            if value is None:
                continue
            self.last_step = step
            if value > limit:
                self.spike = (step, value, self.median)
                continue
            keep(value)
            self.fresh += 1
            if self.fresh >= self.refresh or self.median is None and len(self.values) >= MIN_BASELINE:
                limit = self._rebase()

    def _rebase(self) -> float:
        values = np.fromiter(self.values, float, len(self.values))
        self.median = float(np.median(values))
        mad = float(np.median(np.abs(values - self.median))) or 1e-12
        self.limit, self.fresh = self.median + self.z * 1.4826 * mad, 0
        return self.limit

    def active(self) -> tuple[int, float, float] | None:
        """The latest spike while it is recent (within `hold_steps` steps)."""
        if self.spike is not None and 0 <= self.last_step - self.spike[0] <= self.hold_steps:
            return self.spike
        return None
