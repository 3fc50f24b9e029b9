"""The Compare page: two or more runs overlaid by step or tokens, their figures side by side."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from dashboard import charts
from dashboard.data import RunView, ledger
from dashboard.page_run import FIGURES, MAX_POINTS
from monitor.store.read import latest_steps, step_series


def page(db: Engine, views: list[RunView]) -> None:
    st.header("Compare runs")
    names = [v.name for v in views]
    if len(names) < 2:
        st.info("Comparing needs at least two runs in the store.")
        return
    chosen = st.multiselect("runs", names, default=names[:2], key="compare_runs")
    left, right = st.columns(2)
    x = left.radio("x axis", ["step", "tokens"], horizontal=True, key="compare_x")
    figure = right.selectbox("figure", list(FIGURES), format_func=FIGURES.get, key="compare_figure")
    if len(chosen) < 2:
        st.info("Choose two or more runs.")
        return
    traces = []
    for name in chosen:
        xs, ys = step_series(db, name, [figure], x=x, max_points=MAX_POINTS).points[figure]
        if xs:
            traces.append({"name": name, "x": xs, "y": ys})
    if traces:
        st.plotly_chart(charts.line_chart(FIGURES[figure], traces, x_title=x, revision=f"compare|{figure}|{x}"),
                        key="chart-compare")
    else:
        st.caption(f"None of these runs logged {FIGURES[figure]} against {x}.")
    by_name = {v.name: v for v in views}
    latest = latest_steps(db, chosen)
    rows = {}
    for name in chosen:
        result = ledger(db, by_name[name])
        step = latest.get(name)
        rows[name] = {"steps": step.step if step else None, "tokens/s": step.tokens_per_s if step else None,
                      "MFU": step.mfu if step else None,
                      "training days": result.pie_days["training"] if result else None,
                      "goodput": result.goodput if result else None, "ETTR": result.ettr if result else None,
                      "faults": result.faults if result else None,
                      "MTBF (h)": result.mtbf_s / 3600 if result and result.mtbf_s else None}
    st.dataframe(pd.DataFrame(rows), width="stretch", key="compare-figures")
