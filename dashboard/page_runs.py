"""The Runs page: every run with its state now, the live ones first."""

from __future__ import annotations

import time
from datetime import datetime

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from dashboard.data import RunView, ago_text, ledger
from dashboard.policy import current_policy
from monitor.accounting import parse_timezone
from monitor.models import LiveEta
from monitor.store import list_alerts, list_live_etas
from monitor.store.read import latest_steps

REFRESH_S = 5.0


def eta_text(eta: LiveEta | None, zone: str) -> str:
    """The projected finish (P50) as the watcher last kept it, in the policy's time zone."""
    if eta is None:
        return ""
    if eta.finished:
        return "finished"
    return datetime.fromtimestamp(eta.finish_p50, parse_timezone(zone)).strftime("%Y-%m-%d %H:%M")


def table(db: Engine, views: list[RunView]) -> pd.DataFrame:
    """One row per run: state, step, tokens/s, MFU, goodput, ETTR, ETA, last record, open alerts."""
    latest = latest_steps(db, [v.name for v in views])
    etas = {eta.run: eta for eta in list_live_etas(db)}
    zone = current_policy().timezone or "UTC"
    open_alerts: dict[str, int] = {}
    for alert in list_alerts(db):
        open_alerts[alert.run] = open_alerts.get(alert.run, 0) + 1
    now = time.time()
    rows = []
    for view in views:
        step = latest.get(view.name)
        result = ledger(db, view)
        state = view.state or (result.rows[-1].state if result and result.rows else "—")
        rows.append({"run": view.name, "live": "● live" if view.live else "", "state": state,
                     "step": step.step if step else None,
                     "tokens/s": step.tokens_per_s if step else None,
                     "MFU": step.mfu if step else None,
                     "goodput": result.goodput if result else None, "ETTR": result.ettr if result else None,
                     "ETA (P50)": eta_text(etas.get(view.name), zone),
                     "last record": ago_text(now - view.summary.last_ts),
                     "open alerts": open_alerts.get(view.name, 0)})
    return pd.DataFrame(rows)


def page(db: Engine, views: list[RunView]) -> None:
    st.header("Runs")
    if not views:
        st.info("No runs in the store yet. `trainledger ingest PATH…` reads logs into it; "
                "`trainledger watch PATH…` follows them live.")
        return

    @st.fragment(run_every=REFRESH_S if any(v.live for v in views) else None)
    def live_table() -> None:
        st.dataframe(table(db, views), hide_index=True, width="stretch", column_config={
            "tokens/s": st.column_config.NumberColumn(format="%.0f"),
            "MFU": st.column_config.NumberColumn(format="percent"),
            "goodput": st.column_config.NumberColumn(format="percent"),
            "ETTR": st.column_config.NumberColumn(format="percent")})

    live_table()
    st.caption("State: as the watcher (`trainledger watch`) classifies the run now, else how its ledger ends. "
               "ETA (P50): the finish the watcher projects for a live run (`trainledger eta`), in the policy's time zone. "
               "Open a run from the sidebar.")
