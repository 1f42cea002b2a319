"""Every setting of Bondline, read from BONDLINE_* environment variables.

Four groups, one module: the server's own settings, the sidecar's
(``BONDLINE_PROBE_*``), the demo call's and the analysis thresholds
(``BONDLINE_ANALYSIS_*``). A ``Settings`` object carries all four and is
built once, when the app (or a CLI command) starts; worker processes get it
passed, never re-read from a changed environment. docs/operations.md holds
the table ``python -m server.config`` prints, and a test keeps the two equal.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Raise when a change to the analysis code changes its results: the number is
# part of every cached summary's key, so old summaries are recomputed.
# 2: attribution of each disruption, per-side minutes; 3: media interruptions,
# sub-second placement of freezes and dropouts, lost audio (issue 16); 4: a cut
# spanning three samples with none empty is one interruption, not two overlapping;
# 5: interruption edges from the receiver's packet stamps (last_packet_in_ms)
ANALYSIS_VERSION = 5


class AnalysisConfig(BaseSettings):
    """Every threshold of the analysis (docs/methodology.md gives each with its reason and source).

    The hash of the whole set is stored with each cached summary, so changing
    any value makes every summary recompute on next view."""

    model_config = SettingsConfigDict(env_prefix="BONDLINE_ANALYSIS_", extra="ignore", frozen=True)

    # --- video freeze (W3C webrtc-stats freezeCount / totalFreezesDuration) ---
    freeze_min_ms: float = Field(
        default=1000.0, ge=0,
        description="Shortest freeze (after merging) reported as a disruption event.",
    )
    merge_gap_ms: float = Field(
        default=2000.0, ge=0,
        description="Episodes of one kind closer than this are merged into one.",
    )

    # --- audio dropout (concealment) ---
    audio_concealed_ratio: float = Field(
        default=0.20, gt=0, le=1,
        description="Share of received audio samples concealed in an interval that marks it as a dropout.",
    )
    audio_min_ms: float = Field(
        default=1000.0, ge=0, description="Shortest audio dropout reported as an event.",
    )

    # --- k-of-n rules for loss and latency (as widely used commercial monitors do) ---
    window_n: int = Field(default=5, ge=1, description="Window length (samples) of the k-of-n rule.")
    window_k: int = Field(default=3, ge=1, description="Samples in the window that must cross a threshold.")
    loss_fraction: float = Field(
        default=0.01, gt=0, le=1, description="Inbound packet loss (fraction) above which a sample counts as lossy.",
    )
    rtt_ms: float = Field(
        default=400.0, gt=0, description="Round-trip time above which a sample counts as a latency spike.",
    )

    # --- whose connection (attribution) ---
    report_lag_ms: float = Field(
        default=6000.0, ge=0,
        description="How long after an event the sender's receiver reports (remote-inbound-rtp) are still counted "
                    "for it: reports come every 1-5 s (audio every 5 s) and are read at the next sample.",
    )

    # --- reconnects ---
    reconnect_max_gap_ms: float = Field(
        default=600_000.0, gt=0,
        description="A disconnect further back than this before a reconnect is not joined to it.",
    )

    # --- voice quality estimate (E-model, simplified) ---
    emodel_r0: float = Field(default=93.2, description="R for a perfect connection (Ro - Is of G.107 defaults).")
    emodel_delay: Literal["one_way", "rtt"] = Field(
        default="one_way", description="Delay fed to the E-model: RTT/2 (one-way, G.107's Ta) or the RTT itself.",
    )
    emodel_codec_ms: float = Field(default=10.0, ge=0, description="Fixed codec delay added to the latency.")
    emodel_jitter_factor: float = Field(default=2.0, ge=0, description="Jitter multiplier in effective latency.")
    emodel_loss_per_percent: float = Field(default=2.5, ge=0, description="R points lost per percent of loss.")

    # --- session summary verdict ---
    verdict_good_minutes_pct: float = Field(
        default=5.0, ge=0, le=100, description="Up to this share of disrupted minutes a session is 'good'.",
    )
    verdict_poor_minutes_pct: float = Field(
        default=20.0, ge=0, le=100, description="From this share of disrupted minutes a session is 'poor'.",
    )
    mos_poor: float = Field(default=3.5, ge=1, le=5, description="A median voice MOS below this makes it 'poor'.")

    # --- client course ---
    early_sessions: int = Field(default=5, ge=0, description="Sessions counted as the alliance-forming phase.")
    bond_reliability: float = Field(
        default=0.80, gt=0, lt=1,
        description="Reliability of the WAI-SR Bond subscale used in the reliable-change threshold.",
    )
    rci_z: float = Field(default=1.96, gt=0, description="Reliable-change criterion (two-sided 95%).")
    rci_min_ratings: int = Field(
        default=10, ge=3, description="Fewest client bond ratings in the caseload to estimate the reference SD.",
    )
    course_disrupted_minutes: int = Field(
        default=3, ge=1, description="Disrupted minutes from which a session counts as 'disrupted' in a course.",
    )

    # --- caseload attention column (docs/reports.md, "Who needs attention") ---
    attention_weeks: int = Field(
        default=4, ge=1,
        description="Weeks back the caseload's attention column looks for disrupted and unrated sessions.",
    )
    attention_disrupted_sessions: int = Field(
        default=2, ge=1, description="Disrupted sessions within those weeks that mark a client 'amber'.",
    )

    # --- caseload model ---
    model_min_sessions: int = Field(default=20, ge=5, description="Fewest rated sessions to fit the model.")
    model_min_clients: int = Field(default=4, ge=2, description="Fewest clients to fit the model.")
    corr_min_n: int = Field(default=10, ge=4, description="Fewest pairs to show a correlation.")

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisConfig:
        if self.window_k > self.window_n:
            raise ValueError("window_k must not exceed window_n")
        if self.verdict_good_minutes_pct > self.verdict_poor_minutes_pct:
            raise ValueError("verdict_good_minutes_pct must not exceed verdict_poor_minutes_pct")
        return self

    def fingerprint(self) -> str:
        """Short hash of every value and the analysis version: part of each cached summary's key."""
        return hashlib.sha256(f"{ANALYSIS_VERSION}:{self.model_dump_json()}".encode()).hexdigest()[:16]


class ProbeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BONDLINE_PROBE_", extra="ignore")

    max_per_process: int = Field(
        default=48, ge=0, description="Concurrent probes one server process accepts; more are refused with 4503 so "
        "the client can retry (another worker). 0 turns the sidecar off."
    )
    max_fps: float = Field(default=15.0, gt=0, le=30, description="Highest probe video frame rate a client may use.")
    max_ping_hz: float = Field(default=50.0, gt=0, le=100, description="Highest ping rate a client may ask for.")
    max_duration_s: float = Field(default=4 * 3600.0, gt=0, description="A probe run is ended after this long.")
    connect_timeout_s: float = Field(default=20.0, gt=0, description="Seconds a probe has to connect its media.")
    ice_servers: str = Field(
        default="",
        description="JSON list of ICE servers for the sidecar and its clients, e.g. "
        '[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}].',
    )
    recognise_pilot: bool = Field(
        default=True, description="Recognise a Bondline agent's pre-encoded pilot packets by their bytes instead of "
        "decoding them (docs/probe.md); off: always decode."
    )
    check_link_days: float = Field(default=14.0, gt=0, description="Days a connection-check link keeps working.")
    check_duration_s: float = Field(default=10.0, ge=3, le=60, description="Length of a connection check.")


class DemoSettings(BaseSettings):
    """The demo call page, /demo/call (server/demo/call.py)."""

    model_config = SettingsConfigDict(env_prefix="BONDLINE_", extra="ignore")

    demo_call: Literal["auto", "on", "off"] = Field(
        default="auto", description="Whether /demo/call may create demo sessions (auto: loopback only)."
    )
    demo_clinician: str | None = Field(
        default=None,
        description="Owner of demo call sessions; by default the demo caseload's first clinician when serving "
        "the demo database (so the call shows up in that login's caseload), else demo@bondline.example.",
    )
    demo_client_code: str = Field(default="DEMO-CALL", description="Pseudonymous client code of demo calls.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BONDLINE_", extra="ignore")

    database_url: str = Field(
        default="bondline.db",
        description="SQLite file path, sqlite:///path, or postgresql://... URL.",
    )
    admin_api_key: str | None = Field(
        default=None,
        description="Key for the admin JSON API. Generated and printed at start when unset.",
    )
    token_ttl_hours: float = Field(
        default=6.0, ge=0, description="Hours after a session ends that its ingest tokens keep working."
    )
    token_max_age_days: float = Field(
        default=14.0, gt=0, description="Ingest tokens of a session that never ends stop after this."
    )
    sample_retention_days: float = Field(
        default=30.0, gt=0,
        description="Raw per-second samples of a session are deleted this many days after it ended; its per-minute "
        "roll-up, summary and events are kept (docs/operations.md, \"What is kept\").",
    )
    rollup_idle_hours: float = Field(
        default=6.0, gt=0,
        description="A session that never says it ended is rolled up once no sample has arrived for this long.",
    )
    retention_interval_minutes: float = Field(
        default=60.0, ge=0,
        description="How often `bondline serve` rolls up ended sessions and prunes old samples (0: never; then run "
        "`bondline db prune` from cron).",
    )
    sqlite_synchronous: str = Field(
        default="FULL",
        pattern="^(OFF|NORMAL|FULL|EXTRA)$",
        description="SQLite synchronous pragma; FULL survives power loss, NORMAL survives process crashes.",
    )
    max_message_bytes: int = Field(default=1_048_576, gt=0, description="Largest WebSocket message or POST body.")
    max_batch_samples: int = Field(default=500, gt=0, description="Most samples in one batch.")
    max_batch_events: int = Field(default=200, gt=0, description="Most events in one batch.")
    import_max_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0,
        description="Largest dump `bondline import` reads, in bytes once unpacked; a bigger file is refused.",
    )
    rate_messages_per_s: float = Field(default=20.0, gt=0, description="Sustained messages per second per connection.")
    rate_burst: int = Field(default=200, gt=0, description="Messages a connection may send in a burst.")
    auth_timeout_s: float = Field(default=10.0, gt=0, description="Seconds a new WebSocket has to authenticate.")
    token_recheck_s: float = Field(
        default=30.0, gt=0, description="An open telemetry or probe socket looks its token up again after this many "
        "seconds (a session ended or a client erased meanwhile stops it; docs/security.md)."
    )
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds a connection has to send a request's complete headers (from its "
        "first byte, or from connecting); then it is closed, with 408 (slowloris)."
    )
    http_body_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds a request has to send its complete body after its headers; then "
        "it is answered 408 and closed."
    )
    public_url: str | None = Field(
        default=None, description="Base URL the server is reached at, used in plugin snippets."
    )
    clinic_name: str | None = Field(
        default=None,
        description="The clinic's name, shown on the client's rating form so a bare link is recognised.",
    )
    docs_dir: str | None = Field(
        default=None,
        description="Folder of Bondline's docs/ served at /help/ (the pages' 'how this is decided' links); by "
        "default the docs/ folder of the source checkout the server runs from.",
    )

    sfu_events_key: str | None = Field(
        default=None,
        description="Secret a media server (Janus's HTTP event handler: backend_pwd) sends to post its own "
        "statistics to /v1/sfu/janus/events (docs/integrate-browser.md, 'The SFU's own view'). Unset: the "
        "endpoint answers 404.",
    )

    # Accounts and security (server/accounts, server/security; docs/security.md).
    allowed_origins: str = Field(
        default="",
        description="Comma-separated browser origins (https://platform.example) allowed to load the plugin "
        "script cross-origin and to send telemetry; '*' allows any. Same-origin pages and clients that send "
        "no Origin header (non-browser collectors) are always allowed.",
    )
    first_admin_email: str = Field(
        default="admin@localhost",
        description="Email of the admin account created, with a printed one-time password, when none exists.",
    )
    login_idle_minutes: float = Field(default=120.0, gt=0, description="A login ends after this long unused.")
    login_max_hours: float = Field(default=12.0, gt=0, description="A login ends this long after it began.")
    login_max_failures: int = Field(
        default=5, gt=0, description="Failed logins for one email within the window before it is throttled."
    )
    login_ip_max_failures: int = Field(
        default=30, gt=0, description="Failed logins from one address within the window before it is throttled."
    )
    login_window_minutes: float = Field(default=15.0, gt=0, description="Window of the login throttle.")
    cookie_secure: bool | None = Field(
        default=None,
        description="Force the Secure cookie flag on or off; by default it is set when the request is HTTPS "
        "(or public_url is https).",
    )

    # Surveys and ratings (server/surveys; docs/surveys.md, docs/instruments.md).
    survey_link_ttl_hours: float = Field(
        default=72.0, gt=0, description="Hours after a session ends that its survey links keep working."
    )
    survey_link_max_age_days: float = Field(
        default=30.0, gt=0, description="Survey links of a session that never ends stop this long after it was "
        "created (or scheduled, if later).",
    )
    instruments_dir: str | None = Field(
        default=None, description="Directory of a clinic's own instrument files, added to the built-in ones."
    )
    survey_client_instruments: list[str] = Field(
        default=["wai-sr-client", "bondline-telehealth"],
        description="Instrument ids the client's survey asks for when a session does not choose (JSON list).",
    )
    survey_therapist_instruments: list[str] = Field(
        default=["wai-sr-therapist"],
        description="Instrument ids the therapist's survey asks for when a session does not choose (JSON list).",
    )

    # The other groups, each read from its own variables.
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)

    @property
    def sqlalchemy_url(self) -> str:
        return normalise_database_url(self.database_url)


