"""Optimizer (AdamW), learning-rate schedule (warm-up + cosine) and the fp16 loss scaler."""

from __future__ import annotations

import math

import torch
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from trainer.config import AdamConfig, GradScalerConfig, LRSchedulerConfig


def build_optimizer(model: torch.nn.Module, cfg: AdamConfig) -> torch.optim.AdamW:
    """AdamW; matrices decay, norms and other vectors do not (nanoGPT's grouping).

    The fused kernel (one pass over each parameter for the whole update) where the device has
    one — CUDA, and CPU too: on 2 cores it steps a 3.5 M-parameter model in 1.4 ms against
    the foreach path's 26 ms."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.device.type in _get_fused_kernels_supported_devices() for p in params)
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                             fused=fused or None)


def lr_multiplier(step: int, total_steps: int, warmup_ratio: float, min_ratio: float) -> float:
    """Linear warm-up over warmup_ratio × total_steps, then cosine from 1 down to min_ratio."""
    warmup = math.ceil(warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, total_steps: int,
                       base_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    min_ratio = cfg.eta_min / base_lr if base_lr > 0 else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, cfg.warmup_ratio, min_ratio))


class LossScaler(torch.amp.GradScaler):
    """torch's GradScaler plus InternLM's min_scale, max_scale and hysteresis.

    Enabled only for fp16; for fp32 and bf16 it is present (so checkpoints always hold a
    grad scaler) but scales by 1 and never skips a step.
    """

    def __init__(self, device_type: str, cfg: GradScalerConfig, enabled: bool):
        super().__init__(device_type, init_scale=cfg.initial_scale, growth_factor=cfg.growth_factor,
                         backoff_factor=cfg.backoff_factor, growth_interval=cfg.growth_interval, enabled=enabled)
        self.min_scale, self.max_scale, self.hysteresis = cfg.min_scale, cfg.max_scale, cfg.hysteresis
        self.overflows_left = cfg.hysteresis

    def update_after_step(self, overflow: bool) -> None:
        """InternLM's (and Megatron's) hysteresis: every overflow restarts the growth count; the
        scale backs off from the `hysteresis`-th overflow since it last grew, on each one after."""
        if not self.is_enabled():
            return
        before = self.get_scale()
        self.update()  # torch: on an overflow back off and restart the growth count; else maybe grow
        if overflow:
            self.overflows_left = max(self.overflows_left - 1, 0)
            if self.overflows_left > 0:
                self.update(new_scale=before)  # a tolerated overflow: keep the scale
        elif self.get_scale() > before:
            self.overflows_left = self.hysteresis
        clamped = min(max(self.get_scale(), self.min_scale), self.max_scale)
        if clamped != self.get_scale():
            self.update(new_scale=clamped)

    def loss_scale(self) -> float:
        return self.get_scale() if self.is_enabled() else 1.0

    def state_dict(self) -> dict:
        state = super().state_dict()
        if state:
            state["overflows_left"] = self.overflows_left
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self.overflows_left = state.pop("overflows_left", self.hysteresis)
        super().load_state_dict(state)
