"""The run report as a list of blocks (headings, text, tables, charts), which the Markdown and
the HTML renderers each write out: one place decides what the report says.

Every string that came from a log (run names, causes, devices, alert messages) is kept raw here
and escaped by the renderer for its surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

import numpy as np

from monitor.accounting import parse_timezone
from monitor.ledger import summary_lines, table_rows
from monitor.projections.compare import ComparisonRow, called_out
from monitor.projections.eta import Eta
from monitor.projections.summary import RunSummary

MAX_POINTS = 2000
MAX_TABLE_ROWS = 25


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str
    warning: bool = False


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    flagged: frozenset[int] = frozenset()
    """row indexes to call out"""


@dataclass(frozen=True)
class Chart:
    """x/y lines (one per name), or a pie when kind == 'pie' (labels in `x`, values in `y`)."""

    title: str
    kind: str
    x_title: str
    y_title: str
    lines: dict[str, tuple[list, list]] = field(default_factory=dict)
    marks: list[tuple[object, float, str]] = field(default_factory=list)
    """(x, y, label) points to mark: the loss minimum, a regression"""
    x_is_time: bool = False


Block = Heading | Text | Table | Chart


def _thin(count: int, most: int = MAX_POINTS) -> np.ndarray:
    """Indexes of at most `most` evenly spaced items, the first and the last included."""
    if count <= most:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, most).astype(np.int64))


class Clock:
    """Times in the run's timezone (the ledger's), as the ledger prints them."""

    def __init__(self, timezone: str) -> None:
        self.tz = parse_timezone(timezone)
        self.name = timezone

    def __call__(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def iso(self, ts: np.ndarray) -> list[str]:
        return [datetime.fromtimestamp(float(t), self.tz).isoformat() for t in ts]


def _figures_table(summary: RunSummary, sections: Sequence[str]) -> Table:
    return Table(("figure", "value"), [(f.label, f.text()) for f in summary.figures if f.section in sections])


def _loss_chart(summary: RunSummary, other: RunSummary | None) -> Chart | None:
    lines, marks = {}, []
    for name, s in (("this run", summary), ("other run", other)):
        if s is None:
            continue
        loss = s.series.figures["loss"]
        finite = np.flatnonzero(np.isfinite(loss))
        if not len(finite):
            continue
        keep = finite[_thin(len(finite))]
        lines[name] = (s.series.step[keep].tolist(), loss[keep].tolist())
        if s is summary:
            at = finite[np.argmin(loss[finite])]
            marks.append((int(s.series.step[at]), float(loss[at]), "minimum"))
    return Chart("Loss", "line", "step", "loss", lines, marks) if lines else None


def _throughput_charts(summary: RunSummary, clock: Clock) -> list[Chart]:
    s = summary.series
    warm = np.ones(len(s), dtype=bool)  # each attempt's first step (compilation) would flatten the chart
    warm[0:1] = False
    warm[1:] = s.attempt[1:] == s.attempt[:-1]
    out = []
    for figure, title, scale in (("tokens_per_s", "Throughput (tokens/s)", 1.0), ("mfu", "MFU (%)", 100.0)):
        values = s.figures[figure]
        finite = np.flatnonzero(np.isfinite(values) & warm)
        if not len(finite):
            continue
        keep = finite[_thin(len(finite))]
        marks = [(clock.iso(np.array([r.ts]))[0], r.after, f"regression at step {r.step:,}: −{r.drop:.0%}")
                 for r in summary.regressions if figure == "tokens_per_s" and r.unit == "tokens/s"]
        out.append(Chart(title, "line", f"time ({clock.name})", title, {"this run": (clock.iso(s.ts[keep]),
                                                                                    (values[keep] * scale).tolist())},
                         marks, x_is_time=True))
    return out


def _validation(summary: RunSummary) -> list[Block]:
    if not summary.evals:
        return []
    blocks: list[Block] = [Heading("Validation and evals"), _figures_table(summary, ("validation",))]
    for name, points in summary.evals.items():
        keep = _thin(len(points))
        blocks.append(Chart(name, "line", "step", name, {name: ([points[i][0] for i in keep], [points[i][1] for i in keep])}))
    steps = sorted({step for points in summary.evals.values() for step, _ in points})
    shown = [steps[i] for i in _thin(len(steps), MAX_TABLE_ROWS)]
    by_metric = {name: dict(points) for name, points in summary.evals.items()}
    rows = [(f"{step:,}",) + tuple(f"{by_metric[n][step]:.4f}" if step in by_metric[n] else "" for n in by_metric)
            for step in shown]
    blocks.append(Table(("step",) + tuple(by_metric), rows))
    return blocks


def _regression_text(summary: RunSummary, clock: Clock) -> list[Block]:
    if not summary.regressions:
        return [Text("No throughput regression found (a drop of 10 % or more that persisted).")]
    return [Text(f"Throughput fell from {r.before:,.0f} to {r.after:,.0f} {r.unit} (−{r.drop:.1%}) at step "
                 f"{r.step:,}, {clock(r.ts)} ({clock.name}).", warning=True) for r in summary.regressions]


def _checkpoints(summary: RunSummary, clock: Clock) -> list[Block]:
    blocks: list[Block] = [Heading("Checkpoints"), _figures_table(summary, ("checkpoints",))]
    cps = summary.series.checkpoints
    if cps:
        keep = _thin(len(cps), MAX_TABLE_ROWS)
        rows = [(f"{cps[i].step:,}" if cps[i].step is not None else "—", clock(cps[i].ts),
                 f"{(cps[i].fields.get('bytes') or 0) / 2**30:,.2f} GiB", f"{cps[i].fields.get('blocked_s') or 0:.1f} s",
                 str(cps[i].fields.get("path") or "")) for i in keep]
        blocks.append(Table(("step", "time", "size", "blocked", "path"), rows))
    return blocks


def _stability(summary: RunSummary, alerts: Sequence) -> list[Block]:
    ledger = summary.ledger
    pie = ledger.pie_days
    labels = {"training": "training", "interrupted_or_waiting": "interrupted / waiting",
              "nobody_at_work": "nobody at work", "maintenance": "planned maintenance"}
    blocks: list[Block] = [
        Heading("Stability: launches, faults and where the time went"),
        Table(("figure", "value"), [(name, value) for name, value in summary_lines(ledger)]),
        Chart("Where the time went (days)", "pie", "", "", {"days": ([labels[k] for k in pie],
                                                                  [round(v, 2) for v in pie.values()])}),
        Heading("The ledger", 3),
        Table(("time", "duration", "state", "data batch", "nodes", "cause"),
              [(c["start"], c["duration"], c["state"], str(c["data_batch"]), str(c["nodes"]), c["cause"])
               for c in table_rows(ledger)]),
    ]
    if alerts:
        blocks += [Heading("Alerts", 3), Table(("time", "kind", "severity", "message"),
                                               [(Clock(summary.ledger.timezone)(a.ts), a.kind, a.severity, a.message) for a in alerts])]
    else:
        blocks.append(Text("No alerts were raised for this run."))
    return blocks


def _eta(eta: Eta, clock: Clock) -> list[Block]:
    if eta.finished:
        return []
    return [Heading("When it will finish"),
            Text(f"Finish {clock(eta.finish_p50)} (P10 {clock(eta.finish_p10)}, P90 {clock(eta.finish_p90)}, {clock.name})."),
            Table(("term", "value", "what it is"), list(eta.terms))]


def _comparison(summary: RunSummary, other: RunSummary, rows: list[ComparisonRow]) -> list[Block]:
    worse = called_out(rows)
    blocks: list[Block] = [Heading(f"Compared with {other.run}")]
    blocks += [Text(f"{row.label}: {row.this} against {row.other} ({row.change_text()})", warning=True) for row in worse
               if row.section == "throughput"]
    blocks.append(Table(("figure", summary.run, other.run, "change"),
                        [(r.label, r.this, r.other, r.change_text()) for r in rows],
                        frozenset(i for i, r in enumerate(rows) if r.worse)))
    return blocks


def report_blocks(summary: RunSummary, *, other: RunSummary | None = None,
                  comparison: list[ComparisonRow] | None = None, eta: Eta | None = None,
                  alerts: Sequence = ()) -> list[Block]:
    """The whole report of `summary`'s run, in order."""
    clock = Clock(summary.ledger.timezone)
    ledger = summary.ledger
    blocks: list[Block] = [
        Heading(f"Run report: {summary.run}", 1),
        Text(f"{clock(ledger.start)} → {clock(ledger.end)} ({clock.name}); written from the run's logs by trainledger."),
        Heading("Overview"), _figures_table(summary, ("overview",)),
        Heading("Loss"), _figures_table(summary, ("loss",)),
    ]
    blocks += [c for c in [_loss_chart(summary, other)] if c]
    blocks += _validation(summary)
    blocks += [Heading("Throughput and MFU"), *_regression_text(summary, clock),
               _figures_table(summary, ("throughput",)), *_throughput_charts(summary, clock),
               Heading("Memory and tokens per step"), Table(("figure", "value"), [
                   (f.label, f.text()) for f in summary.figures if f.label in ("peak memory", "tokens per step")])]
    blocks += _checkpoints(summary, clock)
    blocks += _stability(summary, alerts)
    if eta is not None:
        blocks += _eta(eta, clock)
    if other is not None and comparison is not None:
        blocks += _comparison(summary, other, comparison)
    return blocks
