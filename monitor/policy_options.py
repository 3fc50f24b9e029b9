"""The accounting policy's command-line options, shared by `trainledger ledger` and `watch`,
so a run is classified by the same rules live and afterwards."""

from __future__ import annotations

from datetime import date, time

import typer
from pydantic import ValidationError

from monitor.accounting import MaintenanceWindow, Policy


def timezone_option():
    return typer.Option(None, "--timezone", help="Zone of the working hours, e.g. Asia/Shanghai or +08:00 "
                        "(default: the run's launch records' `timezone`, else UTC).")


def work_hours_option():
    return typer.Option("09:30-22:00", "--work-hours", help="Working hours, local time.")


def holiday_option():
    return typer.Option([], "--holiday", help="A holiday (YYYY-MM-DD), off hours all day; repeatable.")


def maintenance_option():
    return typer.Option([], "--maintenance", help="Planned downtime START/END (ISO 8601 with offset), "
                        "left out of the ratios; repeatable.")


def stall_after_option():
    return typer.Option(Policy().stall_min_s, "--stall-after", help="Seconds without a step before a run "
                        "counts as stalled (at least; 10 x the median step interval when that is longer).")


def fault_after_option():
    return typer.Option(Policy().silence_fault_s, "--fault-after", help="Seconds of silence, with no stop "
                        "record, after which a run's last attempt counts as a fault (live or not).")


def policy_from_options(timezone: str | None, work_hours: str, holidays: list[str], maintenance: list[str],
                        stall_after: float | None = None, fault_after: float | None = None) -> Policy:
    """A Policy from the command line's options; ValueError names the bad option."""
    start, sep, end = work_hours.partition("-")
    try:
        hours = {"work_start": time.fromisoformat(start.strip()), "work_end": time.fromisoformat(end.strip())}
        if not sep:
            raise ValueError
    except ValueError:
        raise ValueError(f"--work-hours {work_hours!r}: expected HH:MM-HH:MM, e.g. 09:30-22:00") from None
    try:
        days = frozenset(date.fromisoformat(d) for d in holidays)
    except ValueError as exc:
        raise ValueError(f"--holiday: {exc} (expected YYYY-MM-DD)") from None
    try:
        windows = tuple(MaintenanceWindow.parse(w) for w in maintenance)
    except (ValueError, ValidationError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ValueError(f"--maintenance: {detail}") from None
    thresholds = {}
    for option, key, value in (("--stall-after", "stall_min_s", stall_after),
                               ("--fault-after", "silence_fault_s", fault_after)):
        if value is not None:
            if not value > 0:
                raise ValueError(f"{option} {value}: expected a positive number of seconds")
            thresholds[key] = value
    try:
        return Policy(timezone=timezone, holidays=days, maintenance=windows, **hours, **thresholds)
    except ValidationError as exc:
        raise ValueError(f"--timezone/--work-hours: {exc.errors()[0]['msg']}") from None
