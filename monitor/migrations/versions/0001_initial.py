"""The initial store: runs, attempts, step metrics, events, source files, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def _origin() -> list[sa.Column]:
    """The columns every record table starts with."""
    return [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("run", sa.String(), nullable=False),
        sa.Column("attempt", sa.String(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("first_ts", sa.Float(), nullable=False),
        sa.Column("last_ts", sa.Float(), nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("run", sa.String(), primary_key=True),
        sa.Column("attempt", sa.String(), primary_key=True),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("first_ts", sa.Float(), nullable=False),
        sa.Column("last_ts", sa.Float(), nullable=False),
    )
    op.create_table(
        "step_metrics",
        *_origin(),
        sa.Column("step", sa.BigInteger(), nullable=False),
        *[sa.Column(name, sa.Float(), nullable=True) for name in (
            "loss", "lr", "grad_norm", "loss_scale", "tflops", "tgs", "tokens_per_s", "mfu",
            "step_time", "fwd_bwd_time", "acc", "perplexity")],
        *[sa.Column(name, sa.BigInteger(), nullable=True) for name in (
            "num_consumed_tokens", "inf_nan_skip_batches", "num_samples_in_batch",
            "largest_length", "peak_mem_bytes")],
        sa.Column("extra", JSONType, nullable=True),
    )
    op.create_index("ix_step_metrics_run_ts", "step_metrics", ["run", "ts"])
    op.create_index("ix_step_metrics_run_attempt_step", "step_metrics", ["run", "attempt", "step"])
    op.create_table(
        "events",
        sa.Column("kind", sa.String(), nullable=False),
        *_origin(),
        sa.Column("step", sa.BigInteger(), nullable=True),
        sa.Column("payload", JSONType, nullable=False),
    )
    op.create_index("ix_events_run_ts", "events", ["run", "ts"])
    op.create_table(
        "source_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("head_len", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("tail_hash", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("parser", sa.String(), nullable=True),
        sa.Column("parser_state", JSONType, nullable=True),
        sa.Column("run", sa.String(), nullable=False),
        sa.Column("attempt_prefix", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("copy_of", sa.Integer(), nullable=True),
        sa.Column("bad_lines", sa.BigInteger(), nullable=False),
        sa.Column("first_bad_line", sa.BigInteger(), nullable=True),
        sa.Column("first_bad_reason", sa.Text(), nullable=True),
        sa.Column("first_bad_example", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("last_record_ts", sa.Float(), nullable=True),
    )
    op.create_index("ix_source_files_path", "source_files", ["path"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.String(), nullable=False),
        sa.Column("attempt", sa.String(), nullable=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", JSONType, nullable=True),
        sa.Column("resolved_ts", sa.Float(), nullable=True),
    )
    op.create_index("ix_alerts_run_ts", "alerts", ["run", "ts"])


def downgrade() -> None:
    for table in ("alerts", "source_files", "events", "step_metrics", "attempts", "runs"):
        op.drop_table(table)
