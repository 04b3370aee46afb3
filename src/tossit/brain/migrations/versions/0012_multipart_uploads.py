"""multipart uploads: S3 uploads in progress, their parts and the parts' chunks

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "multipart_uploads",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("user_meta", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["buckets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_multipart_uploads_listing", "multipart_uploads",
                    ["bucket_id", "key", "id"])
    op.create_index("ix_multipart_uploads_created_at", "multipart_uploads", ["created_at"])
    op.create_table(
        "multipart_parts",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("uploaded_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["multipart_uploads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id", "part_number"),
    )
    op.create_table(
        "multipart_part_chunks",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("chunk_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["multipart_uploads.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["chunk_id"], ["chunks.id"]),
        sa.PrimaryKeyConstraint("upload_id", "part_number", "seq"),
    )
    op.create_index("ix_multipart_part_chunks_chunk_id", "multipart_part_chunks",
                    ["chunk_id"])


def downgrade() -> None:
    op.drop_index("ix_multipart_part_chunks_chunk_id", table_name="multipart_part_chunks")
    op.drop_table("multipart_part_chunks")
    op.drop_table("multipart_parts")
    op.drop_index("ix_multipart_uploads_created_at", table_name="multipart_uploads")
    op.drop_index("ix_multipart_uploads_listing", table_name="multipart_uploads")
    op.drop_table("multipart_uploads")
