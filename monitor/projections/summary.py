"""The figures of one run that the report prints and `compare_runs` sets side by side (the
nanochat report's overview, loss, validation, throughput, memory, checkpoints and stability).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from monitor.accounting import Ledger
from monitor.projections.eta import tokens_per_step
from monitor.projections.regressions import Regression, find_throughput_regressions
from monitor.projections.series import StepSeries, step_series
from monitor.records import Record

LOWER_IS_BETTER = ("loss", "bpb", "perplexity")


@dataclass(frozen=True)
class Figure:
    section: str
    label: str
    value: float | str | None
    fmt: str = "{:,.4g}"
    better: str | None = None
    """'higher' or 'lower' when a change has a direction worth calling out"""

    def text(self) -> str:
        if self.value is None:
            return "—"
        return self.value if isinstance(self.value, str) else self.fmt.format(self.value)


@dataclass
class RunSummary:
    run: str
    series: StepSeries
    ledger: Ledger
    regressions: list[Regression]
    evals: dict[str, list[tuple[int, float]]]
    """metric → (step, value) in order"""
    figures: list[Figure] = field(default_factory=list)

    def figure(self, label: str) -> Figure | None:
        return next((f for f in self.figures if f.label == label), None)


def _eval_series(evals: list[Record]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for r in evals:
        for name, value in r.fields.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and r.step is not None:
                out.setdefault(name, []).append((r.step, float(value)))
    return out


def _lower_is_better(name: str) -> bool:
    return any(word in name for word in LOWER_IS_BETTER)


def _median(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else None


def summarize(records: Sequence[Record] | StepSeries, ledger: Ledger) -> RunSummary:
    """Every figure of `ledger`'s run (its records, or their `step_series`)."""
    series = records if isinstance(records, StepSeries) else step_series(records)
    evals = _eval_series(series.evals)
    summary = RunSummary(ledger.run, series, ledger, find_throughput_regressions(series), evals)
    summary.figures = _overview(series, ledger) + _loss(series) + _validation(evals) + \
        _throughput(series, summary.regressions) + _stability(series, ledger)
    return summary


def _overview(series: StepSeries, ledger: Ledger) -> list[Figure]:
    per_step = tokens_per_step(series)
    steps = int(series.step[-1]) if len(series) else None
    tokens = series.tokens_logged or (steps * per_step if steps and per_step else None)
    params = series.launch_fact("n_params")
    return [
        Figure("overview", "model parameters", params, "{:,.0f}"),
        Figure("overview", "steps", steps, "{:,}"),
        Figure("overview", "tokens", tokens, "{:,.0f}"),
        Figure("overview", "tokens per step", per_step, "{:,.0f}"),
        Figure("overview", "wall time", ledger.wall_s / 3600, "{:,.2f} h"),
        Figure("overview", "training time", ledger.seconds["training"] / 3600, "{:,.2f} h"),
        Figure("overview", "hardware", series.launch_fact("device")),
        Figure("overview", "world size", series.launch_fact("world_size"), "{:,}"),
        Figure("overview", "nodes", series.launch_fact("nodes"), "{:,}"),
    ]


def _loss(series: StepSeries) -> list[Figure]:
    loss = series.figures["loss"]
    finite = np.flatnonzero(np.isfinite(loss))
    if not len(finite):
        return []
    at = finite[np.argmin(loss[finite])]
    return [Figure("loss", "loss, first", float(loss[finite[0]]), "{:.4f}", "lower"),
            Figure("loss", "loss, last", float(loss[finite[-1]]), "{:.4f}", "lower"),
            Figure("loss", "loss, minimum", float(loss[at]), "{:.4f}", "lower"),
            Figure("loss", "loss minimum at step", int(series.step[at]), "{:,}")]


def _validation(evals: dict[str, list[tuple[int, float]]]) -> list[Figure]:
    out = []
    for name, points in evals.items():
        values = [v for _, v in points]
        best = min(points, key=lambda p: p[1]) if _lower_is_better(name) else max(points, key=lambda p: p[1])
        direction = "lower" if _lower_is_better(name) else "higher"
        out += [Figure("validation", f"{name}, first", values[0], better=direction),
                Figure("validation", f"{name}, last", values[-1], better=direction),
                Figure("validation", f"{name}, best", best[1], better=direction),
                Figure("validation", f"{name}, best at step", best[0], "{:,}")]
    return out


def _throughput(series: StepSeries, regressions: list[Regression]) -> list[Figure]:
    out = [Figure("throughput", "tokens/s (median)", _median(series.figures["tokens_per_s"]), "{:,.0f}", "higher"),
           Figure("throughput", "tokens/s per device (median)", _median(series.figures["tgs"]), "{:,.0f}", "higher"),
           Figure("throughput", "step time (median)", _median(series.measured_step_times()), "{:.4g} s", "lower"),
           Figure("throughput", "MFU (median)", _median(series.figures["mfu"]), "{:.2%}", "higher")]
    for k, r in enumerate(regressions, 1):
        out += [Figure("throughput", f"regression {k}: at step", r.step, "{:,}"),
                Figure("throughput", f"regression {k}: before", r.before, "{:,.0f} " + r.unit),
                Figure("throughput", f"regression {k}: after", r.after, "{:,.0f} " + r.unit),
                Figure("throughput", f"regression {k}: drop", r.drop, "{:.1%}")]
    memory = series.figures["peak_mem_bytes"]
    peak = float(np.nanmax(memory)) if series.has("peak_mem_bytes") else series.peak_mem_reported
    out.append(Figure("memory", "peak memory", peak / 2**30 if peak else None, "{:,.1f} GiB", "lower"))
    return out


def _stability(series: StepSeries, ledger: Ledger) -> list[Figure]:
    cps = series.checkpoints
    cp_steps = np.asarray([c.step for c in cps if c.step is not None])
    interval = float(np.median(np.diff(np.unique(cp_steps)))) if len(np.unique(cp_steps)) > 1 else None
    pie = ledger.pie_days
    relaunch = ledger.mean_relaunch()
    return [
        Figure("checkpoints", "checkpoints", len(cps), "{:,}"),
        Figure("checkpoints", "checkpoint every (steps)", interval, "{:,.0f}"),
        Figure("checkpoints", "checkpoint stall", ledger.checkpoint_stall_s / 3600, "{:,.2f} h", "lower"),
        Figure("stability", "launches", ledger.launches, "{:,}"),
        Figure("stability", "faults", ledger.faults, "{:,}", "lower"),
        Figure("stability", "manual stops", ledger.manual_stops, "{:,}"),
        Figure("stability", "training (days)", pie["training"], "{:.2f}"),
        Figure("stability", "interrupted / waiting (days)", pie["interrupted_or_waiting"], "{:.2f}", "lower"),
        Figure("stability", "nobody at work (days)", pie["nobody_at_work"], "{:.2f}", "lower"),
        Figure("stability", "goodput", ledger.goodput, "{:.1%}", "higher"),
        Figure("stability", "ETTR", ledger.ettr, "{:.1%}", "higher"),
        Figure("stability", "mean time to relaunch", relaunch["total_s"] / 3600 if relaunch else None, "{:.2f} h", "lower"),
        Figure("stability", "wasted progress", ledger.wasted_s / 3600, "{:.2f} h", "lower"),
        Figure("stability", "restore gaps", len(ledger.restore_gaps), "{:,}", "lower"),
    ]
