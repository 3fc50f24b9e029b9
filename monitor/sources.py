"""Where log lines come from: which files a PATH/folder/glob means, how a file is recognised
across renames and truncation, reading whole lines from an offset, and the watchdog feed.

Nothing here touches the store; `monitor/intake.py` decides what the bytes mean.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import queue
import re
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

HEAD_BYTES = 1024
"""A file is known by its (device, inode) and the hash of (up to) its first HEAD_BYTES bytes."""
TAIL_BYTES = 256
"""…and where it was last read, by the hash of the TAIL_BYTES before that offset."""
MAX_LINE_BYTES = 1 << 20
"""A longer line is a bad line; it is skipped without ever being held in memory whole."""

_SKIPPED_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".pt", ".pth", ".ckpt", ".bin",
                     ".safetensors", ".distcp", ".npy", ".npz", ".parquet", ".arrow", ".gz", ".zip",
                     ".tar", ".bz2", ".xz", ".zst", ".lock", ".py", ".md", ".rst", ".sh", ".toml",
                     ".yaml", ".yml", ".cfg", ".ini", ".html", ".png", ".jpg", ".svg", ".pdf", ".tmp")
"""In a watched folder, files that are never logs (checkpoints, databases, archives, code,
docs, configs); name such a file explicitly to read it anyway."""
_SKIPPED_NAMES = frozenset({"run_id"})
"""Our trainer's run id file, written beside its event log in the run's output folder."""
_JSON_DOCUMENTS_READ = frozenset({"trainer_state.json"})
"""The one JSON document (not JSON lines) read in a watched folder; other `.json` files are
configs, tokenizers, results and checkpoint manifests (each `checkpoint-N/` has several)."""
_GENERIC_FOLDERS = frozenset({"logs", "log", "output", "outputs", "out", "runs", "run", "train", "training",
                              "stdout", "stderr", "results", "tmp"})
_CHECKPOINT_FOLDER_RE = re.compile(r"(?:checkpoint|global_step|step|iter|ckpt)[-_]?\d+|checkpoints?|ckpts?",
                                   re.IGNORECASE)
"""`checkpoint-500` (Hugging Face), `global_step500` (DeepSpeed), `iter_0000500` (Megatron),
`step_000500`: inside a run's output folder, never the run."""
_DIGITS_RE = re.compile(r"(\d+)")
TFEVENTS_PREFIX = "events.out.tfevents."


def is_tfevents(path: str) -> bool:
    """A TensorBoard event file: binary, read by `ingest` apart from the text logs (monitor/tfevents.py)."""
    return os.path.basename(path).startswith(TFEVENTS_PREFIX)


def run_name(path: str) -> str:
    """The run a log without run ids belongs to: its output folder's name, or, for a generic
    name such as `logs`, the path from the first telling folder (`internlm_20b/logs`)."""
    parts = os.path.dirname(os.path.abspath(path)).split(os.sep)
    while len(parts) > 1 and _CHECKPOINT_FOLDER_RE.fullmatch(parts[-1]):
        parts.pop()
    name: list[str] = []
    while parts and parts[-1]:
        name.insert(0, parts.pop())
        if name[0].lower() not in _GENERIC_FOLDERS:
            break
    return "/".join(name) or "default"


def natural_order(path: str) -> list[str | int]:
    """A sort key comparing runs of digits as numbers."""
    return [int(part) if i % 2 else part for i, part in enumerate(_DIGITS_RE.split(path))]


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def head_hash(fd: int, length: int) -> str:
    return digest(os.pread(fd, length, 0))


def tail_hash(fd: int, offset: int) -> str:
    """The hash of the bytes just before `offset` (empty at offset 0)."""
    start = max(0, offset - TAIL_BYTES)
    return digest(os.pread(fd, offset - start, start))


def file_clock(row: dict[str, Any]) -> Callable[[], float]:
    """The time of a line with none of its own, in a file with no anchor (docs/parsers.md), for
    the source `row` (live: its `offset` moves on): a line the file already held when first
    seen was written by the file's modification time then, not when read; a line written
    since is dated when read."""
    def clock() -> float:
        if row.get("first_mtime") is not None and row["offset"] < (row.get("first_size") or 0):
            return row["first_mtime"]
        return time.time()
    return clock


