"""Crash safety and damaged-part fallback of trainer.checkpoint, driven by a toy job.

The toy (tests/trainer/checkpoint_toy.py) uses the real checkpoint code; these tests need
no trainer, so they pin the checkpoint module's guarantees on their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "tests" / "trainer" / "checkpoint_toy.py"
PY = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))

pytestmark = pytest.mark.slow


def run(*args: str, nproc: int = 0, timeout: int = 120) -> list[dict]:
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", str(nproc), str(TOY), *args] if nproc \
        else [PY, str(TOY), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("world, count", [(1, 24), (2, 12)], ids=["1-process", "2-ranks-gloo"])
def test_sigkill_during_checkpoint_writes_always_leaves_a_whole_checkpoint(tmp_path, world, count):
    """Half the kills land on a seeded file operation of the save (with two ranks: of rank 0 or
    rank 1, the other rank then killed too), half at a seeded time while saving goes on.
    One process then resumes: with two saving ranks that also reshards 2 → 1."""
    reps = run("crash", str(tmp_path), "--reps", str(count), "--seed", "20261123", "--world", str(world),
               timeout=200)[-1]["reps"]
    assert len(reps) == count
    for rep in reps:
        assert rep["killed"], rep
        # never loses a checkpoint it reported as saved; at most gains the one in flight
        assert rep["last_reported"] <= rep["step"] <= rep["last_reported"] + 1, rep
        if rep["step"]:
            assert rep["identical"], rep  # model, optimizer, data position, RNG all as saved
    fell_back = [r for r in reps if r["skipped"]]
    print(f"\ncrash safety ({world} saving rank(s)): {len(reps)} SIGKILLs, resumed from a whole checkpoint every time; "
          f"fell back past an unfinished newer checkpoint {len(fell_back)}/{len(reps)} times; "
          f"started fresh (killed before the first save finished) "
          f"{sum(1 for r in reps if r['step'] == 0)}/{len(reps)} times")
    assert any(r["step"] > 0 for r in reps)  # the seeds do reach past the first checkpoint


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


DAMAGE = {
    "deleted": (lambda p: p.unlink(), "dcp/__1_0.distcp", "rank 1: dcp/__1_0.distcp missing"),
    "truncated": (_truncate, "rank_1/extra.pt", "rank 1: rank_1/extra.pt truncated"),
    "bit-flipped": (_flip_a_bit, "dcp/__1_0.distcp", "rank 1: dcp/__1_0.distcp fails its sha256 checksum"),
}


def test_a_damaged_part_on_one_rank_makes_every_rank_fall_back(tmp_path):
    saved = tmp_path / "saved"
    run("train", str(saved), "--steps", "7", "--save-every", "3", nproc=2)  # saves 3 and 6
    roots = {"intact": saved}
    for kind, (damage, rel, _) in DAMAGE.items():
        roots[kind] = tmp_path / kind
        shutil.copytree(saved, roots[kind])
        damage(roots[kind] / "step_00000006" / rel)
    lines = run("verify", *map(str, roots.values()), nproc=2)
    by_root = {}
    for line in lines:
        by_root.setdefault(line["root"], {})[line["rank"]] = line
    assert {r: by_root[str(roots["intact"])][r]["step"] for r in (0, 1)} == {0: 6, 1: 6}
    for kind, (_, _, reason) in DAMAGE.items():
        choices = by_root[str(roots[kind])]
        assert sorted(choices) == [0, 1]
        for rank, choice in choices.items():
            assert choice["step"] == 3 and choice["cursor"] == 3 * 8, (kind, rank, choice)
            assert [s["step"] for s in choice["skipped"]] == [6], (kind, rank, choice)
            assert choice["skipped"][0]["reason"].startswith(reason), (kind, rank, choice)
