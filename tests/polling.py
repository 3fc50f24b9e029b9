"""Poll-with-deadline, the one way the tests wait for another process (never a bare sleep)."""

from __future__ import annotations

import time

import pytest


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    """Poll until `predicate()` is truthy (returning it) or fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {timeout} s: {predicate.__doc__ or predicate}")
        time.sleep(interval)
