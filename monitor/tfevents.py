"""TensorBoard event files (`events.out.tfevents.*`): past runs' scalars into the store.

The file is TFRecord framing (a length, its masked CRC-32C, the data, its masked CRC-32C) around
`tensorboard.Event` protobufs. It is read here directly, with the protobuf classes of the
`tensorboard` package and `google-crc32c` (Google's C CRC-32C), both in the `tensorboard` extra;
neither TensorFlow nor TensorBoard's `EventAccumulator` is needed, and it is several times faster
than the accumulator, which re-checks CRCs in pure Python and keeps reservoirs of every tag
(bench/bench_tfevents.py). A record cut short at the end (a run still writing) is left for the
next ingest: the byte offset read is stored with the records, so nothing is stored twice.

Scalars become one `step` record per step (an `eval` record for validation tags), whose time is
the latest wall time of that step's scalars. Tags are mapped by name (`DEFAULT_TAGS`); a mapping
given by the user (`tags={"loss": "my/loss"}`, or a `[tfevents.tags]` table in the `--formats`
file) comes first; any other tag keeps its own name in snake_case (`train/epoch` → `train_epoch`).
The first event (`brain.Event:2`, the file's creation) is the attempt's `launch`; a step lower
than the last one read starts the next attempt.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

from monitor.records import Record

FORMAT = "tfevents"
"""A tfevents source's status: not one the text intake follows."""

DEFAULT_TAGS: dict[str, tuple[str, ...]] = {
    "loss": ("loss", "train/loss", "train_loss", "Loss/train", "train/lm_loss", "lm loss", "lm-loss-training/lm loss"),
    "lr": ("lr", "learning_rate", "train/learning_rate", "train/lr", "learning-rate/learning-rate", "lr-AdamW"),
    "grad_norm": ("grad_norm", "train/grad_norm", "grad-norm/grad-norm"),
    "tokens_per_s": ("tokens_per_s", "throughput", "train/tokens_per_second", "train/throughput"),
    "tgs": ("tgs", "tokens_per_s_per_gpu", "train/tgs", "throughput/tokens_per_sec_per_gpu"),
    "step_time": ("step_time", "train/step_time", "iteration-time/iteration-time"),
    "mfu": ("mfu", "train/mfu"),
    "val_loss": ("val_loss", "eval/loss", "eval_loss", "validation/loss", "lm-loss-validation/lm loss validation"),
}
_BATCH_RECORDS = 20_000
_READ_BYTES = 64 << 20
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")


class TFEventsError(ValueError):
    """A file that is not an event file, or a record whose CRC does not match."""


def event_files(targets: Any) -> list[str]:
    """The event files among the targets (`monitor.sources.Targets`: files, folders, globs)."""
    import glob

    from monitor.sources import is_regular, is_tfevents, natural_order

    found = {path for path in targets.files_ if is_tfevents(path) and is_regular(path)}
    for folder in targets.folders:
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.update(os.path.join(root, name) for name in names if is_tfevents(name))
    for pattern in targets.globs:
        found.update(p for p in glob.glob(pattern, recursive=True) if is_tfevents(p) and is_regular(p))
    return sorted(found, key=natural_order)


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path: str, offset: int = 0) -> Iterator[tuple[int, Any]]:
    """(offset after the record, Event) for each complete record from `offset` on. A record cut
    short at the end is not returned; a CRC mismatch raises TFEventsError naming the offset."""
    from google.protobuf.message import DecodeError
    from google_crc32c import value as crc32c
    from tensorboard.compat.proto.event_pb2 import Event

    parse, unpack_header, unpack_crc = Event.FromString, _HEADER.unpack_from, _CRC.unpack_from
    with open(path, "rb") as handle:
        handle.seek(offset)
        buffer, start = handle.read(_READ_BYTES), offset
        position = 0
        while True:
            if len(buffer) - position < 12:
                more = handle.read(_READ_BYTES)
                if not more:
                    return
                buffer, start, position = buffer[position:] + more, start + position, 0
                continue
            length, header_crc = unpack_header(buffer, position)
            if _masked(crc32c(buffer[position:position + 8])) != header_crc:
                raise TFEventsError(f"{path}: byte {start + position}: not a TFRecord (length checksum mismatch)")
            end = position + 12 + length
            if end + 4 > len(buffer):
                more = handle.read(max(_READ_BYTES, end + 4 - len(buffer)))
                if not more:
                    return
                buffer, start, position = buffer[position:] + more, start + position, 0
                continue
            data = buffer[position + 12:end]
            if _masked(crc32c(data)) != unpack_crc(buffer, end)[0]:
                raise TFEventsError(f"{path}: byte {start + position}: record checksum mismatch")
            position = end + 4
            try:
                event = parse(data)
            except DecodeError:
                raise TFEventsError(f"{path}: byte {start + position}: not an Event") from None
            yield start + position, event


