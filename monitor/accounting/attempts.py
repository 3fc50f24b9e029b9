"""Attempt segmentation: the first fold over a run's records.

An attempt is one life of the training processes. Records are grouped by their `attempt`
id, and a step counter that goes backwards inside one id opens a new attempt (a trainer that
restarted into the same log without saying so). Only the step records of one rank (the first
that logged a step in the attempt) make its step timeline, so ranks are not double counted.

The fold is incremental: `Segmenter.add` costs O(1) per record (amortised), whether it is
fed a whole stored run at once or one record at a time by the watcher.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from monitor.records import Record

END_KINDS = {"finish": "finished", "stop": "manual", "fault": "fault"}
RESTORE_PARTS = ("optimizer", "lr_scheduler", "data_position", "rng")
WEIGHTS_ONLY = "weights only (init_from)"
NO_RESUME_RECORD = "resume record"
"""The restore gap of an attempt launched with `resume_from` that never said what it restored."""


@dataclass(eq=False)
class Attempt:
    index: int
    attempt_id: str
    start: float
    """launch record ts, or the attempt's first record when it has no launch record"""
    last_ts: float
    split_from_backwards: bool = False
    launch: dict[str, Any] | None = None
    resume: dict[str, Any] | None = None
    resume_step: int | None = None
    end: str | None = None
    """'finished' | 'manual' | 'fault' from an end record; None when none was written"""
    end_record: Record | None = None
    step_rank: int | None = None
    step_ts: array = field(default_factory=lambda: array("d"))
    steps: array = field(default_factory=lambda: array("q"))
    checkpoint_blocked_s: float = 0.0
    live: Any = None
    """GapStats while the attempt is followed live (see live.py); None in batch folds"""

    @property
    def has_steps(self) -> bool:
        return len(self.step_ts) > 0

    @property
    def first_step_ts(self) -> float | None:
        return self.step_ts[0] if self.step_ts else None

    @property
    def last_step_ts(self) -> float | None:
        return self.step_ts[-1] if self.step_ts else None

    def ts_array(self) -> np.ndarray:
        return np.frombuffer(self.step_ts, dtype=np.float64) if self.step_ts else np.empty(0)

    def steps_array(self) -> np.ndarray:
        return np.frombuffer(self.steps, dtype=np.int64) if self.steps else np.empty(0, np.int64)

    @property
    def resumed_from(self) -> int | None:
        """The step this attempt continued from: its resume record, else its first step - 1."""
        if self.resume_step is not None:
            return self.resume_step
        return self.steps[0] - 1 if self.steps else None

    @property
    def nodes(self) -> int | None:
        return self.launch.get("nodes") if self.launch else None

    @property
    def data_batch(self) -> str | None:
        return self.launch.get("data_batch") if self.launch else None

    def restore_gaps(self) -> list[str]:
        """What this attempt's resume failed to restore (empty when all is well or fresh)."""
        if self.resume is not None:
            if self.resume.get("mode") == "init_from":
                return [WEIGHTS_ONLY]
            restored = self.resume.get("restored") or {}
            return [part for part in RESTORE_PARTS if restored.get(part) is False]
        if self.launch and self.launch.get("resume_from") and (self.has_steps or self.end):
            return [NO_RESUME_RECORD]
        return []


