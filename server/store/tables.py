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
    Column("no_media_in", Boolean, nullable=True),
    Column("audio_packets_in", Float, nullable=True),
    Column("frames_in", Float, nullable=True),
    Column("last_packet_in_ms", Float, nullable=True),
    Column("data", Text, nullable=False),
)

# A media server's own view of a participant's legs (server/sfu): one row per
# report of one handle's medium. Keyed so a report sent again is stored once.
# ``leg``: "uplink" (the server receives this participant's media, a publisher
# handle) or "downlink" (it sends them others' media, a subscriber handle).
sfu_stat = Table(
    "sfu_stat",
    metadata,
    Column("participant_id", Integer, ForeignKey("participant.id", ondelete="CASCADE"), primary_key=True),
    Column("handle", String(40), primary_key=True),
    Column("media", String(16), primary_key=True),
    Column("t_ms", BigInteger, primary_key=True, autoincrement=False),
    Column("source", String(16), nullable=False),
    Column("leg", String(16), nullable=False),
    Column("received_ms", BigInteger, nullable=False),
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


# ---------------------------------------------------------------------------
# Retention (migration 0003_rollups; docs/operations.md, "What is kept")
# ---------------------------------------------------------------------------

# What outlives the raw per-second samples. One row per session once it has
# ended (or gone idle): the summary computed from the raw samples, the
# sample count and newest receipt it was computed from (so a late sample
# makes it stale), ``final`` once its ingest tokens expired (nothing can
# arrive any more), and when its raw samples were deleted.
session_rollup = Table(
    "session_rollup",
    metadata,
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), primary_key=True),
    Column("config_hash", String(16), nullable=False),
    Column("sample_count", Integer, nullable=False),
    Column("last_received_ms", BigInteger, nullable=False),
    Column("rolled_ms", BigInteger, nullable=False),
    Column("final", Boolean, nullable=False, server_default="0"),
    Column("t0_ms", BigInteger, nullable=True),
    Column("t1_ms", BigInteger, nullable=True),
    Column("summary", Text, nullable=False),
    Column("samples_pruned_ms", BigInteger, nullable=True),
)

# The sample columns summarised per minute: median, 95th percentile and the
# count of samples that carried the figure.
ROLLUP_METRICS = (
    "rtt_ms", "jitter_ms", "loss_in", "audio_loss_in", "video_loss_in", "bitrate_in_kbps", "fps_in",
    "frames_dropped_in", "freeze_ms_in", "concealed_ratio_in",
)


def _metric_columns() -> list[Column[object]]:
    out: list[Column[object]] = []
    for m in ROLLUP_METRICS:
        out += [Column(f"{m}_median", Float, nullable=True), Column(f"{m}_p95", Float, nullable=True),
                Column(f"{m}_n", Integer, nullable=False)]
    return out


# One row per participant per minute of the session's time axis (minute 0
# starts at the session's first sample, as in the reports).
minute_rollup = Table(
    "minute_rollup",
    metadata,
    Column("participant_id", Integer, ForeignKey("participant.id", ondelete="CASCADE"), primary_key=True),
    Column("minute", Integer, primary_key=True, autoincrement=False),
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
    Column("t_ms", BigInteger, nullable=False),
    Column("samples", Integer, nullable=False),
    Column("covered_ms", BigInteger, nullable=False),
    Column("no_media_ms", BigInteger, nullable=False),
    Column("freeze_total_ms", Float, nullable=True),
    Column("disrupted", Boolean, nullable=False),
    *_metric_columns(),
    Index("ix_minute_rollup_session", "session_id"),
)

# The disruption events as detected from the raw samples, with the evidence
# that made each (a JSON object, so attribution can be added to it).
event_rollup = Table(
    "event_rollup",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
    Column("participant_id", Integer, ForeignKey("participant.id", ondelete="CASCADE"), nullable=True),
    Column("role", String(16), nullable=True),
    Column("kind", String(40), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("severity", Float, nullable=False),
    Column("evidence", Text, nullable=False, server_default="{}"),
    Index("ix_event_rollup_session", "session_id", "start_ms"),
)
