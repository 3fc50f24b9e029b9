"""The Downtime page: the pie in days (as the ling-1b team drew it by hand), the ledger, the
states by attempt, the figures, and the working-hours policy in use — all from monitor.accounting, nothing recomputed here."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.charts import markdown_text
from dashboard.policy import current_policy
from monitor.accounting import Ledger
from monitor.ledger import summary_lines, table_rows


def page(result: Ledger | None) -> None:
    if result is None:
        st.info("This run has no records to account for yet.")
        return
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.pie_chart(result), key="chart-pie")
    with right:
        cells = st.columns(2)
        cells[0].metric("goodput", f"{result.goodput:.1%}")
        cells[1].metric("ETTR", f"{result.ettr:.1%}")
        st.table(pd.DataFrame(summary_lines(result), columns=["figure", "value"]).set_index("figure"))
    st.plotly_chart(charts.timeline_chart(result), key="chart-timeline")
    st.subheader("Ledger")
    # st.table: every cause in the page's text (escaped by React), where a search finds it
    st.table(pd.DataFrame(table_rows(result)).astype({"data_batch": str, "nodes": str}))
    _policy(result)


def _policy(result: Ledger) -> None:
    policy = current_policy()
    holidays = ", ".join(sorted(d.isoformat() for d in policy.holidays)) or "none"
    maintenance = ", ".join(f"{w.start.isoformat()} → {w.end.isoformat()}" for w in policy.maintenance) or "none"
    st.caption(f"Policy in use: working hours {policy.work_start:%H:%M}–{policy.work_end:%H:%M} "
               f"({markdown_text(result.timezone)}); holidays: {holidays}; planned maintenance: {maintenance}; "
               f"stalled after ≥ {policy.stall_min_s:g} s without a step; a silent live run is a fault after "
               f"{policy.silence_fault_s:g} s. The same options as `trainledger ledger` (docs/accounting.md).")
