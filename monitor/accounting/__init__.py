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
           "parse_timezone", "segment"]


def compute_ledger(records: Iterable[Record], policy: Policy | None = None, *,
                   now: float | None = None, read_at: float | None = None) -> Ledger | None:
    """The ledger of one run's records (in ts order); `now` given: the run is live. `read_at`
    (the wall clock, for a stored run): a final attempt silent for longer than the fault
    threshold by then is a fault, as the live ledger counts it. None when there are no records."""
    segmenter = Segmenter().add_all(records)
    if not segmenter.attempts:
        return None
    policy = (policy or Policy()).for_run(segmenter.run_timezone())
    timeline = classify(segmenter.attempts, policy, now, read_at)
    return _ledger(segmenter.run, segmenter.attempts, timeline, policy.timezone or "UTC")
