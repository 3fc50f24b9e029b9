"""`trainledger watch | ingest | status | ledger`."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

import typer

from monitor.config import ConfigError
from monitor.formats_cli import formats_option, ingest_event_files, use_config_formats, use_formats_file
from monitor.policy_options import (config_option, fault_after_option, holiday_option, load_policy, maintenance_option,
                                    stall_after_option, timezone_option, work_hours_option)

DB_HELP = "store: a SQLite file path or a postgresql+psycopg:// URL (default: $TRAINLEDGER_DB, else ~/.local/share/trainledger/trainledger.db)"
FORMAT_HELP = "parse every file as this format instead of sniffing it (e.g. jsonl, internlm)"


def _fail(message: str, code: int = 2) -> None:
    """An expected problem: one line on stderr, no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _log_to_stderr(level: int, format: str, db: Optional[str]) -> None:
    """The daemon's log: each line escaped (it quotes file names and text from logs) and
    without the store's secrets (a driver's error may quote the DSN)."""
    from monitor.escape import PrintableLog
    from monitor.store import MaskedLog

    logging.basicConfig(level=level, format=format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(PrintableLog())  # first: it formats a traceback, which MaskedLog then masks too
        handler.addFilter(MaskedLog(db))


def _open(db: Optional[str], *, read_only: bool = False):
    from monitor.store import StoreError, open_store

    try:
        return open_store(db, read_only=read_only)
    except StoreError as exc:
        _fail(str(exc), 1)


def _setup(paths: List[str], db: Optional[str], format: Optional[str], **options):
    """The targets and the intake, or a one-line error naming the bad path, format or store."""
    from monitor.intake import Intake
    from monitor.sources import Targets

    try:
        targets = Targets(paths)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if format:
        from monitor.parsers import by_name

        try:
            by_name(format)
        except ValueError as exc:
            _fail(f"--format: {exc}")
    return targets, Intake(_open(db), format=format, **options)


def watch(
    paths: Optional[List[str]] = typer.Argument(None, help="log files (may not exist yet), folders or globs such as "
                                                "'runs/*/train.log' (default: the config's [watch] paths)"),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    format: Optional[str] = typer.Option(None, "--format", help=FORMAT_HELP),
    poll: float = typer.Option(2.0, "--poll", help="seconds between full rescans (changes are seen at once via inotify)"),
    idle_flush: float = typer.Option(5.0, "--idle-flush", help="seconds of silence after which a file's buffered lines (a traceback) are stored"),
    linger: float = typer.Option(300.0, "--linger", help="seconds a log renamed away or deleted is still read "
                                 "after it last grew (its writer may not have reopened it yet)"),
    batch_bytes: int = typer.Option(1 << 20, "--batch-bytes", hidden=True),
    live_every: float = typer.Option(5.0, "--live-every", help="seconds between re-classifying the live runs "
                                     "while no record arrives (each stored batch is classified at once)"),
    timezone: Optional[str] = timezone_option(),
    work_hours: Optional[str] = work_hours_option(),
    holiday: List[str] = holiday_option(),
    maintenance: List[str] = maintenance_option(),
    stall_after: Optional[float] = stall_after_option(),
    fault_after: Optional[float] = fault_after_option(),
    config_file: Optional[str] = config_option(),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="serve Prometheus metrics on this port"),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="address the metrics endpoint binds"),
    formats: Optional[Path] = formats_option(),
) -> None:
    """Follow log files live into the store until SIGTERM or Ctrl-C (a foreground daemon).
    Each run's live state (training, stalled, fault, …) is kept in the store for `status`,
    and the config's alerts are raised and sent (docs/alerts.md)."""
    from monitor.alerting import start_alerting
    from monitor.live import Listeners, LiveRuns
    from monitor.projections.live import LiveEtas
    from monitor.store import mask_url

    try:
        config, policy = load_policy(config_file, timezone, work_hours, holiday, maintenance, stall_after, fault_after)
    except ValueError as exc:
        _fail(str(exc))
    paths = paths or config.watch.paths
    db = db or config.store_url()
    if not paths:
        _fail("nothing to watch: give log paths, or [watch] paths in the config")
    use_formats_file(formats)
    use_config_formats(config)
    if not live_every > 0:
        _fail(f"--live-every {live_every}: expected a positive number of seconds")
    if not linger >= 0:
        _fail(f"--linger {linger}: expected a number of seconds, 0 or more")

    _log_to_stderr(logging.INFO, "%(asctime)s %(levelname)s %(message)s", db)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # first: a stop while opening the store still counts
        signal.signal(signum, lambda *_: stop.set())
    targets, intake = _setup(paths, db, format, batch_bytes=batch_bytes, idle_flush_s=idle_flush,
                             live_tick_s=live_every, linger_s=linger)
    live = LiveRuns(intake.engine, policy)
    try:
        alerter, stop_alerting = start_alerting(intake.engine, live, config)
    except ConfigError as exc:
        _fail(str(exc))
    intake.live = Listeners([live, alerter, LiveEtas(intake.engine, live)])
    metrics = None
    if metrics_port is not None:
        from monitor.exporter import serve_metrics

        try:
            metrics = serve_metrics(intake.engine, policy, metrics_port, metrics_host)
        except OSError as exc:
            _fail(f"--metrics-port {metrics_port}: {exc.strerror or exc}")
    logging.getLogger("trainledger.intake").info("watching %s into %s", " ".join(paths), mask_url(db))
    try:
        intake.watch(targets, stop, poll_s=poll)
    finally:
        stop_alerting()
        if metrics is not None:
            metrics.shutdown()
    logging.getLogger("trainledger.intake").info("stopped")


