"""The relational schema, as SQLAlchemy Core tables.

This is the shape code queries against; the migrations in
``server/store/migrations`` create it and are the authority on each
version. ``tests/test_migrations.py`` checks that the two agree.

Times are integer milliseconds since the Unix epoch (UTC) throughout: they
index and compare cheaply on both backends and map straight onto NumPy.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

clinician = Table(
    "clinician",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False, server_default=""),
    Column("password_hash", String(200), nullable=True),
    Column("is_admin", Boolean, nullable=False, server_default="0"),
    Column("disabled", Boolean, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
)

client = Table(
    "client",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("clinician_id", Integer, ForeignKey("clinician.id", ondelete="CASCADE"), nullable=False),
    Column("code", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("clinician_id", "code", name="uq_client_clinician_code"),
)

session = Table(
    "session",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("clinician_id", Integer, ForeignKey("clinician.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", Integer, ForeignKey("client.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("platform", String(100), nullable=False, server_default=""),
    Column("scheduled_ms", BigInteger, nullable=True),
    Column("started_ms", BigInteger, nullable=True),
    Column("ended_ms", BigInteger, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_session_client", "client_id", "number"),
    Index("ix_session_clinician", "clinician_id", "created_ms"),
)

participant = Table(
    "participant",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("session_id", "role", name="uq_participant_session_role"),
)

# One row per participant per interval. The primary key is what makes
# ingest exactly-once: a resent (participant, seq) is ignored on insert.
# The typed headline columns are derived at ingest (server/ingest/headline.py)
# so reports can read a whole session into NumPy without parsing JSON.
sample = Table(
    "sample",
    metadata,
    Column("participant_id", Integer, ForeignKey("participant.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("t_ms", BigInteger, nullable=False),
    Column("interval_ms", Integer, nullable=False),
    Column("source", String(16), nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("rtt_ms", Float, nullable=True),
    Column("jitter_ms", Float, nullable=True),
    Column("loss_in", Float, nullable=True),
    Column("audio_loss_in", Float, nullable=True),
    Column("video_loss_in", Float, nullable=True),
    Column("bitrate_in_kbps", Float, nullable=True),
    Column("bitrate_out_kbps", Float, nullable=True),
    Column("fps_in", Float, nullable=True),
    Column("frames_dropped_in", Float, nullable=True),
    Column("freeze_ms_in", Float, nullable=True),
    Column("concealed_ratio_in", Float, nullable=True),
    Column("data", Text, nullable=False),
)

# Connection events sent by collectors, events the server observes
# (connects, reconnects), and disruption events derived from samples.
# ``client_key`` makes collector-sent events exactly-once like samples.
event = Table(
    "event",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
    Column("participant_id", Integer, ForeignKey("participant.id", ondelete="CASCADE"), nullable=True),
    Column("kind", String(40), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("t_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=True),
    Column("severity", Float, nullable=True),
    Column("client_key", String(80), nullable=True),
    Column("data", Text, nullable=False, server_default="{}"),
    UniqueConstraint("participant_id", "client_key", name="uq_event_participant_key"),
    Index("ix_event_session", "session_id", "t_ms"),
)
