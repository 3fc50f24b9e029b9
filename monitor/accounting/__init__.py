"""Time accounting: every second of a run classified, as pure functions over Records.

    ledger = compute_ledger(records, Policy(timezone="+08:00"))     # a whole stored run
    live = LiveLedger.from_records(records); live.add(r); live.snapshot(now)   # followed live

Both go through the same rules (states.classify_attempt); see docs/accounting.md.
"""

from __future__ import annotations

from typing import Iterable

from monitor.accounting.attempts import Attempt, Segmenter, segment
from monitor.accounting.figures import DAY, Ledger, LedgerRow, Relaunch
from monitor.accounting.live import LiveLedger
from monitor.accounting.policy import MaintenanceWindow, Policy, parse_timezone
from monitor.accounting.states import STATES, Segment, Timeline, classify
from monitor.accounting.figures import ledger as _ledger
from monitor.records import Record

__all__ = ["Attempt", "DAY", "Ledger", "LedgerRow", "LiveLedger", "MaintenanceWindow", "Policy",
           "Relaunch", "STATES", "Segment", "Segmenter", "Timeline", "classify", "compute_ledger",
           "compute_ledger_from_columns", "parse_timezone", "segment"]


def compute_ledger(records: Iterable[Record], policy: Policy | None = None, *,
                   now: float | None = None, read_at: float | None = None) -> Ledger | None:
    """The ledger of one run's records (in ts order); `now` given: the run is live. `read_at`
    (the wall clock, for a stored run): a final attempt silent for longer than the fault
    threshold by then is a fault, as the live ledger counts it. None when there are no records."""
    return _fold_ledger(Segmenter().add_all(records), policy, now, read_at)


def compute_ledger_from_columns(run: str, steps, events: Iterable[Record], policy: Policy | None = None, *,
                                now: float | None = None, read_at: float | None = None) -> Ledger | None:
    """The same ledger as `compute_ledger`, the run's step records given as columns: `steps` has
    numpy `ts`, `step`, `rank` and `attempt` (codes into its list `attempts`), in ts order, as
    monitor/store/columns.py reads them; `events` are the run's other records, in ts order."""
    segmenter = Segmenter().add_columns(run, steps.attempts, steps.attempt, steps.ts, steps.rank, steps.step, events)
    return _fold_ledger(segmenter, policy, now, read_at)


def _fold_ledger(segmenter: Segmenter, policy: Policy | None, now: float | None,
                 read_at: float | None) -> Ledger | None:
    if not segmenter.attempts:
        return None
    policy = (policy or Policy()).for_run(segmenter.run_timezone())
    timeline = classify(segmenter.attempts, policy, now, read_at)
    return _ledger(segmenter.run, segmenter.attempts, timeline, policy.timezone or "UTC")
