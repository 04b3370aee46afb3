"""Buckets in the manifest log

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 23:10:00

Making and deleting a bucket is now a manifest entry (``op = 'bucket'``, the
bucket's name in ``key``, no ``bucket_id``), so that a rebuild from the nodes
makes empty buckets again and keeps deleted ones deleted. Every bucket there is
(deleted ones too; not the brain's own ``.tossit``) gets its entry here, in no
pack yet: the brain packs and writes such entries when it starts, as it did for
every file when the log was added (0005).
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO manifest_log (op, bucket_id, key, object_id, needed, pack, created_at) "
        "SELECT 'bucket', NULL, name, NULL, true, NULL, COALESCE(deleted_at, created_at) "
        "FROM buckets WHERE name <> '.tossit' ORDER BY id")


def downgrade() -> None:
    """The older brains know no bucket entry: their packs need nothing any more
    (the collector deletes them from the nodes), and the entries go."""
    op.execute(
        "UPDATE chunks SET refcount = refcount - (SELECT count(*) FROM manifest_log m "
        "WHERE m.pack = chunks.id AND m.op = 'bucket' AND m.needed) "
        "WHERE id IN (SELECT pack FROM manifest_log WHERE op = 'bucket' AND pack IS NOT NULL)")
    op.execute("DELETE FROM manifest_log WHERE op = 'bucket'")
