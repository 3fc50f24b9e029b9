"""End-of-attempt evidence of the device and the launcher, read from any text format:
torchrun's summary of a worker killed by SIGKILL (its
`failed (exitcode: -9)` line is followed by the ChildFailedError block the shared endings read), a CUDA error (an illegal memory access, a launch failure) and
NCCL errors that are not timeouts (`ncclSystemError`, `unhandled system error`, a remote peer
gone). `monitor/parsers/endings.py` consults this module: `detect` for a single line, and
`cause_of` for the text of a finished traceback.

    Signal 9 (SIGKILL) received by PID 394968                  → fault, cause killed
    … CUDA error: an illegal memory access was encountered     → fault, cause cuda_error
    torch.distributed.DistBackendError: NCCL error in: …, unhandled system error
    ncclSystemError: System call … failed or device error      → fault, cause nccl_error

A CUDA out-of-memory error and NCCL timeouts are the shared endings' (`oom`, `nccl_timeout`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from monitor.records import Record

if TYPE_CHECKING:
    from monitor.parsers.text import TextParser

_HINT_RE = re.compile(r"SIGKILL|CUDA error|cuda runtime error|nccl|NCCL|illegal memory access")
_SIGKILL_RE = re.compile(r"Signal 9 \(SIGKILL\) received by PID \d+")
_CUDA_RE = re.compile(r"CUDA error: .+|an illegal memory access was encountered|cuda runtime error \(\d+\) : .+")
_NCCL_RE = re.compile(r"NCCL error(?: in)?: .+|nccl(?:System|Internal|UnhandledCuda|Remote|InvalidUsage)Error\b.*")
_TIMEOUT_WORDS = ("timeout", "timed out")
_REMOTE_GONE_RE = re.compile(r"ncclremoteerror|remote process exited")
"""NCCL's word for a peer that went away: the node-lost evidence endings.py reads in a traceback."""


def cause_of(lowered: str) -> str | None:
    """The cause of a traceback whose (lower-cased) text names a device or NCCL error; None
    when it names neither. Timeouts and out-of-memory were classified before this is asked."""
    if "illegal memory access" in lowered or "cuda error" in lowered or "cuda runtime error" in lowered:
        return "cuda_error"
    if "nccl error" in lowered or re.search(r"nccl\w*error", lowered):
        return "nccl_error"
    return None


def detect(parser: TextParser, line: str, rank: int) -> list[Record]:
    """A device or launcher ending on a single line (not inside a traceback)."""
    if not _HINT_RE.search(line):
        return []
    at, body = parser.at(), line.strip()
    if _SIGKILL_RE.search(line):
        return parser.end_record("fault", at, "killed", rank=rank, exc_type="SIGKILL",
                                 message=body[:1000], cause="killed")
    if match := _CUDA_RE.search(line):
        return parser.end_record("fault", at, "cuda_error", rank=rank, exc_type="CudaError",
                                 message=match.group(0)[:1000], cause="cuda_error")
    if (match := _NCCL_RE.search(line)) and not any(word in line.lower() for word in _TIMEOUT_WORDS):
        cause = "node_lost" if _REMOTE_GONE_RE.search(line.lower()) else "nccl_error"
        return parser.end_record("fault", at, cause, rank=rank, exc_type="NcclError",
                                 message=match.group(0)[:1000], cause=cause)
    return []
