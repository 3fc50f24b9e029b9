"""The What-if and Alerts pages. Projections (monitor/projections) and alerts (monitor/alerts.py)
are their own issues: each page uses them when they are installed, and until then says what
it will show."""

from __future__ import annotations

import importlib

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from monitor.store.read import run_alerts


def _optional(module: str):
    """The module when it is installed, else None (its issue has not landed yet)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def whatif_page() -> None:
    st.header("What-if")
    projections = _optional("monitor.projections")
    if projections is None:
        st.info("This page will show when the selected run finishes (its ETA from the current step rate and "
                "its fault history) and what-if projections: the same run with a faster relaunch, fewer "
                "faults or more frequent checkpoints. It needs the projections (monitor/projections), "
                "which are not installed yet.")
        return
    st.info("The projections are installed; this page shows them once wired to the run's ledger.")


def alerts_page(db: Engine, run: str | None) -> None:
    st.header("Alerts")
    alerts = run_alerts(db, run)
    if not alerts:
        waiting = "" if _optional("monitor.alerts") else (
            " Alerts are raised by monitor/alerts.py (stalls, faults, loss spikes, slow steps), not installed yet.")
        st.info(f"No alerts for {'this run' if run else 'any run'}.{waiting} This page lists each one: when, "
                "which run and attempt, its kind and severity, its message, and whether it is still open.")
        return
    frame = pd.DataFrame([{"raised": pd.to_datetime(a.ts, unit="s", utc=True), "run": a.run, "attempt": a.attempt,
                           "kind": a.kind, "severity": a.severity, "message": a.message,
                           "open": a.resolved_ts is None} for a in alerts])
    st.dataframe(frame.sort_values(["open", "raised"], ascending=[False, False]), hide_index=True,
                 width="stretch", key="alerts-table")
