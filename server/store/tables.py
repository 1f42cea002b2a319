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


# ---------------------------------------------------------------------------
# Accounts and security (migration 0002_accounts)
# ---------------------------------------------------------------------------

# Server-side login sessions: the cookie holds a random token, the store only
# its SHA-256, so any worker behind a load balancer can check it and a
# database leak does not expose live sessions.
login_session = Table(
    "login_session",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("clinician_id", Integer, ForeignKey("clinician.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index("ix_login_session_clinician", "clinician_id"),
)

# Every login attempt, for throttling shared by all workers.
login_attempt = Table(
    "login_attempt",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("t_ms", BigInteger, nullable=False),
    Column("success", Boolean, nullable=False),
    Index("ix_login_attempt_email", "email", "t_ms"),
    Index("ix_login_attempt_ip", "ip", "t_ms"),
)

# Password state beside the account row: a one-time password (first admin,
# admin resets) must be changed at the next login.
credential_state = Table(
    "credential_state",
    metadata,
    Column("clinician_id", Integer, ForeignKey("clinician.id", ondelete="CASCADE"), primary_key=True),
    Column("must_change", Boolean, nullable=False),
    Column("changed_ms", BigInteger, nullable=False),
)

# Per-integrator API keys, stored as SHA-256 of a 32-byte random key.
api_key = Table(
    "api_key",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_by", Integer, ForeignKey("clinician.id", ondelete="SET NULL"), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
    Column("last_used_ms", BigInteger, nullable=True),
)

# Who viewed, exported or erased which client's data. No foreign keys on
# purpose: the trail must outlive the accounts, clients and sessions it
# names (an erasure is itself recorded here).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("t_ms", BigInteger, nullable=False),
    Column("actor", String(320), nullable=False),
    Column("actor_clinician_id", Integer, nullable=True),
    Column("action", String(40), nullable=False),
    Column("client_id", Integer, nullable=True),
    Column("client_code", String(64), nullable=True),
    Column("session_id", Integer, nullable=True),
    Column("detail", Text, nullable=False, server_default=""),
    Column("ip", String(64), nullable=False, server_default=""),
    Index("ix_audit_log_t", "t_ms"),
    Index("ix_audit_log_client", "client_id", "t_ms"),
)


# ---------------------------------------------------------------------------
# Surveys and ratings (migration 0002_surveys)
# ---------------------------------------------------------------------------

# One post-session survey link per respondent: the token is random, shown
# once, stored only as its SHA-256; ``used_ms`` makes it single-use.
survey_link = Table(
    "survey_link",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
    Column("respondent", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("instruments", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("used_ms", BigInteger, nullable=True),
    UniqueConstraint("session_id", "respondent", name="uq_survey_link_session_respondent"),
)

# One scored response per session, respondent and instrument: the unique
# key is what keeps a double submit from storing two.
rating = Table(
    "rating",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
    Column("respondent", String(16), nullable=False),
    Column("instrument_id", String(64), nullable=False),
    Column("instrument_version", String(40), nullable=False),
    Column("answers", Text, nullable=False),
    Column("total", Float, nullable=True),
    Column("mean", Float, nullable=True),
    Column("subscales", Text, nullable=False, server_default="{}"),
    Column("submitted_ms", BigInteger, nullable=False),
    UniqueConstraint("session_id", "respondent", "instrument_id", name="uq_rating_session_respondent_instrument"),
)


# ---------------------------------------------------------------------------
# Reports and analysis (migration 0002_reports)
# ---------------------------------------------------------------------------

# Cache of each session's quality summary and disruption events, computed
# from its samples (server/analysis). Derived data only: deleting a row is
# always safe, it is recomputed on next view. ``config_hash`` ties a row to
# the analysis thresholds it was computed with; ``final`` marks rows computed
# after the session's ingest tokens expired, which no later sample can change.
session_quality = Table(
    "session_quality",
    metadata,
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), primary_key=True),
    Column("config_hash", String(16), nullable=False),
    Column("sample_count", Integer, nullable=False),
    Column("last_received_ms", BigInteger, nullable=False),
    Column("computed_ms", BigInteger, nullable=False),
    Column("final", Boolean, nullable=False, server_default="0"),
    Column("minutes", Integer, nullable=False),
    Column("disrupted_minutes", Integer, nullable=False),
    Column("summary", Text, nullable=False),
    Column("events", Text, nullable=False),
)


# ---------------------------------------------------------------------------
# Sidecar (migration 0002_sidecar)
# ---------------------------------------------------------------------------

# A link a client opens before the session to check their connection (no
# account): random, stored only as its SHA-256, usable until it expires.
probe_check_link = Table(
    "probe_check_link",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
    Column("participant_id", Integer, ForeignKey("participant.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("last_used_ms", BigInteger, nullable=True),
    Index("ix_probe_check_link_session", "session_id"),
)