@dataclass(frozen=True)
class TooLong:
    """Stands in for a line longer than MAX_LINE_BYTES."""

    length: int


@dataclass(slots=True)
class Batch:
    """Whole lines read from a file, with the hashes that will say where reading stopped."""

    lines: list[bytes | TooLong]
    end: int
    """The offset just after the last line."""
    tail_hash: str
    """`tail_hash` at `end`, of the bytes these lines came from."""
    head: bytes
    """Where this read began within the file's first HEAD_BYTES: the file's first bytes, at
    least up to `end` or HEAD_BYTES; else empty."""


def read_batch(fd: int, offset: int, max_bytes: int, tail_hash_at_offset: str) -> Batch | None:
    """The complete lines (without their newline) from `offset`, reading at most about
    `max_bytes`; a partial last line is left for later. None: the bytes before `offset` are
    no longer those already read (truncated or rewritten in place).

    The check, the lines and the new hashes all come from ONE read: a copy-truncate landing
    while a batch is parsed must not leave the file's new content hashed as the old's. (A
    single line longer than `max_bytes` is the exception: it is found by further reads.)"""
    start = 0 if offset < HEAD_BYTES else offset - TAIL_BYTES
    data = os.pread(fd, offset - start + max_bytes, start)
    if offset and digest(data[max(0, offset - TAIL_BYTES) - start:offset - start]) != tail_hash_at_offset:
        return None
    head = data[:HEAD_BYTES] if start == 0 else b""
    last_newline = data.rfind(b"\n", offset - start)
    if last_newline >= 0:
        end = start + last_newline + 1
        return Batch(data[offset - start:last_newline].split(b"\n"), end,
                     digest(data[max(0, end - TAIL_BYTES) - start:last_newline + 1]), head)
    if len(data) - (offset - start) < max_bytes:
        return Batch([], offset, tail_hash_at_offset, head)  # a partial line, still being written
    position = start + len(data)
    while True:  # one line longer than max_bytes: find its end without keeping it
        more = os.pread(fd, 1 << 20, position)
        if not more:
            return Batch([], offset, tail_hash_at_offset, head)
        newline = more.find(b"\n")
        if newline >= 0:
            end = position + newline + 1
            length = end - 1 - offset
            line = TooLong(length) if length > MAX_LINE_BYTES else os.pread(fd, length, offset)
            return Batch([line], end, tail_hash(fd, end), os.pread(fd, HEAD_BYTES, 0) if start == 0 else b"")
        position += len(more)


def head_lines(fd: int, max_lines: int = 50, max_bytes: int = 64 << 10) -> tuple[list[str], bool]:
    """The first complete lines, decoded leniently, for sniffing the format; and whether the
    head is as long as a sniff ever gets (so a file of no known format can be called so)."""
    data = os.pread(fd, max_bytes, 0)
    complete = data[:data.rfind(b"\n") + 1] if b"\n" in data else b""
    lines = [line.rstrip(b"\r").decode("utf-8", "replace") for line in complete.split(b"\n")[:-1]]
    return lines[:max_lines], len(lines) >= max_lines or len(data) >= max_bytes


def is_regular(path: str | os.PathLike) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


