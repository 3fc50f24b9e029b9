"""Sample runs ingested once per session into a real SQLite store through `trainledger ingest`:
the nanochat run, a previous nanochat run without its throughput drop (the generator with the
drop moved past the end, renamed), and the ling-1b run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NANOCHAT = ROOT / "sample_logs" / "nanochat_2gpu"
NANOCHAT_RUN = "dual_gpu_stable_success"
PREVIOUS_RUN = "previous_run"
LING_RUN = "ling-1b-v1"


def trainledger(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", "from trainledger.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def nanochat_generator():
    """sample_logs/nanochat_2gpu/generate.py as a module (its constants and lines())."""
    spec = importlib.util.spec_from_file_location("nanochat_generate", NANOCHAT / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("projections")
    generator = nanochat_generator()
    generator.DROP_AT = generator.ITERATIONS + 1
    previous = folder / "previous" / "train_dual_gpu_20251020_090000.log"
    previous.parent.mkdir()
    previous.write_text("\n".join(generator.lines()).replace(f"run = {NANOCHAT_RUN}", f"run = {PREVIOUS_RUN}") + "\n")
    db = str(folder / "samples.db")
    for logs in (NANOCHAT / "logs", previous.parent, ROOT / "sample_logs" / "ling_1b" / "logs"):
        result = trainledger("ingest", str(logs), "--db", db)
        assert result.returncode == 0, result.stderr
    return db
