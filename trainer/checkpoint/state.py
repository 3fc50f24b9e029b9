"""What a checkpoint holds, taken from and put back into the live training objects.

Tensors of the model and the optimizer go through torch.distributed.checkpoint (DCP), keyed
by parameter names without the DDP wrapper, so they load at any world size. Everything
else — the optimizer's hyper-parameters, lr scheduler, grad scaler, data position, RNG
states, step and consumed tokens — is small and goes into one `extra.pt` per rank made only
of tensors and plain Python values, so `torch.load(..., weights_only=True)` reads it.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

FLAT = StateDictOptions(flatten_optimizer_state_dict=True)


COUNTERS = ("step", "consumed_tokens", "inf_nan_skip_batches")  # plain ints, saved when present


class Checkpointable(Protocol):
    """What a checkpoint saves and restores; the loop's TrainState is one (duck-typed)."""

    model: torch.nn.Module  # bare or DDP-wrapped
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any  # .state_dict() / .load_state_dict()
    grad_scaler: Any  # .state_dict() / .load_state_dict()
    sampler: Any  # data position: world-size-independent .state_dict() / .load_state_dict()
    step: int  # optimizer steps completed
    consumed_tokens: int


def tensor_state(state: Checkpointable, *, optimizer: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors for DCP as {"model": …, "optim": …}, the optimizer's non-tensor values)."""
    if not optimizer:
        return {"model": get_model_state_dict(state.model)}, {}
    model_sd, optim_sd = get_state_dict(state.model, state.optimizer, options=FLAT)
    tensors = {k: v for k, v in optim_sd.items() if isinstance(v, torch.Tensor)}
    hparams = {k: plain(v, k) for k, v in optim_sd.items() if not isinstance(v, torch.Tensor)}
    return {"model": model_sd, "optim": tensors}, hparams


def apply_tensor_state(state: Checkpointable, loaded: dict[str, Any], hparams: dict[str, Any]) -> None:
    if "optim" not in loaded:
        set_model_state_dict(state.model, loaded["model"])
        return
    set_state_dict(state.model, state.optimizer, model_state_dict=loaded["model"],
                   optim_state_dict={**loaded["optim"], **hparams}, options=FLAT)


def plain(value: Any, where: str = "state") -> Any:
    """`value` as tensors and plain Python values only (what weights_only loading accepts)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {k: plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where}: {type(value).__name__} cannot be checkpointed safely (not a tensor or plain value)")


def rng_state() -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }


def set_rng_state(saved: dict[str, Any]) -> None:
    py = saved["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    npy = saved["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(saved["torch"])
    if saved["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])


def extra_state(state: Checkpointable, *, config_digest: str, optim_hparams: dict[str, Any]) -> dict[str, Any]:
    """This rank's small state, captured at the same instant as the tensors."""
    return {
        "counters": {name: int(getattr(state, name)) for name in COUNTERS if hasattr(state, name)},
        "config_digest": config_digest,
        "optim_hparams": optim_hparams,
        "lr_scheduler": plain(state.lr_scheduler.state_dict(), "lr_scheduler") if state.lr_scheduler else None,
        "grad_scaler": plain(state.grad_scaler.state_dict(), "grad_scaler") if state.grad_scaler else None,
        "data_position": plain(state.sampler.state_dict(), "data_position"),
        "rng": rng_state(),
    }
