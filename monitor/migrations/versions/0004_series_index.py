"""An index for the dashboard's step series: one run's steps of one rank in step order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_step_metrics_run_rank_step", "step_metrics", ["run", "rank", "step"])


def downgrade() -> None:
    op.drop_index("ix_step_metrics_run_rank_step", table_name="step_metrics")
