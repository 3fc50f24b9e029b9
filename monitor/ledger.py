"""`trainledger ledger RUN`: the hand-kept ledger of the ling-1b run (its table and pie) for any
run, as a rich table, CSV, JSON or markdown. Only presentation and options live here; every
number comes from monitor.accounting. Every text that came from a log (run and attempt names,
data batches, causes with their fault messages) is printed through `printable`: a log cannot
write control sequences to the user's terminal or into a CSV or markdown file.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from time import time as wall_clock

import orjson
import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from monitor.accounting import DAY, Ledger, compute_ledger, parse_timezone
from monitor.accounting.figures import hours
from monitor.accounting.overlays import describe_gap
from monitor.config import ConfigError
from monitor.escape import json_printable, printable
from monitor.policy_options import (config_option, fault_after_option, holiday_option, load_policy, maintenance_option,
                                    stall_after_option, timezone_option, work_hours_option)
from monitor.records import PossibleTimes

FORMATS = ("table", "csv", "json", "markdown")
MARKS = {"training": "✔", "startup": "🔧", "fault": "✖ 🔧", "waiting": "🔧", "manual": "➖"}
ROW_FIELDS = ("start", "duration", "state", "data_batch", "nodes", "cause", "attempt")


def duration(seconds: float) -> str:
    """H:MM:SS like the hand-kept table (hours may exceed 24)."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def local_time(ledger: Ledger, ts: float) -> str:
    return datetime.fromtimestamp(ts, parse_timezone(ledger.timezone)).strftime("%Y-%m-%d %H:%M:%S")


def mark(row) -> str:
    symbols = MARKS.get(row.state, "")
    return f"{symbols} 💤" if row.off_hours_s else symbols


def table_rows(ledger: Ledger) -> list[dict]:
    return [{"start": local_time(ledger, r.start), "duration": duration(r.duration), "state": r.state,
             "data_batch": printable(str(r.data_batch)) if r.data_batch is not None else "--",
             "nodes": r.nodes if r.nodes is not None else "--", "cause": printable(r.cause),
             "attempt": printable(ledger.attempt_ids[r.attempt])} for r in ledger.rows]


def summary_lines(ledger: Ledger) -> list[tuple[str, str]]:
    pie = ledger.pie_days

    def days(key: str) -> str:
        return f"{pie[key]:.2f} days ({hours(pie[key] * DAY)})"

    lines = [("training", days("training")), ("interrupted / waiting", days("interrupted_or_waiting")),
             ("nobody at work (off hours)", days("nobody_at_work"))]
    if "maintenance" in pie:
        lines.append(("planned maintenance (excluded)", days("maintenance")))
    lines += [("goodput", f"{ledger.goodput:.1%}"), ("ETTR", f"{ledger.ettr:.1%}"),
              ("launches / faults / manual stops", f"{ledger.launches} / {ledger.faults} / {ledger.manual_stops}")]
    if ledger.mtbf_s is not None:
        lines.append(("mean time between faults", f"{ledger.mtbf_s / 3600:.1f} h"))
    relaunch = ledger.mean_relaunch()
    if relaunch:
        lines.append(("mean time to relaunch", f"{relaunch['total_s'] / 3600:.2f} h = notice "
                      f"{relaunch['to_notice_s'] / 3600:.2f} h + relaunch {relaunch['to_relaunch_s'] / 3600:.2f} h"
                      f" + startup {relaunch['startup_s'] / 3600:.2f} h"))
    lines.append(("wasted progress", f"{ledger.wasted_steps} steps, {ledger.wasted_s / 3600:.2f} h"))
    lines.append(("checkpoint stall", f"{ledger.checkpoint_stall_s / 3600:.2f} h"))
    for index, missing in ledger.restore_gaps.items():
        lines.append(("restore gap", f"{ledger.attempt_ids[index]}: {describe_gap(missing)}"))
    if ledger.live:
        lines.append(("now", ledger.current_state or "—"))
    return [(name, printable(value)) for name, value in lines]


def render_table(ledger: Ledger) -> Group:
    title = (f"{printable(ledger.run)}: {local_time(ledger, ledger.start)} → {local_time(ledger, ledger.end)} "
             f"({ledger.timezone})")
    table = Table(title=escape(title), show_lines=False)
    for column in ("time", "duration", "state", "data batch", "nodes", "cause"):
        table.add_column(column, overflow="fold")
    for row, cells in zip(ledger.rows, table_rows(ledger)):
        table.add_row(cells["start"], cells["duration"], f"{mark(row)} {row.state}", escape(cells["data_batch"]),
                      str(cells["nodes"]), escape(cells["cause"]))
    figures = Table(show_header=False, box=None)
    for name, value in summary_lines(ledger):
        figures.add_row(escape(name), escape(value))
    return Group(table, figures)


