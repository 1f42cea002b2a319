"""Retention: per-minute roll-ups, kept disruption events, and the session's
roll-up record (which says whether its raw samples were pruned).

Revision ID: 0003_rollups
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rollups"
down_revision = "0001"
branch_labels = None
depends_on = None

# Mirrors server.store.tables.ROLLUP_METRICS; a migration must not import
# the live schema, which may change after it.
METRICS = (
    "rtt_ms", "jitter_ms", "loss_in", "audio_loss_in", "video_loss_in", "bitrate_in_kbps", "fps_in",
    "frames_dropped_in", "freeze_ms_in", "concealed_ratio_in",
)


def upgrade() -> None:
    op.create_table(
        "session_rollup",
        sa.Column("session_id", sa.Integer, sa.ForeignKey("session.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("config_hash", sa.String(16), nullable=False),
        sa.Column("sample_count", sa.Integer, nullable=False),
        sa.Column("last_received_ms", sa.BigInteger, nullable=False),
        sa.Column("rolled_ms", sa.BigInteger, nullable=False),
        sa.Column("final", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("t0_ms", sa.BigInteger, nullable=True),
        sa.Column("t1_ms", sa.BigInteger, nullable=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("samples_pruned_ms", sa.BigInteger, nullable=True),
    )
    metric_cols = []
    for m in METRICS:
        metric_cols += [
            sa.Column(f"{m}_median", sa.Float, nullable=True),
            sa.Column(f"{m}_p95", sa.Float, nullable=True),
            sa.Column(f"{m}_n", sa.Integer, nullable=False),
        ]
    op.create_table(
        "minute_rollup",
        sa.Column("participant_id", sa.Integer, sa.ForeignKey("participant.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("minute", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
        sa.Column("t_ms", sa.BigInteger, nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("covered_ms", sa.BigInteger, nullable=False),
        sa.Column("no_media_ms", sa.BigInteger, nullable=False),
        sa.Column("freeze_total_ms", sa.Float, nullable=True),
        sa.Column("disrupted", sa.Boolean, nullable=False),
        *metric_cols,
        sa.Index("ix_minute_rollup_session", "session_id"),
    )
    op.create_table(
        "event_rollup",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
        sa.Column("participant_id", sa.Integer, sa.ForeignKey("participant.id", ondelete="CASCADE"), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("severity", sa.Float, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False, server_default="{}"),
        sa.Index("ix_event_rollup_session", "session_id", "start_ms"),
    )


def downgrade() -> None:
    op.drop_table("event_rollup")
    op.drop_table("minute_rollup")
    op.drop_table("session_rollup")
