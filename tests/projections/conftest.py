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
import typer
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
NANOCHAT = ROOT / "sample_logs" / "nanochat_2gpu"
NANOCHAT_RUN = "dual_gpu_stable_success"
PREVIOUS_RUN = "previous_run"
LING_RUN = "ling-1b-v1"


def trainledger(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", "from trainledger.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _composed_app() -> typer.Typer:
    from monitor.cli import register as register_monitor
    from trainer.cli import register as register_trainer

    app = typer.Typer()
    register_trainer(app)
    register_monitor(app)
    return app


APP = _composed_app()


def cli(*args: str) -> subprocess.CompletedProcess:
    """The same commands as `trainledger`, run in this process (no interpreter start-up per call):
    exit status, stdout and stderr as a process would give them; an unexpected exception raised."""
    result = CliRunner().invoke(APP, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


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
    result = trainledger("ingest", str(NANOCHAT / "logs"), str(previous.parent),
                         str(ROOT / "sample_logs" / "ling_1b" / "logs"), "--db", db)
    assert result.returncode == 0, result.stderr
    return db
