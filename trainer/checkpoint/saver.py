"""Saving: the loop blocks only while the tensors are copied out; a thread writes them.

`Checkpointer.save` copies the model and optimizer tensors into staging buffers (reused
from one save to the next) and captures the small state, then hands both to a background
thread that writes them with DCP, checksums and fsyncs every file, writes this rank's
manifest and — on rank 0, after every rank's manifest exists — publishes meta.json and
prunes old checkpoints. The thread talks to the other ranks over its own gloo process
group so that it never interleaves with the training collectives.
"""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from trainer.checkpoint import storage
from trainer.checkpoint.state import Checkpointable, extra_state, tensor_state

_GROUPS: dict[str, Any] = {}
# A single process saves and loads with no_dist=True on purpose; DCP warns about it each time.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")


def checkpoint_group():
    """A gloo process group used only for checkpoint traffic (None when not distributed).

    Created on first use, which every rank reaches in the same order (SPMD)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if "group" not in _GROUPS:
        _GROUPS["group"] = dist.new_group(backend="gloo", timeout=timedelta(minutes=10))
    return _GROUPS["group"]


def release_group() -> None:
    """Barrier, then destroy the checkpoint group: call before destroying the default group.

    A rank that tears gloo down while its peer still talks to it can abort the peer."""
    group = _GROUPS.pop("group", None)
    if group is not None:
        dist.barrier(group=group)
        dist.destroy_process_group(group)


def gather_objects(item: Any, group) -> list[Any]:
    """Every rank's `item`, on every rank of `group` ([item] alone when not distributed)."""
    if group is None:
        return [item]
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, item, group=group)
    return out


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class SaveResult:
    """One finished save, as the `checkpoint` event reports it."""

    step: int
    path: str
    bytes: int  # all ranks' files
    blocked_s: float  # the training loop waited this long
    write_s: float  # the (background) write, from start to publication

    def event_fields(self) -> dict[str, Any]:
        return {"step": self.step, "path": self.path, "bytes": self.bytes,
                "blocked_s": self.blocked_s, "write_s": self.write_s}


class Checkpointer:
    def __init__(self, root: str | Path, *, keep_max: int = 0, config_digest: str = "",
                 async_save: bool = True):
        self.root = Path(root)
        self.keep_max, self.config_digest, self.async_save = keep_max, config_digest, async_save
        self.rank, self.world_size = rank_and_world()
        self.group = checkpoint_group()
        self._staging: dict[str, torch.Tensor] = {}
        self._pending: tuple[Future, threading.Thread] | None = None
        self._done: list[SaveResult] = []
        self.last_saved_step: int | None = None

    def save(self, state: Checkpointable, *, finished: str | None = None) -> None:
        """Checkpoint `state` (after step `state.step`); returns once the tensors are copied out.

        `finished` notes that the run ended here (total_steps or data_exhausted)."""
        started = time.perf_counter()
        self._finish_pending()
        tensors, hparams = tensor_state(state)
        staged = self._stage(tensors) if self.async_save else tensors  # a sync save writes the live tensors
        extras = extra_state(state, config_digest=self.config_digest, optim_hparams=hparams)
        meta = {"step": state.step, "world_size": self.world_size, "consumed_tokens": state.consumed_tokens,
                "config_digest": self.config_digest, "finished": finished}
        self.last_saved_step = state.step
        future: Future = Future()
        if not self.async_save:
            self._run(future, staged, extras, meta, 0.0)
            result = future.result()
            result.blocked_s = time.perf_counter() - started
            self._done.append(result)
            return
        thread = threading.Thread(target=self._run, args=(future, staged, extras, meta, time.perf_counter() - started),
                                  daemon=True, name=f"checkpoint-step-{state.step}")
        self._pending = (future, thread)
        thread.start()

    def completed(self) -> list[SaveResult]:
        """Saves finished since the last call (raises a background write's error)."""
        if self._pending is not None and self._pending[0].done():
            self._finish_pending()
        done, self._done = self._done, []
        return done

    def wait(self) -> list[SaveResult]:
        """Block until the save in flight (if any) is published; then as `completed`."""
        self._finish_pending()
        return self.completed()

    def _finish_pending(self) -> None:
        if self._pending is not None:
            (future, thread), self._pending = self._pending, None
            result = future.result()
            thread.join()  # no thread left running at exit (daemon only so that a fault never waits)
            self._done.append(result)

    def _stage(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """Copy every tensor into a CPU buffer owned by the checkpointer (reused next time)."""
        staged: dict[str, Any] = {}
        for group, entries in tensors.items():
            out = staged[group] = {}
            for name, tensor in entries.items():
                key = f"{group}.{name}"
                buffer = self._staging.get(key)
                if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
                    buffer = self._staging[key] = torch.empty(
                        tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=tensor.is_cuda)
                buffer.copy_(tensor.detach(), non_blocking=tensor.is_cuda)
                out[name] = buffer
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return staged

    def _run(self, future: Future, staged: dict, extras: dict, meta: dict, blocked_s: float) -> None:
        try:
            start = time.perf_counter()
            total = self._write(staged, extras, meta)
            future.set_result(SaveResult(meta["step"], str(storage.step_dir(self.root, meta["step"])), total,
                                         blocked_s, time.perf_counter() - start))
        except BaseException as exc:  # handed to the loop by completed()/wait()
            future.set_exception(exc)

    def _write(self, staged: dict, extras: dict, meta: dict) -> int:
        step = meta["step"]
        ckpt = storage.step_dir(self.root, step)
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            if ckpt.exists():  # left by a crashed save, or a timeline abandoned by --resume PATH
                storage.remove(ckpt)
            ckpt.mkdir()
        self._barrier()
        own = storage.rank_dir(ckpt, self.rank)
        own.mkdir(parents=True, exist_ok=True)
        dcp.save(staged, storage_writer=dcp.FileSystemWriter(ckpt / storage.DCP_DIR, sync_files=True),
                 process_group=self.group, no_dist=self.group is None)
        extra_path = own / storage.EXTRA
        with open(extra_path, "wb") as f:
            torch.save(extras, f)
        files = [extra_path, *sorted((ckpt / storage.DCP_DIR).glob(f"__{self.rank}_*.distcp"))]
        if self.rank == 0:
            files.append(ckpt / storage.DCP_DIR / ".metadata")
        part = storage.write_manifest(ckpt, self.rank, self.world_size, step, files)
        parts = gather_objects(part, self.group)
        total = sum(size for _, size in parts)
        if self.rank == 0:
            storage.publish(ckpt, {**meta, "bytes": total, "time": time.time(),
                                   "parts": {str(r): digest for r, (digest, _) in enumerate(parts)}})
            storage.prune(self.root, self.keep_max, step)
        self._barrier()  # no rank reports the checkpoint before it is published
        return total

    def _barrier(self) -> None:
        if self.group is not None:
            dist.barrier(group=self.group)
