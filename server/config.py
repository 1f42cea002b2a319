"""Runtime configuration, read from BONDLINE_* environment variables.

Every tunable limit of the service lives here so that docs/operations.md can
list them in one place and tests can override them per server process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    sqlite_synchronous: str = Field(
        default="FULL",
        pattern="^(OFF|NORMAL|FULL|EXTRA)$",
        description="SQLite synchronous pragma; FULL survives power loss, NORMAL survives process crashes.",
    )
    max_message_bytes: int = Field(default=1_048_576, gt=0, description="Largest WebSocket message or POST body.")
    max_batch_samples: int = Field(default=500, gt=0, description="Most samples in one batch.")
    max_batch_events: int = Field(default=200, gt=0, description="Most events in one batch.")
    rate_messages_per_s: float = Field(default=20.0, gt=0, description="Sustained messages per second per connection.")
    rate_burst: int = Field(default=200, gt=0, description="Messages a connection may send in a burst.")
    auth_timeout_s: float = Field(default=10.0, gt=0, description="Seconds a new WebSocket has to authenticate.")
    public_url: str | None = Field(
        default=None, description="Base URL the server is reached at, used in plugin snippets."
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_markdown() -> str:
    """The settings table of docs/operations.md (``python -m server.config``)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = "(none)" if field.default is None else f"`{field.default}`"
        lines.append(f"| `BONDLINE_{name.upper()}` | {default} | {field.description or ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_markdown())
