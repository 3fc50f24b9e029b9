"""Ending the processes a test started (never by name: by the ids the test holds)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants, parent first so that it starts nothing new
    (torchrun starts its workers in sessions of their own, and a worker stuck in a collective
    ignores SIGTERM) — also how a test loses a node with everything on it, no record written."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in children:
        kill_tree(int(child))
