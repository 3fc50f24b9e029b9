"""The event store: SQLite (WAL, the embedded default) or PostgreSQL, behind a few functions.

    engine = open_store()                       # $TRAINLEDGER_DB or ~/.local/share/trainledger/trainledger.db
    engine = open_store("postgresql+psycopg://user@host/db", read_only=True)   # the dashboard
    for run in list_runs(engine): records = load_records(engine, run.name)

Tables: monitor/models.py; migrations: monitor/migrations/ (run on open).
"""

from monitor.store.alerts import (ack_alert, claim_notification, list_alerts, mute_run, muted_runs,
                                  open_alert_counts, raise_alert, resolve_alert)
from monitor.store.engine import (MaskedLog, StoreError, default_db_path, mask_secrets, mask_url, open_store,
                                  resolve_url)
from monitor.store.live import list_live_etas, list_live_states, save_live_etas, save_live_states
from monitor.store.queries import RunSummary, count_records, list_runs, load_records
from monitor.store.sources import list_sources, this_host
from monitor.store.write import insert_records

__all__ = ["MaskedLog", "RunSummary", "StoreError", "ack_alert", "claim_notification", "count_records", "default_db_path",
           "insert_records", "list_alerts", "list_live_etas", "list_live_states", "list_runs", "list_sources", "load_records", "mask_secrets",
           "mask_url", "mute_run", "muted_runs", "open_alert_counts", "open_store", "raise_alert", "resolve_alert",
           "resolve_url", "save_live_etas", "save_live_states", "this_host"]
