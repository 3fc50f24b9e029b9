"""What every text-log parser shares: cleaning a line, its timestamp, runs and attempts.

A `TextParser` subclass only recognises its own metric lines (`parse_line`). This base does
the rest, the same way for every format:
- strips ANSI colour codes (also ones whose ESC byte was lost), CR and torchrun's
  `[rank3]:` / `[default3]:` prefixes (the rank goes onto the record);
- reads the line's timestamp (ISO, `[YYYY-MM-DD HH:MM:SS]`, `MM/DD/YYYY HH:MM:SS`, glog's
  `E0321 02:07:08.40`); naive times are in `tz` (default: this host's zone);
- dates a line without one from the file's own clock: the last real time it offers (a line's
  stamp, else a date-time in the file name), advanced by the trainer's own durations since
  (`advance_steps`, `advance_elapsed`); only a file with no anchor at all takes `clock`;
- numbers attempts `f"{attempt_prefix}#{n}"`: n starts at 1 with the file and grows at a launch
  line or where the step counter goes backwards; a step repeated by another rank is dropped;
- holds a launch record open until the first other record, so later start-up lines (world size,
  hosts, device) still reach it;
- recognises how an attempt ended (see `monitor/parsers/endings.py`).
All state is plain JSON (`get_state`) so the intake can commit it with the file offset.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import tzinfo
from typing import Any, ClassVar

import orjson

from monitor.parsers import endings
from monitor.parsers.base import BadLine, Parser
from monitor.parsers.fields import (clean, fixed_zone, format_offset, local_offset, name_timestamp,
                                    read_timestamp, split_rank)
from monitor.records import Record

MAX_LINE_CHARS = 1 << 20
"""A longer line is refused (BadLine) before any regular expression sees it."""

MAX_WORLD_SIZE = 10_000_000
MAX_STEP = 2**53

LAUNCH_FIELDS = ("world_size", "nodes", "hosts", "device", "peak_flops", "flops_per_token",
                 "config_digest", "data_batch", "data_slice", "resume_from")

MAX_ADVANCE_S = 30 * 86400.0
"""A trainer's duration beyond this (garbage, a misread unit) does not move the file's clock."""


class TextParser(Parser):
    """Base of the text formats; subclasses implement `parse_line` and `sniff`."""

    name: ClassVar[str]

    def __init__(self, *, run: str, attempt_prefix: str, host: str = "",
                 clock: Callable[[], float] | None = None, tz: tzinfo | None = None) -> None:
        """`clock` gives the time of a line in a file that offers no time of its own (default:
        now, i.e. the moment it is read — right only for live tailing); `tz` is the zone of
        naive timestamps. A date-time in the file name (the part of `attempt_prefix` before
        its `:id`) is the file's first anchor."""
        super().__init__(run=run, attempt_prefix=attempt_prefix, host=host)
        self.clock = clock or time.time
        self.tz = tz
        self.name_ts = name_timestamp(attempt_prefix.rsplit(":", 1)[0], tz)
        self.s: dict[str, Any] = self.initial_state()
        self.line_time: float | None = None
        self.line_naive_local = False

    # -- state -------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        """`est_ts` is the file's clock (the estimated time of its latest line), `est_step` the
        step it was last advanced to, `elapsed` the trainer's last running elapsed-time figure."""
        return {"attempt": 1, "started": False, "last_step": None, "last_ts": None,
                "run_id": None, "pending_launch": None, "tracebacks": {}, "ended": [],
                "world_size": None, "utc_offset": None, "fmt": {},
                "est_ts": self.name_ts, "est_step": None, "elapsed": None}

    def get_state(self) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(self.s))

    def set_state(self, state: dict[str, Any]) -> None:
        fresh = self.initial_state()
        fresh.update(orjson.loads(orjson.dumps(state)))
        self.s = fresh

    # -- the contract ------------------------------------------------------------------
    def feed(self, line: str) -> list[Record]:
        if len(line) > MAX_LINE_CHARS:
            raise BadLine(f"line of {len(line):,} characters is longer than {MAX_LINE_CHARS:,}")
        if "\x00" in line or line.count("\ufffd") * 10 > len(line) > 0:
            raise BadLine("binary data, not text")
        rank, line = split_rank(clean(line))
        self.line_time = self.line_ts(line)
        key = str(rank or 0)
        out: list[Record] = []
        if key in self.s["tracebacks"]:
            consumed, out = endings.continue_traceback(self, key, line)
            if consumed:
                return out
        if line.startswith(endings.TRACEBACK_START):
            endings.start_traceback(self, key, line, self.line_time)
            return out
        found = self.parse_line(line, rank or 0)
        if found is None:
            found = endings.detect(self, line, rank or 0)
        return out + found

    def flush(self) -> list[Record]:
        out: list[Record] = []
        for key in list(self.s["tracebacks"]):
            out += endings.finish_traceback(self, key)
        return out + self.flush_launch()

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        """Records of one of this format's own lines; None when the line is not one."""
        raise NotImplementedError

    # -- building records --------------------------------------------------------------
    def line_ts(self, line: str) -> float | None:
        """The line's own time; the first one after a launch line without one dates it.
        Without a `tz`, naive stamps take the zone of the first stamp in the file that names
        its offset (InternLM mixes both), until then this host's zone."""
        learned = self.s["utc_offset"]
        zone = self.tz or (fixed_zone(learned) if learned is not None else None)
        found = read_timestamp(line, zone, self.s["last_ts"])
        self.line_naive_local = found is not None and found[1] is None and zone is None
        if found is None:
            return None
        ts, offset = found
        self.s["last_ts"] = self.s["est_ts"] = ts
        launch = self.s["pending_launch"]
        if offset is not None and zone is None:
            self.s["utc_offset"] = offset
            if launch is not None and launch["local_naive"]:  # dated before the zone was known
                launch.update(ts=launch["ts"] + local_offset(launch["ts"]) - offset, local_naive=False)
        if launch is not None and not launch["dated"]:
            launch.update(ts=ts, dated=True, local_naive=self.line_naive_local)
        return ts

    def at(self) -> float:
        """Time of the current line: its own; else the file's clock; else `clock`."""
        return self.ts_or_default(self.line_time)

    def ts_or_default(self, ts: float | None) -> float:
        if ts is not None:
            return ts
        if self.s["est_ts"] is not None:
            return self.s["est_ts"]
        return self.clock()

    def advance_steps(self, step: int, seconds: float | None, unprinted: float | None = None) -> float:
        """Time of a step line that says how long its step took: its own; else the file's clock
        moved on by `seconds`, plus `unprinted` (default: `seconds`) for each step since the last
        one it was moved to that the trainer did not print (logging every 10th step); nothing
        for a step repeated by another rank; one step when unknown or the counter went back."""
        last = self.s["est_step"]
        steps = 1 if last is None or step < last else step - last
        self.s["est_step"] = step
        if seconds is not None and steps:
            self._advance(seconds + (steps - 1) * (seconds if unprinted is None else unprinted))
        return self.at()

    def advance_elapsed(self, elapsed: float) -> None:
        """A running elapsed-time figure (a progress bar's): the file's clock moves on by its
        growth since the last one; a figure that went back (a new bar) counts from zero."""
        last = self.s["elapsed"]
        self.s["elapsed"] = elapsed
        self._advance(elapsed - last if last is not None and elapsed >= last else elapsed)

    def _advance(self, seconds: float) -> None:
        """A line with its own stamp already set the clock; without an anchor there is none."""
        if self.line_time is None and self.s["est_ts"] is not None and 0 <= seconds <= MAX_ADVANCE_S:
            self.s["est_ts"] += seconds

    @property
    def attempt(self) -> str:
        return f"{self.attempt_prefix}#{self.s['attempt']}"

    def new_attempt(self) -> None:
        """Later records belong to the next attempt (only if this one has any)."""
        if self.s["started"]:
            self.s["attempt"] += 1
        self.s.update(started=False, last_step=None, ended=[], pending_launch=None)

    def adopt_run_id(self, run_id: str) -> None:
        """A run id found in the log is used if it comes before this file's first record."""
        if not self.s["started"] and self.s["attempt"] == 1 and run_id:
            self.s["run_id"] = run_id

    def record(self, kind: str, ts: float, *, step: int | None = None, rank: int = 0,
               host: str | None = None, **fields: Any) -> list[Record]:
        return self._record(kind, ts, step, rank, host, fields)

    def _record(self, kind: str, ts: float, step: int | None, rank: int, host: str | None,
                fields: dict[str, Any]) -> list[Record]:
        out = self.flush_launch() if kind != "launch" else []
        self.s["started"] = True
        out.append(Record(kind=kind, run=self.s["run_id"] or self.run, attempt=self.attempt, ts=ts,
                          host=self.host if host is None else host, rank=rank, step=step,
                          fields=fields))
        return out

    def step_record(self, step: int, ts: float, rank: int = 0, host: str | None = None,
                    **fields: Any) -> list[Record]:
        """A `step` record, after the attempt rules: backwards → new attempt; repeat → dropped."""
        return self.step_fields(step, ts, fields, rank, host)

    def step_fields(self, step: int, ts: float, fields: dict[str, Any], rank: int = 0,
                    host: str | None = None) -> list[Record]:
        """`step_record` taking the fields as a dict the record then owns (no copy: the hot
        path of a large backlog)."""
        _check_step(step)
        if not _RECORD_ARGUMENTS.isdisjoint(fields):
            raise BadLine(f"a figure named like a record's own field: {sorted(_RECORD_ARGUMENTS & fields.keys())}")
        last = self.s["last_step"]
        if last is not None and step < last:
            self.new_attempt()
        elif last is not None and step == last:
            return []
        self.s["last_step"] = step
        fields.setdefault("loss", None)
        world = self.s["world_size"]
        if world:
            if fields.get("tokens_per_s") is None and fields.get("tgs") is not None:
                fields["tokens_per_s"] = fields["tgs"] * world
            elif fields.get("tgs") is None and fields.get("tokens_per_s") is not None:
                fields["tgs"] = fields["tokens_per_s"] / world
        return self._record("step", ts, step, rank, host, fields)

    def eval_record(self, step: int, ts: float, rank: int = 0, **fields: Any) -> list[Record]:
        _check_step(step)
        last = self.s["last_step"]
        if last is not None and step < last:
            self.new_attempt()
        fields.setdefault("val_loss", None)
        return self.record("eval", ts, step=step, rank=rank, **fields)

    def end_record(self, kind: str, ts: float, key: str, rank: int = 0, **fields: Any) -> list[Record]:
        """A stop/fault/finish: per attempt, one stop (the first), one fault per cause."""
        tag = kind if kind == "stop" else f"{kind}:{key}"
        if tag in self.s["ended"]:
            return []
        self.s["ended"].append(tag)
        step = fields.pop("step", self.s["last_step"])
        return self.record(kind, ts, step=step, rank=rank, **fields)

    # -- the launch record -------------------------------------------------------------
    def open_launch(self, rank: int = 0, **fields: Any) -> list[Record]:
        """A launch line: a new attempt starts; its record waits for more start-up facts.
        Returns the previous launch record if it was still waiting."""
        out = self.flush_launch()
        self.new_attempt()
        self.s.update(world_size=None, est_step=None)
        launch = dict.fromkeys(LAUNCH_FIELDS)
        launch.update(format=self.name, ts=self.at(), dated=self.line_time is not None,
                      local_naive=self.line_time is not None and self.line_naive_local, rank=rank)
        launch.update(fields)
        self.s["pending_launch"] = launch
        return out

    def update_launch(self, **fields: Any) -> None:
        launch = self.s["pending_launch"]
        if fields.get("world_size"):
            if not 0 < fields["world_size"] <= MAX_WORLD_SIZE:
                raise BadLine(f"world size {fields['world_size']} out of range")
            self.s["world_size"] = fields["world_size"]
        if launch is not None:
            launch.update(fields)

    def flush_launch(self) -> list[Record]:
        launch = self.s["pending_launch"]
        if launch is None:
            return []
        self.s["pending_launch"] = None
        ts, rank = launch.pop("ts"), launch.pop("rank")
        del launch["dated"], launch["local_naive"]
        if launch.get("hosts") and not launch.get("nodes"):
            launch["nodes"] = len(launch["hosts"])
        if zone := self._zone_name():
            launch["timezone"] = zone
        return self.record("launch", ts, rank=rank, **launch)

    def _zone_name(self) -> str | None:
        """The log's zone for the accounting's working hours: the configured `tz`, else the
        offset the file's stamps name, else unknown."""
        if self.tz is not None:
            key = getattr(self.tz, "key", None)
            offset = self.tz.utcoffset(None)
            return key or (None if offset is None else format_offset(offset.total_seconds()))
        learned = self.s["utc_offset"]
        return None if learned is None else format_offset(learned)


_RECORD_ARGUMENTS = frozenset(("self", "kind", "step", "ts", "rank", "host"))
"""Figures that `step_record`'s keywords cannot take (they once failed there with a TypeError)."""


def _check_step(step: Any) -> None:
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < MAX_STEP:
        raise BadLine(f"step {str(step)[:20]!r} is not a step number")


def head_matches(head: list[str], *patterns: re.Pattern[str]) -> int:
    """How many of the (cleaned) head lines match any of the patterns."""
    count = 0
    for raw in head[:500]:
        line = split_rank(clean(raw[:4000]))[1]
        if any(p.search(line) for p in patterns):
            count += 1
    return count
