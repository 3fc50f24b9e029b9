"""Many writers: a source file's host and row version, one followed row per file, lookup indexes.

Rows written before hosts were recorded belong to the host that upgrades the store
(`TRAINLEDGER_HOST`, else its host name). Followed rows that a race between writers
doubled (before this revision nothing stopped it) keep the oldest; the others are `replaced`,
so the unique index can be built.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from monitor.store.sources import this_host

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_FOLLOWED = "status IN ('active', 'unknown_format', 'copy', 'rotated', 'unreadable')"


def upgrade() -> None:
    with op.batch_alter_table("source_files") as batch:
        batch.add_column(sa.Column("host", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(sa.text("UPDATE source_files SET host = :host").bindparams(host=this_host()))
    op.execute(f"UPDATE source_files SET status = 'replaced' WHERE {_FOLLOWED} AND id NOT IN "
               f"(SELECT min(id) FROM source_files WHERE {_FOLLOWED} GROUP BY host, device, inode)")
    op.create_index("ix_source_files_identity", "source_files", ["host", "device", "inode"])
    op.create_index("uq_source_files_followed", "source_files", ["host", "device", "inode"], unique=True,
                    sqlite_where=sa.text(_FOLLOWED), postgresql_where=sa.text(_FOLLOWED))
    op.create_index("ix_source_files_head", "source_files", ["host", "head_len", "head_hash"])
    op.create_index("ix_source_files_run", "source_files", ["host", "run", "parser"])


def downgrade() -> None:
    for name in ("ix_source_files_run", "ix_source_files_head", "uq_source_files_followed",
                 "ix_source_files_identity"):
        op.drop_index(name, "source_files")
    with op.batch_alter_table("source_files") as batch:
        batch.drop_column("version")
        batch.drop_column("host")
