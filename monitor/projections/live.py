"""`trainledger eta` kept live: the watcher projects each followed run's finish every `eta_every_s`
and stores it (`live_etas`), so that the dashboard's Runs page and the metrics endpoint show it
without a simulation per view.

Listens after `LiveRuns` (monitor/live.py), whose states say which runs are still moving: a run
in a settled state (fault, manual, waiting) is projected once more after records reach it (its
finish record turns its row `finished`), then left alone until the next one."""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from sqlalchemy.engine import Engine

from monitor.live import SETTLED, LiveRuns, RunFailures
from monitor.models import LiveEta
from monitor.projections.eta import ETA_FIGURES, EtaError, estimate_eta
from monitor.projections.loading import load_run
from monitor.records import Record
from monitor.store import save_live_etas

log = logging.getLogger("trainledger.eta")
LIVE_SIMULATIONS = 500
"""Fewer futures than `trainledger eta`'s: a P10–P90 range steady to a few minutes, at an eighth of the CPU."""


class LiveEtas:
    """The finish of every run `live` follows and still classifies, projected at most every `eta_every_s`."""

    def __init__(self, engine: Engine, live: LiveRuns, *, eta_every_s: float = 60.0,
                 simulations: int = LIVE_SIMULATIONS, clock: Callable[[], float] = time.time) -> None:
        self.engine, self.live, self.clock = engine, live, clock
        self.eta_every_s = eta_every_s
        self.simulations = simulations
        self.last_projected = float("-inf")
        self.touched: set[str] = set()
        """Runs with records since the last projection, settled or not."""
        self.failures = RunFailures(log, "finish not projected")
        """One run's data never stops the watcher: its failure is logged once until it changes."""

    def committed(self, records: Iterable[Record]) -> None:
        self.touched.update(record.run for record in records)

    def tick(self) -> None:
        now = self.clock()
        if now - self.last_projected < self.eta_every_s:
            return
        self.last_projected = now
        runs = sorted(self.touched | {run for run, state in self.live.saved.items()
                                      if run in self.live.ledgers and state.state not in SETTLED})
        self.touched.clear()
        etas = [eta for run in runs if (eta := self.failures.call(run, self.project, run, now)[1]) is not None]
        save_live_etas(self.engine, etas)

    def project(self, run: str, now: float) -> LiveEta | None:
        """`trainledger eta RUN --live` with `simulations` futures, as a row; None where eta has no answer."""
        loaded = load_run(self.engine, run, self.live.policy, figures=ETA_FIGURES, now=now)
        if loaded is None:
            return None
        try:
            eta = estimate_eta(loaded.series, loaded.ledger, now=now, simulations=self.simulations)
        except EtaError:
            return None
        return LiveEta(run=run, done_steps=eta.steps_done, total_steps=eta.total_steps,
                       step_time_s=eta.step_time.median, finish_p10=eta.finish_p10, finish_p50=eta.finish_p50,
                       finish_p90=eta.finish_p90, finished=eta.finished, updated=now)
