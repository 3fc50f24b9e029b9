"""Detectors: pure functions over a run's records and its live ledger, saying which alert
conditions hold now. Nothing here reads the store, sends or remembers an alert
(monitor/alerting.py does, fed by the watcher).

    watch = RunDetectors(rules)
    for record in records: watch.add(record)          # O(1) per record
    findings = watch.findings(live_ledger, now)       # per batch / tick

`replay(records, rules, policy)` runs the same over a stored run, a record at a time, and
says when each condition first held: what the tests and the benchmark check.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Iterable, Iterator

from monitor.accounting import LiveLedger, Policy
from monitor.config import RulesConfig
from monitor.detectors.finding import Finding
from monitor.detectors.lifecycle import ended, restart_storm, restore_gap, stall_and_fault
from monitor.detectors.robust import RobustDrop, RobustSpike
from monitor.records import Record

__all__ = ["Finding", "RunDetectors", "replay"]
PAUSES = frozenset({"eval", "checkpoint", "resume", "launch"})
CHUNK = 1024


REAL = frozenset({int, float})
"""A figure's types (bool, a subclass of int, is not one)."""


def _real(value):
    return value if type(value) in REAL else None


class RunDetectors:
    """One run's figure detectors, folded a record at a time (in ts order)."""

    def __init__(self, rules: RulesConfig | None = None, reference_tps: float | None = None) -> None:
        self.rules = rules = rules or RulesConfig()
        drop = (rules.throughput_persist_s, rules.throughput_persist_steps, rules.throughput_warmup_steps)
        self.throughput = RobustDrop(rules.throughput_margin, *drop)
        self.mfu = RobustDrop(rules.mfu_margin, *drop)
        self.loss = RobustSpike(rules.loss_spike_z)
        self.reference_tps = reference_tps
        """A comparable run's median tokens/s (config `compare_to` or the previous run like it)."""
        self.nonfinite: tuple[int, object] | None = None
        self.loss_scale: tuple[int, float] | None = None
        self.skips: deque[tuple[int, int]] = deque(maxlen=rules.skipped_window_steps)
        self.checkpoints: list[tuple[float, int]] = []
        self.attempt: str | None = None
        self.rank: int | None = None
        """The rank whose steps are judged (the first to log one in the attempt), as the accounting does."""
        self.step = -1

    def add(self, r: Record) -> None:
        self.add_all((r,))

    def add_all(self, records: Iterable[Record]) -> None:
        """Fold records in ts order. Runs of step records of the judged rank and attempt go to
        the detectors together (`_steps`); anything else is looked at one by one."""
        run: list[Record] = []
        for r in records:
            if r.kind == "step" and r.rank == self.rank and r.attempt == self.attempt \
                    and r.step is not None and r.step >= self.step:
                run.append(r)
                self.step = r.step
                continue
            if run:
                self._chunks(run)
                run = []
            if r.kind != "step":
                if r.kind in PAUSES:
                    self.throughput.pause()
                    self.mfu.pause()
                    if r.kind == "checkpoint" and r.step is not None:
                        self.checkpoints.append((r.ts, r.step))
            elif r.step is not None and (r.attempt != self.attempt or r.step < self.step and r.rank == self.rank):
                self.attempt, self.rank, self.step = r.attempt, r.rank, r.step
                self.throughput.restart()
                self.mfu.restart()
                run.append(r)
        if run:
            self._chunks(run)

    def _chunks(self, run: list[Record]) -> None:
        """In pieces: once the first has set the baselines, the rest take the detectors' bulk path."""
        for start in range(0, len(run), CHUNK):
            self._steps(run[start:start + CHUNK])

    def _steps(self, run: list[Record]) -> None:
        """Consecutive step records of the judged rank: each figure read once, in C-speed passes."""
        fields = [r.fields for r in run]
        steps = [r.step for r in run]
        times = [r.ts for r in run]
        tps = [_real(f.get("tokens_per_s", f.get("tgs"))) for f in fields]
        self.throughput.add_many(times, steps, tps)
        self.mfu.add_many(times, steps, [_real(f.get("mfu")) for f in fields])
        losses = [f.get("loss") for f in fields]
        if any(type(v) is str or type(v) in REAL and not math.isfinite(v) for v in losses):
            for step, loss in zip(steps, losses):
                if type(loss) is str or type(loss) in REAL and not math.isfinite(loss):
                    self.nonfinite = (step, loss)
        finite = [v if type(v) in REAL and math.isfinite(v) else None for v in losses]
        if self.nonfinite is not None:
            after = [s for s, v in zip(steps, finite) if v is not None and s > self.nonfinite[0]]
            if after:
                self.nonfinite = None
        self.loss.add_many(steps, finite)
        last_scale = next(((s, v) for s, f in zip(reversed(steps), reversed(fields))
                           if type(v := f.get("loss_scale")) in REAL), None)
        if last_scale is not None:
            self.loss_scale = last_scale
        if "inf_nan_skip_batches" in fields[-1] or "inf_nan_skip_batches" in fields[0]:
            self.skips.extend((s, int(v)) for s, f in zip(steps, fields)
                              if type(v := f.get("inf_nan_skip_batches")) in REAL)

    def figure_findings(self) -> list[Finding]:
        rules, out = self.rules, []
        for cause, detector, unit in (("throughput", self.throughput, "tokens/s"), ("mfu", self.mfu, "MFU")):
            if (drop := detector.drop()) is not None:
                out.append(Finding(cause, "warning", f"{unit} {drop.current:,.4g} is {drop.fraction:.0%} below the "
                                   f"run's baseline {drop.baseline:,.4g} since step {drop.since_step}",
                                   self.attempt, {"baseline": drop.baseline, "current": drop.current,
                                                  "since_step": drop.since_step, "since": drop.since_ts}))
        if self.reference_tps and self.throughput.last is not None and len(self.throughput.recent) >= 10:
            current = self.throughput.current()
            if current < self.reference_tps * (1 - rules.throughput_margin):
                out.append(Finding("throughput_vs_reference", "warning",
                                   f"tokens/s {current:,.4g} is {1 - current / self.reference_tps:.0%} below the "
                                   f"comparable run's {self.reference_tps:,.4g}", self.attempt,
                                   {"reference": self.reference_tps, "current": current}))
        if self.nonfinite is not None:
            out.append(Finding("loss_nonfinite", "critical", f"loss is {self.nonfinite[1]} at step {self.nonfinite[0]}",
                               self.attempt, {"step": self.nonfinite[0]}))
        if (spike := self.loss.active()) is not None:
            step, value, median = spike
            out.append(Finding("loss_spike", "warning", f"loss spiked to {value:.4g} at step {step} "
                               f"(recent median {median:.4g})", self.attempt, {"step": step, "loss": value}))
        if self.loss_scale is not None and self.loss_scale[1] <= rules.loss_scale_min:
            out.append(Finding("loss_scale", "warning", f"loss scale collapsed to {self.loss_scale[1]:g} at step "
                               f"{self.loss_scale[0]}", self.attempt, {"step": self.loss_scale[0]}))
        if len(self.skips) > 1 and (rise := self.skips[-1][1] - self.skips[0][1]) >= rules.skipped_batches:
            out.append(Finding("skipped_batches", "warning", f"{rise} batches skipped (inf/NaN) between steps "
                               f"{self.skips[0][0]} and {self.skips[-1][0]}", self.attempt, {"skipped": rise}))
        return out

    def findings(self, live: LiveLedger, now: float) -> list[Finding]:
        """Every condition that holds at `now`, given the run's live ledger (fed the same records)."""
        attempts = live.segmenter.attempts
        if not attempts:
            return []
        out = self.figure_findings()
        ledger = live.snapshot(now)
        if ledger is not None:
            out += stall_and_fault(ledger, attempts, live.policy(), now)
        rules = self.rules
        for finding in (restart_storm(attempts, self.checkpoints, rules.restart_storm_count,
                                      rules.restart_storm_window_s),
                        restore_gap(attempts[-1]), ended(attempts[-1])):
            if finding is not None:
                out.append(finding)
        return [f for f in out if f.cause not in rules.disabled]


def replay(records: Iterable[Record], rules: RulesConfig | None = None, policy: Policy | None = None, *,
           every: int = 1, lag_s: float = 0.0) -> Iterator[tuple[Record, list[Finding]]]:
    """One stored run fed a record at a time, as a watcher would see it: after every `every`
    records, the findings at the record's time plus `lag_s` (the clock of a live watcher)."""
    detectors = RunDetectors(rules)
    live = LiveLedger(policy)
    for i, record in enumerate(records):
        detectors.add(record)
        live.add(record)
        if i % every == 0:
            yield record, detectors.findings(live, record.ts + lag_s)
