"""The devices a run trains on: which one this process uses, its name, and its peak FLOP/s for MFU.

Peak figures are dense (no 2:4 sparsity) FLOP/s of one device from the vendors' datasheets, for
the dtype the matmuls run in: bf16/fp16 on the tensor/matrix cores with fp32 accumulation, fp32
on the vector units (PyTorch does not use TF32 for fp32 matmuls unless asked). 0.0 means the
device has no such figure (a V100 has no bf16): MFU is then reported as null, never as a guess.
"""

from __future__ import annotations

import os
import re

import torch

T = 1e12
# (pattern searched in the device name, {dtype: peak}); the first match wins, so a variant
# (H100 NVL, H100 PCIe) comes before its family. Names as torch reports them, e.g.
# "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 NVL", "NVIDIA A100-SXM4-80GB",
# "NVIDIA GeForce RTX 4090", "AMD Instinct MI300X", "Ascend910B3".
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    (r"\bGH200\b", {"bf16": 989 * T, "fp16": 989 * T, "fp32": 67 * T}),
    (r"\bH200\b.*\bNVL\b", {"bf16": 835 * T, "fp16": 835 * T, "fp32": 60 * T}),
    (r"\bH200\b", {"bf16": 989 * T, "fp16": 989 * T, "fp32": 67 * T}),
    (r"\bH100\b.*\bNVL\b", {"bf16": 835 * T, "fp16": 835 * T, "fp32": 60 * T}),
    (r"\bH[18]00\b.*\bPCIe\b", {"bf16": 756 * T, "fp16": 756 * T, "fp32": 51 * T}),
    (r"\bH[18]00\b", {"bf16": 989 * T, "fp16": 989 * T, "fp32": 67 * T}),  # SXM
    (r"\bH20\b", {"bf16": 148 * T, "fp16": 148 * T, "fp32": 44 * T}),
    (r"\bB200\b", {"bf16": 2250 * T, "fp16": 2250 * T, "fp32": 75 * T}),
    (r"\bA[18]00\b", {"bf16": 312 * T, "fp16": 312 * T, "fp32": 19.5 * T}),
    (r"\bL40S\b", {"bf16": 362 * T, "fp16": 362 * T, "fp32": 91.6 * T}),
    (r"\bL40\b", {"bf16": 181 * T, "fp16": 181 * T, "fp32": 90.5 * T}),
    (r"\bA10\b", {"bf16": 125 * T, "fp16": 125 * T, "fp32": 31.2 * T}),
    (r"\bRTX 5090\b", {"bf16": 209.5 * T, "fp16": 209.5 * T, "fp32": 104.8 * T}),
    (r"\bRTX 4090\b", {"bf16": 165.2 * T, "fp16": 165.2 * T, "fp32": 82.6 * T}),
    (r"\bV100\b", {"bf16": 0.0, "fp16": 125 * T, "fp32": 15.7 * T}),
    (r"\bMI300X\b", {"bf16": 1307.4 * T, "fp16": 1307.4 * T, "fp32": 163.4 * T}),
    (r"\bAscend\s*910B", {"bf16": 320 * T, "fp16": 320 * T, "fp32": 0.0}),
]


def peak_for_name(name: str, dtype: str) -> float:
    """Peak FLOP/s of the device called `name` in `dtype`; 0.0 for a device not in the table."""
    for pattern, table in PEAK_FLOPS:
        if re.search(pattern, name):
            return table[dtype]
    return 0.0


def cpu_peak_flops(threads: int | None = None) -> float:
    """Rough fp32 peak of the cores this process uses: threads × GHz × FLOPs per cycle.

    FLOPs per cycle per core: 64 with AVX-512 FMA, 32 with AVX2 FMA (two FMA units),
    otherwise 8. Set train.peak_flops when you know better.
    """
    threads = threads or torch.get_num_threads()
    ghz, flags = 2.5, ""
    try:
        text = open("/proc/cpuinfo").read()
        mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", text)
        ghz = float(mhz.group(1)) / 1000 if mhz else ghz
        found = re.search(r"^flags\s*:(.*)$", text, re.M)
        flags = found.group(1) if found else ""
    except OSError:
        pass
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 8
    return threads * ghz * 1e9 * per_cycle


def peak_flops(device: torch.device, dtype: str, override: float = 0.0) -> float:
    """train.peak_flops when set; the table's figure for an accelerator (0.0 when unknown: MFU
    null until train.peak_flops is set); the cores' estimate on CPU."""
    if override > 0:
        return override
    if device.type == "cpu":
        return cpu_peak_flops()
    return peak_for_name(device_name(device), dtype)


def select_device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cpu":
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads/process)"
    return getattr(torch, device.type).get_device_name(device)  # cuda (also ROCm), npu (torch_npu)
