"""Reading the pieces of a log line: colour codes, rank prefixes, numbers and timestamps.

Shared by every text parser (`monitor/parsers/text.py`) and the end-of-attempt reader
(`monitor/parsers/endings.py`). Nothing here keeps state.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any

from monitor.parsers.base import BadLine

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|(?<![\w\]])\[(?:\d{1,3};)*\d{1,3}m")
_ANSI_HINT_RE = re.compile(r"\[\d{1,3}[;m]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
"""Control bytes left after the colour codes (a lone ESC, BEL, backspace): never part of a figure."""
_RANK_PREFIX_RE = re.compile(r"\[(?:rank|default)(\d{1,6})\]:")
_ISO_TS_RE = re.compile(
    r"(?<!\d)(\d{4}-\d\d-\d\d[T _]\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?(?!\d)")
_US_TS_RE = re.compile(r"(?<!\d)(\d\d)/(\d\d)/(\d{4}) (\d\d):(\d\d):(\d\d)(?!\d)")
_GLOG_TS_RE = re.compile(r"(?:^|\[)[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,9})")
_TS_SEARCH_CHARS = 96
"""Timestamps are looked for only near the start of a line (after a rank prefix)."""
_NAME_TS_RE = re.compile(
    r"(?<!\d)((?:19|20)\d\d)(-?)(\d\d)\2(\d\d)[_T.\- ]?(\d\d)([-:.]?)(\d\d)\6(\d\d)(?!\d)")



def clean(line: str) -> str:
    """The line without CR, trailing whitespace, ANSI colour codes and stray control bytes (a
    lone ESC at a line's start once cost nanochat its first step)."""
    if "\r" in line:
        line = line.replace("\r", "")
    if "\x1b" in line or "[" in line and _ANSI_HINT_RE.search(line):
        line = _ANSI_RE.sub("", line)
    if not line.isprintable() and _CONTROL_RE.search(line):
        line = _CONTROL_RE.sub("", line)
    return line.rstrip()


def split_rank(line: str) -> tuple[int | None, str]:
    """torchrun's `[rank3]:` / `[default3]:` prefixes (possibly nested) → (3, rest). PyTorch
    writes a rank's stderr as `[rank3]: ` + line: that one space is the prefix's too."""
    rank = None
    while line.startswith("[") and (match := _RANK_PREFIX_RE.match(line)):
        rank = int(match.group(1))
        line = line[match.end():]
        if line.startswith(" "):
            line = line[1:]
    return rank, line


def to_float(text: Any) -> float | None:
    """A number that may arrive as a string with thousands separators; NaN/inf → None."""
    if isinstance(text, str):
        try:
            value = float(text)
        except ValueError:
            try:
                value = float(text.replace(",", ""))
            except ValueError:
                raise BadLine(f"not a number: {text[:40]!r}") from None
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        raise BadLine(f"not a number: {str(text)[:40]!r}")
    return value if value - value == 0.0 else None


def loss_field(text: str, name: str = "loss") -> dict[str, Any]:
    """{name: value}, plus `{name}_nonfinite: True` when the log printed nan or inf (a
    diverged run must not look like a missing figure)."""
    value = to_float(text)
    if value is None:
        return {name: None, f"{name}_nonfinite": True}
    return {name: value}


def to_int(text: Any) -> int | None:
    """An integer figure; null when not finite or beyond 64 bits (no store column holds it)."""
    value = to_float(text)
    return None if value is None or abs(value) >= 2**63 else int(value)


def to_count(digits: str) -> int:
    """A step number, rank or size printed as digits; BadLine when absurdly long."""
    if len(digits) > 15:
        raise BadLine(f"number out of range: {digits[:20]}…")
    return int(digits)


def _epoch_seconds(date_time: tuple[int, ...], offset: str | None, tz: tzinfo | None) -> float:
    if offset:
        tz = _offset_zone(offset)
    y, mo, d, h, mi, s = date_time
    if 0 <= mi <= 59 and 0 <= s <= 59:
        start = _hour_start(y, mo, d, h, tz if tz is not None else _host_zone())
        if start is not None:
            return start + mi * 60 + s
    return datetime(*date_time, tzinfo=tz).timestamp()


def _iso_seconds(hour: str, mi: int, s: int, offset: str | None, tz: tzinfo | None) -> float:
    """`hour` is `YYYY-MM-DD HH`; a stamp that names its offset needs no zone rules at all."""
    if 0 <= mi <= 59 and 0 <= s <= 59:
        if offset:
            start = _iso_hour_start(hour, offset, None)
        else:
            start = _iso_hour_start(hour, None, tz if tz is not None else _host_zone())
        if start is not None:
            return start + mi * 60 + s
    date_time = (int(hour[:4]), int(hour[5:7]), int(hour[8:10]), int(hour[11:13]), mi, s)
    return _epoch_seconds(date_time, offset, tz)


@lru_cache(maxsize=4096)
def _iso_hour_start(hour: str, offset: str | None, zone: Any) -> float | None:
    tz = _offset_zone(offset) if offset else zone
    return _hour_start(int(hour[:4]), int(hour[5:7]), int(hour[8:10]), int(hour[11:13]), tz)


def _host_zone() -> tuple[Any, ...]:
    """This host's zone as a cache key: it may change (time.tzset), so its rules are the key."""
    return (time.timezone, time.altzone, time.daylight, time.tzname)


def _offset_zone(offset: str) -> timezone:
    return fixed_zone(_offset_seconds(offset))


@lru_cache(maxsize=256)
def fixed_zone(seconds: float) -> timezone:
    """The zone `seconds` east of UTC (one object per offset: a log line's time needs it)."""
    return timezone(timedelta(seconds=seconds))


@lru_cache(maxsize=4096)
def _hour_start(y: int, mo: int, d: int, h: int, zone: Any) -> float | None:
    """UTC seconds of this hour's start, read in `zone` (a tzinfo, else this host's zone); None
    when the zone's offset changes within the hour (a DST switch: read each time apart). A log
    line's time costs two additions instead of a datetime (a million lines an ingest)."""
    tz = zone if isinstance(zone, tzinfo) else None
    start = datetime(y, mo, d, h, tzinfo=tz).timestamp()
    return start if datetime(y, mo, d, h, 59, 59, tzinfo=tz).timestamp() - start == 3599 else None


def find_timestamp(line: str, tz: tzinfo | None, year_hint: float | None) -> float | None:
    """UTC seconds of the timestamp near the start of the line, or None."""
    found = read_timestamp(line, tz, year_hint)
    return None if found is None else found[0]


def read_timestamp(line: str, tz: tzinfo | None, year_hint: float | None) -> tuple[float, int | None] | None:
    """(UTC seconds, the stamp's own UTC offset in seconds or None when naive) of the timestamp
    near the start of the line. Naive stamps are read in `tz` (None: this host's zone).
    `year_hint` (the file's last known time) supplies the year of year-less glog stamps;
    without it they are not trusted."""
    head = line[:_TS_SEARCH_CHARS]
    try:
        if match := _ISO_TS_RE.search(head):
            hour, mi, s, frac, offset = match.groups()
            base = _iso_seconds(hour, int(mi), int(s), offset, tz)
            seconds = base + (int(frac) / 10 ** len(frac) if frac else 0.0)
            return seconds, _offset_seconds(offset) if offset else None
        if match := _US_TS_RE.search(head):
            mo, d, y, h, mi, s = map(int, match.groups())
            return _epoch_seconds((y, mo, d, h, mi, s), None, tz), None
        if year_hint is not None and (match := _GLOG_TS_RE.search(head)):
            # glog's `E0321 02:07:08.40` has no year: take the file's, rolling over at new year
            mo, d, h, mi, s, frac = match.groups()
            year = datetime.fromtimestamp(year_hint).year
            moment = (int(mo), int(d), int(h), int(mi), int(s))
            base = _epoch_seconds((year, *moment), None, tz)
            if base < year_hint - 300 * 86400:
                base = _epoch_seconds((year + 1, *moment), None, tz)
            return base + int(frac) / 10 ** len(frac), None
    except (ValueError, OverflowError, OSError):
        return None
    return None


def name_timestamp(name: str, tz: tzinfo | None) -> float | None:
    """UTC seconds of a date-time in a log's file name (`train_20251025_153513.log`,
    `run-2025-10-25_15-35-13.log`, `20251025T153513`), read in `tz` (None: this host's zone);
    None when the name has none. Run scripts stamp a log's name when they create it."""
    match = _NAME_TS_RE.search(name)
    if match is None:
        return None
    y, _, mo, d, h, _, mi, s = match.groups()
    try:
        return _epoch_seconds((int(y), int(mo), int(d), int(h), int(mi), int(s)), None, tz)
    except (ValueError, OverflowError, OSError):
        return None


@lru_cache(maxsize=256)
def _offset_seconds(offset: str) -> int:
    if offset == "Z":
        return 0
    digits = offset[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + int(digits[2:]) * 60
    return -seconds if offset[0] == "-" else seconds


def format_offset(seconds: float) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = int(abs(seconds)) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def local_offset(ts: float) -> float:
    return datetime.fromtimestamp(ts).astimezone().utcoffset().total_seconds()
