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


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
        if r.kind != "step":
            if r.kind in PAUSES:
                self.throughput.pause()
                self.mfu.pause()
                if r.kind == "checkpoint" and r.step is not None:
                    self.checkpoints.append((r.ts, r.step))
            return
        step = r.step
        if step is None:
            return
        if r.attempt != self.attempt or step < self.step and r.rank == self.rank:
            self.attempt, self.rank = r.attempt, r.rank
            self.throughput.restart()
            self.mfu.restart()
        elif r.rank != self.rank:
            return
        self.step = step
        fields = r.fields
        tps = fields.get("tokens_per_s", fields.get("tgs"))
        if tps is not None and (value := _number(tps)) is not None:
            self.throughput.add(r.ts, step, value)
        mfu = fields.get("mfu")
        if mfu is not None and (value := _number(mfu)) is not None:
            self.mfu.add(r.ts, step, value)
        loss = fields.get("loss")
        if loss is not None:
            value = _number(loss)
            if value is None or not math.isfinite(value):
                if isinstance(loss, str) or value is not None:
                    self.nonfinite = (step, loss)
            else:
                self.nonfinite = None if self.nonfinite is None or step > self.nonfinite[0] else self.nonfinite
                self.loss.add(step, value)
        scale = fields.get("loss_scale")
        if scale is not None and (value := _number(scale)) is not None:
            self.loss_scale = (step, value)
        skipped = fields.get("inf_nan_skip_batches")
        if skipped is not None and (value := _number(skipped)) is not None:
            self.skips.append((step, int(value)))

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
