"""Helpers for the trainer tests: run the real CLI (`python -m trainer`) and real `torchrun`
processes, read their event logs. (A module of its own, not conftest,
so that `from trainer_procs import …` can never pick up another directory's conftest.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from processes import kill_tree

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def env() -> dict:
    e = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def prepare_sample(out: Path, *options: str) -> Path:
    """The shipped sample corpus prepared into `out` (`trainer prepare` options such as
    `--sample 40`)."""
    subprocess.run([PYTHON, "-m", "trainer", "prepare", str(REPO / "sample_data"), "--out", str(out), *options],
                   check=True, env=env(), cwd=REPO, capture_output=True)
    return out


def train_cmd(data: Path, out_dir: Path, *overrides: str, nproc: int | None = None) -> list[str]:
    launcher = [TORCHRUN, "--nproc-per-node", str(nproc), "--standalone"] if nproc else [PYTHON]
    return [*launcher, "-m", "trainer", "train", "--config", "tiny",
            f"data.path={data}", f"train.out_dir={out_dir}", *overrides]


def run_train(data: Path, out_dir: Path, *overrides: str, nproc: int | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(data, out_dir, *overrides, nproc=nproc), env=env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def run_nodes(data: Path, out_dir: Path, *overrides: str, per_node: list[tuple[str, ...]],
              timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """One training job over len(per_node) "nodes" on this machine: a real `torchrun` per node
    (one process each, static rendezvous on loopback), node k given `per_node[k]` on top."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([TORCHRUN, "--nnodes", str(len(per_node)), "--node-rank", str(k), "--nproc-per-node", "1",
                               "--master-addr", "127.0.0.1", "--master-port", str(port),
                               *train_cmd(data, out_dir, *overrides, *extra)[1:]],
                              env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, extra in enumerate(per_node)]
    results = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:  # a hung job must not outlive the test
                kill_tree(p.pid)
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def steps_in(path: Path) -> int:
    if not path.exists():
        return 0
    return sum('"kind":"step"' in line for line in path.read_text().splitlines())