def to_csv(ledger: Ledger) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ROW_FIELDS)
    writer.writeheader()
    writer.writerows(table_rows(ledger))
    return out.getvalue()


def to_json(ledger: Ledger) -> str:
    return json_printable(orjson.dumps(ledger.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(ledger: Ledger) -> str:
    pie = ledger.pie_days
    lines = ["```mermaid", "pie showData", f"    title {_md(printable(ledger.run))} (days)",
             f'    "training": {pie["training"]:.2f}',
             f'    "interrupted / waiting": {pie["interrupted_or_waiting"]:.2f}',
             f'    "nobody at work": {pie["nobody_at_work"]:.2f}']
    if "maintenance" in pie:
        lines.append(f'    "planned maintenance": {pie["maintenance"]:.2f}')
    lines += ["```", "", "| time | duration | state | data batch | nodes | cause |", "| -- | -- | -- | -- | -- | -- |"]
    for row, cells in zip(ledger.rows, table_rows(ledger)):
        lines.append(f"| {cells['start']} | {cells['duration']} | {mark(row)} {row.state} | {_md(cells['data_batch'])} "
                     f"| {cells['nodes']} | {_md(cells['cause'])} |")
    lines += ["", "| figure | value |", "| -- | -- |"]
    lines += [f"| {_md(name)} | {_md(value)} |" for name, value in summary_lines(ledger)]
    return "\n".join(lines) + "\n"


def render(ledger: Ledger, fmt: str, console: Console) -> None:
    if fmt == "table":
        console.print(render_table(ledger))
    else:
        text = {"csv": to_csv, "json": to_json, "markdown": to_markdown}[fmt](ledger)
        console.file.write(text if text.endswith("\n") else text + "\n")


def ledger_command(
    run: str = typer.Argument(..., help="The run's name (see `trainledger status`)."),
    db: str | None = typer.Option(None, "--db", help="Store URL or SQLite path (default: $TRAINLEDGER_DB, "
                                  "then ~/.local/share/trainledger/trainledger.db)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or markdown."),
    timezone: str | None = timezone_option(),
    work_hours: str | None = work_hours_option(),
    holiday: list[str] = holiday_option(),
    maintenance: list[str] = maintenance_option(),
    stall_after: float | None = stall_after_option(),
    fault_after: float | None = fault_after_option(),
    config_file: str | None = config_option(),
    live: bool = typer.Option(False, "--live", help="Account up to now: for a run that is still going."),
) -> None:
    """Print a run's ledger: every launch and downtime, the pie in days, goodput and ETTR."""
    from monitor.store import StoreError, list_runs, open_store
    from monitor.store.read import accounting_records

    err = Console(stderr=True)
    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    try:
        config, policy = load_policy(config_file, timezone, work_hours, holiday, maintenance, stall_after, fault_after)
    except ConfigError as exc:
        err.print(f"error: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        engine = open_store(db or config.store_url(), read_only=True)
        now = wall_clock()
        # Streamed light records: a million-step run's ledger never holds a Record per step.
        possible = PossibleTimes(accounting_records(engine, run), now)
        result = compute_ledger(possible, policy, now=now if live else None, read_at=now)
        known = [] if result or possible.dropped else [r.name for r in list_runs(engine)]
    except StoreError as exc:
        err.print(f"error: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    if possible.dropped:
        err.print(f"warning: {possible.dropped} records of {escape(printable(run))} have times that "
                  "cannot be true (stored before times were checked) and are left out",
                  highlight=False, soft_wrap=True)
    if result is None and possible.dropped:
        err.print(f"error: no record of {escape(printable(run))} has a time that can be true",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if result is None:
        others = f"; runs in the store: {', '.join(map(printable, known))}" if known else "; the store has no runs yet"
        err.print(f"error: no run named {escape(printable(run))}{escape(others)}", highlight=False)
        raise typer.Exit(1)
    render(result, fmt, Console(soft_wrap=fmt != "table", highlight=False))


def register(app: typer.Typer) -> None:
    app.command("ledger")(ledger_command)
