"""When will it finish: remaining work at the measured step time, plus the time the run's own
history says it will lose, as a range from a seeded Monte-Carlo simulation.

Each simulated future: the remaining steps at the recent median step time (with the recent
spread, summed over the steps), stretched by the run's measured in-training overheads
(checkpoint stalls, evals, slow steps); a fault rate drawn from what the run's training hours
and faults allow (Jeffreys posterior: Gamma(faults + ½, training time)); a Poisson number of
faults over the simulated compute time; each fault costing one of the run's own past fault
costs (downtime to the next first step, off-hours nights included, plus progress redone),
drawn with replacement from that future's own resample of them (a bootstrap of the history,
so that few past faults widen the range). P10, P50 and P90 of the simulated finish times make the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from monitor.accounting import Ledger
from monitor.projections.history import FaultHistory, Overheads, fault_history, overheads
from monitor.projections.series import RECENT_STEPS, Spread, StepSeries, recent_step_time, step_series
from monitor.records import Record

SIMULATIONS = 4000
ETA_FIGURES = ("step_time", "tokens_per_s", "num_consumed_tokens")
"""what eta reads of each step: a column fewer of a million rows is ~5 % of its time"""
ASSUMED_FAULT_COST_S = 3600.0
"""the cost of a fault when the run's history has none to draw from (a stated assumption)"""


class EtaError(ValueError):
    """What the run does not say and was not given (total steps, a measured step time)."""


@dataclass
class Eta:
    run: str
    now: float
    """the moment projected from: `now` for a live run, else the run's last record"""
    done_step: int
    """the newest step record's step"""
    steps_done: int
    """how many steps that is: one more where the log counts from step 0 (nanochat's 0…11999 of 12000)"""
    total_steps: int
    total_from: str
    tokens_per_step: float | None
    step_time: Spread
    overheads: Overheads
    faults: FaultHistory
    fault_cost_assumed: bool
    compute_s: float
    overhead_s: float
    expected_faults: float
    expected_fault_cost_s: float
    finish_p10: float
    finish_p50: float
    finish_p90: float
    finished: bool = False
    terms: list[tuple[str, str, str]] = field(default_factory=list)
    """(term, value, what it is) rows, for the table"""

    @property
    def remaining_steps(self) -> int:
        return 0 if self.finished else max(self.total_steps - self.steps_done, 0)

    def to_dict(self) -> dict:
        return {
            "run": self.run, "now": self.now, "finished": self.finished, "done_step": self.done_step,
            "steps_done": self.steps_done, "total_steps": self.total_steps, "total_from": self.total_from, "remaining_steps": self.remaining_steps,
            "tokens_per_step": self.tokens_per_step, "step_time_s": self.step_time.to_dict(),
            "overheads": {"checkpoint": self.overheads.checkpoint, "eval": self.overheads.eval,
                          "other": self.overheads.other},
            "faults": {"count": self.faults.faults, "training_h": self.faults.training_s / 3600,
                       "per_training_hour": self.faults.per_training_hour, "costs_s": list(self.faults.costs_s),
                       "cost_assumed": self.fault_cost_assumed},
            "compute_s": self.compute_s, "overhead_s": self.overhead_s, "expected_faults": self.expected_faults,
            "expected_fault_cost_s": self.expected_fault_cost_s,
            "finish": {"p10": self.finish_p10, "p50": self.finish_p50, "p90": self.finish_p90},
            "remaining_s": {"p10": self.finish_p10 - self.now, "p50": self.finish_p50 - self.now,
                            "p90": self.finish_p90 - self.now},
            "terms": [{"term": t, "value": v, "meaning": m} for t, v, m in self.terms],
        }


def tokens_per_step(series: StepSeries) -> float | None:
    """Tokens per optimizer step: the launch's `global_batch_tokens`, else measured (global
    tokens per second × step time, recent median)."""
    configured = series.launch_fact("global_batch_tokens")
    if configured:
        return float(configured)
    product = (series.figures["tokens_per_s"] * series.figures["step_time"])[-RECENT_STEPS:]
    product = product[np.isfinite(product)]
    return float(np.median(product)) if len(product) else None


def _total_steps(series: StepSeries, done: int, total_steps: int | None, total_tokens: float | None,
                 per_step: float | None) -> tuple[int, str]:
    if total_steps is not None:
        return total_steps, "given (--total-steps)"
    if total_tokens is not None:
        if not per_step:
            raise EtaError("--total-tokens: the run logs no tokens per step; give --total-steps")
        done_tokens = series.tokens_logged if series.tokens_logged is not None else done * per_step
        return done + int(np.ceil(max(total_tokens - done_tokens, 0) / per_step)), "given (--total-tokens)"
    configured = series.launch_fact("total_steps")
    if configured:
        return int(configured), "the launch record (total_steps)"
    if series.total_steps_logged:
        return int(series.total_steps_logged), "the log's step lines"
    raise EtaError("the run does not say its total steps; give --total-steps or --total-tokens")


