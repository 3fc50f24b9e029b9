"""`trainledger train` and `trainledger prepare`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the top-level app."""
