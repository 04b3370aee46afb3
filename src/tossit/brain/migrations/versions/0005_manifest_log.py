"""manifest log: file manifests on the nodes (tossit.manifests), cluster state

Every existing file and API key gets a pending entry: the brain writes them to
the nodes in packs at its next start, so an upgraded cluster can be rebuilt
from its nodes too.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=8), nullable=False,
                                   server_default="data"))
    op.create_table(
        "manifest_log",
        sa.Column("version", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("needed", sa.Boolean(), nullable=False),
        sa.Column("pack", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["buckets.id"]),
        sa.PrimaryKeyConstraint("version"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "pack_outbox",
        sa.Column("pack_id", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("first_version", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pack_id"),
    )
    op.create_index("ix_pack_outbox_first_version", "pack_outbox", ["first_version"])
    op.create_table(
        "cluster_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_manifest_log_scope", "manifest_log", ["bucket_id", "key", "version"])
    op.create_index("ix_manifest_log_object_id", "manifest_log", ["object_id"])
    op.create_index("ix_manifest_log_pack", "manifest_log", ["pack"])
    op.execute(
        "INSERT INTO manifest_log (op, bucket_id, key, object_id, needed, pack, created_at) "
        "SELECT 'put', bucket_id, key, id, true, NULL, created_at FROM objects ORDER BY id")
    op.execute(
        "INSERT INTO manifest_log (op, bucket_id, key, object_id, needed, pack, created_at) "
        "SELECT 'key', NULL, id, NULL, true, NULL, created_at FROM api_keys "
        "ORDER BY created_at")


def downgrade() -> None:
    op.drop_table("cluster_state")
    op.drop_table("pack_outbox")
    op.drop_table("manifest_log")
    with op.batch_alter_table("chunks") as batch:
        batch.drop_column("kind")
