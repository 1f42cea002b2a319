"""Every threshold of the analysis, defined once.

docs/methodology.md gives each default with its reason and source; keep the
two in step. Values are read from ``BONDLINE_ANALYSIS_*`` environment
variables so an operator can tune them without a code change; the hash of the
whole set is stored with each cached summary, so changing any value makes
every summary recompute on next view.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Raise when a change to the analysis code changes its results: the number is
# part of every cached summary's key, so old summaries are recomputed.
ANALYSIS_VERSION = 1


class AnalysisConfig(BaseSettings):
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


@lru_cache(maxsize=1)
def get_config() -> AnalysisConfig:
    return AnalysisConfig()
