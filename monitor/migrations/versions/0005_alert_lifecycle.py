"""Alerts' lifecycle: status (open / acknowledged / resolved), when acknowledged and last
notified, one unresolved alert per (run, kind) as a partial unique index, and per-run mutes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UNRESOLVED = sa.text("status != 'resolved'")


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("status", sa.String(), nullable=False, server_default="open"))
        batch.add_column(sa.Column("acked_ts", sa.Float(), nullable=True))
        batch.add_column(sa.Column("notified_ts", sa.Float(), nullable=True))
    op.execute("UPDATE alerts SET status = 'resolved' WHERE resolved_ts IS NOT NULL")
    op.create_index("ux_alerts_unresolved", "alerts", ["run", "kind"], unique=True,
                    sqlite_where=UNRESOLVED, postgresql_where=UNRESOLVED)
    op.create_table(
        "alert_mutes",
        sa.Column("run", sa.String(), primary_key=True),
        sa.Column("until", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_mutes")
    op.drop_index("ux_alerts_unresolved", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("notified_ts")
        batch.drop_column("acked_ts")
        batch.drop_column("status")
