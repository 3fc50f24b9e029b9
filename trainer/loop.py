"""The training loop. It only orchestrates: config → data → model → steps → events.

All state a resumed run needs lives in one `TrainState`: the model, AdamW, the lr
scheduler, the grad scaler, the data sampler (a world-size-independent position), the
step counter, the consumed tokens and the config digest. Steps are numbered from 1: the
step record with `step = n` is written after the n-th optimizer step, and `state.step`
always holds the number of completed steps.
"""

from __future__ import annotations

import gc
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import torch
from torch.nn.parallel import DistributedDataParallel

from trainer import distributed, metrics
from trainer.checkpoint import CheckpointError, release_group
from trainer.checkpoint.policy import LoopCheckpoints, resume_run
from trainer.config import Config, ConfigError
from trainer.data import IGNORE, DataGroups, DataSet, GlobalSampler, load
from trainer.events import Recorder, new_attempt_id, run_id_for
from trainer.hardware import device_name, peak_flops
from trainer.model import GPT, count_params, flops_per_token
from trainer.optim import LossScaler, build_lr_scheduler, build_optimizer
from trainer.prepare import EOS
from trainer.report import write_report

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainState:
    """Everything a checkpoint must hold to continue the run exactly where it stopped."""

    model: torch.nn.Module  # DDP-wrapped when distributed; `raw_model` is the GPT itself
    raw_model: GPT
    optimizer: torch.optim.AdamW
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    grad_scaler: LossScaler
    sampler: GlobalSampler
    config_digest: str
    step: int = 0  # optimizer steps completed
    consumed_tokens: int = 0  # input tokens trained on, over all ranks
    inf_nan_skip_batches: int = 0  # steps skipped for a non-finite gradient


@dataclass
class Run:
    """What one launch knows besides the resumable state: where, who, and how to report."""

    cfg: Config
    env: distributed.DistEnv
    data: DataSet
    recorder: Recorder
    out_dir: Path
    flops_per_token: float
    peak_flops: float
    global_batch: int  # packed samples per optimizer step, over all ranks
    groups: DataGroups  # which ranks read the same data (per-node slices)
    nodes: list[distributed.Node]  # every node of the job, to name a lost one
    resume_from: str | None = None
    first_step_fields: dict = field(default_factory=dict)  # startup figures the first step record carries


@dataclass
class Summary:
    """Returned by `train`, for callers in the same process (the benchmark)."""

    end: str  # total_steps | data_exhausted | stop
    steps: int = 0  # steps run by this launch
    loop_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


class StopSignals:
    """SIGINT/SIGTERM only raise a flag: the current step finishes, then the loop stops."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "StopSignals":
        self.reason: str | None = None
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame) -> None:
        self.reason = self.reason or signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def build_state(cfg: Config, env: distributed.DistEnv, sampler: GlobalSampler) -> TrainState:
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg.model, cfg.data.seq_len).to(env.device)
    wrapped = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None) \
        if env.distributed else model
    if cfg.train.compile:
        wrapped = torch.compile(wrapped)  # DDP's buckets split the graph (dynamo's DDPOptimizer)
    optimizer = build_optimizer(model, cfg.adam)
    return TrainState(
        model=wrapped, raw_model=model, optimizer=optimizer,
        lr_scheduler=build_lr_scheduler(optimizer, cfg.lr_scheduler, cfg.data.total_steps, cfg.adam.lr),
        grad_scaler=LossScaler(env.device.type, cfg.grad_scaler, enabled=cfg.model.dtype == "fp16"),
        sampler=sampler,
        config_digest=cfg.digest(),
    )


def start(cfg: Config, env: distributed.DistEnv) -> tuple[Run, TrainState]:
    out_dir = Path(cfg.train.out_dir)
    data = load(cfg.data)
    global_batch = cfg.data.micro_bsz * cfg.data.micro_num * env.world_size
    counts = data.train.counts() if data.slice_label is not None else data.train.num_samples
    groups = DataGroups.of(distributed.all_gather(env, (data.slice_label, counts)), env.rank)
    sampler = GlobalSampler(data.train.num_samples, cfg.train.seed, groups, data.batch_label)
    if sampler.remaining() < global_batch:
        where, share = f"batch {data.batch_label}", "one global batch"
        if groups.slices:
            where += f" slice {sampler.smallest()}"
            share = f"its share of {share}"
        raise ConfigError(f"data.path: {cfg.data.path} {where} holds {sampler.remaining() // groups.groups} "
                          f"packed samples, fewer than {share} ({global_batch // groups.groups})")
    ids = distributed.broadcast_from_lead(env, (run_id_for(out_dir), new_attempt_id()) if env.is_lead else None)
    recorder = Recorder(Path(cfg.train.log_dir or out_dir), *ids, rank=env.rank,
                        enabled=cfg.train.events or not env.is_node_lead)
    run = Run(cfg, env, data, recorder, out_dir, flops_per_token(cfg.model, cfg.data.seq_len),
              peak_flops(env.device, cfg.model.dtype, cfg.train.peak_flops), global_batch, groups,
              distributed.all_nodes(env))
    return run, build_state(cfg, env, sampler)


def record_launch(run: Run, state: TrainState) -> None:
    """Every node's rank 0 records the launch: the store learns of each node from the node itself."""
    if not run.env.is_node_lead:
        return
    cfg = run.cfg
    run.recorder.record(
        "launch", world_size=run.env.world_size, nodes=len(run.nodes), hosts=sorted({n.host for n in run.nodes}),
        node_rank=run.env.node_rank,
        device=device_name(run.env.device), peak_flops=run.peak_flops, flops_per_token=run.flops_per_token,
        n_params=count_params(cfg.model)[0], config_digest=state.config_digest,
        data_batch=run.data.batch_label, resume_from=run.resume_from,
        data_slice="; ".join(",".join(held) for held in run.groups.held) if run.groups.slices else None,
        start_step=state.step, total_steps=cfg.data.total_steps, seq_len=cfg.data.seq_len,
        global_batch_tokens=run.global_batch * cfg.data.seq_len, dtype=cfg.model.dtype, out_dir=str(run.out_dir),
    )


