"""Samples: video frames received per interval (places a freeze's start).

Revision ID: 0004_frames
Revises: 0003_no_media
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_frames"
down_revision = "0003_no_media"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sample", sa.Column("frames_in", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sample") as batch:
        batch.drop_column("frames_in")
