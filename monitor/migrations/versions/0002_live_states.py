"""Live states: each live run's current state, kept by the watcher; the file clock of a backlog.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_states",
        sa.Column("run", sa.String(), primary_key=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("attempt", sa.String(), nullable=False),
        sa.Column("last_record_ts", sa.Float(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=True),
        sa.Column("updated", sa.Float(), nullable=False),
    )
    with op.batch_alter_table("source_files") as batch:
        batch.add_column(sa.Column("first_mtime", sa.Float(), nullable=True))
        batch.add_column(sa.Column("first_size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_files") as batch:
        batch.drop_column("first_size")
        batch.drop_column("first_mtime")
    op.drop_table("live_states")
