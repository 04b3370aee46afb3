"""event repeats: a repeating event is one row with a count

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("count", sa.Integer(), nullable=False,
                                      server_default="1"))
        batch_op.add_column(sa.Column("first_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("repeat_key", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("repeat_key")
        batch_op.drop_column("first_at")
        batch_op.drop_column("count")
