"""Samples: when the latest audio packet arrived (places an interruption's edges).

``last_packet_in_ms`` is the receiver's own stamp (Chromium's
``inbound-rtp.lastPacketReceivedTimestamp``, the latest over inbound audio
streams): a sample polled inside a silence holds the last packet before it,
to the packet, where packet counts place it only to random loss's spread
(docs/methodology.md, "Media interruption"). Null for collectors without it.

Revision ID: 0005_last_packet
Revises: 0004_frames
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_last_packet"
down_revision = "0004_frames"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: no table rewrite; on PostgreSQL's partitioned
    # table the parent's ADD COLUMN reaches every partition.
    op.add_column("sample", sa.Column("last_packet_in_ms", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sample") as batch:
        batch.drop_column("last_packet_in_ms")