def estimate_eta(records: Sequence[Record] | StepSeries, ledger: Ledger, *, total_steps: int | None = None,
                 total_tokens: float | None = None, now: float | None = None, simulations: int = SIMULATIONS,
                 seed: int = 0, assumed_fault_cost_s: float = ASSUMED_FAULT_COST_S) -> Eta:
    """The finish of `ledger`'s run (its records, or their `step_series`) with its P10–P90 range."""
    series = records if isinstance(records, StepSeries) else step_series(records)
    step_time = recent_step_time(series)
    if step_time is None:
        raise EtaError("the run has no measured step time yet (fewer than two step records)")
    newest = int(series.step[-1])
    done = newest + 1 if int(series.step.min()) == 0 else newest
    per_step = tokens_per_step(series)
    total, total_from = _total_steps(series, done, total_steps, total_tokens, per_step)
    ref = float(now if now is not None else ledger.end)
    loss = overheads(series, step_time.median)
    history = fault_history(ledger)
    last = series.finish
    finished = done >= total or (last is not None and last.ts >= series.ts[-1]
                                 and last.fields.get("reason") == "total_steps")
    remaining = 0 if finished else max(total - done, 0)

    rng = np.random.default_rng(seed)
    compute = remaining * step_time.median * (1 + loss.total)
    simulated = compute + np.sqrt(remaining) * step_time.sd * rng.standard_normal(simulations)
    simulated = np.maximum(simulated, 0.0)
    rate = rng.gamma(history.faults + 0.5, 1.0 / history.training_s, simulations) if history.training_s > 0 \
        else np.zeros(simulations)
    counts = rng.poisson(rate * simulated) if remaining else np.zeros(simulations, np.int64)
    costs = np.asarray(history.costs_s or (assumed_fault_cost_s,))
    # each simulated future draws its faults' costs from its own resample of the past costs, so
    # that a few past faults carry the uncertainty of their mean, not only their spread
    owner = np.repeat(np.arange(simulations), counts)
    pasts = rng.integers(0, len(costs), (simulations, len(costs)))
    drawn = costs[pasts[owner, rng.integers(0, len(costs), len(owner))]]
    lost = np.bincount(owner, weights=drawn, minlength=simulations)
    finish = ref + simulated + lost
    p10, p50, p90 = (float(v) for v in np.percentile(finish, [10, 50, 90]))

    expected_faults = history.per_training_hour * compute / 3600 if remaining else 0.0
    mean_cost = float(costs.mean())
    eta = Eta(ledger.run, ref, newest, done, total, total_from, per_step, step_time, loss, history,
              not history.costs_s, remaining * step_time.median, remaining * step_time.median * loss.total,
              expected_faults, mean_cost, p10, p50, p90, finished)
    eta.terms = _terms(eta)
    return eta


def _h(seconds: float) -> str:
    return f"{seconds / 3600:,.2f} h"


def _terms(e: Eta) -> list[tuple[str, str, str]]:
    st = e.step_time
    f = e.faults
    lines = [
        ("steps", f"{e.steps_done:,} of {e.total_steps:,} ({e.remaining_steps:,} to go)",
         f"total from {e.total_from}; done = the newest step record (step {e.done_step:,}), counted from 1"),
        ("step time", f"{st.median:.3f} s (± {st.sd:.3f}; P10–P90 {st.p10:.3f}–{st.p90:.3f})",
         f"median of the newest {st.n:,} measured steps; ± is the MAD-based standard deviation"),
    ]
    if e.tokens_per_step:
        lines.append(("tokens per step", f"{e.tokens_per_step:,.0f}",
                      "the launch's global_batch_tokens, else tokens/s × step time"))
    lines += [
        ("compute", _h(e.compute_s), "steps to go × step time"),
        ("checkpoint stalls", f"{e.overheads.checkpoint:.1%} → {_h(e.compute_s * e.overheads.checkpoint)}",
         "time inside training blocked by checkpoints, per second of stepping, as measured so far"),
        ("evals", f"{e.overheads.eval:.1%} → {_h(e.compute_s * e.overheads.eval)}",
         "time inside training spent on evals, per second of stepping"),
        ("other slow steps", f"{e.overheads.other:.1%} → {_h(e.compute_s * e.overheads.other)}",
         "the rest of the gaps between step records beyond the step times (data waits, logging)"),
        ("fault rate", f"{f.faults} in {f.training_s / 3600:,.1f} training h = {f.per_training_hour:.3f}/h",
         "the run's faults over its training hours (simulated with its uncertainty)"),
        ("cost per fault", _h(e.expected_fault_cost_s) + (" (assumed)" if e.fault_cost_assumed else
                                                           f" (mean of {len(f.costs_s)})"),
         "fault → next first step (notice, off-hours nights, relaunch, startup) + progress redone"
         if not e.fault_cost_assumed else "no fault with a relaunch in the history: a stated assumption"),
        ("expected downtime", f"{e.expected_faults:.2f} faults × {_h(e.expected_fault_cost_s)} = "
                              f"{_h(e.expected_faults * e.expected_fault_cost_s)}", "fault rate × compute hours × cost per fault"),
        ("remaining (P10 / P50 / P90)", " / ".join(_h(t - e.now) for t in (e.finish_p10, e.finish_p50, e.finish_p90)),
         "seeded Monte-Carlo over the step-time spread, the fault rate and the past fault costs"),
    ]
    return lines
