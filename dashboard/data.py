"""The dashboard's reads: the store opened read-only once per process, and the per-run facts
pages share (live or not, its ledger), cached until the run changes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import streamlit as st
from sqlalchemy.engine import Engine

from monitor.accounting import Ledger, compute_ledger
from monitor.store import RunSummary, StoreError, list_live_states, list_runs, mask_url, open_store
from monitor.store.read import accounting_records
from dashboard.policy import current_policy

DB_ENV = "TRAINLEDGER_DB"
LIVE_WITHIN_S = 60.0
"""A run is live while a watcher has classified it this recently (it does every few seconds)."""


@st.cache_resource(show_spinner=False)
def _engine(url: str | None) -> Engine:
    return open_store(url, read_only=True)


def engine() -> Engine | None:
    """The read-only store of $TRAINLEDGER_DB, or None after saying why on the page (the URL masked)."""
    url = os.environ.get(DB_ENV)
    try:
        return _engine(url)
    except StoreError as exc:
        st.error(f"Cannot open the store {mask_url(url)}: {exc}", icon="⚠️")
        return None


@dataclass(frozen=True)
class RunView:
    summary: RunSummary
    live: bool
    state: str | None
    """the watcher's live state, when one has classified the run"""
    state_since: float | None

    @property
    def name(self) -> str:
        return self.summary.name


def runs(db: Engine) -> list[RunView]:
    """Every run, the live ones first (most recently active first within each)."""
    now = time.time()
    states = {s.run: s for s in list_live_states(db)}
    views = []
    for summary in list_runs(db):
        state = states.get(summary.name)
        live = state is not None and now - state.updated <= LIVE_WITHIN_S
        views.append(RunView(summary, live, state.state if state else None, state.since if state else None))
    return sorted(views, key=lambda view: not view.live)


@st.cache_data(show_spinner=False, max_entries=32)
def _ledger(_db: Engine, url_key: str, run: str, last_ts: float, now: float | None) -> Ledger | None:
    return compute_ledger(accounting_records(_db, run), current_policy(), now=now)


def ledger(db: Engine, view: RunView) -> Ledger | None:
    """The run's ledger by the same rules as `trainledger ledger` (up to now while it is live),
    recomputed only when the run got a new record or, live, as time passes."""
    now = time.time() if view.live else None
    return _ledger(db, str(db.url), view.name, view.summary.last_ts, now)


def ago_text(seconds: float) -> str:
    """How long ago, at a glance: 42 s ago, 7.5 min ago, 3.5 h ago, 12.0 d ago."""
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"
