"""The live fold: the same rules, updated one record at a time at constant cost.

Closed attempts (a later one has launched) keep their classification in a cache; only the
newest attempt is classified again on each snapshot. Its stall threshold needs the median
interval between its step records, which `GapStats` keeps with two heaps (O(log n) per
record) beside the few gaps long enough to ever count as stalled.
"""

from __future__ import annotations

import heapq
from typing import Iterable

import numpy as np

from monitor.accounting.attempts import Attempt, Segmenter
from monitor.accounting.figures import Ledger, ledger
from monitor.accounting.policy import Policy
from monitor.accounting.states import (Outcome, StepView, Timeline, carve_maintenance,
                                       classify_attempt, run_end, step_view)
from monitor.records import Record


class GapStats:
    """Running median of step gaps plus every gap above `floor` (floor <= threshold always)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.low: list[float] = []   # max-heap (negated) of the smaller half
        self.high: list[float] = []  # min-heap of the larger half
        self.floor = policy.stall_min_s
        self.candidates: list[tuple[float, float]] = []

    def _insert(self, gap: float) -> None:
        if not self.low or gap <= -self.low[0]:
            heapq.heappush(self.low, -gap)
        else:
            heapq.heappush(self.high, gap)
        if len(self.low) > len(self.high) + 1:
            heapq.heappush(self.high, -heapq.heappop(self.low))
        elif len(self.high) > len(self.low):
            heapq.heappush(self.low, -heapq.heappop(self.high))

    def median(self) -> float | None:
        if not self.low:
            return None
        if len(self.low) > len(self.high):
            return -self.low[0]
        return (-self.low[0] + self.high[0]) / 2

    def push(self, attempt: Attempt) -> None:
        prev, ts = attempt.step_ts[-2], attempt.step_ts[-1]
        self._insert(ts - prev)
        if ts - prev > self.floor:
            self.candidates.append((prev, ts))
        threshold = self.policy.stall_threshold(self.median())
        if threshold < self.floor or threshold > 4 * self.floor:
            self._refilter(attempt, threshold)

    def _refilter(self, attempt: Attempt, threshold: float) -> None:
        """Re-pick the candidates when the threshold moved by a factor (rare: O(n) each)."""
        self.floor = max(self.policy.stall_min_s, threshold / 2)
        ts = attempt.ts_array()
        keep = np.flatnonzero(np.diff(ts) > self.floor)
        self.candidates = [(float(ts[i]), float(ts[i + 1])) for i in keep]

    @classmethod
    def of(cls, attempt: Attempt, policy: Policy) -> GapStats:
        """Built once from an attempt already folded in bulk (O(n))."""
        stats = cls(policy)
        gaps = np.sort(np.diff(attempt.ts_array()))
        half = (len(gaps) + 1) // 2
        stats.low = [-float(g) for g in gaps[:half]]
        heapq.heapify(stats.low)
        stats.high = [float(g) for g in gaps[half:]]
        heapq.heapify(stats.high)
        stats._refilter(attempt, policy.stall_threshold(stats.median()))
        return stats

    def view(self, policy: Policy) -> StepView:
        threshold = policy.stall_threshold(self.median())
        return StepView(threshold, [(a, b) for a, b in self.candidates if b - a > threshold])


class LiveLedger:
    """One run followed live: feed its records with `add` (in ts order), ask `snapshot(now)`
    for the ledger at any moment. Keep one per run."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.base_policy = policy or Policy()
        self.segmenter = Segmenter(live_stats=lambda: GapStats(self.base_policy))
        self._closed: dict[int, tuple[tuple, Outcome]] = {}

    @classmethod
    def from_records(cls, records: Iterable[Record], policy: Policy | None = None) -> LiveLedger:
        """Bulk-fold a stored run, then follow it live."""
        live = cls(policy)
        live.segmenter.live_stats = None
        live.segmenter.add_all(records)
        if live.segmenter.attempts:
            final = live.segmenter.attempts[-1]
            final.live = GapStats.of(final, live.base_policy)
        live.segmenter.live_stats = lambda: GapStats(live.base_policy)
        return live

    def add(self, record: Record) -> None:
        self.segmenter.add(record)

    def policy(self) -> Policy:
        return self.base_policy.for_run(self.segmenter.run_timezone())

    def _outcome(self, attempt: Attempt, stop: float, policy: Policy, final: bool, now: float) -> Outcome:
        if final:
            return classify_attempt(attempt, step_view(attempt, policy), stop, policy, final=True, now=now)
        key = (attempt.last_ts, attempt.end, len(attempt.step_ts), stop, policy)
        cached = self._closed.get(attempt.index)
        if cached is None or cached[0] != key:
            cached = (key, classify_attempt(attempt, step_view(attempt, policy), stop, policy,
                                            final=False, now=now))
            self._closed[attempt.index] = cached
        return cached[1]

    def snapshot(self, now: float) -> Ledger | None:
        attempts = self.segmenter.attempts
        if not attempts:
            return None
        policy = self.policy()
        end = run_end(attempts, now)
        outcomes = [self._outcome(a, b.start if b else end, policy, b is None, end)
                    for a, b in zip(attempts, attempts[1:] + [None])]
        segments = carve_maintenance([s for o in outcomes for s in o.segments], policy)
        timeline = Timeline(attempts[0].start, end, True, outcomes, segments)
        return ledger(self.segmenter.run, attempts, timeline, policy.timezone or "UTC")
