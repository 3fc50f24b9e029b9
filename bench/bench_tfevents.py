"""TensorBoard event files: reading one N-step file (8 scalars a step, as `add_scalar` writes
them) into records (monitor/tfevents.py) and `trainledger ingest` of it into a SQLite store as a
process (the path a user runs), side by side with TensorBoard's own `EventAccumulator` loading
the same file (every scalar kept: `size_guidance={"scalars": 0}`).

The file is written here by TFRecord framing around `tensorboard.Event` protobufs with
`simple_value` scalars, byte for byte the layout `torch.utils.tensorboard.SummaryWriter` writes
(tests/monitor/test_tfevents.py reads a real SummaryWriter file); SummaryWriter itself would take
~70 µs an event to write 8 million events.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAGS = ("train/loss", "train/learning_rate", "train/grad_norm", "throughput", "train/tgs", "train/mfu",
        "train/step_time", "train/epoch")


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_file(path: Path, steps: int) -> int:
    """An event file of `steps` steps × len(TAGS) scalars; its size in bytes."""
    from google_crc32c import value as crc32c
    from tensorboard.compat.proto.event_pb2 import Event

    def frame(data: bytes) -> bytes:
        header = struct.pack("<Q", len(data))
        return header + struct.pack("<I", _masked(crc32c(header))) + data + struct.pack("<I", _masked(crc32c(data)))

    event = Event()
    with open(path, "wb") as out:
        out.write(frame(Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()))
        chunk = []
        for step in range(steps):
            for index, tag in enumerate(TAGS):
                event.Clear()
                event.wall_time, event.step = 1.7e9 + step * 0.5, step
                event.summary.value.add(tag=tag, simple_value=index + 1.0 / (step + 1))
                chunk.append(frame(event.SerializeToString()))
            if len(chunk) > 80_000:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))
    return path.stat().st_size


def main(quick: bool) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from monitor.tfevents import read_records

    steps = 20_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tb-run"
        folder.mkdir()
        path = folder / "events.out.tfevents.1700000000.bench.1.0"
        size = write_file(path, steps)

        start = time.perf_counter()
        records = read_records(str(path))
        ours = time.perf_counter() - start
        assert sum(r.kind == "step" for r in records) == steps
        del records

        start = time.perf_counter()
        result = subprocess.run([str(Path(sys.executable).with_name("trainledger")), "ingest", str(folder),
                                 "--db", str(Path(tmp) / "s.db")], capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
        ingest = time.perf_counter() - start
        assert result.returncode == 0, result.stderr

        start = time.perf_counter()
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        accumulator.Reload()
        theirs = time.perf_counter() - start
        assert all(len(accumulator.Scalars(tag)) == steps for tag in TAGS)

    events = steps * len(TAGS)
    rows = [
        f"| TensorBoard `EventAccumulator(size_guidance={{'scalars': 0}}).Reload()` | {theirs:.1f} | {theirs / events * 1e6:.2f} | 1.0× |",
        f"| `monitor.tfevents.read_records` (to records) | {ours:.1f} | {ours / events * 1e6:.2f} | {theirs / ours:.1f}× |",
        f"| `trainledger ingest` as a process (records into SQLite, {steps:,} step rows) | {ingest:.1f} | "
        f"{ingest / events * 1e6:.2f} | {theirs / ingest:.1f}× |",
    ]
    return "\n".join([
        "## TensorBoard event files", "",
        f"Command: `.venv/bin/python -m bench tfevents` ({'--quick, ' if quick else ''}{steps:,} steps × {len(TAGS)} "
        f"scalars = {events:,} events, {size / 2**20:,.0f} MiB; each timed once, side by side, in one run).", "",
        "| reader | seconds | µs per event | faster than EventAccumulator |", "|---|---:|---:|---:|", *rows])