class Targets:
    """What the user asked to follow: files (which may not exist yet), folders (every file
    below them but hidden and binary ones) and globs (`logs/*.log`, `runs/**/train.log`)."""

    def __init__(self, patterns: list[str | os.PathLike]) -> None:
        self.files_: set[str] = set()
        self.folders: list[str] = []
        self.globs: list[str] = []
        for pattern in patterns:
            text = os.path.abspath(os.path.expanduser(os.fspath(pattern)))
            if glob.has_magic(text):
                self.globs.append(text)
            elif os.path.isdir(text):
                self.folders.append(text)
            elif os.path.isdir(os.path.dirname(text)):
                self.files_.add(text)
            else:
                raise FileNotFoundError(f"no such file, folder or parent folder: {pattern}")

    def matches(self, path: str) -> bool:
        path = os.path.abspath(path)
        if is_tfevents(path):
            return False  # binary: `ingest` reads it apart (monitor/tfevents.py)
        if path in self.files_:
            return True
        name = os.path.basename(path)
        if any(path.startswith(folder + os.sep) for folder in self.folders):
            return (not name.startswith(".") and not name.endswith(_SKIPPED_SUFFIXES) and name not in _SKIPPED_NAMES
                    and (not name.endswith(".json") or name in _JSON_DOCUMENTS_READ))
        return any(fnmatch.fnmatchcase(path, pattern) and (pattern.count(os.sep) == path.count(os.sep)
                                                           or "**" in pattern)
                   for pattern in self.globs)

    def files(self) -> list[str]:
        """Every regular file matched now, in natural order (`train_2.log` before `train_10.log`,
        `checkpoint-500/` before `checkpoint-1000/`)."""
        found = {path for path in self.files_ if is_regular(path) and not is_tfevents(path)}
        for folder in self.folders:
            for root, dirs, names in os.walk(folder):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.update(p for name in names if self.matches(p := os.path.join(root, name)) and is_regular(p))
        for pattern in self.globs:
            found.update(p for p in glob.glob(pattern, recursive=True) if is_regular(p) and not is_tfevents(p))
        return sorted(found, key=natural_order)

    def roots(self) -> list[tuple[str, bool]]:
        """(folder, recursive) to put a watchdog watch on."""
        roots = {os.path.dirname(path): False for path in self.files_}
        for folder in self.folders:
            roots[folder] = True
        for pattern in self.globs:
            parts = pattern.split(os.sep)
            static = [p for p in parts[:next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
            root = os.sep.join(static) or os.sep
            deep = len(parts) - len(static) > 1 or "**" in pattern
            if os.path.isdir(root):
                roots[root] = roots.get(root, False) or deep
        # a recursive root covers everything below it
        recursive = [r for r, deep in roots.items() if deep]
        return sorted((r, deep) for r, deep in roots.items()
                      if not any(r != top and r.startswith(top + os.sep) for top in recursive))


RESCAN = "\0rescan"
"""Put on the feed when something other than one file changed (a folder appeared)."""


class ChangeFeed(FileSystemEventHandler):
    """Paths that watchdog saw change, collected from the observer's thread."""

    def __init__(self, targets: Targets) -> None:
        self.targets = targets
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._observer = Observer()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory:
            if event.event_type in ("created", "moved", "deleted"):
                self._queue.put(RESCAN)
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self._queue.put(os.fsdecode(path))

    def start(self) -> None:
        for root, recursive in self.targets.roots():
            self._observer.schedule(self, root, recursive=recursive)
        self._observer.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the observer, waiting at most `timeout`: its threads are daemons, and an
        inotify reader that will not wake must never keep the process from exiting."""
        stopper = threading.Thread(target=self._observer.stop, name="watchdog-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)

    def put(self, path: str) -> None:
        self._queue.put(path)

    def changed(self, timeout: float) -> set[str]:
        """The paths changed since the last call, waiting up to `timeout` for the first one."""
        paths: set[str] = set()
        try:
            paths.add(self._queue.get(timeout=timeout))
        except queue.Empty:
            return paths
        while True:
            try:
                paths.add(self._queue.get_nowait())
            except queue.Empty:
                return paths


def same_file_in(folder: str, device: int, inode: int) -> str | None:
    """Where in `folder` the file (device, inode) is now (after a rename), if anywhere."""
    return next((path for path, st in siblings(folder) if st.st_ino == inode and st.st_dev == device), None)


def siblings(folder: str) -> list[tuple[str, os.stat_result]]:
    """The regular files in `folder` (candidates for a copy made by copy-truncate)."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((entry.path, st))
    return sorted(found)


def open_file(path: str) -> tuple[int, os.stat_result] | None:
    """A read-only descriptor on `path` and its stat, or None when it is not a regular file.
    Raises OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st
