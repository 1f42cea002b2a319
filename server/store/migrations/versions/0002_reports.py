"""Reports: cache of per-session quality summaries and disruption events.

Revision ID: 0002_reports
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_reports"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_quality",
        sa.Column(
            "session_id", sa.Integer, sa.ForeignKey("session.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("config_hash", sa.String(16), nullable=False),
        sa.Column("sample_count", sa.Integer, nullable=False),
        sa.Column("last_received_ms", sa.BigInteger, nullable=False),
        sa.Column("computed_ms", sa.BigInteger, nullable=False),
        sa.Column("final", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("minutes", sa.Integer, nullable=False),
        sa.Column("disrupted_minutes", sa.Integer, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("session_quality")
