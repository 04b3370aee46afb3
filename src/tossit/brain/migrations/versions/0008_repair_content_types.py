"""repair stored media types that cannot be sent back as a Content-Type header

Before uploads checked it, a multipart part's Content-Type was stored as sent
(``text/€``, a control character, a line feed): every download of such a file
then failed with 500. Those values become ``application/octet-stream``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tossit.names import FALLBACK_MEDIA_TYPE, valid_media_type

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
_BATCH = 5000


def upgrade() -> None:
    conn = op.get_bind()
    objects = sa.table("objects", sa.column("id", sa.Integer),
                       sa.column("content_type", sa.String))
    after = 0
    while True:
        rows = conn.execute(sa.select(objects.c.id, objects.c.content_type)
                            .where(objects.c.id > after).order_by(objects.c.id)
                            .limit(_BATCH)).all()
        if not rows:
            break
        bad = [r.id for r in rows if not valid_media_type(r.content_type or "")]
        if bad:
            conn.execute(objects.update().where(objects.c.id.in_(bad))
                         .values(content_type=FALLBACK_MEDIA_TYPE))
        after = rows[-1].id


def downgrade() -> None:
    """Nothing to undo: the old values could not be served."""
