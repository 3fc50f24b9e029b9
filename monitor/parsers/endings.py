"""How an attempt ended, read the same way from every text format.

- Python tracebacks (per rank, chained ones kept together) become one record when their
  exception line is complete: KeyboardInterrupt → `stop` SIGINT; torchrun's SignalException →
  `stop` with the signal; torchrun's ChildFailedError → its root-cause block decides (SIGTERM/
  SIGINT → `stop`, SIGKILL → `fault` killed); anything else → `fault` with a classified cause:
  `oom` (CUDA out of memory), `node_lost` (a peer's connection or the rendezvous store gone:
  gloo, NCCL, torchrun), `nccl_timeout` (collective/NCCL timeouts), `exception`.
- Single lines: bash's `Killed`, the NCCL watchdog's timeout, a bare CUDA OOM message,
  torchrun's "Received SIGTERM death signal", Slurm's "CANCELLED AT … DUE TO TIME LIMIT",
  the kernel OOM killer as reported by Slurm, and our own JSONL records printed into the log.
An attempt gets at most one `stop` (the first; later ones, such as the shell's "Terminated"
after Slurm's cancel, are echoes) and one `fault` per cause: eight ranks hitting the same OOM
are one fault, while the OOM and the NCCL timeouts it caused on the other ranks stay two.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from monitor.parsers import device_endings
from monitor.parsers.base import BadLine
from monitor.parsers.fields import find_timestamp
from monitor.records import Record

if TYPE_CHECKING:
    from monitor.parsers.text import TextParser

TRACEBACK_START = "Traceback (most recent call last):"
_CHAIN_MARKERS = ("During handling of the above exception, another exception occurred:",
                  "The above exception was the direct cause of the following exception:")
_EXC_RE = re.compile(r"([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)(?::\s*(.*))?")
_HEAD_LINES, _TAIL_LINES, _MAX_FOREIGN = 20, 8, 20
_CHILD_FIELD_RE = re.compile(r"\s+(time|host|rank|exitcode|traceback)\s*: (.*)")
_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 15: "SIGTERM"}
_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

_HINT_RE = re.compile(r"Killed|Terminated|atchdog|collective operation|out of memory|death signal"
                      r"|CANCELLED AT|oom[_-]kill|^\{\"")
_KILLED_RE = re.compile(r"\S.*?: line \d+:\s+\d+ +Killed\b|Killed$")
_TERMINATED_RE = re.compile(r"\S.*?: line \d+:\s+\d+ +Terminated\b|Terminated$|srun: error: .*: Terminated$")
_NCCL_RE = re.compile(r"Watchdog caught collective operation timeout|collective operation timeout")
_OOM_RE = re.compile(r"CUDA out of memory|HIP out of memory")
_DEATH_SIGNAL_RE = re.compile(r"Received (?:Signals\.)?(SIG[A-Z]+|\d{1,3}) death signal")
_SLURM_RE = re.compile(r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT \S+(?: DUE TO ([A-Z ]+?))? \*\*\*")
_SLURM_OOM_RE = re.compile(r"Detected \d+ oom[_-]kill event")


def start_traceback(parser: TextParser, key: str, line: str, ts: float | None) -> None:
    parser.s["tracebacks"][key] = {"phase": "collect", "head": [line], "tail": [], "n": 1,
                                   "exc_type": None, "message": None, "excs": [], "ts": ts,
                                   "foreign": 0, "bars": 0, "child": {}}


def _add(tb: dict[str, Any], line: str) -> None:
    tb["n"] += 1
    if len(tb["head"]) < _HEAD_LINES:
        tb["head"].append(line[:500])
    else:
        tb["tail"] = (tb["tail"] + [line[:500]])[-_TAIL_LINES:]


def continue_traceback(parser: TextParser, key: str, line: str) -> tuple[bool, list[Record]]:
    """Feed a line to this rank's open traceback: (was it part of it, records completed)."""
    tb = parser.s["tracebacks"][key]
    phase = tb["phase"]
    if phase == "collect":
        if not line or line[:1].isspace() or line.startswith(TRACEBACK_START):
            _add(tb, line)
            return True, []
        match = _EXC_RE.fullmatch(line)
        if match and match.group(1).rsplit(".", 1)[-1][:1].isupper():
            tb.update(phase="exc", exc_type=match.group(1), message=(match.group(2) or "")[:1000])
            tb["excs"] = (tb["excs"] + [line[:500]])[-5:]
            _add(tb, line)
            return True, []
        tb["foreign"] += 1  # another process's line interleaved: not ours, keep waiting
        if tb["foreign"] > _MAX_FOREIGN:
            return False, finish_traceback(parser, key)
        return False, []
    if phase == "child":
        _add(tb, line)
        if (match := _CHILD_FIELD_RE.match(line)) and match.group(1) not in tb["child"]:
            tb["child"][match.group(1)] = match.group(2).strip()
        elif line.endswith(" FAILED") and "script" not in tb["child"]:
            tb["child"]["script"] = line[: -len(" FAILED")].strip()
        if line.startswith("===="):
            tb["bars"] += 1
        if tb["bars"] >= 2 or tb["n"] > 200:
            return True, finish_traceback(parser, key)
        return True, []
    if line in _CHAIN_MARKERS or line.startswith(TRACEBACK_START):
        tb["phase"] = "chain" if line in _CHAIN_MARKERS else "collect"
        _add(tb, line)
        return True, []
    if line.startswith("====") and (tb["exc_type"] or "").endswith("ChildFailedError"):
        tb.update(phase="child", bars=1)
        _add(tb, line)
        return True, []
    if not line or line[:1].isspace() or line.startswith(("frame #", "Exception raised from")):
        _add(tb, line)
        return True, []
    return False, finish_traceback(parser, key)


