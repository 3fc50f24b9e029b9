"""One run's ledger and step series, read as columns: what eta, whatif, report and compare
start from, in the CLI and on the dashboard alike."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from monitor.accounting import Ledger, Policy, compute_ledger_from_columns
from monitor.projections.series import StepSeries, series_from_columns


@dataclass
class LoadedRun:
    ledger: Ledger
    series: StepSeries
    engine: Engine


def load_run(engine: Engine, run: str, policy: Policy, *, figures: tuple[str, ...] | None = None,
             now: float | None = None) -> LoadedRun | None:
    """The run's ledger (up to `now` when it is live) and step series, or None when the store
    holds nothing of it. Step figures are read as columns and the ledger folded
    from them, not from a Record per step."""
    from eventschema import KINDS
    from monitor.store import load_records
    from monitor.store.columns import FIGURE_COLUMNS, load_step_columns

    events = load_records(engine, run, kinds=[kind for kind in KINDS if kind != "step"])
    columns = load_step_columns(engine, run, figures or FIGURE_COLUMNS)
    if not events and not len(columns.ts):
        return None
    ledger = compute_ledger_from_columns(run, columns, events, policy, now=now)
    return LoadedRun(ledger, series_from_columns(columns, events), engine)
