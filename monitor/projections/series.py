"""A run's step figures as columns, and the launch facts projections need.

One pass over the records (in ts order) keeps, per attempt, only the step records of the rank
that logged the attempt's first step (as the accounting does), so eight ranks logging the same
step count once. Figures a format does not log are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from monitor.records import Record
from monitor.store.columns import StepColumns

NAN = math.nan
FIGURES = ("step_time", "tokens_per_s", "tgs", "mfu", "loss", "peak_mem_bytes")


@dataclass
class StepSeries:
    """Columns over the counted step records, in ts order. `attempt` is the attempt's index in
    order of first appearance; `nodes` the node count its launch named (0 when unknown)."""

    ts: np.ndarray
    step: np.ndarray
    attempt: np.ndarray
    nodes: np.ndarray
    figures: dict[str, np.ndarray]
    evals: list[Record] = field(default_factory=list)
    checkpoints: list[Record] = field(default_factory=list)
    launches: list[Record] = field(default_factory=list)
    finish: Record | None = None
    peak_mem_reported: float | None = None
    total_steps_logged: int | None = None
    """the run's configured steps as its step lines state them (nanochat's `step 00042/12000`)"""
    tokens_logged: float | None = None
    """`num_consumed_tokens` of the newest step record that has it"""
    """a peak memory the log states once (nanochat's closing line, on its finish record)"""

    def __len__(self) -> int:
        return len(self.ts)

    def figure(self, name: str) -> np.ndarray:
        return self.figures[name]

    def has(self, name: str) -> bool:
        column = self.figures[name]
        return bool(len(column)) and not np.isnan(column).all()

    def launch_fact(self, name: str) -> Any:
        """The newest launch record's value of `name` that is not null (launches of other
        trainers' logs leave most facts null)."""
        for launch in reversed(self.launches):
            value = launch.fields.get(name)
            if value is not None:
                return value
        return None

    def measured_step_times(self) -> np.ndarray:
        """Seconds per optimizer step, one per record after each attempt's first: the record's
        own `step_time` where the log has it, else the gap to the previous record over the steps
        between them (a log that writes every 30th step)."""
        same = self.attempt[1:] == self.attempt[:-1]
        dsteps = np.diff(self.step)
        keep = same & (dsteps > 0)
        logged = self.figures["step_time"][1:]
        derived = np.diff(self.ts) / np.where(dsteps > 0, dsteps, 1)
        values = np.where(np.isnan(logged), derived, logged)
        return values[keep & np.isfinite(values) & (values > 0)]


def step_series(records: Iterable[Record]) -> StepSeries:
    """The step columns and the launch, eval, checkpoint and finish records of one run."""
    ts: list[float] = []
    steps: list[int] = []
    attempts: list[int] = []
    nodes: list[int] = []
    columns: dict[str, list[float]] = {name: [] for name in FIGURES}
    index: dict[str, int] = {}
    step_rank: dict[str, int] = {}
    node_count: dict[str, int] = {}
    series = StepSeries(np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), {})
    appenders = [(name, columns[name].append) for name in FIGURES]
    for r in records:
        kind = r.kind
        if kind == "step":
            if r.step is None or step_rank.setdefault(r.attempt, r.rank) != r.rank:
                continue
            f = r.fields
            if "total_steps" in f:
                series.total_steps_logged = f["total_steps"]
            if "num_consumed_tokens" in f:
                series.tokens_logged = f["num_consumed_tokens"]
            ts.append(r.ts)
            steps.append(r.step)
            attempts.append(index.setdefault(r.attempt, len(index)))
            nodes.append(node_count.get(r.attempt, 0))
            for name, append in appenders:
                value = f.get(name)
                if value is None and name == "loss":
                    value = f.get("loss_smoothed")
                append(NAN if value is None else value)
        elif kind == "launch":
            series.launches.append(r)
            index.setdefault(r.attempt, len(index))
            node_count[r.attempt] = int(r.fields.get("nodes") or 0)
        elif kind == "eval":
            series.evals.append(r)
        elif kind == "checkpoint":
            series.checkpoints.append(r)
        elif kind == "finish":
            series.finish = r
            if r.fields.get("peak_mem_bytes") is not None:
                series.peak_mem_reported = float(r.fields["peak_mem_bytes"])
    series.ts = np.asarray(ts, dtype=np.float64)
    series.step = np.asarray(steps, dtype=np.int64)
    series.attempt = np.asarray(attempts, dtype=np.int64)
    series.nodes = np.asarray(nodes, dtype=np.int64)
    series.figures = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
    return series


def series_from_columns(columns: StepColumns, events: Iterable[Record]) -> StepSeries:
    """The same StepSeries as `step_series(records)`, from a run's step columns and its other
    records: the fast path for a long run (no Record per step)."""
    series = step_series(events)
    codes = columns.attempt
    first_rows = np.unique(codes, return_index=True)[1] if len(codes) else np.empty(0, np.int64)
    step_rank = np.zeros(len(columns.attempts), dtype=np.int64)
    step_rank[codes[first_rows]] = columns.rank[first_rows]
    keep = columns.rank == step_rank[codes] if len(codes) else np.empty(0, dtype=bool)
    nodes_of = {launch.attempt: int(launch.fields.get("nodes") or 0) for launch in series.launches}
    series.ts, series.step, series.attempt = columns.ts[keep], columns.step[keep], codes[keep]
    series.nodes = np.asarray([nodes_of.get(name, 0) for name in columns.attempts], dtype=np.int64)[codes[keep]] \
        if len(codes) else np.empty(0, np.int64)
    series.figures = {name: columns.figures[name][keep] for name in FIGURES}
    tokens = columns.figures["num_consumed_tokens"][keep]
    logged = np.flatnonzero(np.isfinite(tokens))
    series.tokens_logged = float(tokens[logged[-1]]) if len(logged) else None
    series.total_steps_logged = columns.total_steps_logged
    return series


@dataclass(frozen=True)
class Spread:
    """A robust summary of a sample: median, MAD-based standard deviation, P10 and P90."""

    median: float
    sd: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, values: np.ndarray) -> Spread | None:
        if not len(values):
            return None
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        p10, p90 = np.percentile(values, [10, 90])
        return cls(median, 1.4826 * mad, float(p10), float(p90), len(values))

    def to_dict(self) -> dict:
        return {"median": self.median, "sd": self.sd, "p10": self.p10, "p90": self.p90, "n": self.n}


RECENT_STEPS = 1000


def recent_step_time(series: StepSeries, window: int = RECENT_STEPS) -> Spread | None:
    """The step time now: a robust summary of the newest `window` measured step times."""
    return Spread.of(series.measured_step_times()[-window:])
