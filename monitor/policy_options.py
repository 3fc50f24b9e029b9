"""The accounting policy's command-line options, shared by `trainledger ledger`, `status`, `watch`
and `alerts`, so a run is classified by the same rules live and afterwards: the `[policy]` of
trainledger.toml (monitor/config.py), each option given on the command line overriding it."""

from __future__ import annotations

from datetime import date

import typer
from pydantic import ValidationError

from monitor.accounting import MaintenanceWindow, Policy
from monitor.config import Config, ConfigError, load_config, parse_work_hours


def config_option():
    return typer.Option(None, "--config", help="trainledger.toml to read (default: $TRAINLEDGER_CONFIG, "
                        "else ~/.config/trainledger/trainledger.toml when it exists)")


def timezone_option():
    return typer.Option(None, "--timezone", help="Zone of the working hours, e.g. Asia/Shanghai or +08:00 "
                        "(default: the run's launch records' `timezone`, else UTC).")


def work_hours_option():
    return typer.Option(None, "--work-hours", help="Working hours, local time (default 09:30-22:00).")


def holiday_option():
    return typer.Option([], "--holiday", help="A holiday (YYYY-MM-DD), off hours all day; repeatable.")


def maintenance_option():
    return typer.Option([], "--maintenance", help="Planned downtime START/END (ISO 8601 with offset), "
                        "left out of the ratios; repeatable.")


def stall_after_option():
    return typer.Option(None, "--stall-after", help="Seconds without a step before a run counts as stalled "
                        f"(default {Policy().stall_min_s:g}; 10 x the median step interval when that is longer).")


def fault_after_option():
    return typer.Option(None, "--fault-after", help="Seconds of silence, with no stop record, after which "
                        f"a run's last attempt counts as a fault, live or not (default {Policy().silence_fault_s:g}).")


def _problem(from_file: bool, message: str) -> ValueError:
    """A bad value: a ConfigError when it came from the file (the message names file and key)."""
    return ConfigError(message) if from_file else ValueError(message)


def policy_from_options(timezone: str | None, work_hours: str | None, holidays: list[str], maintenance: list[str],
                        stall_after: float | None = None, fault_after: float | None = None, *,
                        config: Config | None = None) -> Policy:
    """A Policy from the configuration's `[policy]` with the command line's options over it;
    ValueError names the bad option, ConfigError the file and key."""
    given = (config or Config()).policy
    key = f"{config.path}: policy." if config is not None and config.path else "policy."
    zone_from_file = timezone is None and given.timezone is not None
    timezone = timezone if timezone is not None else given.timezone
    hours = {}
    hours_from_file = work_hours is None and given.work_hours is not None
    if work_hours is not None or hours_from_file:
        text, name = (given.work_hours, f"{key}work_hours") if hours_from_file else (work_hours, "--work-hours")
        try:
            hours = dict(zip(("work_start", "work_end"), parse_work_hours(text)))
        except ValueError:
            raise _problem(hours_from_file, f"{name} {text!r}: expected HH:MM-HH:MM, e.g. 09:30-22:00") from None
    try:
        days = frozenset(date.fromisoformat(d) for d in holidays) if holidays else frozenset(given.holidays)
    except ValueError as exc:
        raise ValueError(f"--holiday: {exc} (expected YYYY-MM-DD)") from None
    option = "--maintenance" if maintenance else f"{key}maintenance"
    try:
        windows = tuple(MaintenanceWindow.parse(w) for w in (maintenance or given.maintenance))
    except (ValueError, ValidationError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise _problem(not maintenance, f"{option}: {detail}") from None
    thresholds = {}
    for option, name, value in (("--stall-after", "stall_min_s", stall_after),
                                ("--fault-after", "silence_fault_s", fault_after)):
        if value is not None:
            if not value > 0:
                raise ValueError(f"{option} {value}: expected a positive number of seconds")
            thresholds[name] = value
    thresholds.setdefault("stall_min_s", given.stall_after_s or Policy().stall_min_s)
    thresholds.setdefault("silence_fault_s", given.fault_after_s or Policy().silence_fault_s)
    try:
        return Policy(timezone=timezone, holidays=days, maintenance=windows, **hours, **thresholds)
    except ValidationError as exc:
        from_file = zone_from_file or hours_from_file
        where = f"{key}timezone/work_hours" if from_file else "--timezone/--work-hours"
        raise _problem(from_file, f"{where}: {exc.errors()[0]['msg']}") from None


def load_policy(config_file: str | None, *options, **keywords) -> tuple[Config, Policy]:
    """The configuration in force and its policy with the command line's options over it."""
    config = load_config(config_file)
    return config, policy_from_options(*options, **keywords, config=config)
