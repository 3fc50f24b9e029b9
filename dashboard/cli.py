"""`trainledger dashboard`: the Streamlit app on the store, read-only, on loopback by default."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from monitor.policy_options import (config_option, fault_after_option, holiday_option, maintenance_option,
                                    stall_after_option, timezone_option, work_hours_option)

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_argv(host: str, port: int) -> list[str]:
    """The command line that serves the app (also what the tests and benchmark start)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--global.developmentMode", "false", "--client.toolbarMode", "viewer"]


def dashboard(
    db: Optional[str] = typer.Option(None, "--db", help="Store URL or SQLite path (default: $TRAINLEDGER_DB, "
                                     "then ~/.local/share/trainledger/trainledger.db); opened read-only."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (loopback unless you say otherwise)."),
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
    timezone: Optional[str] = timezone_option(),
    work_hours: Optional[str] = work_hours_option(),
    holiday: List[str] = holiday_option(),
    maintenance: List[str] = maintenance_option(),
    stall_after: Optional[float] = stall_after_option(),
    fault_after: Optional[float] = fault_after_option(),
    config_file: Optional[str] = config_option(),
) -> None:
    """Serve the dashboard (Streamlit): runs, loss and throughput, the downtime pie, live."""
    from dashboard.policy import ENV_VAR as POLICY_ENV, policy_options_env
    from monitor.config import ConfigError, load_config
    from monitor.store import StoreError, mask_url, open_store, resolve_url

    missing = [name for name in ("streamlit", "plotly", "pandas") if importlib.util.find_spec(name) is None]
    if missing:
        typer.echo(f"error: the dashboard needs the `dashboard` extra ({', '.join(missing)} missing): "
                   "pip install 'trainledger[dashboard]'", err=True)
        raise typer.Exit(2)
    try:
        config = load_config(config_file)
        policy = policy_options_env(config=str(config.path) if config.path else None, timezone=timezone,
                                    work_hours=work_hours, holidays=holiday,
                                    maintenance=maintenance, stall_after=stall_after, fault_after=fault_after)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    url = resolve_url(db or config.store_url())
    try:
        open_store(url, read_only=True).dispose()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    shown_host = f"[{host}]" if ":" in host else host
    typer.echo(f"trainledger dashboard on {mask_url(url)} (read-only): http://{shown_host}:{port}/", err=True)
    env = {**os.environ, "TRAINLEDGER_DB": url, POLICY_ENV: policy}
    argv = streamlit_argv(host, port)
    os.execve(argv[0], argv, env)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
