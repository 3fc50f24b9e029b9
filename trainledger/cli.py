"""Composes the trainer's and the monitor's typer apps into one `trainledger` command.

It lives outside both so that neither imports the other: the trainer runs without the
monitor installed, and the monitor follows logs of trainers that are not ours.
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Train, watch and account for every second of a pretraining run.")


def _register() -> None:
    from monitor.cli import register as register_monitor
    from trainer.cli import register as register_trainer

    register_trainer(app)
    register_monitor(app)


def main() -> None:
    _register()
    app()
