"""`trainledger watch | ingest | status | ledger`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the monitor's commands to the top-level app."""
    from monitor.ledger import register as register_ledger

    register_ledger(app)
