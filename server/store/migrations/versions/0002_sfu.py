"""SFU: a media server's own statistics per participant leg (Janus event handlers).

Revision ID: 0002_sfu
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_sfu"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sfu_stat",
        sa.Column("participant_id", sa.Integer, sa.ForeignKey("participant.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("handle", sa.String(40), primary_key=True),
        sa.Column("media", sa.String(16), primary_key=True),
        sa.Column("t_ms", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("leg", sa.String(16), nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sfu_stat")