def _autocast(cfg: Config, env: distributed.DistEnv) -> torch.autocast:
    """Mixed precision for bf16/fp16 (master weights stay fp32); a no-op for fp32."""
    return torch.autocast(env.device.type, dtype=DTYPES[cfg.model.dtype], enabled=cfg.model.dtype != "fp32")


def train_step(run: Run, state: TrainState, stop: StopSignals) -> dict:
    """One optimizer step over micro_num micro-batches; returns the step record's fields."""
    cfg, env = run.cfg, run.env
    if state.step + 1 == cfg.debug.fail_at_step and cfg.debug.fail_rank in (-1, env.rank):
        raise RuntimeError(f"injected failure at step {state.step + 1} (debug.fail_at_step)")
    if state.step + 1 == cfg.debug.hang_at_step:
        threading.Event().wait()  # a node that stopped answering: only SIGKILL ends it
    t0 = time.perf_counter()
    ids = state.sampler.take(run.global_batch, run.groups.index, run.groups.size)
    if cfg.debug.record_sample_ids:
        _record_sample_ids(run, state.step + 1, ids)
    micro = [run.data.train.batch(ids[i:i + cfg.data.micro_bsz]) for i in range(0, len(ids), cfg.data.micro_bsz)]
    # DDP averages gradients over ranks; dividing by the global target count ÷ world size makes
    # the gradient the mean over every target of the global batch, as the reported loss is.
    targets_here = torch.tensor(float(sum(int((b.targets != IGNORE).sum()) for b in micro)), device=env.device)
    loss_divisor = distributed.all_reduce_sum(env, targets_here).clamp_(min=1.0) / env.world_size  # no host sync
    sums = metrics.new_sums(len(run.data.sources), env.device)
    sums[1] = sum(b.num_documents for b in micro)
    sums[2] = max(b.largest_length for b in micro)
    state.model.train()
    autocast = _autocast(cfg, env)
    t_fwd_bwd = time.perf_counter()
    for i, batch in enumerate(micro):
        sync = nullcontext() if i == len(micro) - 1 or not env.distributed else state.model.no_sync()
        inputs, targets = batch.inputs.to(env.device), batch.targets.to(env.device)
        segments = None if batch.segments is None else batch.segments.to(env.device)
        with sync:
            with autocast:
                logits = state.model(inputs, segments)
            token_loss = metrics.token_losses(logits, targets)
            state.grad_scaler.scale(token_loss.sum() / loss_divisor).backward()
        metrics.add_micro_batch(sums, token_loss.detach(), logits.detach(), targets, batch.sources.to(env.device))
    if env.device.type == "cuda":  # kernels run asynchronously: time them, not their launch
        torch.cuda.synchronize(env.device)
    fwd_bwd_time = time.perf_counter() - t_fwd_bwd

    state.grad_scaler.unscale_(state.optimizer)
    max_norm = cfg.train.clip_grad_norm if cfg.train.clip_grad_norm > 0 else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(state.raw_model.parameters(), max_norm))
    overflow = not math.isfinite(grad_norm)
    lr = state.optimizer.param_groups[0]["lr"]
    loss_scale = state.grad_scaler.loss_scale()
    if state.grad_scaler.is_enabled():
        state.grad_scaler.step(state.optimizer)  # skips the update itself on overflow
    elif not overflow:
        state.optimizer.step()
    state.grad_scaler.update_after_step(overflow)
    state.optimizer.zero_grad(set_to_none=True)
    state.lr_scheduler.step()
    state.step += 1
    state.consumed_tokens += run.global_batch * cfg.data.seq_len
    state.inf_nan_skip_batches += int(overflow)

    sums[0] = float(stop.reason is not None)
    figures = metrics.reduce_figures(metrics.gather(sums, env.distributed), run.data.sources)
    step_time = time.perf_counter() - t0
    return {
        "step": state.step, "loss": figures.loss, "lr": lr, "loss_scale": loss_scale,
        "grad_norm": grad_norm if not overflow else None,
        "num_consumed_tokens": state.consumed_tokens, "inf_nan_skip_batches": state.inf_nan_skip_batches,
        "num_samples_in_batch": figures.documents, "largest_length": figures.largest_length,
        "fwd_bwd_time": fwd_bwd_time, "acc": figures.acc, "perplexity": metrics.perplexity(figures.loss),
        **metrics.throughput(cfg.tokens_per_rank_step, env.world_size, step_time, run.flops_per_token, run.peak_flops),
        "step_time": step_time, "peak_mem_bytes": metrics.peak_memory_bytes(env.device),
        "per_source": figures.per_source, "stop_requested": figures.stop_requested,
    }


