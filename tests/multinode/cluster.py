"""Several "nodes" on this machine, the way a cluster lays them out: node k has its own disk
(`node{k}/data` holding only its slices, `node{k}/logs` for its events), every node reaches the
shared storage (`shared/`: the run id and the checkpoints), and each node's log folder is
followed by its own `trainledger watch` into one store. Each node is a real `torchrun` with
c10d rendezvous on loopback; `TRAINLEDGER_HOST=node{k}` names the node in its records.
(A module of its own, not conftest, so that `from cluster import …` is unambiguous.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from processes import kill_tree

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))


def node_env(node: int) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", TRAINLEDGER_HOST=f"node{node}")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def prepare(out: Path, *options: str) -> Path:
    subprocess.run([PYTHON, "-m", "trainer", "prepare", str(REPO / "sample_data"), "--out", str(out), *options],
                   check=True, env=node_env(0), cwd=REPO, capture_output=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Cluster:
    def __init__(self, root: Path, prepared: Path):
        self.root, self.prepared = root, prepared
        self.shared = root / "shared"
        self.procs: list[subprocess.Popen] = []

    def disk(self, node: int) -> Path:
        return self.root / f"node{node}"

    def logs(self, node: int) -> Path:
        return self.disk(node) / "logs"

    def copy_slices(self, node: int, *slices: int, batch: int = 0) -> Path:
        """Put these slices of the prepared batch on the node's disk (with meta.json and valid/)."""
        data = self.disk(node) / "data"
        if not data.exists():
            data.mkdir(parents=True)
            shutil.copy(self.prepared / "meta.json", data / "meta.json")
            shutil.copytree(self.prepared / "valid", data / "valid")
        for k in slices:
            shutil.copytree(self.prepared / f"batch_{batch}" / f"slice_{k}", data / f"batch_{batch}" / f"slice_{k}")
        return data

    def launch(self, per_node: dict[int, tuple[str, ...]], *overrides: str,
               attempt: str) -> dict[int, subprocess.Popen]:
        """One training job over the nodes of `per_node` (node → its own overrides): a `torchrun
        --nnodes N --node-rank K --rdzv-backend c10d` each. The first node starts first, so its
        agent hosts the rendezvous store; its output goes to `node{k}/torchrun.{attempt}.log`."""
        port, nodes, procs = free_port(), len(per_node), {}
        for rank, (node, extra) in enumerate(per_node.items()):
            log = open(self.disk(node) / f"torchrun.{attempt}.log", "w")
            cmd = [TORCHRUN, "--nnodes", str(nodes), "--node-rank", str(rank), "--nproc-per-node", "1",
                   "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", attempt,
                   "-m", "trainer", "train", "--config", "tiny", f"data.path={self.disk(node) / 'data'}",
                   f"train.out_dir={self.shared}", f"train.log_dir={self.logs(node)}", *overrides, *extra]
            procs[node] = self._start(cmd, node, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            if rank == 0:
                deadline = time.monotonic() + 60
                while not _listening(port):
                    assert time.monotonic() < deadline and procs[node].poll() is None, self.output(node, attempt)
                    time.sleep(0.05)
        return procs

    def watch(self, node: int, db: str, *options: str) -> subprocess.Popen:
        """The node's own watcher on its own log folder."""
        self.logs(node).mkdir(parents=True, exist_ok=True)
        return self._start([TRAINLEDGER, "watch", str(self.logs(node)), "--db", db, "--poll", "0.5",
                            "--live-every", "0.5", *options], node, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _start(self, cmd: list[str], node: int, **io) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=node_env(node), cwd=REPO, text=True, **io)
        self.procs.append(proc)
        return proc

    def output(self, node: int, attempt: str) -> str:
        path = self.disk(node) / f"torchrun.{attempt}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def sample_ids(self) -> list[dict]:
        return [json.loads(line) for path in sorted(self.shared.glob("sample_ids.rank*.jsonl"))
                for line in path.read_text().splitlines()]

    def run_id(self) -> str:
        return (self.shared / "run_id").read_text().strip()

    def close(self) -> None:
        """Nothing this cluster started outlives the test."""
        for proc in self.procs:
            kill_tree(proc.pid)
            proc.wait(timeout=30)

