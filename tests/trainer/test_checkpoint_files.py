"""trainer.checkpoint on disk, in this process (one rank): publication, verification, pruning,
and loading that never runs code from a checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from checkpoint_toy import build, train_step
from trainer.checkpoint import Checkpointer, CheckpointError, ResumeRequest, resume
from trainer.checkpoint import storage


def saved(root: Path, steps: int, keep: int = 0) -> None:
    state, _ = build(1)
    saver = Checkpointer(root, keep_max=keep)
    for _ in range(steps):
        train_step(state, 0, 1)
        saver.save(state)
    saver.wait()


def test_auto_skips_unpublished_and_damaged_checkpoints_and_says_why(tmp_path):
    saved(tmp_path, 4)
    (tmp_path / "step_00000004" / "meta.json").unlink()  # as if the save of step 4 had been killed
    data = tmp_path / "step_00000003" / "dcp" / "__0_0.distcp"
    flipped = bytearray(data.read_bytes())
    flipped[100] ^= 1
    data.write_bytes(bytes(flipped))
    (tmp_path / "step_00000002" / "meta.json").write_text("{not json")

    state, _ = build(1)
    resumed = resume(tmp_path, ResumeRequest("auto"), state, total_steps=100)
    assert resumed.step == state.step == 1 and state.sampler.cursor == 8
    assert [(s["step"], s["reason"].split(" (")[0]) for s in resumed.skipped] == [
        (4, "not published"),
        (3, "rank 0: dcp/__0_0.distcp fails its sha256 checksum"),
        (2, "meta.json unreadable"),
    ]
    assert not resumed.gap and all(resumed.restored.values())


def test_nothing_whole_starts_fresh_and_reports_the_gap(tmp_path):
    saved(tmp_path, 1)
    (tmp_path / "step_00000001" / "rank_0" / "manifest.json").unlink()
    state, _ = build(1)
    resumed = resume(tmp_path, ResumeRequest("auto"), state, total_steps=100)
    assert resumed.source is None and resumed.step == state.step == 0 and resumed.gap
    assert resumed.skipped[0]["reason"] == "rank 0: manifest missing"
    assert resume(tmp_path / "empty", ResumeRequest("auto"), state, total_steps=100) is None


def test_keeps_the_newest_and_removes_leftovers(tmp_path):
    (tmp_path / "step_00000001").mkdir(parents=True)  # an unpublished leftover of a crash
    saved(tmp_path, 5, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000004", "step_00000005"]
    meta = json.loads((tmp_path / "step_00000005" / "meta.json").read_text())
    assert meta["step"] == 5 and meta["world_size"] == 1 and meta["consumed_tokens"] == 40
    files = json.loads((tmp_path / "step_00000005" / "rank_0" / "manifest.json").read_text())["files"]
    assert sorted(files) == ["dcp/.metadata", "dcp/__0_0.distcp", "rank_0/extra.pt"]
    assert meta["bytes"] == sum(f["bytes"] for f in files.values())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_extra_state_that_is_not_weights_only_is_refused(tmp_path, monkeypatch):
    """Even with checksums that match (a tampered checkpoint), nothing is unpickled and run."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "ckpt"
    saved(root, 1)
    ckpt = root / "step_00000001"
    torch.save({"payload": _RunsCode()}, ckpt / "rank_0" / "extra.pt")
    files = [ckpt / rel for rel in json.loads((ckpt / "rank_0" / "manifest.json").read_text())["files"]]
    digest, total = storage.write_manifest(ckpt, 0, 1, 1, files)
    meta = json.loads((ckpt / "meta.json").read_text())
    storage.publish(ckpt, {**meta, "bytes": total, "parts": {"0": digest}})

    state, _ = build(1)
    with pytest.raises(CheckpointError, match="extra.pt: refused to load"):
        resume(root, ResumeRequest("path", ckpt), state, total_steps=100)
    assert not (tmp_path / "pwned").exists()


def test_resume_path_errors_are_one_line(tmp_path):
    saved(tmp_path, 2)
    state, _ = build(1)
    with pytest.raises(CheckpointError, match=r"holds several checkpoints; name one .*step_00000002"):
        resume(tmp_path, ResumeRequest("path", tmp_path), state, total_steps=100)
    with pytest.raises(CheckpointError, match="run already complete at step 2"):
        resume(tmp_path, ResumeRequest("auto"), state, total_steps=2)


def test_a_checkpoint_of_another_model_is_a_one_line_error(tmp_path):
    saved(tmp_path, 1)
    state, _ = build(1)
    state.model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    state.optimizer = torch.optim.AdamW(state.model.parameters())
    with pytest.raises(CheckpointError, match=r"step_00000001: does not fit this model and optimizer \(Size mismatch") as info:
        resume(tmp_path, ResumeRequest("auto"), state, total_steps=100)
    assert "\n" not in str(info.value)
