"""The Streamlit app (`trainledger dashboard` runs it): a sidebar picks the page and the run,
mirrored in the URL (?page=run&run=NAME) so a page can be linked to.

Read-only on the store: the engine comes from `open_store(..., read_only=True)` (SQLite opened
with mode=ro, PostgreSQL in read-only transactions). Log text reaches the page only as text:
tables (st.dataframe), metrics and plotly data; nothing here uses unsafe_allow_html.
"""

from __future__ import annotations

import streamlit as st

from dashboard import page_compare, page_downtime, page_more, page_run, page_runs
from dashboard.charts import markdown_text
from dashboard.data import engine, ledger, runs

PAGES = {"runs": "Runs", "run": "Run", "downtime": "Downtime", "compare": "Compare", "whatif": "What-if",
         "alerts": "Alerts"}
RUN_PAGES = {"run", "downtime"}


def _choose(names: list[str]) -> tuple[str, str | None]:
    """The page and run from the sidebar, starting from the URL's query parameters."""
    params = st.query_params
    if "page" not in st.session_state:
        st.session_state.page = params.get("page") if params.get("page") in PAGES else "runs"
    if "run" not in st.session_state and names:
        st.session_state.run = params.get("run") if params.get("run") in names else names[0]
    page = st.sidebar.radio("page", list(PAGES), format_func=PAGES.get, key="page")
    run = st.sidebar.selectbox("run", names, key="run") if names else None
    st.query_params.update({"page": page, **({"run": run} if run else {})})
    return page, run


def main() -> None:
    st.set_page_config(page_title="trainledger", page_icon="⏱", layout="wide")
    st.sidebar.title("trainledger")
    db = engine()
    if db is None:
        return
    views = runs(db)
    page, run = _choose([v.name for v in views])
    view = next((v for v in views if v.name == run), None)
    if page in RUN_PAGES and view is None:
        st.info("No runs in the store yet. `trainledger ingest PATH…` reads logs into it; "
                "`trainledger watch PATH…` follows them live.")
        return
    if page == "runs":
        page_runs.page(db, views)
    elif page == "run":
        st.header(f"Run {markdown_text(view.name)}")
        result = ledger(db, view)
        page_run.page(db, view, result.timezone if result else "UTC")
    elif page == "downtime":
        st.header(f"Downtime of {markdown_text(view.name)}")
        page_downtime.page(ledger(db, view))
    elif page == "compare":
        page_compare.page(db, views)
    elif page == "whatif":
        page_more.whatif_page(db, view)
    else:
        page_more.alerts_page(db, run)


main()
