"""What if we change it: the ChatLM-mini-Chinese guide's table (steps per epoch, hours per epoch,
total hours, speed-up) from a baseline — a run as measured, or given figures — and scenarios.

The model, every part of it stated in the table's assumptions:
- samples per step scale with the micro-batch and the number of devices (data parallel, the
  per-device batch fixed), so steps per epoch = baseline × (samples ratio) ÷ (batch ratio),
  rounded down (the last incomplete batch dropped, as the guide's 55,081 = ⌊0.3 × 183,605⌋);
- a sample is a document cut at the sequence length: a shorter length leaves steps per epoch
  alone and makes each step cheaper;
- step time scales with the FLOPs of a device's step: micro_bsz × T × (dense + a·T), the
  attention term a·T = 12·L·d·T growing with the length T and the rest with tokens (docs/events.md);
  without a model shape, with tokens alone;
- per-device throughput across node counts comes from the run's own attempts at each count
  (interpolated between them), beyond them from a stated efficiency per doubling;
- wall time adds the run's own overheads inside training and its expected fault downtime per
  training hour, both from its history (monitor.projections.history).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from monitor.accounting import Ledger
from monitor.projections.history import fault_history, overheads
from monitor.projections.series import StepSeries, recent_step_time

SCALING_EFFICIENCY = 0.95
"""per-device throughput kept per doubling of nodes beyond what the run measured"""


class WhatIfError(ValueError):
    """A scenario the baseline cannot answer (a change to a figure it does not know)."""


@dataclass(frozen=True)
class FlopsModel:
    """FLOPs per token = dense + attention_per_position × seq_len."""

    dense: float
    attention_per_position: float
    source: str

    def per_token(self, seq_len: float) -> float:
        return self.dense + self.attention_per_position * seq_len


@dataclass(frozen=True)
class Baseline:
    step_time_s: float
    steps_per_epoch: float
    epochs: float = 1.0
    samples: float | None = None
    """dataset samples per epoch, when known (the guide's 10 M)"""
    seq_len: int | None = None
    micro_bsz: int | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    flops: FlopsModel | None = None
    throughput_by_nodes: dict[int, float] = field(default_factory=dict)
    """median per-device tokens/s the run measured at each node count"""
    overhead_per_step_s: float = 0.0
    """in-training seconds lost per second of stepping (checkpoint stalls, evals, slow steps)"""
    downtime_per_training_s: float = 0.0
    """expected fault downtime per training second (fault rate × mean cost per fault)"""
    source: str = "given figures"
    scaling_efficiency: float = SCALING_EFFICIENCY


@dataclass(frozen=True)
class Scenario:
    name: str
    sample_frac: float | None = None
    samples: float | None = None
    epochs: float | None = None
    seq_len: int | None = None
    micro_bsz: int | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    step_time_s: float | None = None
    """an assumed step time (the guide's "0.9 s/step"), taking the place of the projected one"""

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """`NAME: key=value, key=value` with the field names (`sample_frac=0.3, epochs=3`)."""
        name, _, spec = text.partition(":") if ":" in text else (text, "", text)
        known = {f.name: f.type for f in fields(cls) if f.name != "name"}
        values: dict = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not eq or key not in known:
                raise WhatIfError(f"scenario {text!r}: {item!r} is not key=value with a key of {', '.join(known)}")
            try:
                number = float(value)
            except ValueError:
                raise WhatIfError(f"scenario {text!r}: {key}={value!r} is not a number") from None
            values[key] = int(number) if "int" in str(known[key]) else number
        return cls(name=name.strip() or spec.strip(), **values)


@dataclass(frozen=True)
class Projection:
    name: str
    samples: float | None
    epochs: float
    seq_len: int | None
    steps_per_epoch: int
    step_time_s: float
    hours_per_epoch: float
    compute_hours: float
    wall_hours: float
    speedup: float
    """the baseline's wall hours over this one's"""
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _per_device_throughput(base: Baseline, nodes: int) -> tuple[float, str]:
    """Per-device throughput at `nodes` relative to the baseline's node count, and how it was had."""
    measured = base.throughput_by_nodes
    if nodes == base.nodes or not base.nodes:
        return 1.0, ""
    if base.nodes in measured and measured:
        counts = sorted(measured)
        at_base = measured[base.nodes]
        if counts[0] <= nodes <= counts[-1]:
            value = float(np.interp(nodes, counts, [measured[c] for c in counts]))
            how = "measured" if nodes in measured else f"interpolated between the run's {counts} nodes"
            return value / at_base, f"{nodes} nodes: per-device throughput {value / at_base:.3f}× ({how})"
        nearest = counts[0] if nodes < counts[0] else counts[-1]
        ratio = measured[nearest] / at_base * base.scaling_efficiency ** math.log2(nodes / nearest)
        return ratio, (f"{nodes} nodes: per-device throughput {ratio:.3f}× (measured up to {nearest}, then "
                       f"{base.scaling_efficiency:.0%} per doubling, assumed)")
    ratio = base.scaling_efficiency ** math.log2(nodes / base.nodes)
    return ratio, f"{nodes} nodes: per-device throughput {ratio:.3f}× ({base.scaling_efficiency:.0%} per doubling, assumed)"


BASE_FLAGS = {"samples": "--dataset-samples", "micro_bsz": "--base-micro-bsz", "nodes": "--base-nodes",
              "gpus_per_node": "--base-gpus-per-node", "seq_len": "--base-seq-len"}


def _need(value, what: str, change: str):
    if value is None:
        raise WhatIfError(f"{change}: the baseline does not say its {what}; give it ({BASE_FLAGS[what]})")
    return value


def project_one(base: Baseline, scenario: Scenario, baseline_wall_hours: float | None = None) -> Projection:
    notes: list[str] = []
    samples_ratio = 1.0
    samples = base.samples
    if scenario.samples is not None:
        samples = scenario.samples
        samples_ratio = scenario.samples / _need(base.samples, "samples", "samples")
    elif scenario.sample_frac is not None:
        samples_ratio = scenario.sample_frac
        samples = base.samples * scenario.sample_frac if base.samples else None
    batch_ratio = 1.0
    cost_ratio = 1.0
    if scenario.micro_bsz is not None:
        ratio = scenario.micro_bsz / _need(base.micro_bsz, "micro_bsz", "micro_bsz")
        batch_ratio *= ratio
        cost_ratio *= ratio
    nodes = scenario.nodes or base.nodes
    gpus = scenario.gpus_per_node or base.gpus_per_node
    if scenario.nodes is not None or scenario.gpus_per_node is not None:
        world = _need(base.nodes, "nodes", "nodes") * _need(base.gpus_per_node, "gpus_per_node", "gpus per node")
        batch_ratio *= nodes * gpus / world
        throughput, note = _per_device_throughput(base, nodes)
        cost_ratio /= throughput
        notes += [note] if note else []
    seq_len = scenario.seq_len or base.seq_len
    if scenario.seq_len is not None:
        old = _need(base.seq_len, "seq_len", "seq_len")
        if base.flops:
            flops_ratio = seq_len * base.flops.per_token(seq_len) / (old * base.flops.per_token(old))
            cost_ratio *= flops_ratio
            notes.append(f"seq_len {old} → {seq_len}: step FLOPs × {flops_ratio:.3f} ({base.flops.source})")
        else:
            cost_ratio *= seq_len / old
            notes.append(f"seq_len {old} → {seq_len}: step time with tokens alone (no model shape known)")
    steps_per_epoch = math.floor(base.steps_per_epoch * samples_ratio / batch_ratio + 1e-9)
    step_time = scenario.step_time_s if scenario.step_time_s is not None else base.step_time_s * cost_ratio
    if scenario.step_time_s is not None:
        notes.append(f"step time {step_time:g} s assumed")
    epochs = scenario.epochs if scenario.epochs is not None else base.epochs
    hours_per_epoch = steps_per_epoch * step_time / 3600
    compute = hours_per_epoch * epochs
    wall = compute * (1 + base.overhead_per_step_s + base.downtime_per_training_s)
    speedup = (baseline_wall_hours or wall) / wall if wall > 0 else math.inf
    return Projection(scenario.name, samples, epochs, seq_len, steps_per_epoch, step_time, hours_per_epoch,
                      compute, wall, speedup, tuple(notes))


def project(base: Baseline, scenarios: list[Scenario]) -> list[Projection]:
    """The baseline's row ("as measured" or "as given") and one row per scenario."""
    first = project_one(base, Scenario("baseline"))
    return [first] + [project_one(base, s, first.wall_hours) for s in scenarios]


def assumptions(base: Baseline) -> list[str]:
    """The baseline's figures and where each came from, for the table's footnote."""
    lines = [f"baseline: {base.source}; {base.step_time_s:.4g} s/step, {base.steps_per_epoch:,.0f} steps/epoch, "
             f"{base.epochs:g} epoch(s)" + (f", {base.samples:,.0f} samples" if base.samples else "")]
    if base.flops:
        lines.append(f"FLOPs per token = {base.flops.dense:.4g} + {base.flops.attention_per_position:.4g} × seq_len "
                     f"({base.flops.source})")
    if base.throughput_by_nodes:
        lines.append("per-device tokens/s measured at " + ", ".join(
            f"{k} nodes: {v:,.0f}" for k, v in sorted(base.throughput_by_nodes.items())))
    lines.append(f"wall time = compute × (1 + {base.overhead_per_step_s:.1%} in-training overheads + "
                 f"{base.downtime_per_training_s:.1%} expected fault downtime)")
    return lines


def flops_model(series: StepSeries, num_layers: int | None = None, hidden_size: int | None = None) -> FlopsModel | None:
    """FLOPs per token split into its dense and attention parts from the launch record."""
    per_token = series.launch_fact("flops_per_token")
    seq_len = series.launch_fact("seq_len")
    if not per_token or not seq_len:
        return None
    layers = num_layers or series.launch_fact("num_layers")
    hidden = hidden_size or series.launch_fact("hidden_size")
    if layers and hidden:
        attention = 12.0 * layers * hidden
        source = f"12·L·d with L={layers}, d={hidden}"
    else:
        params = series.launch_fact("n_params")
        if not params:
            return None
        attention = max(per_token - 6.0 * params, 0.0) / seq_len
        source = "attention = flops_per_token − 6·n_params (embedding counted: a lower bound)"
    return FlopsModel(per_token - attention * seq_len, attention, source)


def throughput_by_nodes(series: StepSeries) -> dict[int, float]:
    """Median per-device tokens/s at each node count the run trained on."""
    tgs = series.figures["tgs"]
    out = {}
    for count in np.unique(series.nodes):
        values = tgs[(series.nodes == count) & np.isfinite(tgs)]
        if count > 0 and len(values):
            out[int(count)] = float(np.median(values))
    return out


def baseline_from_run(series: StepSeries, ledger: Ledger, *, total_steps: int | None = None,
                      steps_per_epoch: float | None = None, epochs: float = 1.0, samples: float | None = None,
                      micro_bsz: int | None = None, num_layers: int | None = None,
                      hidden_size: int | None = None, scaling_efficiency: float = SCALING_EFFICIENCY) -> Baseline:
    """The run as measured: its recent step time, its shape from the launch record, its overheads
    and its fault downtime per training hour. Without `steps_per_epoch`, an epoch is the run's
    total steps ÷ `epochs`."""
    step_time = recent_step_time(series)
    if step_time is None:
        raise WhatIfError("the run has no measured step time yet (fewer than two step records)")
    if steps_per_epoch is None:
        total = total_steps or series.launch_fact("total_steps") or series.total_steps_logged
        if not total:
            raise WhatIfError("the run does not say its total steps; give --total-steps or --steps-per-epoch")
        steps_per_epoch = total / epochs
    world = series.launch_fact("world_size")
    nodes = series.launch_fact("nodes") or (1 if world else None)
    history = fault_history(ledger)
    cost = history.mean_cost_s or 0.0
    return Baseline(
        step_time_s=step_time.median, steps_per_epoch=steps_per_epoch, epochs=epochs, samples=samples,
        seq_len=series.launch_fact("seq_len"), micro_bsz=micro_bsz or series.launch_fact("micro_bsz"),
        nodes=nodes, gpus_per_node=world // nodes if world and nodes else None,
        flops=flops_model(series, num_layers, hidden_size), throughput_by_nodes=throughput_by_nodes(series),
        overhead_per_step_s=overheads(series, step_time.median).total,
        downtime_per_training_s=history.per_training_hour / 3600 * cost,
        source=f"run {ledger.run} as measured (median of its newest {step_time.n:,} step times)",
        scaling_efficiency=scaling_efficiency)


def given_baseline(step_time_s: float, steps_per_epoch: float, **figures) -> Baseline:
    """A baseline from figures alone (the guide's 1.0 s/step and 183,605 steps/epoch)."""
    return replace(Baseline(step_time_s, steps_per_epoch), **figures)
