"""S3: buckets can be deleted (and made again), keys list in byte order on PostgreSQL

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06 09:30:00

A deleted bucket keeps its row (``deleted_at`` set): the manifest log and the
trash refer to it by id, and creating the name again brings the same row back.

S3 lists keys in the byte order of their UTF-8, which is SQLite's BINARY
collation but not PostgreSQL's default one; the listing orders by
``key COLLATE "C"``, and this index serves that order (SQLite's unique
(bucket_id, key) index already does).

(Numbered 0013 because 0012 is taken by the S3 multipart work: when both are
merged, ``down_revision`` here becomes "0012".)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("buckets") as batch:
        batch.add_column(sa.Column("deleted_at", sa.Float(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute('CREATE INDEX ix_objects_bucket_key_c ON objects (bucket_id, key COLLATE "C")')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_objects_bucket_key_c")
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("deleted_at")
