"""`trainledger eta | whatif | report | compare`: presentation and options only; every number
comes from monitor.projections (and monitor.accounting)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from time import time as wall_clock
from typing import List, Optional

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from monitor.cli import DB_HELP
from monitor.escape import printable
from monitor.policy_options import config_option, holiday_option, load_policy, timezone_option, work_hours_option
from monitor.projections.eta import ETA_FIGURES
from monitor.projections.loading import LoadedRun, load_run

FORMAT_HELP = "table or json"


def _fail(message: str, code: int = 2) -> None:
    Console(stderr=True, highlight=False).print(f"error: {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


PROJECTION_FIGURES = ("step_time", "tokens_per_s", "tgs", "num_consumed_tokens")
"""what whatif reads of each step (the report reads every figure)"""


def _load(db: Optional[str], run: str, timezone: Optional[str] = None, work_hours: Optional[str] = None,
          holiday: tuple = (), live: bool = False, engine=None, figures: tuple[str, ...] | None = None,
          config_file: Optional[str] = None) -> LoadedRun:
    """The run's ledger and step series (monitor/projections/loading.py), or a one-line error
    (exit 1) naming what is missing. The policy is the ledger's: the configuration file with the
    options over it."""
    from monitor.config import ConfigError
    from monitor.store import StoreError, list_runs, open_store

    try:
        config, policy = load_policy(config_file, timezone, work_hours, list(holiday), [])
    except ConfigError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    try:
        engine = engine or open_store(db or config.store_url(), read_only=True)
        loaded = load_run(engine, run, policy, figures=figures, now=wall_clock() if live else None)
        known = [] if loaded else [r.name for r in list_runs(engine)]
    except StoreError as exc:
        _fail(str(exc), 1)
    if loaded is None:
        others = f"; runs in the store: {', '.join(map(printable, known))}" if known else "; the store has no runs yet"
        _fail(f"no run named {printable(run)}{others}", 1)
    return loaded


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        _fail(f"--format {fmt!r}: expected one of {', '.join(allowed)}")


def _json(value) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())


def eta(
    run: str = typer.Argument(..., help="The run's name (see `trainledger status`)."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    total_steps: Optional[int] = typer.Option(None, "--total-steps", min=1, help="Steps of the whole run "
                                              "(default: the launch record's total_steps, or the log's own)."),
    total_tokens: Optional[float] = typer.Option(None, "--total-tokens", min=1, help="Tokens of the whole run, "
                                                 "instead of --total-steps."),
    live: bool = typer.Option(False, "--live", help="Project from now (a run still going), not from its last record."),
    seed: int = typer.Option(0, "--seed", help="Seed of the Monte-Carlo simulation."),
    simulations: int = typer.Option(4000, "--simulations", min=100, help="Simulated futures."),
    fmt: str = typer.Option("table", "--format", "-f", help=FORMAT_HELP),
    timezone: Optional[str] = timezone_option(),
    work_hours: Optional[str] = work_hours_option(),
    holiday: List[str] = holiday_option(),
    config_file: Optional[str] = config_option(),
) -> None:
    """When will the run finish: remaining steps at the measured step time, plus the downtime its
    own history predicts, as P10 / P50 / P90 finish times; each term explained."""
    from monitor.projections.eta import EtaError, estimate_eta
    from monitor.report.content import Clock

    _check_format(fmt, ("table", "json"))
    if total_steps is not None and total_tokens is not None:
        _fail("give --total-steps or --total-tokens, not both")
    loaded = _load(db, run, timezone, work_hours, tuple(holiday), live, figures=ETA_FIGURES,
                   config_file=config_file)
    try:
        result = estimate_eta(loaded.series, loaded.ledger, total_steps=total_steps, total_tokens=total_tokens,
                              now=wall_clock() if live else None, simulations=simulations, seed=seed)
    except EtaError as exc:
        _fail(f"{run}: {exc}")
    if fmt == "json":
        _json(result.to_dict())
        return
    clock = Clock(loaded.ledger.timezone)
    title = (f"{run}: finished, {result.steps_done:,} of {result.total_steps:,} steps" if result.finished else
             f"{run}: finish {clock(result.finish_p50)} (P10 {clock(result.finish_p10)} – P90 "
             f"{clock(result.finish_p90)}, {clock.name}), projected from {clock(result.now)}")
    table = Table("term", "value", "what it is", title=escape(title))
    for term, value, meaning in result.terms:
        table.add_row(escape(term), escape(value), escape(meaning))
    Console(highlight=False).print(table)


def whatif(
    run: Optional[str] = typer.Argument(None, help="The run to start from, as measured; leave out with --step-time "
                                        "and --steps-per-epoch to work from given figures."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    step_time: Optional[float] = typer.Option(None, "--step-time", min=0, help="Given: seconds per step (no run)."),
    steps_per_epoch: Optional[float] = typer.Option(None, "--steps-per-epoch", min=1,
                                                    help="Steps per epoch (given; with a run: overrides total steps ÷ epochs)."),
    total_steps: Optional[int] = typer.Option(None, "--total-steps", min=1, help="With a run: its total steps, "
                                              "when the launch record does not say them."),
    base_epochs: float = typer.Option(1.0, "--base-epochs", min=0, help="Epochs of the baseline (the run's total "
                                      "steps are this many epochs)."),
    dataset_samples: Optional[float] = typer.Option(None, "--dataset-samples", min=1, help="Samples in the "
                                                    "baseline's dataset (for --samples)."),
    base_seq_len: Optional[int] = typer.Option(None, "--base-seq-len", min=1, help="The baseline's sequence length "
                                               "(default: the launch record's)."),
    base_micro_bsz: Optional[int] = typer.Option(None, "--base-micro-bsz", min=1, help="The baseline's micro-batch."),
    base_nodes: Optional[int] = typer.Option(None, "--base-nodes", min=1, help="The baseline's nodes."),
    base_gpus_per_node: Optional[int] = typer.Option(None, "--base-gpus-per-node", min=1,
                                                     help="The baseline's devices per node."),
    num_layers: Optional[int] = typer.Option(None, "--num-layers", min=1, help="Model layers (for the FLOPs formula)."),
    hidden_size: Optional[int] = typer.Option(None, "--hidden-size", min=1, help="Model width (for the FLOPs formula)."),
    scaling_efficiency: float = typer.Option(0.95, "--scaling-efficiency", min=0.01, max=1.0,
                                             help="Per-device throughput kept per doubling of nodes beyond what the run measured."),
    sample_frac: Optional[float] = typer.Option(None, "--sample-frac", min=0, help="Change: train on this fraction of the data."),
    samples: Optional[float] = typer.Option(None, "--samples", min=1, help="Change: train on this many samples."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0, help="Change: epochs."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", min=1, help="Change: sequence length."),
    micro_bsz: Optional[int] = typer.Option(None, "--micro-bsz", min=1, help="Change: micro-batch per device."),
    nodes: Optional[int] = typer.Option(None, "--nodes", min=1, help="Change: nodes."),
    gpus_per_node: Optional[int] = typer.Option(None, "--gpus-per-node", min=1, help="Change: devices per node."),
    assume_step_time: Optional[float] = typer.Option(None, "--assume-step-time", min=0,
                                                     help="Change: take this step time instead of the projected one."),
    scenario: List[str] = typer.Option([], "--scenario", help="A further row, 'NAME: key=value, …' with keys "
                                       "sample_frac, samples, epochs, seq_len, micro_bsz, nodes, gpus_per_node, step_time_s; repeatable."),
    fmt: str = typer.Option("table", "--format", "-f", help=FORMAT_HELP),
    config_file: Optional[str] = config_option(),
) -> None:
    """The guide's table: steps per epoch, hours per epoch, total hours and speed-up of each change,
    from the run as measured (or given figures), with the assumptions stated."""
    from monitor.projections.whatif import Scenario, WhatIfError, assumptions, baseline_from_run, given_baseline, project

    _check_format(fmt, ("table", "json"))
    base_shape = {"seq_len": base_seq_len, "micro_bsz": base_micro_bsz, "nodes": base_nodes,
                  "gpus_per_node": base_gpus_per_node}
    try:
        if run is None:
            if step_time is None or steps_per_epoch is None:
                _fail("without a run, give --step-time and --steps-per-epoch")
            base = given_baseline(step_time, steps_per_epoch, epochs=base_epochs, samples=dataset_samples,
                                  scaling_efficiency=scaling_efficiency,
                                  **{k: v for k, v in base_shape.items() if v is not None})
        else:
            loaded = _load(db, run, figures=PROJECTION_FIGURES, config_file=config_file)
            base = baseline_from_run(loaded.series, loaded.ledger, total_steps=total_steps,
                                     steps_per_epoch=steps_per_epoch, epochs=base_epochs, samples=dataset_samples,
                                     micro_bsz=base_micro_bsz, num_layers=num_layers, hidden_size=hidden_size,
                                     scaling_efficiency=scaling_efficiency)
            if step_time is not None:
                _fail("--step-time is for given figures; with a run, the step time is measured (see --assume-step-time)")
            base = replace(base, **{k: v for k, v in base_shape.items() if v is not None})
        changes = Scenario("what if", sample_frac=sample_frac, samples=samples, epochs=epochs, seq_len=seq_len,
                           micro_bsz=micro_bsz, nodes=nodes, gpus_per_node=gpus_per_node, step_time_s=assume_step_time)
        rows = [changes] if changes != Scenario("what if") else []
        rows += [Scenario.parse(text) for text in scenario]
        projections = project(base, rows)
    except WhatIfError as exc:
        _fail(str(exc))
    notes = assumptions(base)
    if fmt == "json":
        _json({"baseline": notes, "rows": [p.to_dict() for p in projections]})
        return
    table = Table("scenario", "samples", "epochs", "seq len", "steps/epoch", "s/step", "h/epoch", "compute h",
                  "wall h", "speed-up", title="what if")
    for p in projections:
        table.add_row(escape(p.name), f"{p.samples / 1e6:,.3g}M" if p.samples else "—", f"{p.epochs:g}",
                      str(p.seq_len or "—"), f"{p.steps_per_epoch:,}", f"{p.step_time_s:.3g}", f"{p.hours_per_epoch:,.1f}",
                      f"{p.compute_hours:,.1f}", f"{p.wall_hours:,.1f}", f"{p.speedup:.1f}×")
    console = Console(highlight=False, width=max(Console().width, 120))
    console.print(table)
    for line in notes + [f"{p.name}: {note}" for p in projections for note in p.notes]:
        console.print(f"• {escape(line)}", soft_wrap=True)


def _ingest(db: Optional[str], paths: List[str]) -> None:
    """Read `paths` into the store (once: nothing is stored twice), or a one-line error."""
    from monitor.intake import Intake
    from monitor.sources import Targets
    from monitor.store import StoreError, open_store

    try:
        targets = Targets(paths)
        Intake(open_store(db)).ingest(targets)
    except FileNotFoundError as exc:
        _fail(f"--ingest: {exc}")
    except StoreError as exc:
        _fail(str(exc), 1)


def _summaries(db: Optional[str], run: str, other: Optional[str], timezone, work_hours, holiday, config_file):
    from monitor.projections.compare import compare_runs
    from monitor.projections.summary import summarize

    this = _load(db, run, timezone, work_hours, tuple(holiday), config_file=config_file)
    summary = summarize(this.series, this.ledger)
    if other is None:
        return this, summary, None, None
    that = _load(db, other, timezone, work_hours, tuple(holiday), engine=this.engine, config_file=config_file)
    other_summary = summarize(that.series, that.ledger)
    return this, summary, other_summary, compare_runs(summary, other_summary)


def report(
    run: str = typer.Argument(..., help="The run's name."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    compare: Optional[str] = typer.Option(None, "--compare", help="Another run to set every figure beside."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for report.md and report.html."),
    total_steps: Optional[int] = typer.Option(None, "--total-steps", min=1, help="For the finish projection of a run "
                                              "still going, when its launch record does not say them."),
    ingest: List[str] = typer.Option([], "--ingest", help="Read these log files into --db first (repeatable): "
                                     "what the trainer does at a finish, into a temporary store."),
    timezone: Optional[str] = timezone_option(),
    work_hours: Optional[str] = work_hours_option(),
    holiday: List[str] = holiday_option(),
    config_file: Optional[str] = config_option(),
) -> None:
    """Write the run report (report.md, and report.html: self-contained, plots inline, opens offline)."""
    if ingest:
        _ingest(db, ingest)
    from monitor.projections.eta import EtaError, estimate_eta
    from monitor.report.content import report_blocks
    from monitor.report.render import to_html, to_markdown
    from monitor.store import list_alerts

    this, summary, other, rows = _summaries(db, run, compare, timezone, work_hours, holiday, config_file)
    try:
        projection = estimate_eta(this.series, this.ledger, total_steps=total_steps)
    except EtaError:
        projection = None  # a run that says no total steps gets no finish section
    blocks = report_blocks(summary, other=other, comparison=rows, eta=projection,
                           alerts=list_alerts(this.engine, run, include_resolved=True, oldest_first=True))
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
        (out / "report.html").write_text(to_html(blocks, f"Run report: {run}"), encoding="utf-8")
    except OSError as exc:
        _fail(f"--out {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {out / 'report.md'} and {out / 'report.html'}")


def compare(
    run: str = typer.Argument(..., help="The run."),
    other: str = typer.Argument(..., help="The run to compare it with."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    fmt: str = typer.Option("table", "--format", "-f", help=FORMAT_HELP),
    timezone: Optional[str] = timezone_option(),
    work_hours: Optional[str] = work_hours_option(),
    holiday: List[str] = holiday_option(),
    config_file: Optional[str] = config_option(),
) -> None:
    """Every figure of two runs side by side; changes for the worse past 10 % called out."""
    _check_format(fmt, ("table", "json"))
    _, summary, other_summary, rows = _summaries(db, run, other, timezone, work_hours, holiday, config_file)
    if fmt == "json":
        _json({"run": run, "other": other, "rows": [r.to_dict() for r in rows]})
        return
    table = Table("figure", escape(run), escape(other), "change", title="compare")
    for row in rows:
        style = "bold red" if row.worse else None
        table.add_row(escape(row.label), escape(row.this), escape(row.other),
                      row.change_text() + (" ⚠" if row.worse else ""), style=style)
    Console(highlight=False).print(table)


def register(app: typer.Typer) -> None:
    for command in (eta, whatif, report, compare):
        app.command()(command)
