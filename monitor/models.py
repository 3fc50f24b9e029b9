"""The store's tables (SQLModel). The schema itself is created by Alembic (monitor/migrations/).

Step records get a table of their own with a column per common figure, because they are
millions of rows that charts and accounting read by column; every other kind is an `Event`
with its fields in a JSON payload. A figure that is not a plain finite number of the
column's type (a string, a NaN, an explicit null) goes to the `extra` JSON, so a stored
record reassembles to exactly what the parser produced (see monitor/store/rows.py).

Both record tables carry `source_id` and `seq` (the record's position within its source
file): ordering by (ts, source_id, seq) is stable, and the pair is what makes a record
traceable to the bytes it came from.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Column, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JSONType = JSON().with_variant(JSONB(), "postgresql")

FLOAT_FIGURES = ("loss", "lr", "grad_norm", "loss_scale", "tflops", "tgs", "tokens_per_s", "mfu",
                 "step_time", "fwd_bwd_time", "acc", "perplexity")
INT_FIGURES = ("num_consumed_tokens", "inf_nan_skip_batches", "num_samples_in_batch",
               "largest_length", "peak_mem_bytes")
"""The step figures with a column of their own; any other step field lives in `extra`."""


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    name: str = Field(primary_key=True)
    first_ts: float
    last_ts: float


class Attempt(SQLModel, table=True):
    __tablename__ = "attempts"
    run: str = Field(primary_key=True)
    attempt: str = Field(primary_key=True)
    host: str = ""
    first_ts: float
    last_ts: float


class StepMetric(SQLModel, table=True):
    __tablename__ = "step_metrics"
    __table_args__ = (Index("ix_step_metrics_run_ts", "run", "ts"),
                      Index("ix_step_metrics_run_attempt_step", "run", "attempt", "step"),
                      Index("ix_step_metrics_run_rank_step", "run", "rank", "step"))
    id: Optional[int] = Field(default=None, primary_key=True)
    source_id: Optional[int] = None
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    run: str
    attempt: str
    ts: float
    host: str = ""
    rank: int = 0
    step: int = Field(sa_column=Column(BigInteger, nullable=False))
    loss: Optional[float] = None
    lr: Optional[float] = None
    grad_norm: Optional[float] = None
    loss_scale: Optional[float] = None
    tflops: Optional[float] = None
    tgs: Optional[float] = None
    tokens_per_s: Optional[float] = None
    mfu: Optional[float] = None
    step_time: Optional[float] = None
    fwd_bwd_time: Optional[float] = None
    acc: Optional[float] = None
    perplexity: Optional[float] = None
    num_consumed_tokens: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    inf_nan_skip_batches: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    num_samples_in_batch: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    largest_length: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    peak_mem_bytes: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    extra: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSONType))
    """Every other field (per_source, …), explicit nulls and non-finite numbers."""


class Event(SQLModel, table=True):
    """A record of any kind but `step`: launch, eval, checkpoint, resume, stop, fault, finish."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_ts", "run", "ts"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    source_id: Optional[int] = None
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    kind: str
    run: str
    attempt: str
    ts: float
    host: str = ""
    rank: int = 0
    step: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class SourceStatus(StrEnum):
    """Where a source file's row stands: the one list of statuses `source_files.status` holds."""

    ACTIVE = "active"
    """Followed and read as it grows."""
    UNKNOWN_FORMAT = "unknown_format"
    """Followed, not read: no parser recognised its first lines (yet)."""
    COPY = "copy"
    """A copy made by copy-truncate, read once its original is truncated."""
    ROTATED = "rotated"
    """Renamed away; read to its end (and on, while its writer may still hold it)."""
    UNREADABLE = "unreadable"
    """Matched, but could not be opened (permissions, the open-file limit): said, retried."""
    TRUNCATED = "truncated"
    """Its bytes after the offset are gone (copy-truncate, a rewrite): read no more."""
    REPLACED = "replaced"
    """Another row took over its file."""
    DELETED = "deleted"
    """Deleted; drained through the descriptor that was open."""


FOLLOWED_STATUSES = (SourceStatus.ACTIVE, SourceStatus.UNKNOWN_FORMAT, SourceStatus.COPY, SourceStatus.ROTATED,
                     SourceStatus.UNREADABLE)
"""Statuses whose row still describes the file at (host, device, inode): at most one row each."""
_ONE_FOLLOWED_ROW = text("status IN ({})".format(", ".join(f"'{status}'" for status in FOLLOWED_STATUSES)))


