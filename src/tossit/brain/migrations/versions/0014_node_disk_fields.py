"""nodes: the disk a node stores on, and why it refuses writes, in its row

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 20:00:00

The leader learns both from the heartbeats and kept them in memory only; a
follower brain, whose view of the nodes is the table, could not show a node's
disk error nor count it out of ``/ready``, and could not see which nodes share
a disk.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("disk_id", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("write_error", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("write_error")
        batch.drop_column("disk_id")