class Segmenter:
    """Folds records (in ts order) into attempts."""

    def __init__(self, live_stats=None) -> None:
        self.attempts: list[Attempt] = []
        self.run = ""
        self._current: dict[str, Attempt] = {}
        self.live_stats = live_stats
        """Optional factory of per-attempt incremental gap statistics (live mode, live.py)."""

    def add_all(self, records: Iterable[Record]) -> Segmenter:
        for record in records:
            self.add(record)
        return self

    def _open(self, key: str, attempt_id: str, ts: float, *, split: bool) -> Attempt:
        attempt = Attempt(index=len(self.attempts), attempt_id=attempt_id, start=ts, last_ts=ts,
                          split_from_backwards=split)
        if self.live_stats is not None:
            attempt.live = self.live_stats()
        self.attempts.append(attempt)
        self._current[key] = attempt
        return attempt

    def add(self, r: Record) -> None:
        attempt = self._current.get(r.attempt)
        if not self.run:
            self.run = r.run
        if attempt is None:
            attempt = self._open(r.attempt, r.attempt, r.ts, split=False)
        kind = r.kind
        if kind == "step":
            if attempt.step_rank is None:
                attempt.step_rank = r.rank
            if r.rank == attempt.step_rank and r.step is not None:
                if attempt.steps and r.step < attempt.steps[-1]:
                    pieces = sum(a.attempt_id.split("~")[0] == r.attempt for a in self.attempts)
                    split_from = attempt
                    attempt = self._open(r.attempt, f"{r.attempt}~{pieces}", r.ts, split=True)
                    attempt.step_rank = r.rank
                    attempt.launch = split_from.launch
                attempt.step_ts.append(r.ts)
                attempt.steps.append(r.step)
                if attempt.live is not None and len(attempt.step_ts) > 1:
                    attempt.live.push(attempt)
        elif kind == "launch":
            if attempt.launch is None:
                attempt.launch = r.fields
                attempt.start = min(attempt.start, r.ts)
        elif kind == "resume":
            attempt.resume = r.fields
            if r.step is not None:
                attempt.resume_step = r.step
        elif kind == "checkpoint":
            if attempt.step_rank is None or r.rank == attempt.step_rank:
                attempt.checkpoint_blocked_s += float(r.fields.get("blocked_s") or 0.0)
        elif kind in END_KINDS:
            if attempt.end is None:  # the first end record says why; later ones are echoes
                attempt.end = END_KINDS[kind]
                attempt.end_record = r
        if r.ts > attempt.last_ts:
            attempt.last_ts = r.ts

    def add_columns(self, run: str, names: list[str], codes: np.ndarray, ts: np.ndarray, rank: np.ndarray,
                    step: np.ndarray, events: Iterable[Record]) -> Segmenter:
        """The same fold as `add_all` of the run's records, its step records given as columns (in ts
        order; `codes` index `names`, the attempt ids) and its other records as Records (in ts
        order): an event goes in after the step records of the same ts. A million steps cost
        numpy passes over their attempts' stretches, not a Record each. Batch folds only."""
        assert self.live_stats is None, "live folds take records one at a time (add)"
        events = list(events)
        at = np.searchsorted(ts, [event.ts for event in events], side="right").tolist()
        start = 0
        for index, event in zip(at + [len(ts)], events + [None]):
            if index > start:
                changes = (np.flatnonzero(np.diff(codes[start:index])) + start + 1).tolist()
                for lo, hi in zip([start] + changes, changes + [index]):
                    self._add_steps(run, names[codes[lo]], ts[lo:hi], rank[lo:hi], step[lo:hi])
                start = index
            if event is not None:
                self.add(event)
        return self

    def _add_steps(self, run: str, attempt_id: str, ts: np.ndarray, rank: np.ndarray, step: np.ndarray) -> None:
        """Consecutive step records of one attempt id, as `add` folds them one by one: the first
        rank to log a step is counted, and a step counter going backwards opens a new attempt."""
        if not self.run:
            self.run = run
        attempt = self._current.get(attempt_id)
        if attempt is None:
            attempt = self._open(attempt_id, attempt_id, float(ts[0]), split=False)
        if attempt.step_rank is None:
            attempt.step_rank = int(rank[0])
        counted = np.flatnonzero(rank == attempt.step_rank)
        steps = step[counted]
        previous = np.empty_like(steps)
        if len(steps):
            previous[0] = attempt.steps[-1] if attempt.steps else steps[0]
            previous[1:] = steps[:-1]
        splits = counted[steps < previous].tolist()
        for piece, (lo, hi) in enumerate(zip([0] + splits, splits + [len(ts)])):
            if piece:
                pieces = sum(a.attempt_id.split("~")[0] == attempt_id for a in self.attempts)
                split_from = attempt
                attempt = self._open(attempt_id, f"{attempt_id}~{pieces}", float(ts[lo]), split=True)
                attempt.step_rank = split_from.step_rank
                attempt.launch = split_from.launch
            rows = counted[np.searchsorted(counted, lo):np.searchsorted(counted, hi)]
            attempt.step_ts.frombytes(np.ascontiguousarray(ts[rows], dtype=np.float64).tobytes())
            attempt.steps.frombytes(np.ascontiguousarray(step[rows], dtype=np.int64).tobytes())
            newest = float(ts[lo:hi].max()) if hi > lo else attempt.last_ts
            if newest > attempt.last_ts:
                attempt.last_ts = newest

    def run_timezone(self) -> str | None:
        for attempt in self.attempts:
            if attempt.launch and attempt.launch.get("timezone"):
                return str(attempt.launch["timezone"])
        return None


def segment(records: Iterable[Record]) -> list[Attempt]:
    return Segmenter().add_all(records).attempts
