"""indexes for the files browser's sorts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_objects_bucket_created", "objects", ["bucket_id", "created_at", "id"])
    op.create_index("ix_objects_bucket_size", "objects", ["bucket_id", "size", "id"])


def downgrade() -> None:
    op.drop_index("ix_objects_bucket_size", "objects")
    op.drop_index("ix_objects_bucket_created", "objects")
