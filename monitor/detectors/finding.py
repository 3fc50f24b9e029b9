"""What a detector reports: a condition true of a run now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    cause: str
    """One per condition: stalled, fault, throughput, throughput_vs_reference, mfu, loss_nonfinite,
    loss_spike, loss_scale, skipped_batches, restart_storm, restore_gap, finished, data_exhausted."""
    severity: str
    """info | warning | critical"""
    message: str
    attempt: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