def normalise_database_url(url: str) -> str:
    """Turn a bare path or a libpq-style URL into a SQLAlchemy URL."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+", "sqlite:")):
        return url
    return "sqlite:///" + str(Path(url).expanduser().resolve())


def load_settings(database: str | None = None) -> Settings:
    """The settings from the environment; ``database`` (a --db option)
    overrides BONDLINE_DATABASE_URL for this object only."""
    return Settings(database_url=database) if database else Settings()


GROUPS: tuple[tuple[str, str, type[BaseSettings]], ...] = (
    ("Server", "BONDLINE_", Settings),
    ("Sidecar probe and connection check (docs/probe.md)", "BONDLINE_PROBE_", ProbeSettings),
    ("Demo call", "BONDLINE_", DemoSettings),
    ("Analysis thresholds (docs/methodology.md)", "BONDLINE_ANALYSIS_", AnalysisConfig),
)
_GROUP_FIELDS = {"probe", "demo", "analysis"}


def setting_variables() -> list[str]:
    """Every environment variable Bondline reads, in table order."""
    return [f"{prefix}{name.upper()}" for _, prefix, cls in GROUPS for name in cls.model_fields
            if not (cls is Settings and name in _GROUP_FIELDS)]


def settings_markdown() -> str:
    """The settings tables of docs/operations.md (``python -m server.config``)."""
    lines: list[str] = []
    for title, prefix, cls in GROUPS:
        lines += [f"### {title}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
        for name, field in cls.model_fields.items():
            if cls is Settings and name in _GROUP_FIELDS:
                continue
            default = "(none)" if field.default is None else f"`{field.default}`"
            lines.append(f"| `{prefix}{name.upper()}` | {default} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
