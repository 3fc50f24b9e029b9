"""`trainledger alerts [RUN] [--all]`, `trainledger alerts ack ID`, `trainledger alerts mute RUN [--for 2h]`."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Optional

import typer
from typer.core import TyperGroup

from monitor.config import ConfigError, load_config
from monitor.policy_options import config_option

DB_HELP = "store: a SQLite file path or a postgresql+psycopg:// URL (default: the config's, else $TRAINLEDGER_DB)"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class _ListByDefault(TyperGroup):
    """`alerts RUN` and `alerts` list; `alerts ack …` and `alerts mute …` are subcommands."""

    def parse_args(self, ctx, args):
        if not args or args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_ListByDefault, help="Alerts raised by `trainledger watch`: list, acknowledge, mute.")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _engine(db: str | None, config_file: str | None, *, read_only: bool):
    from monitor.store import StoreError, open_store

    try:
        config = load_config(config_file)  # read even with --db: a bad file is said, not ignored
        db = db or config.store_url()
    except ConfigError as exc:
        _fail(str(exc))
    try:
        return open_store(db, read_only=read_only)
    except StoreError as exc:
        _fail(str(exc), 1)


def parse_duration(text: str) -> float:
    """'90s', '30m', '2h', '1.5d' or plain seconds; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r}: expected a duration such as 30m, 2h or 1d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_command(run: Optional[str] = typer.Argument(None, help="only this run's alerts"),
                 all_: bool = typer.Option(False, "--all", help="resolved alerts too"),
                 db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
                 config_file: Optional[str] = config_option()) -> None:
    """Unresolved alerts (with --all, every alert), newest first. Times in UTC."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Column, Table

    from monitor.store import list_alerts, muted_runs

    engine = _engine(db, config_file, read_only=True)
    alerts = list_alerts(engine, run, include_resolved=all_)
    table = Table("id", "run", "cause", "severity", "status", "raised (UTC)", "resolved (UTC)",
                  Column("message", overflow="fold"))
    for alert in alerts:
        table.add_row(str(alert.id), escape(alert.run), alert.kind, alert.severity, alert.status, _when(alert.ts),
                      _when(alert.resolved_ts), escape(alert.message))
    console = Console()
    if alerts:
        console.print(table)
    else:
        console.print("no alerts" if all_ else "no open alerts")
    for name, until in sorted(muted_runs(engine, time.time()).items()):
        if run is None or name == run:
            console.print(f"run {escape(name)} muted until {_when(until)} UTC")


@app.command("ack")
def ack_command(alert_id: int = typer.Argument(..., help="the alert's id (see `trainledger alerts`)"),
                db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
                config_file: Optional[str] = config_option()) -> None:
    """Acknowledge an alert: it stays until its condition clears, but is no longer repeated."""
    from monitor.store import ack_alert

    alert = ack_alert(_engine(db, config_file, read_only=False), alert_id, time.time())
    if alert is None:
        _fail(f"no open alert #{alert_id}", 1)
    typer.echo(f"acknowledged #{alert.id} ({alert.kind} on {alert.run})")


@app.command("mute")
def mute_command(run: str = typer.Argument(..., help="the run to mute"),
                 duration: str = typer.Option("2h", "--for", help="how long: 30m, 2h, 1d, …"),
                 db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
                 config_file: Optional[str] = config_option()) -> None:
    """No message about this run for a while (its alerts are still raised and listed)."""
    from monitor.store import mute_run

    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        _fail(f"--for {exc}")
    until = time.time() + seconds
    mute_run(_engine(db, config_file, read_only=False), run, until)
    typer.echo(f"run {run} muted until {_when(until)} UTC")


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="alerts")
