"""The accounting policy: working hours, holidays, maintenance windows and thresholds.

Everything a user may tune lives here, as one validated value passed to the pure functions.
Working hours apply in the run's local timezone (the ling-1b run: UTC+8); see docs/accounting.md.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


@lru_cache(maxsize=64)
def parse_timezone(name: str) -> tzinfo:
    """An IANA name ('Asia/Shanghai'), 'UTC', or a fixed offset ('+08:00', 'UTC+8')."""
    text = name.strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (use an IANA name like Asia/Shanghai or an offset like +08:00)") from None


class MaintenanceWindow(BaseModel):
    """Planned downtime: shown apart and left out of the figures' denominators."""

    model_config = ConfigDict(frozen=True)
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("maintenance window times need a UTC offset, e.g. 2024-06-10T02:00+08:00")
        if self.end <= self.start:
            raise ValueError("maintenance window ends before it starts")
        return self

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        """'START/END' in ISO 8601 with offsets."""
        start, sep, end = text.partition("/")
        if not sep:
            raise ValueError(f"maintenance window {text!r} is not START/END")
        return cls(start=datetime.fromisoformat(start), end=datetime.fromisoformat(end))


class Policy(BaseModel):
    """How seconds are classified. The defaults are those docs/accounting.md states."""

    model_config = ConfigDict(frozen=True)
    timezone: str | None = None
    """Working hours' zone; None: the run's `timezone` launch field, else UTC."""
    work_start: time = time(9, 30)
    work_end: time = time(22, 0)
    holidays: frozenset[date] = frozenset()
    maintenance: tuple[MaintenanceWindow, ...] = ()
    stall_min_s: float = 120.0
    stall_factor: float = 10.0
    silence_fault_s: float = 1800.0

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            parse_timezone(value)
        return value

    @model_validator(mode="after")
    def _hours_ordered(self) -> Policy:
        if self.work_end <= self.work_start:
            raise ValueError("working hours must end after they start on the same day")
        return self

    def for_run(self, run_timezone: str | None) -> Policy:
        """This policy with the run's own timezone filled in when none was chosen."""
        if self.timezone is not None or not run_timezone:
            return self
        try:
            parse_timezone(run_timezone)  # model_copy runs no validator: check here
        except ValueError:
            return self
        return self.model_copy(update={"timezone": run_timezone})

    @property
    def tz(self) -> tzinfo:
        return parse_timezone(self.timezone or "UTC")

    @property
    def maintenance_ts(self) -> tuple[tuple[float, float], ...]:
        return tuple(sorted((w.start.timestamp(), w.end.timestamp()) for w in self.maintenance))

    def stall_threshold(self, median_interval: float | None) -> float:
        """max(stall_min_s, stall_factor x the median interval between step records)."""
        if median_interval is None:
            return self.stall_min_s
        return max(self.stall_min_s, self.stall_factor * median_interval)

    def next_working_moment(self, ts: float) -> float:
        """`ts` itself when it falls inside working hours, else the next working hours' start."""
        local = datetime.fromtimestamp(ts, self.tz)
        day = local.date()
        for _ in range(3700):
            if day not in self.holidays:
                opens = datetime.combine(day, self.work_start, self.tz).timestamp()
                closes = datetime.combine(day, self.work_end, self.tz).timestamp()
                if ts < closes:
                    return max(ts, opens)
            day += timedelta(days=1)
        raise ValueError("no working hours in the next ten years: check the holidays")

    def is_working(self, ts: float) -> bool:
        return self.next_working_moment(ts) == ts
