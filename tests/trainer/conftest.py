"""Fixtures for the trainer tests: the shipped sample corpus, prepared once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer_procs import prepare_sample


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    return prepare_sample(tmp_path_factory.mktemp("prepared") / "sample")
