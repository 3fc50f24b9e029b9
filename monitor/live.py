"""The watcher's live accounting: the I/O edge around the pure live fold.

`trainledger watch` keeps one `LiveLedger` per run it has stored records of: seeded from the
store the first time the run shows up, then fed each batch the intake has committed (never
before: what is classified is what is stored). After each batch, and on a periodic tick while
nothing arrives (that is how `training` turns `stalled`, then `fault`), it writes each run's
current state to the `live_states` table and logs every change of state.

The intake calls its listeners (`Listeners`): this live accounting first, then what reads its
ledgers (the alerts, monitor/alerting.py), each on every committed batch and every tick.

Several watchers may follow one run: one per node of a multi-node job, each folding its own
node's records. The run's one row then shows the freshest view — the watcher that has seen
the newest record — so a node whose trainer died silently (its watcher still classifying
its own records) does not turn back a `fault` that a survivor's record set; a watcher that
stops updating the row for `peer_grace_s` leaves it to the others.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Callable, Iterable, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.accounting import LiveLedger, Policy, parse_timezone
from monitor.escape import printable
from monitor.models import LiveState
from monitor.records import Record, with_possible_times
from monitor.store import list_live_states, load_records, save_live_states

log = logging.getLogger("trainledger.live")
SETTLED = frozenset({"fault", "manual", "waiting"})
"""States that only a new record changes; a run in another one keeps being classified as time passes."""


class Listener(Protocol):
    def committed(self, records: list[Record]) -> None:
        """A batch the intake has just committed (never one it has not)."""

    def tick(self) -> None:
        """Time has passed with or without records (every `--live-every` seconds)."""


class Listeners(list):
    """The watcher's on-commit and on-tick callbacks, called in order."""

    def committed(self, records: list[Record]) -> None:
        for listener in self:
            listener.committed(records)

    def tick(self) -> None:
        for listener in self:
            listener.tick()


