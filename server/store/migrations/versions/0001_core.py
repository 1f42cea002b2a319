"""Core schema: clinicians, clients, sessions, participants, samples, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clinician",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "client",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinician.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("clinician_id", "code", name="uq_client_clinician_code"),
    )
    op.create_table(
        "session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinician.id", ondelete="CASCADE"), nullable=False),
        sa.Column("client_id", sa.Integer, sa.ForeignKey("client.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("platform", sa.String(100), nullable=False, server_default=""),
        sa.Column("scheduled_ms", sa.BigInteger, nullable=True),
        sa.Column("started_ms", sa.BigInteger, nullable=True),
        sa.Column("ended_ms", sa.BigInteger, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_session_client", "session", ["client_id", "number"])
    op.create_index("ix_session_clinician", "session", ["clinician_id", "created_ms"])
    op.create_table(
        "participant",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("session_id", "role", name="uq_participant_session_role"),
    )
    op.create_table(
        "sample",
        sa.Column(
            "participant_id",
            sa.Integer,
            sa.ForeignKey("participant.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("t_ms", sa.BigInteger, nullable=False),
        sa.Column("interval_ms", sa.Integer, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("rtt_ms", sa.Float, nullable=True),
        sa.Column("jitter_ms", sa.Float, nullable=True),
        sa.Column("loss_in", sa.Float, nullable=True),
        sa.Column("audio_loss_in", sa.Float, nullable=True),
        sa.Column("video_loss_in", sa.Float, nullable=True),
        sa.Column("bitrate_in_kbps", sa.Float, nullable=True),
        sa.Column("bitrate_out_kbps", sa.Float, nullable=True),
        sa.Column("fps_in", sa.Float, nullable=True),
        sa.Column("frames_dropped_in", sa.Float, nullable=True),
        sa.Column("freeze_ms_in", sa.Float, nullable=True),
        sa.Column("concealed_ratio_in", sa.Float, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "event",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "participant_id", sa.Integer, sa.ForeignKey("participant.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("t_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=True),
        sa.Column("severity", sa.Float, nullable=True),
        sa.Column("client_key", sa.String(80), nullable=True),
        sa.Column("data", sa.Text, nullable=False, server_default="{}"),
        sa.UniqueConstraint("participant_id", "client_key", name="uq_event_participant_key"),
    )
    op.create_index("ix_event_session", "event", ["session_id", "t_ms"])


def downgrade() -> None:
    op.drop_table("event")
    op.drop_table("sample")
    op.drop_table("participant")
    op.drop_index("ix_session_clinician", table_name="session")
    op.drop_index("ix_session_client", table_name="session")
    op.drop_table("session")
    op.drop_table("client")
    op.drop_table("clinician")
