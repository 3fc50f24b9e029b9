"""Live ETAs: each live run's projected finish, kept by the watcher for the dashboard and the exporter.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_etas",
        sa.Column("run", sa.String(), primary_key=True),
        sa.Column("done_steps", sa.BigInteger(), nullable=False),
        sa.Column("total_steps", sa.BigInteger(), nullable=False),
        sa.Column("step_time_s", sa.Float(), nullable=False),
        sa.Column("finish_p10", sa.Float(), nullable=False),
        sa.Column("finish_p50", sa.Float(), nullable=False),
        sa.Column("finish_p90", sa.Float(), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("live_etas")