class RunFailures:
    """An action for one run whose failure is logged for that run, once until it changes (a run
    that fails on every tick is logged once), and never stops the watcher; a store error passes
    up for the intake to log and retry."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger, self.what = logger, what
        self.last: dict[str, str] = {}

    def call(self, run: str, action: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """(True, action(*args)), or (False, None) when it failed."""
        try:
            result = action(*args)
        except SQLAlchemyError:
            raise  # the store, not this run: the intake logs it and retries
        except Exception as exc:  # noqa: BLE001 — one run's bad data must not stop the others
            failure = f"{type(exc).__name__}: {exc}"
            if self.last.get(run) != failure:
                self.logger.error("run %s: %s: %s", printable(run), self.what, printable(failure))
                self.last[run] = failure
            return False, None
        self.last.pop(run, None)
        return True, result


class LiveRuns:
    """Every run the watcher follows, classified live with `policy`."""

    def __init__(self, engine: Engine, policy: Policy | None = None, *,
                 clock: Callable[[], float] = time.time, peer_grace_s: float = 30.0) -> None:
        self.engine = engine
        self.policy = policy or Policy()
        self.clock = clock
        self.peer_grace_s = peer_grace_s
        """How long a fresher view saved by another watcher of the run keeps ours out of the row."""
        self.ledgers: dict[str, LiveLedger] = {}
        self.last_ts: dict[str, float] = {}
        self.failures = RunFailures(log, "live state not classified")
        self.left_out: dict[str, int] = {}
        """Per run, how many stored records with impossible times were left out (logged once)."""
        self.on_seed: list[Callable[[str, list[Record]], None]] = []
        """Told each run's records whenever they are (re)read from the store, so another fold
        (the alerts' detectors) starts from the same records without reading them again."""
        self.saved: dict[str, LiveState] = {s.run: s for s in list_live_states(engine)}
        self.stale: set[str] = {s.run for s in self.saved.values() if s.state not in SETTLED}
        """Runs to refold from the store at the next tick, once, not per batch: those that got a
        record older than one already folded (two files of one run read one after the other),
        and at start those a previous watcher left in a state that time still moves on."""

    def committed(self, records: Iterable[Record]) -> None:
        """Fold a batch the intake has just committed; record the state of the runs it touched."""
        by_run: dict[str, list[Record]] = {}
        for record in records:
            by_run.setdefault(record.run, []).append(record)
        for run, batch in by_run.items():
            batch.sort(key=lambda r: r.ts)  # stable: ties keep the order they were read in
            if run in self.stale:
                continue
            if run not in self.ledgers:
                self._isolated(run, self._seed, run)  # the store already holds this batch
            elif batch[0].ts < self.last_ts[run]:
                self.stale.add(run)
            else:
                self._isolated(run, self._fold, run, batch)
        self.record([run for run in by_run if run not in self.stale and run in self.ledgers])

    def tick(self) -> None:
        """Refold the stale runs and record every run's state as of now."""
        for run in sorted(self.stale):
            self._isolated(run, self._seed, run)
        self.stale.clear()
        self.record(list(self.ledgers))

    def _fold(self, run: str, batch: list[Record]) -> None:
        ledger = self.ledgers[run]
        for record in batch:
            ledger.add(record)
        self.last_ts[run] = batch[-1].ts

    def _isolated(self, run: str, action: Callable[..., Any], *args: Any) -> Any:
        """`action(*args)` for one run (RunFailures). A failure also leaves the run out of the live
        fold until its next record, which refolds it from the store: one run's bad data never
        stops the others, nor costs a refold on every tick."""
        done, result = self.failures.call(run, action, *args)
        if not done:
            self.ledgers.pop(run, None)
        return result

    def _seed(self, run: str) -> None:
        stored = load_records(self.engine, run)
        records = with_possible_times(stored, self.clock())
        if len(records) < len(stored) and self.left_out.get(run) != len(stored) - len(records):
            self.left_out[run] = len(stored) - len(records)
            log.warning("run %s: %d stored records have times that cannot be true; left out",
                        printable(run), len(stored) - len(records))
        self.ledgers[run] = LiveLedger.from_records(records, self.policy)
        self.last_ts[run] = max((r.ts for r in records), default=float("-inf"))
        for listener in self.on_seed:
            listener(run, records)

    def record(self, runs: list[str]) -> None:
        """Write these runs' current states in one transaction, then log those that changed. In run
        order: the watchers of several nodes save the same runs' rows, and rows locked in two
        orders deadlock."""
        now = self.clock()
        states = [state for run in sorted(runs) if (state := self._isolated(run, self.state, run, now)) is not None]
        if not states:
            return
        stored = {s.run: s for s in list_live_states(self.engine)}
        states = [state for state in states if not self._fresher_elsewhere(stored.get(state.run), state)]
        if not states:
            return
        with self.engine.begin() as conn:
            save_live_states(conn, states)
        for state in states:
            before = self.saved.get(state.run)
            if before is None or before.state != state.state:
                self._isolated(state.run, self._log_change, before, state)
            self.saved[state.run] = state

    def _fresher_elsewhere(self, saved: LiveState | None, mine: LiveState) -> bool:
        """Another watcher of the run has seen a newer record than we have, and still keeps the row."""
        return (saved is not None and saved.last_record_ts > mine.last_record_ts
                and mine.updated - saved.updated < self.peer_grace_s)

    def state(self, run: str, now: float) -> LiveState | None:
        """The run's state at `now`, from its live fold (None before its first record)."""
        live = self.ledgers[run]
        ledger = live.snapshot(now)
        if ledger is None or not ledger.segments:
            return None
        segments = ledger.segments
        current = segments[-1].state
        since = segments[-1].start
        for segment in reversed(segments):
            if segment.state != current:
                break
            since = segment.start
        final = live.segmenter.attempts[-1]
        return LiveState(run=run, state=current, since=since, attempt=final.attempt_id,
                         last_record_ts=self.last_ts[run], step=final.steps[-1] if final.steps else None,
                         updated=now)

    def _log_change(self, before: LiveState | None, after: LiveState) -> None:
        zone = parse_timezone(self.ledgers[after.run].policy().timezone or "UTC")
        since = datetime.fromtimestamp(after.since, zone).strftime("%Y-%m-%d %H:%M:%S")
        change = f"{before.state} → {after.state}" if before is not None else after.state
        log.info("run %s: %s since %s", printable(after.run), change, since)