class SourceFile(SQLModel, table=True):
    """One log file followed by the intake: its identity, how far it is read, its parser state.

    The identity is the host that reads it, its (device, inode) and a hash of its first
    `head_len` bytes, so that a file replaced under the same name or a reused inode is never
    mistaken for the old one, and two nodes' files never for each other. `offset`, `lines` and
    `parser_state` are only ever changed in the transaction that inserts the records they
    produced, and only if `version` is still the one the writer read (a compare-and-swap):
    that is the exactly-once guarantee, for any number of writers.
    """

    __tablename__ = "source_files"
    __table_args__ = (
        Index("ix_source_files_identity", "host", "device", "inode"),
        Index("uq_source_files_followed", "host", "device", "inode", unique=True,
              sqlite_where=_ONE_FOLLOWED_ROW, postgresql_where=_ONE_FOLLOWED_ROW),
        Index("ix_source_files_head", "host", "head_len", "head_hash"),
        Index("ix_source_files_run", "host", "run", "parser"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    host: str = ""
    """The node whose files these are (`TRAINLEDGER_HOST`, else the host name)."""
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    """Bumped by every write of the row; a writer's update names the version it read."""
    path: str = Field(sa_column=Column(Text, nullable=False, index=True))
    device: int = Field(sa_column=Column(BigInteger, nullable=False))
    inode: int = Field(sa_column=Column(BigInteger, nullable=False))
    head_len: int = 0
    head_hash: str = ""
    offset: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    tail_hash: str = ""
    """Hash of the (up to) 256 bytes before `offset`: recognises a copy made by copy-truncate."""
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    lines: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    records: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    parser: Optional[str] = None
    parser_state: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSONType))
    run: str = ""
    attempt_prefix: str = ""
    status: str = SourceStatus.ACTIVE
    """A `SourceStatus`."""
    copy_of: Optional[int] = None
    """For a copy made by copy-truncate: the source it continues."""
    bad_lines: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    first_bad_line: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    first_bad_reason: Optional[str] = Field(default=None, sa_column=Column(Text))
    first_bad_example: Optional[str] = Field(default=None, sa_column=Column(Text))
    first_seen: float
    updated: float
    last_record_ts: Optional[float] = None
    first_mtime: Optional[float] = None
    """The file's modification time when first seen: the clock for the lines it held then
    (a backlog) when its format offers no time of its own."""
    first_size: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    """Its size then: lines past it were written while followed, and are dated when read."""


class LiveState(SQLModel, table=True):
    """Each live run's current state as the watcher last classified it (monitor/live.py):
    what `trainledger status` shows and what alerts will watch."""

    __tablename__ = "live_states"
    run: str = Field(primary_key=True)
    state: str
    since: float
    """When the current state began."""
    attempt: str = ""
    last_record_ts: float
    step: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    """The newest attempt's last step."""
    updated: float
    """When the watcher classified it (the `now` of the snapshot)."""


class LiveEta(SQLModel, table=True):
    """Each live run's projected finish as the watcher last computed it (monitor/projections/live.py):
    what the dashboard's Runs page and the metrics endpoint show, without a simulation per view."""

    __tablename__ = "live_etas"
    run: str = Field(primary_key=True)
    done_steps: int = Field(sa_column=Column(BigInteger, nullable=False))
    total_steps: int = Field(sa_column=Column(BigInteger, nullable=False))
    step_time_s: float
    """The recent median step time."""
    finish_p10: float
    finish_p50: float
    finish_p90: float
    finished: bool = False
    updated: float
    """When the watcher projected it (Unix time)."""


class Alert(SQLModel, table=True):
    """A condition a detector found in a run (monitor/detectors/, kept by monitor/alerting.py):
    open, acknowledged, then resolved when the condition clears. At most one alert per
    (run, kind) is not resolved: a partial unique index, so several watchers raise it once."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_run_ts", "run", "ts"),
                      Index("ux_alerts_unresolved", "run", "kind", unique=True,
                            sqlite_where=text("status != 'resolved'"), postgresql_where=text("status != 'resolved'")))
    id: Optional[int] = Field(default=None, primary_key=True)
    run: str
    attempt: Optional[str] = None
    ts: float
    kind: str
    """The cause: stalled, fault, throughput, … (monitor/detectors/finding.py)."""
    severity: str = "warning"
    message: str = Field(sa_column=Column(Text, nullable=False))
    payload: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSONType))
    resolved_ts: Optional[float] = None
    status: str = "open"
    """open | acknowledged | resolved"""
    acked_ts: Optional[float] = None
    notified_ts: Optional[float] = None
    """When a watcher last claimed the sending of it (first message or repeat)."""


class AlertMute(SQLModel, table=True):
    """`trainledger alerts mute RUN`: no message about the run until `until` (alerts still kept)."""

    __tablename__ = "alert_mutes"
    run: str = Field(primary_key=True)
    until: float