def finish_traceback(parser: TextParser, key: str) -> list[Record]:
    tb = parser.s["tracebacks"].pop(key)
    exc_type = tb["exc_type"] or "UnknownError"
    message = tb["message"] if tb["exc_type"] else "traceback without an exception line"
    lines = tb["head"] + (["…"] if tb["n"] > len(tb["head"]) + len(tb["tail"]) else []) + tb["tail"]
    child = tb["child"]
    ts = tb["ts"]
    if ts is None and "time" in child:
        ts = find_timestamp(child["time"], parser.tz, parser.s["last_ts"])
    ts = parser.ts_or_default(ts)
    kind, cause, message = classify(exc_type, message, "\n".join(lines), child)
    host = child["host"] if child.get("host") else None
    rank = int(key)
    child_rank = child.get("rank", "").split(" ", 1)[0]
    if child_rank.isdigit() and len(child_rank) <= 9:
        rank = int(child_rank)
    if kind == "stop":
        return parser.end_record("stop", ts, cause, rank=rank, host=host, reason=cause,
                                 message=f"{exc_type}: {message}"[:1000])
    return parser.end_record("fault", ts, cause, rank=rank, host=host, exc_type=exc_type,
                             message=message, traceback="\n".join(lines)[:8000], cause=cause)


def _signal_name(text: str) -> str | None:
    match = re.search(r"(?:signal:? |Signal |exitcode\s*: -)(\d{1,3})\b", text)
    return _SIGNALS.get(int(match.group(1)), f"signal {match.group(1)}") if match else None


