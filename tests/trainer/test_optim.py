"""lr schedule and the fp16 loss scaler's hysteresis and bounds."""

import math

import pytest
import torch

from trainer.config import GradScalerConfig, LRSchedulerConfig
from trainer.optim import LossScaler, build_lr_scheduler, lr_multiplier


def test_warmup_then_cosine_down_to_eta_min():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = build_lr_scheduler(optimizer, LRSchedulerConfig(warmup_ratio=0.1, eta_min=1e-4), 100, 1e-3)
    lrs = []
    for _ in range(101):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:10] == pytest.approx([1e-3 * (i + 1) / 10 for i in range(10)])
    assert max(lrs) == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[100] == pytest.approx(1e-4)


def test_lr_multiplier_midpoint_of_cosine():
    assert lr_multiplier(55, 100, 0.1, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def _scaler(**over):
    cfg = GradScalerConfig(initial_scale=1024.0, min_scale=64.0, max_scale=2048.0, growth_interval=2,
                           hysteresis=2, **over)
    return LossScaler("cpu", cfg, enabled=True)


def _step(scaler, overflow):
    p = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([p], lr=0.1)
    scaler.scale((p * (math.inf if overflow else 1.0)).sum()).backward()
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update_after_step(overflow)
    return p.item()


def test_hysteresis_tolerates_one_overflow_then_backs_off():
    scaler = _scaler()
    assert _step(scaler, overflow=True) == 1.0  # step skipped
    assert scaler.get_scale() == 1024.0  # first overflow tolerated
    _step(scaler, overflow=True)
    assert scaler.get_scale() == 512.0


def test_scale_stays_within_min_and_max():
    scaler = _scaler(backoff_factor=0.01)
    _step(scaler, True), _step(scaler, True)
    assert scaler.get_scale() == 64.0
    grow = _scaler()
    for _ in range(6):
        _step(grow, overflow=False)
    assert grow.get_scale() == 2048.0


def test_state_round_trips_including_hysteresis():
    scaler = _scaler()
    _step(scaler, True)
    restored = _scaler()
    restored.load_state_dict(scaler.state_dict())
    assert restored.overflows_left == 1 and restored.get_scale() == scaler.get_scale()


def test_disabled_scaler_scales_by_one():
    scaler = LossScaler("cpu", GradScalerConfig(), enabled=False)
    assert scaler.loss_scale() == 1.0 and scaler.scale(torch.tensor(2.0)).item() == 2.0


def test_a_tolerated_overflow_restarts_the_growth_count():
    scaler = _scaler()  # growth_interval 2
    _step(scaler, False), _step(scaler, True), _step(scaler, False)
    assert scaler.get_scale() == 1024.0  # one clean step since the overflow: not grown yet
    _step(scaler, False)
    assert scaler.get_scale() == 2048.0


def test_overflows_keep_backing_off_until_the_scale_grows_again():
    scaler = _scaler()
    _step(scaler, True), _step(scaler, True)
    assert scaler.get_scale() == 512.0
    _step(scaler, True)
    assert scaler.get_scale() == 256.0  # hysteresis spent: no second free overflow
    _step(scaler, False), _step(scaler, False)
    assert scaler.get_scale() == 512.0 and scaler.overflows_left == 2  # growth restores the hysteresis
    _step(scaler, True)
    assert scaler.get_scale() == 512.0
