"""pack_outbox.first_version on databases that reached 0005 before it had it

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 21:00:00

Migration 0005 was changed after it had shipped: the column
``pack_outbox.first_version`` (and its index) was added to it instead of to a
migration of its own, so a database that had run the first 0005 (the releases
of 2026-12-05, 18:51 to 19:51) went on to the newest revision without it, and
every statement on the outbox failed (trash restores, key changes, the garbage
collector). This adds what is missing, and nothing on databases that have it.

A waiting pack's first version is the oldest entry that points at it; 0 when
none does yet, which only makes the collector keep garbage until that pack is
on the nodes (the safe side). Migrations are never edited once shipped: a
change of schema is a new revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "first_version" in {c["name"] for c in inspector.get_columns("pack_outbox")}:
        return
    with op.batch_alter_table("pack_outbox") as batch:
        batch.add_column(sa.Column(
            "first_version", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False, server_default="0"))
    op.execute(
        "UPDATE pack_outbox SET first_version = COALESCE((SELECT MIN(m.version) FROM "
        "manifest_log m WHERE m.pack = pack_outbox.pack_id), 0)")
    with op.batch_alter_table("pack_outbox") as batch:
        batch.alter_column("first_version", server_default=None)
    op.create_index("ix_pack_outbox_first_version", "pack_outbox", ["first_version"])


def downgrade() -> None:
    """Nothing: the column belongs to 0005 on every database that has it."""
