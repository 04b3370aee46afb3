"""S3: buckets can be deleted (and made again), keys list in byte order on PostgreSQL

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 09:30:00

A deleted bucket keeps its row (``deleted_at`` set): the manifest log and the
trash refer to it by id, and creating the name again brings the same row back.

S3 lists keys in the byte order of their UTF-8, which is SQLite's BINARY
collation but not PostgreSQL's default one: on PostgreSQL the key column takes
the "C" collation, so that the unique (bucket_id, key) index serves that order
and key ranges, as it does on SQLite (the files browser's name sort, on
lower(key), then agrees between the two engines too).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("buckets") as batch:
        batch.add_column(sa.Column("deleted_at", sa.Float(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("objects", "key", type_=sa.String(1024, collation="C"),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("objects", "key", type_=sa.String(1024), existing_nullable=False)
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("deleted_at")
