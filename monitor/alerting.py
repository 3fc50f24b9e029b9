"""The watcher's alert listener: runs the detectors (monitor/detectors/) on every committed
batch and every tick, keeps the alerts table in step with what they find — raised when a
condition appears, resolved with a "recovered" message when it clears — and hands what this
watcher raised or resolved to the router. Several watchers may follow one run: the store's
unique index decides which one raised an alert, a conditional UPDATE which one resolved it,
and only that one sends.

Listens after `LiveRuns` (monitor/live.py), whose live ledgers it reads."""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from sqlalchemy.engine import Engine

from monitor.accounting import Policy
from monitor.config import Config
from monitor.detectors import Finding, RunDetectors
from monitor.escape import printable
from monitor.live import LiveRuns
from monitor.models import Alert
from monitor.records import Record
from monitor.routing import Router
from monitor.store import list_alerts, raise_alert, resolve_alert
from monitor.store.alerts import launch_configs, median_throughput, newest_step_ts

log = logging.getLogger("trainledger.alerts")
SILENCE = frozenset({"stalled", "fault"})


class Alerter:
    def __init__(self, engine: Engine, live: LiveRuns, config: Config | None = None, router: Router | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.engine, self.live, self.router, self.clock = engine, live, router, clock
        self.config = config or Config()
        self.detectors: dict[str, RunDetectors] = {}
        self.references: dict[str, float | None] = {}
        """Each run's comparable run's median tokens/s, looked up once."""
        self.just_seeded: set[str] = set()
        """Runs the live accounting has just read from the store, this batch included."""
        live.on_seed.append(self._seed)

    def committed(self, records: Iterable[Record]) -> None:
        by_run: dict[str, list[Record]] = {}
        for record in records:
            by_run.setdefault(record.run, []).append(record)
        for run, batch in by_run.items():
            detectors = self.detectors.get(run)
            if detectors is None or run in self.just_seeded:
                continue  # seeded with this batch, or to be refolded at the next tick
            batch.sort(key=lambda r: r.ts)
            detectors.add_all(batch)
        self.just_seeded.clear()
        self.evaluate(list(by_run), on_commit=True)

    def tick(self) -> None:
        self.just_seeded.clear()
        self.evaluate(list(self.detectors))
        if self.router is not None:
            self.router.repeat(self._policy)
            self.router.flush()

    def _behind(self, run: str) -> bool:
        """Before calling a run silent: has another watcher (one per node) stored newer steps of
        the rank the accounting judges? Then refold it from the store at the next tick and judge
        it only then."""
        final = self.live.ledgers[run].segmenter.attempts[-1]
        if final.step_rank is None:
            return False
        newest = newest_step_ts(self.engine, run, final.step_rank)
        if newest is None or final.last_step_ts is not None and newest <= final.last_step_ts:
            return False
        self.live.stale.add(run)
        del self.detectors[run]
        return True

    def _seed(self, run: str, records: list[Record]) -> None:
        """The run's detectors, folded over its stored records (LiveRuns read them)."""
        if run not in self.references:
            self.references[run] = self._reference(run)
        detectors = RunDetectors(self.config.alerts.rules, self.references[run])
        detectors.add_all(records)
        self.detectors[run] = detectors
        self.just_seeded.add(run)

    def _reference(self, run: str) -> float | None:
        """The comparable run's median tokens/s: the one the config names, else the latest earlier
        run launched with the same config digest (or world size and FLOPs per token)."""
        named = self.config.alerts.rules.compare_to
        if named:
            return median_throughput(self.engine, named) if named != run else None
        launches = launch_configs(self.engine)
        mine = next(((ts, fields) for name, ts, fields in launches if name == run), None)
        if mine is None:
            return None

        def shape(fields: dict) -> tuple:
            digest = fields.get("config_digest")
            return (digest,) if digest else (fields.get("world_size"), fields.get("flops_per_token"))
        if all(part is None for part in shape(mine[1])):
            return None
        earlier = [name for name, ts, fields in launches if name != run and ts < mine[0]
                   and shape(fields) == shape(mine[1])]
        return median_throughput(self.engine, earlier[-1]) if earlier else None

    def _policy(self, run: str) -> Policy:
        ledger = self.live.ledgers.get(run)
        return ledger.policy() if ledger is not None else self.live.policy

    def evaluate(self, runs: list[str], *, on_commit: bool = False) -> None:
        """Raise what now holds and resolve what no longer does, for these runs. A batch just
        committed raises no silence (stalled, fault) — this watcher may not yet have folded what
        another stored meanwhile; the tick raises it, after catching up — but may end one."""
        now = self.clock()
        unresolved: dict[str, dict[str, Alert]] = {}
        for alert in list_alerts(self.engine):  # one query for every run judged
            unresolved.setdefault(alert.run, {})[alert.kind] = alert
        history_s = self.config.alerts.rules.history_after_s
        for run in runs:
            ledger = self.live.ledgers.get(run)
            if ledger is None or run not in self.detectors or run in self.live.stale:
                continue
            history = now - self.live.last_ts.get(run, now) > history_s
            if history and run not in unresolved:
                continue  # a backlog's run: nothing to raise, nothing to resolve
            findings = {f.cause: f for f in self.detectors[run].findings(ledger, now)}
            if not on_commit and not SILENCE.isdisjoint(findings) and self._behind(run):
                continue
            not_raised = frozenset(findings) if history else SILENCE if on_commit else frozenset()
            self._sync(run, findings, unresolved.get(run, {}), self._policy(run), now, not_raised)

    def _sync(self, run: str, findings: dict[str, Finding], unresolved: dict[str, Alert], policy: Policy,
              now: float, not_raised: frozenset[str]) -> None:
        for cause, finding in findings.items():
            if cause in unresolved or cause in not_raised:
                continue
            alert = raise_alert(self.engine, Alert(run=run, attempt=finding.attempt, ts=now, kind=cause,
                                                   severity=finding.severity, message=finding.message,
                                                   payload=finding.payload or None))
            if alert is not None:
                log.warning("alert #%d %s %s: %s", alert.id, printable(run), cause, printable(finding.message))
                if self.router is not None:
                    self.router.firing(alert, policy)
        for cause, alert in unresolved.items():
            if cause not in findings and resolve_alert(self.engine, alert.id, now):
                log.info("alert #%d %s %s: recovered", alert.id, printable(run), cause)
                if self.router is not None:
                    self.router.resolved(alert, policy)


def start_alerting(engine: Engine, live: LiveRuns, config: Config) -> tuple[Alerter, Callable[[], None]]:
    """The alert listener with its router and one outbox (worker thread) per notifier, and the
    function that stops them. ConfigError when a notifier's secret variable is not set."""
    from monitor.notify import Outbox, channel_of

    channels = [channel_of(notifier) for notifier in config.alerts.notifiers]
    outboxes = {channel.name: Outbox(channel) for channel in channels}
    router = Router(engine, list(config.alerts.routes), outboxes)

    def close() -> None:
        router.flush()
        for outbox in outboxes.values():
            outbox.close()
    return Alerter(engine, live, config, router), close
