"""Resuming: choose a whole checkpoint every rank agrees on, then restore what was asked.

Modes: `auto` (the newest whole checkpoint under the run's checkpoint folder, skipping
newer ones that are unpublished or damaged on any rank), `path` (exactly that checkpoint
or a clear error), `init_from` (model weights only: a new run from step 0). With
`load_optimizer=False` the optimizer starts fresh. Whatever is not restored is reported,
so the `resume` event shows the gap.

Every rank checks a share of the parts (part p on rank p mod world size) and the verdicts
are all-gathered, so every rank takes the same decision. The folder must be on storage
every rank sees (DCP needs that anyway to reshard).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from trainer.checkpoint import storage
from trainer.checkpoint.saver import checkpoint_group, gather_objects, rank_and_world
from trainer.checkpoint.state import Checkpointable, apply_tensor_state, set_rng_state, tensor_state
from trainer.checkpoint.storage import CheckpointError

PARTS = ("model", "optimizer", "lr_scheduler", "grad_scaler", "data_position", "rng")


class RunComplete(CheckpointError):
    """The checkpoint to resume from is the end of its run: nothing is left to train."""

    def __init__(self, step: int, path: Path):
        super().__init__(f"run already complete at step {step} (checkpoint {path}); nothing to resume")
        self.step = step


@dataclass
class ResumeRequest:
    mode: str = "none"  # none | auto | path | init_from
    path: Path | None = None  # the checkpoint folder for path and init_from
    load_optimizer: bool = True


@dataclass
class Resumed:
    """What a resume restored and what it skipped; `state` continues from `step`."""

    mode: str
    source: str | None = None
    step: int = 0
    restored: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(PARTS, False))
    skipped: list[dict[str, Any]] = field(default_factory=list)
    config_changed: bool = False
    data_position_note: str | None = None  # why the data position was not restored

    @property
    def gap(self) -> bool:
        """True when state was lost: a part not restored, or every checkpoint skipped."""
        return (self.source is not None and not all(self.restored.values())) or (
            self.source is None and bool(self.skipped))

    def event_fields(self) -> dict[str, Any]:
        fields = {"step": self.step, "source": self.source, "mode": self.mode, "restored": self.restored,
                  "skipped": self.skipped, "gap": self.gap, "config_changed": self.config_changed}
        if self.data_position_note:
            fields["data_position_note"] = self.data_position_note
        return fields


def resume(root: str | Path, request: ResumeRequest, state: Checkpointable, *, total_steps: int,
           config_digest: str = "") -> Resumed | None:
    """Restore `state` as `request` asks; None for a fresh start with nothing to report."""
    if request.mode == "none":
        return None
    if request.mode == "auto":
        ckpt, skipped = _newest_whole(Path(root))
        if ckpt is None:
            return Resumed("auto", skipped=skipped) if skipped else None
    elif request.mode in ("path", "init_from"):
        ckpt, skipped = _exact(Path(request.path), "--resume" if request.mode == "path" else "--init-from"), []
    else:
        raise ValueError(f"unknown resume mode {request.mode!r}")
    meta = storage.read_meta(ckpt)
    weights_only = request.mode == "init_from"
    if not weights_only and meta["step"] >= total_steps:
        raise RunComplete(meta["step"], ckpt)
    resumed = Resumed(request.mode, source=str(ckpt), skipped=skipped,
                      config_changed=bool(config_digest) and meta["config_digest"] != config_digest)
    _restore(ckpt, meta, state, resumed, weights_only=weights_only,
             load_optimizer=request.load_optimizer and not weights_only)
    return resumed


def _exact(ckpt: Path, option: str) -> Path:
    if not ckpt.is_dir():
        raise CheckpointError(f"{option} {ckpt}: no such checkpoint folder")
    if storage.step_of(ckpt) is None and storage.published_steps(ckpt):
        raise CheckpointError(f"{option} {ckpt}: this folder holds several checkpoints; name one "
                              f"(e.g. {storage.step_dir(ckpt, storage.published_steps(ckpt)[-1])}) or use --resume auto")
    reason = _why_not_whole(ckpt)
    if reason is not None:
        raise CheckpointError(f"{option} {ckpt}: not a whole checkpoint: {reason}")
    return ckpt


def _newest_whole(root: Path) -> tuple[Path | None, list[dict[str, Any]]]:
    rank, _ = rank_and_world()
    candidates = _broadcast(storage.all_steps(root) if rank == 0 else None)
    skipped = []
    for step in reversed(candidates):
        ckpt = storage.step_dir(root, step)
        reason = _why_not_whole(ckpt)
        if reason is None:
            return ckpt, skipped
        skipped.append({"step": step, "path": str(ckpt), "reason": reason})
    return None, skipped


def _why_not_whole(ckpt: Path) -> str | None:
    """Collective: why the checkpoint is not whole on some rank, identical on every rank."""
    rank, world = rank_and_world()
    try:
        meta = storage.read_meta(ckpt)
        reason = next((r for part in range(rank, meta["world_size"], world)
                       if (r := storage.verify_part(ckpt, meta, part)) is not None), None)
    except CheckpointError as exc:
        reason = str(exc)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"unreadable ({type(exc).__name__}: {exc})"
    return next((r for r in _gather(reason) if r is not None), None)


def _restore(ckpt: Path, meta: dict, state: Checkpointable, resumed: Resumed, *, weights_only: bool,
             load_optimizer: bool) -> None:
    rank, _ = rank_and_world()
    shared = _load_extra(ckpt, 0)
    tensors, _ = tensor_state(state, optimizer=load_optimizer)
    group = checkpoint_group()
    try:
        dcp.load(tensors, checkpoint_id=ckpt / storage.DCP_DIR, process_group=group, no_dist=group is None)
        apply_tensor_state(state, tensors, shared["optim_hparams"])
    except (CheckpointException, RuntimeError, ValueError, KeyError) as exc:
        cause = exc
        if isinstance(exc, CheckpointException) and exc.failures:  # {rank: (exception, frames)}
            cause = next(iter(exc.failures.values()))
            cause = cause[0] if isinstance(cause, tuple) else cause
        first = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        raise CheckpointError(f"{ckpt}: does not fit this model and optimizer ({first[:300]})") from None
    resumed.restored["model"] = True
    resumed.restored["optimizer"] = load_optimizer
    if weights_only:
        return
    for name, value in shared["counters"].items():
        if hasattr(state, name):
            setattr(state, name, value)
    resumed.step = state.step
    if state.lr_scheduler is not None and shared["lr_scheduler"] is not None:
        state.lr_scheduler.load_state_dict(shared["lr_scheduler"])
        for group_, lr in zip(state.optimizer.param_groups, state.lr_scheduler.get_last_lr()):
            group_["lr"] = lr  # the lr of the next step, also when the optimizer starts fresh
        resumed.restored["lr_scheduler"] = True
    resumed.restored["grad_scaler"] = _restore_scaler(state.grad_scaler, shared["grad_scaler"])
    try:
        state.sampler.load_state_dict(shared["data_position"])
        resumed.restored["data_position"] = True
    except (ValueError, KeyError) as exc:  # e.g. the next data batch: it starts at its beginning
        resumed.data_position_note = str(exc)
    own_rng = rank < meta["world_size"]  # a rank the saving run did not have starts from its seed
    if own_rng:
        set_rng_state((shared if rank == 0 else _load_extra(ckpt, rank))["rng"])
    resumed.restored["rng"] = all(_gather(own_rng))


def _restore_scaler(scaler: Any, saved: dict | None) -> bool:
    if scaler is None or saved is None:
        return False
    if not saved and scaler.state_dict():  # saved from a disabled scaler (fp32/bf16), now fp16
        return False
    scaler.load_state_dict(saved)
    return True


def _load_extra(ckpt: Path, rank: int) -> dict[str, Any]:
    path = storage.rank_dir(ckpt, rank) / storage.EXTRA
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to load: it holds more than tensors and plain values "
                              f"({str(exc).splitlines()[-1].strip() or type(exc).__name__})") from None


def _gather(item: Any) -> list[Any]:
    return gather_objects(item, checkpoint_group())


def _broadcast(item: Any) -> Any:
    group = checkpoint_group()
    if group is None:
        return item
    box = [item]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]
