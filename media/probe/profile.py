"""What a probe sends and how it judges what it receives."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# Probe samples live in their own part of a participant's seq space, away
# from the passive collectors' 0, 1, 2, ... (docs/probe.md, "Samples"): the
# seq is derived from the interval's start second and the measuring side, so
# a resend, a restarted probe or a second server process can never write a
# different sample under the same key.
PROBE_SEQ_BASE = 1 << 48
STREAM_SIDECAR = 0  # measured by the sidecar: what it receives from the participant
STREAM_PARTICIPANT = 1  # measured by the participant: what it receives from the sidecar
STREAM_CHECK = 2  # connection-check summaries


def probe_seq(start_ms: int, stream: int) -> int:
    if start_ms % 1000:
        raise ValueError("probe intervals start on whole seconds")
    return PROBE_SEQ_BASE + (start_ms // 1000) * 4 + stream


@dataclass(frozen=True)
class ProbeProfile:
    """One probe's media and measurement settings; both ends use the same."""

    video: bool = True
    audio: bool = True
    fps: float = 5.0
    ptime_ms: int = 60
    ping_hz: float = 5.0
    interval_ms: int = 1000
    # A frame or audio block arriving this much later than the fastest one
    # (in transit time) is counted late: a real player would have moved on.
    late_ms: float = 200.0
    # Episodes that become events (docs/probe.md, "Events").
    dropout_min_ms: float = 100.0
    loss_burst_fraction: float = 0.10
    loss_burst_min_packets: int = 3
    latency_spike_ms: float = 400.0

    def problems(self, max_fps: float = 15.0, max_ping_hz: float = 50.0) -> list[str]:
        # imported on use: pilot_opus loads PyAV and numpy, which `bondline --help` (reading the defaults) never needs
        from media.pilot_opus import PTIMES_MS

        out = []
        if not (self.video or self.audio):
            out.append("a probe needs video or audio")
        if not 1.0 <= self.fps <= max_fps:
            out.append(f"fps must be between 1 and {max_fps:g}")
        if self.ptime_ms not in PTIMES_MS:
            out.append(f"ptime_ms must be one of {PTIMES_MS}")
        if not 0.5 <= self.ping_hz <= max_ping_hz:
            out.append(f"ping_hz must be between 0.5 and {max_ping_hz:g}")
        if self.interval_ms < 1000 or self.interval_ms % 1000 or self.interval_ms > 60_000:
            out.append("interval_ms must be a whole number of seconds between 1 and 60")
        if not 20 <= self.late_ms <= 5000:
            out.append("late_ms must be between 20 and 5000")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeProfile:
        """Known fields only; wrong types raise TypeError/ValueError."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            default = getattr(cls(), key)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError(f"{key} must be true or false")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{key} must be an integer")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError(f"{key} must be a number")
                value = float(value)
            values[key] = value
        return cls(**values)
