"""Checkpoint files on disk: layout, durable writes, checksums, publication and verification.

One checkpoint is one folder under the run's checkpoint root::

    step_00000040/
      dcp/.metadata, dcp/__<rank>_0.distcp   model and optimizer tensors (torch DCP)
      rank_<r>/extra.pt                        this rank's small state (torch.save)
      rank_<r>/manifest.json                   size and sha256 of every file rank r wrote
      meta.json                                written last: the checkpoint is published

A checkpoint is *whole* when its meta.json exists, every rank manifest it names has the
digest it records, and every file a manifest lists has its size and sha256. Every file is
fsynced before the manifest naming it is written, and every manifest before meta.json, and
each of those is written to a temporary name, fsynced, renamed into place and its folder
fsynced; so a crash at any moment leaves either no meta.json (not published, skipped) or a
whole checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

FORMAT = 1
META = "meta.json"
MANIFEST = "manifest.json"
DCP_DIR = "dcp"
EXTRA = "extra.pt"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


class CheckpointError(Exception):
    """An expected checkpoint problem, shown to the user as one line (no traceback)."""


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def rank_dir(ckpt: Path, rank: int) -> Path:
    return ckpt / f"rank_{rank}"


def step_of(path: Path) -> int | None:
    match = _STEP_DIR.match(path.name)
    return int(match.group(1)) if match else None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` so that `path` holds either its old content or all of `data`."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_file(path: Path, *, fsync: bool = False) -> tuple[int, str]:
    """(size, sha256) of a file; optionally fsync it on the way (it is open anyway)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
            size += len(chunk)
        if fsync:
            os.fsync(f.fileno())
    return size, h.hexdigest()


def write_manifest(ckpt: Path, rank: int, world_size: int, step: int, files: list[Path]) -> tuple[str, int]:
    """Fsync and checksum `files` (inside `ckpt`), then write rank's manifest durably.

    Returns the manifest's own sha256 (which meta.json records) and the bytes listed."""
    entries = {}
    for path in sorted(files):
        size, sha = digest_file(path, fsync=True)
        entries[path.relative_to(ckpt).as_posix()] = {"bytes": size, "sha256": sha}
    for folder in {p.parent for p in files}:
        fsync_dir(folder)
    data = json.dumps({"format": FORMAT, "step": step, "rank": rank, "world_size": world_size,
                       "files": entries}, indent=1, sort_keys=True).encode()
    atomic_write(rank_dir(ckpt, rank) / MANIFEST, data)
    return digest_bytes(data), sum(e["bytes"] for e in entries.values())


def publish(ckpt: Path, meta: dict[str, Any]) -> None:
    """Write meta.json last: from now on the checkpoint counts as saved."""
    fsync_dir(ckpt)
    atomic_write(ckpt / META, json.dumps({"format": FORMAT, **meta}, indent=1, sort_keys=True).encode())
    fsync_dir(ckpt.parent)


def read_meta(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's meta.json, or CheckpointError saying why it is not published."""
    try:
        meta = json.loads((ckpt / META).read_bytes())
    except FileNotFoundError:
        raise CheckpointError("not published (no meta.json: the save did not finish)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"meta.json unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"meta.json has an unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    return meta


def verify_part(ckpt: Path, meta: dict[str, Any], rank: int) -> str | None:
    """Why rank `rank`'s part of the checkpoint is not whole, or None when it is."""
    where = f"rank {rank}"
    try:
        data = (rank_dir(ckpt, rank) / MANIFEST).read_bytes()
    except FileNotFoundError:
        return f"{where}: manifest missing"
    except OSError as exc:
        return f"{where}: manifest unreadable ({exc})"
    if digest_bytes(data) != meta["parts"][str(rank)]:
        return f"{where}: manifest does not match meta.json"
    for rel, expected in json.loads(data)["files"].items():
        path = ckpt / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{where}: {rel} missing"
        if size != expected["bytes"]:
            return f"{where}: {rel} truncated ({size} of {expected['bytes']} bytes)" if size < expected["bytes"] \
                else f"{where}: {rel} has {size} bytes, expected {expected['bytes']}"
        if digest_file(path)[1] != expected["sha256"]:
            return f"{where}: {rel} fails its sha256 checksum"
    return None


def all_steps(root: Path) -> list[int]:
    """Steps with a checkpoint folder under `root`, published or not, oldest first."""
    if not root.is_dir():
        return []
    return sorted(s for p in root.iterdir() if (s := step_of(p)) is not None and p.is_dir())


def published_steps(root: Path) -> list[int]:
    """Steps with a meta.json under `root`, oldest first (whole or not: see verify_part)."""
    return [s for s in all_steps(root) if (step_dir(root, s) / META).exists()]


def remove(ckpt: Path) -> None:
    """Unpublish first (a crash half-way leaves an unpublished folder, never a published half)."""
    meta = ckpt / META
    if meta.exists():
        meta.unlink()
        fsync_dir(ckpt)
    shutil.rmtree(ckpt, ignore_errors=True)


def prune(root: Path, keep: int, current: int) -> list[int]:
    """Keep the newest `keep` published checkpoints (all when keep <= 0); drop unpublished leftovers."""
    removed = []
    published = published_steps(root)
    doomed = set(published[:-keep]) if keep > 0 else set()
    for path in sorted(root.iterdir()):
        step = step_of(path)
        if step is None or step == current:
            continue
        if step in doomed or step not in published:
            remove(path)
            removed.append(step)
    if removed:
        fsync_dir(root)
    return removed
