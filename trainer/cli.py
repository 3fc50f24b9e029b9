"""`trainledger train` and `trainledger prepare`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer


def _fail(message: str) -> None:
    """An expected problem: one line on stderr, exit status 2, no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def train(
    config: str = typer.Option(..., "--config", "-c", help="TOML file, or a preset name: tiny, 10m, 20b"),
    overrides: Optional[List[str]] = typer.Argument(None, help="group.key=value, e.g. data.total_steps=20"),
    plan: bool = typer.Option(False, "--plan", help="print size, FLOPs and memory arithmetic instead of training"),
    world_size: int = typer.Option(1, "--world-size", help="devices assumed by --plan"),
    resume: Optional[str] = typer.Option(
        None, "--resume", help="'auto' (newest whole checkpoint of train.out_dir) or one checkpoint folder"),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="a checkpoint folder: start a new run from its model weights only"),
    no_load_optimizer: bool = typer.Option(
        False, "--no-load-optimizer", help="resume everything but the optimizer state (recorded as a gap)"),
) -> None:
    """Train the GPT described by a config; under torchrun every process runs this."""
    from trainer.config import ConfigError, check_data_path, load_config, validate

    try:
        cfg = load_config(config, overrides or [])
        cfg.checkpoint.resume = cfg.checkpoint.resume if resume is None else resume
        cfg.checkpoint.init_from = cfg.checkpoint.init_from if init_from is None else init_from
        cfg.checkpoint.load_optimizer = cfg.checkpoint.load_optimizer and not no_load_optimizer
        validate(cfg)
        if plan:
            _print_plan(cfg, world_size)
            return
        check_data_path(cfg)
    except ConfigError as exc:
        _fail(str(exc))
    from trainer.checkpoint import CheckpointError, RunComplete
    from trainer.loop import train as run_training  # imports torch: after the cheap checks

    try:
        run_training(cfg)
    except RunComplete as exc:  # not a failure: the job is done (every rank knows; rank 0 says it)
        if os.environ.get("RANK", "0") == "0":
            typer.echo(str(exc))
    except (ConfigError, CheckpointError) as exc:
        _fail(str(exc))


def _print_plan(cfg, world_size: int) -> None:
    from trainer.model import MODEL_STATE_BYTES_PER_PARAM, arithmetic

    a = arithmetic(cfg.model, cfg.data.seq_len, cfg.tokens_per_rank_step)
    typer.echo(f"parameters            {a['params']:,} ({a['params'] / 1e9:.3f} B)")
    typer.echo(f"FLOPs per token       {a['flops_per_token']:.4g} (6·N + 12·L·d·T, see docs/events.md)")
    typer.echo(f"tokens per step       {cfg.tokens_per_rank_step:,} per device, "
               f"{cfg.tokens_per_rank_step * world_size:,} over {world_size} device(s)")
    typer.echo(f"FLOPs per step        {a['flops_per_device_step']:.4g} per device")
    typer.echo(f"model states          {a['model_state_bytes'] / 2**30:.2f} GiB per device under DDP "
               f"({MODEL_STATE_BYTES_PER_PARAM} bytes/parameter: fp32 weights, grads, AdamW moments)")


def prepare(
    inputs: List[Path] = typer.Argument(..., help="text (.txt, blank-line separated), .jsonl or .parquet files or folders"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (must be new or empty)"),
    batches: int = typer.Option(1, help="data batches to cut the corpus into"),
    slices: int = typer.Option(1, help="per-node slices of each batch"),
    valid_ratio: float = typer.Option(0.05, help="fraction of documents held out for validation"),
    sample: Optional[int] = typer.Option(None, help="draw this many documents instead of using all"),
    smart: bool = typer.Option(False, "--smart", help="stratified sample keeping the length and source mix"),
    seed: int = typer.Option(0, help="seed of the shuffle and of the sample"),
    text_field: str = typer.Option("text", help="JSONL key / parquet column holding the text"),
) -> None:
    """Tokenize a corpus into memory-mapped shards: data batches × slices, plus a validation split."""
    from trainer.prepare import PrepareError, prepare as run_prepare

    try:
        meta = run_prepare(inputs, out, batches=batches, slices=slices, valid_ratio=valid_ratio, seed=seed,
                           sample=sample, smart=smart, text_field=text_field)
    except PrepareError as exc:
        _fail(str(exc))
    train_tokens = sum(v for k, part in meta["tokens"].items() if k != "valid" for v in part.values())
    typer.echo(f"prepared {out}: {meta['documents']['train']} train documents ({train_tokens} tokens) in "
               f"{meta['batches']} batch(es) × {meta['slices']} slice(s), {meta['documents']['valid']} validation "
               f"documents, sources: {', '.join(meta['sources'])}"
               + ("; sample recorded in sample.json" if meta["sample"] else ""))


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the top-level app."""
    app.command("train")(train)
    app.command("prepare")(prepare)
