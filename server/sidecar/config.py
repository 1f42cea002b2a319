"""Sidecar settings, read from BONDLINE_PROBE_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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


@lru_cache(maxsize=1)
def get_probe_settings() -> ProbeSettings:
    return ProbeSettings()
