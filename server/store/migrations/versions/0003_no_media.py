"""Samples: the "no media received" flag and the audio packet count.

A second in which inbound streams existed but no packet arrived is an
interruption, not 0 % loss: its loss columns are null and ``no_media_in``
says why. ``audio_packets_in`` places an interruption's edges within a
sample (docs/methodology.md, "Interruption").

Revision ID: 0003_no_media
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_no_media"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both backends: nullable, no default, so no table rewrite.
    op.add_column("sample", sa.Column("no_media_in", sa.Boolean, nullable=True))
    op.add_column("sample", sa.Column("audio_packets_in", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sample") as batch:
        batch.drop_column("audio_packets_in")
        batch.drop_column("no_media_in")