def _record_sample_ids(run: Run, step: int, ids: np.ndarray) -> None:
    """Debug: which packed samples this rank trains on (tests check each is used once); with
    slices, each id's slice too (`ids` are then indices in their slice)."""
    line = {"attempt": run.recorder.attempt, "step": step, "ids": ids.tolist()}
    if run.data.slice_label is not None:
        line["slice"], index = run.data.train.locate(ids)
        line["ids"] = index.tolist()
    with open(run.out_dir / f"sample_ids.rank{run.env.rank}.jsonl", "ab") as f:
        f.write(orjson.dumps(line) + b"\n")


@torch.no_grad()
def evaluate(run: Run, state: TrainState) -> dict:
    """Validation loss (nats/token) and bits per byte over the first valid_micro_num global batches."""
    cfg, env, valid = run.cfg, run.env, run.data.valid
    n = min(valid.num_samples, cfg.data.valid_micro_num * cfg.data.micro_bsz * env.world_size)
    mine = np.arange(env.rank, n, env.world_size)
    totals = torch.zeros(3, dtype=torch.float64, device=env.device)  # loss_sum, tokens, bytes
    state.raw_model.eval()
    autocast = _autocast(cfg, env)
    for i in range(0, len(mine), cfg.data.micro_bsz):
        batch = valid.batch(mine[i:i + cfg.data.micro_bsz])
        targets = batch.targets.to(env.device)
        segments = None if batch.segments is None else batch.segments.to(env.device)
        with autocast:
            logits = state.raw_model(batch.inputs.to(env.device), segments)
        totals[0] += metrics.token_losses(logits, targets).double().sum()
        totals[1] += (targets != IGNORE).sum()
        totals[2] += ((targets != IGNORE) & (targets < EOS)).sum()  # byte tokens; EOS carries no byte
    loss_sum, tokens, n_bytes = distributed.all_reduce_sum(env, totals).tolist()
    return {"step": state.step, "val_loss": loss_sum / tokens if tokens else None,
            "val_bpb": loss_sum / math.log(2) / n_bytes if n_bytes else None}


