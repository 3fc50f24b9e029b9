"""The alerts raised for one run, for the run report (the alerts module writes them)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from monitor.models import Alert

_ALERTS = Alert.__table__


def run_alerts(engine: Engine, run: str) -> list[Alert]:
    """Every alert of `run`, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(_ALERTS).where(_ALERTS.c.run == run).order_by(_ALERTS.c.ts, _ALERTS.c.id)).mappings()
        return [Alert.model_validate(dict(row)) for row in rows]
