"""Figures built from the states: the pie, goodput, ETTR, counts, mean times, and the
per-attempt ledger rows (the ling-1b team's hand-kept table, written by the rules)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from monitor.accounting.attempts import Attempt
from monitor.accounting.overlays import Wasted, checkpoint_stall_s, describe_gap, restore_gaps, wasted_progress
from monitor.accounting.states import DOWNTIME_OF_END, STATES, Outcome, Segment, Timeline
from monitor.records import Record

DAY = 86400.0
INTERRUPTED = ("fault", "waiting", "manual", "startup", "stalled")


@dataclass(frozen=True)
class Relaunch:
    """One downtime followed by a new attempt: where its time went."""

    after_attempt: int
    begin: float
    noticed: float
    launch: float
    first_step: float

    @property
    def to_notice(self) -> float:
        return self.noticed - self.begin

    @property
    def to_relaunch(self) -> float:
        return max(self.launch - self.noticed, 0.0)

    @property
    def startup(self) -> float:
        return self.first_step - self.launch


@dataclass(frozen=True)
class LedgerRow:
    start: float
    duration: float
    state: str
    data_batch: str | None
    nodes: int | None
    cause: str
    attempt: int
    off_hours_s: float = 0.0


@dataclass
class Ledger:
    run: str
    start: float
    end: float
    live: bool
    timezone: str
    seconds: dict[str, float]
    launches: int
    faults: int
    manual_stops: int
    wasted: list[Wasted]
    checkpoint_stall_s: float
    restore_gaps: dict[int, list[str]]
    relaunches: list[Relaunch]
    rows: list[LedgerRow]
    current_state: str | None = None
    attempt_ids: list[str] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    """the states, in time order, tiling [start, end]"""

    @property
    def wall_s(self) -> float:
        return self.end - self.start

    @property
    def counted_s(self) -> float:
        """Wall time without planned maintenance: the denominator of every ratio."""
        return self.wall_s - self.seconds["maintenance"]

    @property
    def pie_days(self) -> dict[str, float]:
        pie = {"training": self.seconds["training"] / DAY,
               "interrupted_or_waiting": sum(self.seconds[s] for s in INTERRUPTED) / DAY,
               "nobody_at_work": self.seconds["off_hours"] / DAY}
        if self.seconds["maintenance"]:
            pie["maintenance"] = self.seconds["maintenance"] / DAY
        return pie

    @property
    def wasted_s(self) -> float:
        return sum(w.seconds for w in self.wasted)

    @property
    def wasted_steps(self) -> int:
        return sum(w.to_step - w.from_step + 1 for w in self.wasted)

    @property
    def goodput(self) -> float:
        good = self.seconds["training"] - self.wasted_s - self.checkpoint_stall_s
        return max(good, 0.0) / self.counted_s if self.counted_s > 0 else 0.0

    @property
    def ettr(self) -> float:
        return self.seconds["training"] / self.counted_s if self.counted_s > 0 else 0.0

    @property
    def mtbf_s(self) -> float | None:
        """Time the processes were up (launch to end of life), per fault."""
        up = sum(self.seconds[s] for s in ("training", "stalled", "startup"))
        return up / self.faults if self.faults else None

    def mean_relaunch(self) -> dict[str, float] | None:
        if not self.relaunches:
            return None
        n = len(self.relaunches)
        parts = {"to_notice_s": sum(r.to_notice for r in self.relaunches) / n,
                 "to_relaunch_s": sum(r.to_relaunch for r in self.relaunches) / n,
                 "startup_s": sum(r.startup for r in self.relaunches) / n}
        parts["total_s"] = sum(r.first_step - r.begin for r in self.relaunches) / n
        return parts

    def to_dict(self) -> dict:
        return {
            "run": self.run, "start": self.start, "end": self.end, "live": self.live,
            "timezone": self.timezone, "current_state": self.current_state,
            "wall_s": self.wall_s, "counted_s": self.counted_s, "seconds": self.seconds,
            "pie_days": self.pie_days, "goodput": self.goodput, "ettr": self.ettr,
            "launches": self.launches, "faults": self.faults, "manual_stops": self.manual_stops,
            "mtbf_s": self.mtbf_s, "mean_relaunch": self.mean_relaunch(),
            "wasted": {"seconds": self.wasted_s, "steps": self.wasted_steps,
                       "by_attempt": [asdict(w) for w in self.wasted]},
            "checkpoint_stall_s": self.checkpoint_stall_s,
            "restore_gaps": [{"attempt": self.attempt_ids[i] if self.attempt_ids else i, "missing": m}
                             for i, m in self.restore_gaps.items()],
            "rows": [asdict(r) for r in self.rows],
        }


def hours(seconds: float) -> str:
    """'6.4 h', or whole minutes / seconds for short spans."""
    if seconds >= 360:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def evidence(outcome: Outcome) -> str:
    """The classified end reason and the first line of its evidence."""
    record = outcome.attempt.end_record
    if outcome.silent or record is None:
        a = outcome.attempt
        where = f"step {a.steps[-1]}" if a.steps else "launch"
        return f"fault: silence (no record after {where})"
    f = record.fields
    if record.kind == "fault":
        text = f"{f.get('exc_type', 'Error')}: {f.get('message', '')}".strip()
        return f"fault: {_fault_cause(record, outcome.attempt)} — {text.splitlines()[0] if text else ''}"
    if record.kind == "stop":
        return f"manual: {f.get('reason', 'stop')}"
    return f"finished: {f.get('reason', 'done')} at step {record.step}"


def _fault_cause(record: Record, attempt: Attempt) -> str:
    """The cause, and in a job of several nodes the node: the one lost (`node_lost` names it, and
    the node that saw it go), else the one whose record it is."""
    cause = record.fields.get("cause") or "exception"
    lost = record.fields.get("lost_hosts")
    if lost:
        cause += ": " + ", ".join(map(str, lost))
    if record.host and len((attempt.launch or {}).get("hosts") or ()) > 1:
        cause += f" (seen on {record.host})" if lost else f" on {record.host}"
    return cause


def _relaunches(timeline: Timeline, attempts: list[Attempt]) -> list[Relaunch]:
    out = []
    for o in timeline.outcomes:
        nxt = attempts[o.attempt.index + 1] if o.attempt.index + 1 < len(attempts) else None
        if o.down_begin is None or nxt is None or nxt.first_step_ts is None:
            continue
        out.append(Relaunch(o.attempt.index, o.down_begin, o.noticed, nxt.start, nxt.first_step_ts))
    return out


def _rows(timeline: Timeline, attempts: list[Attempt], gaps: dict[int, list[str]]) -> list[LedgerRow]:
    off = {}
    for s in timeline.segments:
        if s.state == "off_hours":
            off[s.attempt] = off.get(s.attempt, 0.0) + s.end - s.start
    rows = []
    for o in timeline.outcomes:
        a = o.attempt
        life_start = a.first_step_ts if a.first_step_ts is not None else a.start
        if a.index == 0 and life_start > a.start:
            rows.append(LedgerRow(a.start, life_start - a.start, "startup", a.data_batch, a.nodes, "launch", 0))
        life_end = o.down_begin if o.down_begin is not None else (o.next_start or timeline.end)
        cause = describe_gap(gaps[a.index]) if a.index in gaps else ""
        if a.split_from_backwards:
            cause = "; ".join(filter(None, ["step counter went back: new attempt", cause]))
        rows.append(LedgerRow(life_start, life_end - life_start, "training" if a.has_steps else "startup",
                              a.data_batch, a.nodes, cause, a.index))
        if o.down_begin is None:
            continue
        nxt = attempts[a.index + 1] if a.index + 1 < len(attempts) else None
        down_end = timeline.end if nxt is None else (nxt.first_step_ts or nxt.start)
        if down_end <= o.down_begin and (nxt is not None or o.end == "finished"):
            continue  # a run's final fault or stop keeps its row, to show why it ended
        off_s = off.get(a.index, 0.0)
        cause = evidence(o) + (f" (first {hours(off_s)} off-hours)" if off_s else "")
        rows.append(LedgerRow(o.down_begin, down_end - o.down_begin, DOWNTIME_OF_END[o.end],
                              nxt.data_batch if nxt else None, None, cause, a.index, off_s))
    return rows


def ledger(run: str, attempts: list[Attempt], timeline: Timeline, timezone: str) -> Ledger:
    seconds = dict.fromkeys(STATES, 0.0)
    for s in timeline.segments:
        seconds[s.state] += s.end - s.start
    ends = [o.end for o in timeline.outcomes]
    gaps = restore_gaps(attempts)
    current = timeline.segments[-1].state if timeline.live and timeline.segments else None
    return Ledger(
        run=run, start=timeline.start, end=timeline.end, live=timeline.live, timezone=timezone,
        seconds=seconds, launches=len(attempts), faults=ends.count("fault"),
        manual_stops=ends.count("manual"), wasted=wasted_progress(attempts, timeline),
        checkpoint_stall_s=checkpoint_stall_s(attempts), restore_gaps=gaps,
        relaunches=_relaunches(timeline, attempts), rows=_rows(timeline, attempts, gaps),
        current_state=current, attempt_ids=[a.attempt_id for a in attempts], segments=timeline.segments,
    )
