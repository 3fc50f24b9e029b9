"""The What-if and Alerts pages: the projections (monitor/projections) and the alerts the
watcher raised (monitor/alerting.py), read through the same functions as `trainledger eta |
whatif | alerts`."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from dashboard.data import RunView
from dashboard.policy import current_policy
from monitor.projections.eta import EtaError, estimate_eta
from monitor.projections.loading import load_run
from monitor.projections.whatif import Scenario, WhatIfError, assumptions, baseline_from_run, project
from monitor.store import list_alerts

PROJECTION_FIGURES = ("step_time", "tokens_per_s", "tgs", "num_consumed_tokens")


@st.cache_data(show_spinner=False, max_entries=8)
def _loaded(_db: Engine, url_key: str, run: str, last_ts: float, live: bool):
    """The run's ledger and step series (None: nothing stored), until the run changes."""
    loaded = load_run(_db, run, current_policy(), figures=PROJECTION_FIGURES, now=time.time() if live else None)
    return None if loaded is None else (loaded.ledger, loaded.series)


def _changes() -> Scenario:
    """The change the widgets describe (blank: unchanged)."""
    left, middle, right = st.columns(3)
    sample_frac = left.number_input("fraction of the data", min_value=0.0, max_value=1.0, value=None, step=0.1)
    epochs = left.number_input("epochs", min_value=0.0, value=None, step=1.0)
    seq_len = middle.number_input("sequence length", min_value=1, value=None, step=64)
    micro_bsz = middle.number_input("micro-batch per device", min_value=1, value=None, step=1)
    nodes = right.number_input("nodes", min_value=1, value=None, step=1)
    gpus_per_node = right.number_input("devices per node", min_value=1, value=None, step=1)
    return Scenario("what if", sample_frac=sample_frac, epochs=epochs, seq_len=seq_len, micro_bsz=micro_bsz,
                    nodes=nodes, gpus_per_node=gpus_per_node)


def whatif_page(db: Engine, view: RunView | None) -> None:
    st.header("What-if")
    if view is None:
        st.info("No runs in the store yet: this page projects a run's finish and what a change would do.")
        return
    loaded = _loaded(db, str(db.url), view.name, view.summary.last_ts, view.live)
    if loaded is None:
        st.info("Nothing of this run is stored yet.")
        return
    ledger, series = loaded
    total = st.number_input("total steps (when the run's log does not say them)", min_value=1, value=None, step=1000)
    st.subheader("When will it finish")
    try:
        eta = estimate_eta(series, ledger, total_steps=total, now=time.time() if view.live else None)
    except EtaError as exc:
        st.info(f"No finish projected: {exc}")
    else:
        st.dataframe(pd.DataFrame(eta.terms, columns=["term", "value", "what it is"]), hide_index=True,
                     width="stretch", key="eta-terms")
    st.subheader("What if")
    try:
        base = baseline_from_run(series, ledger, total_steps=total)
        changes = _changes()
        rows = project(base, [changes] if changes != Scenario("what if") else [])
    except WhatIfError as exc:
        st.info(f"No projection for this run: {exc}")
        return
    st.dataframe(pd.DataFrame([p.to_dict() for p in rows]), hide_index=True, width="stretch", key="whatif-rows")
    for note in assumptions(base) + [f"{p.name}: {note}" for p in rows for note in p.notes]:
        st.text(f"• {note}")


def alerts_page(db: Engine, run: str | None) -> None:
    st.header("Alerts")
    alerts = list_alerts(db, run, include_resolved=True)
    if not alerts:
        st.info(f"No alerts for {'this run' if run else 'any run'}. `trainledger watch` raises them live (stalled, "
                "fault, throughput regression, loss, restart storm, restore gap, …; docs/alerts.md); this page "
                "lists each one: when, which run and attempt, its cause and severity, its message, its status.")
        return
    frame = pd.DataFrame([{"raised": pd.to_datetime(a.ts, unit="s", utc=True), "run": a.run, "attempt": a.attempt,
                           "cause": a.kind, "severity": a.severity, "status": a.status, "message": a.message}
                          for a in alerts])
    frame["open"] = frame["status"] != "resolved"
    st.dataframe(frame.sort_values(["open", "raised"], ascending=[False, False]).drop(columns="open"),
                 hide_index=True, width="stretch", key="alerts-table")