def classify(exc_type: str, message: str, text: str, child: dict[str, str]) -> tuple[str, str, str]:
    """(kind, cause-or-reason, message) of a finished traceback."""
    short = exc_type.rsplit(".", 1)[-1]
    if short == "KeyboardInterrupt":
        return "stop", "SIGINT", message
    if short == "SignalException":
        signal = _signal_name(message) or "signal"
        return ("stop", signal, message) if signal in _STOP_SIGNALS else ("fault", "killed", message)
    if short == "ChildFailedError" and child:
        signal = _signal_name(child.get("traceback", "")) or _signal_name(f"exitcode : {child.get('exitcode', '')}")
        first = {k: v.split(" ", 1)[0] for k, v in child.items() if k in ("rank", "exitcode")}
        message = (f"{child.get('script', 'worker')} failed: rank {first.get('rank', '?')} on "
                   f"{child.get('host', '?')}, exit code {first.get('exitcode', '?')}")
        if signal in _STOP_SIGNALS:
            return "stop", signal, message
        if signal == "SIGKILL":
            return "fault", "killed", message
    return "fault", cause_of(f"{exc_type}: {message}\n{text}"), message


_NODE_LOST_RE = re.compile(
    r"connection (?:closed|reset) by (?:remote )?peer"  # gloo's pair to a dead peer; NCCL's socket transport
    r"|ncclremoteerror|remote process exited"  # NCCL: the peer process or its network went away
    r"|rendezvousconnectionerror|connection to the c10d store has failed")  # torchrun: the rendezvous host went away


def cause_of(text: str) -> str:
    lowered = text.lower()
    if "out of memory" in lowered or "outofmemoryerror" in lowered:
        return "oom"
    if _NODE_LOST_RE.search(lowered):
        return "node_lost"
    if ("collective operation timeout" in lowered or "watchdog" in lowered and "timeout" in lowered
            or "nccl" in lowered and ("timeout" in lowered or "timed out" in lowered)):
        return "nccl_timeout"
    return device_endings.cause_of(lowered) or "exception"


def detect(parser: TextParser, line: str, rank: int) -> list[Record]:
    """End-of-attempt evidence on a single line (not inside a traceback)."""
    if not _HINT_RE.search(line):
        return device_endings.detect(parser, line, rank)
    if line.startswith('{"'):
        return _own_record(line)
    at = parser.at()
    body = line.strip()
    if _KILLED_RE.match(body):
        return parser.end_record("fault", at, "killed", rank=rank, exc_type="Killed",
                                 message=body[:1000], cause="killed")
    if _TERMINATED_RE.match(body):
        return parser.end_record("stop", at, "SIGTERM", rank=rank, reason="SIGTERM", message=body[:1000])
    if match := _NCCL_RE.search(line):
        return parser.end_record("fault", at, "nccl_timeout", rank=rank, exc_type="CollectiveTimeout",
                                 message=line[match.start():][:1000], cause="nccl_timeout")
    if _OOM_RE.search(line):
        return parser.end_record("fault", at, "oom", rank=rank, exc_type="OutOfMemoryError",
                                 message=body[:1000], cause="oom")
    if match := _DEATH_SIGNAL_RE.search(line):
        signal = match.group(1)
        signal = _SIGNALS.get(int(signal), f"signal {signal}") if signal.isdigit() else signal
        return parser.end_record("stop", at, signal, rank=rank, reason=signal, message=body[:1000])
    if match := _SLURM_RE.search(line):
        why = (match.group(1) or "").strip()
        if why == "NODE FAILURE":
            return parser.end_record("fault", at, "node_lost", rank=rank, exc_type="SlurmNodeFailure",
                                     message=body[:1000], cause="node_lost")
        reason = {"TIME LIMIT": "time_limit", "PREEMPTION": "preempted"}.get(why, "cancelled")
        return parser.end_record("stop", at, reason, rank=rank, reason=reason, message=body[:1000])
    if _SLURM_OOM_RE.search(line):
        return parser.end_record("fault", at, "oom", rank=rank, exc_type="OOMKill",
                                 message=body[:1000], cause="oom")
    return device_endings.detect(parser, line, rank)


def _own_record(line: str) -> list[Record]:
    from monitor.parsers.jsonl import parse_event

    try:
        return [Record.from_event(parse_event(line))]
    except BadLine:
        return []