def _field_names(tags: dict[str, str] | None) -> dict[str, str]:
    """tag → record field: the user's mapping, then the defaults of the fields it does not map."""
    names = {tag: field for field, choices in DEFAULT_TAGS.items() if field not in (tags or {}) for tag in choices}
    names.update({tag: field for field, tag in (tags or {}).items()})
    return names


_NONE: list[Record] = []
"""What `feed` returns for an event that completes nothing (never appended to)."""


def _tensor_number(value: Any) -> float | None:
    """A scalar written as a tensor (TensorBoard's newer summaries), else None."""
    if value.WhichOneof("value") != "tensor":
        return None
    tensor = value.tensor
    return tensor.float_val[0] if tensor.float_val else tensor.double_val[0] if tensor.double_val else None


def _snake(tag: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", tag.lower()).strip("_") or "value"


class EventReader:
    """Turns a stream of Events into Records; its state (`state`) resumes it exactly."""

    def __init__(self, *, run: str, attempt_prefix: str, host: str, tags: dict[str, str] | None = None,
                 state: dict[str, Any] | None = None) -> None:
        self.run, self.prefix, self.host = run, attempt_prefix, host
        self.names = {tag: (field, field.startswith("val_")) for tag, field in _field_names(tags).items()}
        """tag → (record field, is it a validation figure), growing with the tags met."""
        self.state = {"attempt": 1, "last_step": None, "started": False, **(state or {})}
        self._step: int | None = None
        self._fields: dict[str, Any] = {}
        self._eval: dict[str, Any] = {}
        self._ts = [0.0, 0.0]
        """The latest wall time of the step's training scalars, and of its validation ones."""

    @property
    def attempt(self) -> str:
        return f"{self.prefix}#{self.state['attempt']}"

    def feed(self, event: Any) -> list[Record]:
        """Records completed by this event (a step's are complete when the next step begins).
        The hot path of a large file: one attribute read per figure where possible."""
        if event.file_version:
            return self._launch(event.wall_time)
        values = event.summary.value
        if not values or (self._step is None and event.step == self.state["last_step"]):
            return _NONE  # the rest of a step already stored (the file was cut inside it when last read)
        out = self.finish() if event.step != self._step else _NONE
        self._step = event.step
        names, latest, wall_time = self.names, self._ts, event.wall_time
        collected = (self._fields, self._eval)
        for value in values:
            number = value.simple_value
            if number == 0.0 and value.WhichOneof("value") != "simple_value":
                number = _tensor_number(value)
                if number is None:
                    continue
            named = names.get(value.tag)
            if named is None:
                named = names[value.tag] = (_snake(value.tag), False)
            field, validation = named
            collected[validation][field] = number if number - number == 0.0 else None
            if wall_time > latest[validation]:
                latest[validation] = wall_time
        return out

    def finish(self) -> list[Record]:
        """The records of the step being collected."""
        if self._step is None:
            return []
        step, fields, evals, (ts, eval_ts) = self._step, self._fields, self._eval, self._ts
        self._step, self._fields, self._eval, self._ts = None, {}, {}, [0.0, 0.0]
        last = self.state["last_step"]
        if last is not None and step < last:
            self.state["attempt"] += 1
        self.state.update(last_step=step, started=True)
        out = []
        if fields:
            if "loss" not in fields:
                fields["loss"] = None
            elif fields["loss"] is None:
                fields["loss_nonfinite"] = True
            out.append(Record("step", self.run, self.attempt, ts, self.host, 0, step, fields))
        if evals:
            evals.setdefault("val_loss", None)
            out.append(Record("eval", self.run, self.attempt, eval_ts, self.host, 0, step, evals))
        return out

    def _launch(self, wall_time: float) -> list[Record]:
        out = self.finish()
        if self.state["started"]:
            self.state["attempt"] += 1
        self.state.update(last_step=None, started=True)
        from monitor.parsers.text import LAUNCH_FIELDS

        fields = {**dict.fromkeys(LAUNCH_FIELDS), "format": FORMAT}
        return out + [Record("launch", self.run, self.attempt, wall_time, self.host, 0, None, fields)]


def _pausing_gc(function):
    """Run `function` with the cyclic garbage collector paused: reading makes millions of small
    objects and no cycles, so the collector would only trace them over and over (the intake
    pauses it around each batch for the same reason)."""
    import functools
    import gc

    @functools.wraps(function)
    def paused(*args: Any, **kwargs: Any) -> Any:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()
    return paused


@_pausing_gc
def read_records(path: str, *, run: str = "run", attempt_prefix: str | None = None, host: str = "",
                 tags: dict[str, str] | None = None) -> list[Record]:
    """Every record of one event file (for tests, the bench and scripts)."""
    reader = EventReader(run=run, attempt_prefix=attempt_prefix or os.path.basename(path), host=host, tags=tags)
    records: list[Record] = []
    feed = reader.feed
    for _, event in read_events(path):
        done = feed(event)
        if done:
            records += done
    return records + reader.finish()


class _TakenOver(Exception):
    """Another writer moved this file's row on first: its transaction is rolled back."""


@_pausing_gc
def ingest_tfevents(engine, paths: list[str], *, tags: dict[str, str] | None = None, host: str | None = None) -> int:
    """Store the records of these event files from where the last ingest stopped; the count.
    Each batch of records is committed with the byte offset that produced it, by compare-and-swap
    on the file's row (monitor/store/sources.py), so any number of writers store it once."""
    from monitor.models import SourceStatus
    from monitor.sources import run_name
    from monitor.store import insert_records
    from monitor.store.sources import add_source, followed_row, this_host, update_source

    host = host if host is not None else this_host()
    stored = 0
    for path in paths:
        st = os.stat(path)
        with engine.begin() as conn:
            row = followed_row(conn, host, st.st_dev, st.st_ino)
            if row is None:
                now = time.time()
                values = {"path": path, "host": host, "device": st.st_dev, "inode": st.st_ino,
                          "offset": 0, "size": st.st_size, "lines": 0, "records": 0, "parser": FORMAT,
                          "run": run_name(path), "status": SourceStatus.ACTIVE, "attempt_prefix": "",
                          "first_seen": now, "updated": now, "first_mtime": st.st_mtime, "first_size": st.st_size,
                          "bad_lines": 0, "head_len": 0, "head_hash": "", "tail_hash": ""}
                source_id = add_source(conn, **values)
                if source_id is not None:
                    update_source(conn, source_id, attempt_prefix=f"{os.path.basename(path)}:{source_id}")
        if row is None:
            with engine.begin() as conn:  # ours, or the row of the writer whose insert came first
                row = followed_row(conn, host, st.st_dev, st.st_ino)
        if row is None or row["parser"] != FORMAT:
            continue
        source_id, prefix, offset, count, version = (row["id"], row["attempt_prefix"], row["offset"], row["lines"],
                                                     row["version"])
        records_done, run = row["records"], row["run"]
        reader = EventReader(run=run, attempt_prefix=prefix, host=host, tags=tags, state=row["parser_state"] or {})
        pending: list[Record] = []
        before = offset

        def commit(records: list[Record], at: int, events: int) -> None:
            nonlocal records_done, version
            with engine.begin() as conn:
                insert_records(conn, records, source_id=source_id, first_seq=records_done)
                version = update_source(conn, source_id, expected_version=version, offset=at, lines=events,
                                        records=records_done + len(records), size=os.stat(path).st_size,
                                        parser_state=reader.state, updated=time.time(), path=path,
                                        **({"last_record_ts": max(r.ts for r in records)} if records else {}))
                if version is None:
                    raise _TakenOver
            records_done += len(records)

        try:
            for after, event in read_events(path, offset):
                count += 1
                done = reader.feed(event)
                if done and len(pending) + len(done) >= _BATCH_RECORDS and not event.file_version:
                    # this event began a new step, still being collected: it is read again next time
                    commit(pending + done, before, count - 1)
                    stored += len(pending) + len(done)
                    pending = []
                else:
                    pending += done
                before = after
            pending += reader.finish()
            commit(pending, before, count)
            stored += len(pending)
        except _TakenOver:
            continue  # the other writer reads it on from its own offset
        except TFEventsError as exc:
            with engine.begin() as conn:
                update_source(conn, source_id, bad_lines=1, first_bad_line=count + 1,
                              first_bad_reason=str(exc)[:200], first_bad_example="")
            raise
    return stored


def read_tag_overrides(path: str | None) -> dict[str, str]:
    """The `[tfevents.tags]` table (record field = tag) of a `--formats` file, if any."""
    if path is None:
        return {}
    import tomllib

    with open(path, "rb") as handle:
        table = tomllib.load(handle).get("tfevents", {}).get("tags", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise TFEventsError(f"{path}: tfevents.tags: expected field = \"tag\" pairs")
    return table