def ingest(
    paths: List[str] = typer.Argument(..., help="log files, folders or globs"),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    format: Optional[str] = typer.Option(None, "--format", help=FORMAT_HELP),
    batch_bytes: int = typer.Option(1 << 20, "--batch-bytes", hidden=True),
    formats: Optional[Path] = formats_option(),
    config_file: Optional[str] = config_option(),
) -> None:
    """Read log files into the store once, to their end, and exit (safe to repeat: nothing is stored twice)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.store import count_records, mask_secrets, mask_url

    from monitor.config import load_config

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        _fail(str(exc))
    db = db or config.store_url()
    _log_to_stderr(logging.WARNING, "%(levelname)s %(message)s", db)
    use_formats_file(formats)
    use_config_formats(config)
    targets, intake = _setup(paths, db, format, batch_bytes=batch_bytes)
    before = sum(count_records(intake.engine).values())
    columns = (TextColumn("ingest"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, transient=True, disable=not os.isatty(2)) as progress:
            task = progress.add_task("ingest", total=intake.pending_bytes(targets))
            intake.on_bytes = lambda n: progress.advance(task, n)
            ingest_event_files(intake.engine, targets, formats)
            intake.ingest(targets)
    except SQLAlchemyError as exc:
        _fail(f"store {mask_url(db)}: {mask_secrets(str(getattr(exc, 'orig', None) or exc).splitlines()[0], db)}", 1)
    added = sum(count_records(intake.engine).values()) - before
    typer.echo(f"{added} new records from {len(targets.files())} files into {mask_url(db)}")


def status(db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
           config_file: Optional[str] = config_option()) -> None:
    """Followed files: how far each is read, how far behind, and its bad lines with the first one."""
    from monitor.config import load_config

    try:
        config = load_config(config_file)  # read even with --db: a bad file is said, not ignored
        db = db or config.store_url()
    except ConfigError as exc:
        _fail(str(exc))
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Column, Table

    from monitor.escape import printable
    from monitor.store import list_live_etas, list_live_states, list_runs, list_sources, mask_url
    from monitor.unknown_format import report_unknown

    def text(value: str | None) -> str:
        """Text from a log or a file name, fit for the terminal and for rich's markup."""
        return escape(printable(value or ""))

    engine = _open(db, read_only=True)
    sources = list_sources(engine)
    console = Console()
    console.print(f"store {text(mask_url(db))}: {len(list_runs(engine))} runs, {len(sources)} files")
    table = Table("format", "status", "read", "lag", "records", "bad lines")
    table.columns.insert(0, Column("file", overflow="fold"))
    now = time.time()
    for src in sources:
        try:
            behind = max(0, os.stat(src.path).st_size - src.offset) if src.status == "active" else 0
        except OSError:
            behind = 0
        lag = f"{behind:,} B, {now - src.updated:.0f} s" if behind else "-"
        table.add_row(text(src.path), src.parser or "?", src.status, f"{src.offset:,} B, {src.lines:,} lines",
                      lag, f"{src.records:,}", f"{src.bad_lines:,}")
    console.print(table)
    for src in sources:
        if src.first_bad_line is not None:
            console.print(f"{text(src.path)}:{src.first_bad_line}: {text(src.first_bad_reason)}: "
                          f"{text(src.first_bad_example)}", soft_wrap=True)
    report_unknown(console, sources)
    live = list_live_states(engine)
    if live:
        runs = Table("state", "since", "last step", "last record", "ETA (P50)",
                     title="live runs (as `trainledger watch` last saw them)")
        runs.columns.insert(0, Column("run", overflow="fold"))
        etas = {eta.run: eta for eta in list_live_etas(engine)}
        for state in live:
            eta = etas.get(state.run)
            runs.add_row(text(state.run), state.state, _utc(state.since), "-" if state.step is None else f"{state.step:,}",
                         f"{_age(now - state.last_record_ts)} ago",
                         "-" if eta is None else "finished" if eta.finished else _utc(eta.finish_p50))
        console.print(runs)


def _utc(ts: float) -> str:
    """A stored moment in UTC; as the bare number when it is no date (a store written before
    records' times were checked may hold one)."""
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        return f"ts {ts!r}"


def _age(seconds: float) -> str:
    """A duration at a glance: 42 s, 7 min, 3.5 h, 12.0 d."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def register(app: typer.Typer) -> None:
    """Add the monitor's commands to the top-level app."""
    from dashboard.cli import register as register_dashboard
    from monitor.alerts_cli import register as register_alerts
    from monitor.formats_cli import register as register_formats
    from monitor.ledger import register as register_ledger
    from monitor.projections.cli import register as register_projections

    for command in (watch, ingest, status):
        app.command()(command)
    register_ledger(app)
    register_dashboard(app)
    register_alerts(app)
    register_projections(app)
    register_formats(app)
