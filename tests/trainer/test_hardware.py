"""Peak FLOP/s for MFU: device names as torch reports them, matched to the right variant."""

import pytest
import torch

from trainer.hardware import PEAK_FLOPS, peak_flops, peak_for_name


@pytest.mark.parametrize(("name", "bf16"), [
    ("NVIDIA H100 80GB HBM3", 989e12),  # SXM
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H800", 989e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA H200 NVL", 835e12),
    ("NVIDIA GH200 480GB", 989e12),
    ("NVIDIA H20", 148e12),
    ("NVIDIA B200", 2250e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A800-SXM4-80GB", 312e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA L40", 181e12),
    ("NVIDIA A10", 125e12),
    ("NVIDIA GeForce RTX 4090", 165.2e12),
    ("NVIDIA GeForce RTX 5090", 209.5e12),
    ("AMD Instinct MI300X", 1307.4e12),
    ("Ascend910B3", 320e12),
])
def test_each_device_gets_its_own_figure(name, bf16):
    assert peak_for_name(name, "bf16") == bf16


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA GeForce RTX 3090", "NVIDIA H1000", "Tesla T4", ""])
def test_unknown_or_lookalike_names_get_no_figure(name):
    """An A10G is not an A10, an H1000 not an H100: better MFU null than a wrong peak."""
    assert peak_for_name(name, "bf16") == 0.0


def test_every_entry_has_a_figure_per_training_dtype():
    for _, table in PEAK_FLOPS:
        assert set(table) == {"fp32", "bf16", "fp16"}


def test_override_wins_and_cpu_is_estimated():
    assert peak_flops(torch.device("cpu"), "fp32", override=5e11) == 5e11
    assert peak_flops(torch.device("cpu"), "fp32") > 0
