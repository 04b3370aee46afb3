"""trash: deleted and overwritten files kept for trash_keep

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trash",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=True),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("user_meta", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=False),
        sa.Column("purge_at", sa.Float(), nullable=False),
        sa.Column("why", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["buckets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_trash_deleted", "trash", ["deleted_at", "id"])
    op.create_index("ix_trash_purge_at", "trash", ["purge_at"])
    op.create_table(
        "trash_chunks",
        sa.Column("trash_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("chunk_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["trash_id"], ["trash.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["chunk_id"], ["chunks.id"]),
        sa.PrimaryKeyConstraint("trash_id", "seq"),
    )
    op.create_index("ix_trash_chunks_chunk_id", "trash_chunks", ["chunk_id"])


def downgrade() -> None:
    op.drop_index("ix_trash_chunks_chunk_id", table_name="trash_chunks")
    op.drop_table("trash_chunks")
    op.drop_index("ix_trash_purge_at", table_name="trash")
    op.drop_index("ix_trash_deleted", table_name="trash")
    op.drop_table("trash")
