"""chunk intents: what the orphan sweep may delete (positive knowledge)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chunk_intents",
        sa.Column("chunk_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("chunk_id"),
    )
    op.create_index("ix_chunk_intents_at", "chunk_intents", ["at"])


def downgrade() -> None:
    op.drop_index("ix_chunk_intents_at", table_name="chunk_intents")
    op.drop_table("chunk_intents")
