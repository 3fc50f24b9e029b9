"""Fixtures for the trainer tests: the shipped sample corpus, prepared once per session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trainer_procs import PYTHON, REPO, env


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "sample"
    subprocess.run([PYTHON, "-m", "trainer", "prepare", str(REPO / "sample_data"), "--out", str(out)],
                   check=True, env=env(), cwd=REPO, capture_output=True)
    return out