def compile_model(run: Run, state: TrainState) -> float:
    """Compile the model before the first step (seconds taken): a forward and backward of real
    samples of the training shape, once without and once with DDP's gradient sync as the
    micro-batches of a step run, gradients then dropped. After the launch record and before
    the first step record, so the ledger counts it as startup, and step 1 times a step."""
    cfg, env = run.cfg, run.env
    t0 = time.perf_counter()
    batch = run.data.train.batch(np.arange(cfg.data.micro_bsz))  # read, not consumed: the sampler is untouched
    inputs, targets = batch.inputs.to(env.device), batch.targets.to(env.device)
    segments = None if batch.segments is None else batch.segments.to(env.device)
    syncs = [state.model.no_sync(), nullcontext()] if env.distributed and cfg.data.micro_num > 1 else [nullcontext()]
    state.model.train()
    for sync in syncs:
        with sync:
            with _autocast(cfg, env):
                logits = state.model(inputs, segments)
            metrics.token_losses(logits, targets).sum().backward()
    state.optimizer.zero_grad(set_to_none=True)
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    return time.perf_counter() - t0


def run_loop(run: Run, state: TrainState) -> Summary:
    cfg, env, recorder = run.cfg, run.env, run.recorder
    summary = Summary(end="stop")
    checkpoints = LoopCheckpoints(cfg, recorder, env.is_lead, state.config_digest)
    t_start = time.perf_counter()
    with StopSignals() as stop:
        try:
            while True:
                if state.step >= cfg.data.total_steps:
                    summary.end = "total_steps"
                    break
                if state.sampler.remaining() < run.global_batch:
                    summary.end = "data_exhausted"
                    break
                fields = train_step(run, state, stop) | run.first_step_fields
                run.first_step_fields = {}
                stop_requested = fields.pop("stop_requested")
                if state.step == cfg.debug.stop_at_step:
                    stop_requested, stop.reason = True, stop.reason or "debug.stop_at_step"
                summary.steps += 1
                summary.losses.append(fields["loss"])
                if env.is_node_lead:
                    recorder.record("step", **fields)
                if env.is_lead:
                    if cfg.train.print_every and cfg.train.events and state.step % cfg.train.print_every == 0:
                        print(metrics.summary_line(state.step, cfg.data.total_steps, fields), flush=True)
                if cfg.data.valid_every and state.step % cfg.data.valid_every == 0:
                    result = evaluate(run, state)
                    if env.is_node_lead:
                        recorder.record("eval", **result)
                checkpoints.after_step(state)
                if stop_requested:
                    break
            checkpoints.at_end(state, summary.end)  # also on SIGINT/SIGTERM: checkpoint before exiting
        except Exception as exc:
            recorder.fault(exc, state.step, **(distributed.lost_peer(exc, run.nodes, env.node_rank) or {}))
            raise
        if env.is_node_lead:
            if summary.end == "stop":
                recorder.record("stop", reason=stop.reason or "signal on another rank", step=state.step)
            else:
                left = {label: state.sampler.left([label]) for label in state.sampler.slices or ()}
                recorder.record("finish", step=state.step, reason=summary.end, **({"data_left": left} if left else {}))
    summary.loop_seconds = time.perf_counter() - t_start
    return summary


def train(cfg: Config) -> Summary:
    """Run one launch of the training job described by `cfg` (inside torchrun or not).

    The model (DDP's reducer sits in reference cycles) is collected before the process group
    is destroyed, and ranks that end together pass a barrier first; otherwise gloo's teardown
    now and then hangs or aborts a peer at exit."""
    env = distributed.init(cfg.train.device, cfg.train.collective_timeout_s)
    try:
        summary = _launch(cfg, env)
    except CheckpointError as exc:  # every rank took this decision together: leave together
        release_group()
        exc.__traceback__ = None  # an expected one-line error: drop the frames holding the model
        gc.collect()
        distributed.close(env, clean=True)
        raise exc
    except BaseException:  # this rank alone may have failed: no barrier its peers might never reach
        distributed.close(env, clean=False)
        raise
    gc.collect()
    distributed.close(env, clean=True)
    if env.is_lead and cfg.train.report and cfg.train.events and summary.end != "stop":
        write_report(Path(cfg.train.out_dir))  # after the group closed: no rank waits for it
    return summary


def _launch(cfg: Config, env: distributed.DistEnv) -> Summary:
    run, state = start(cfg, env)
    resumed = resume_run(cfg, state, run.global_batch)  # raises RunComplete when nothing is left
    run.resume_from = resumed.source if resumed else None
    record_launch(run, state)
    if resumed is not None and env.is_lead:
        run.recorder.record("resume", **resumed.event_fields(), **state.sampler.remap())
    if cfg.train.compile:
        run.first_step_fields["compile_s"] = compile_model(run, state)
    summary = run_loop(run, state)
    if env.is_lead:
        print(f"events: {run.recorder.path}", flush=True)
    run.recorder.close()
    release_group()
    return summary
