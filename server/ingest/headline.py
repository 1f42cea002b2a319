"""Per-sample headline figures, derived once at ingest.

These fill the typed columns of the ``sample`` table so a report can load a
whole session into NumPy without parsing JSON. Definitions are in
docs/telemetry.md ("Headline columns"); every value is None when the
figures it comes from are missing: absence is never reported as zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Stream = Mapping[str, Any]


def _loss(streams: Iterable[Stream]) -> float | None:
    lost = 0
    received = 0
    seen = False
    for s in streams:
        got = s.get("packetsReceived")
        lost_delta = s.get("packetsLost")
        if got is None or lost_delta is None:
            continue
        seen = True
        # Retransmissions are counted in packetsReceived but are not new
        # media packets; leaving them in understates loss several-fold.
        rx = got - (s.get("retransmittedPacketsReceived") or 0)
        lost += max(lost_delta, 0)
        received += max(rx, 0)
    if not seen:
        return None
    total = lost + received
    return lost / total if total else 0.0


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(sum(present)) if present else None


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(max(present)) if present else None


def headline(sample: Mapping[str, Any]) -> dict[str, float | None]:
    """Headline figures of one validated (or raw, already valid) sample."""
    streams: list[Stream] = sample.get("streams") or []
    inbound = [s for s in streams if s["direction"] == "inbound"]
    outbound = [s for s in streams if s["direction"] == "outbound"]
    audio_in = [s for s in inbound if s["kind"] == "audio"]
    video_in = [s for s in inbound if s["kind"] == "video"]

    connection = sample.get("connection")
    rtt = connection.get("rttMs") if connection else None
    if rtt is None:
        rtt = _max(s.get("rttMs") for s in streams)

    concealed = _sum(s.get("concealedSamples") for s in audio_in)
    total_samples = _sum(s.get("totalSamplesReceived") for s in audio_in)
    concealed_ratio: float | None = None
    if concealed is not None and total_samples:
        concealed_ratio = min(concealed / total_samples, 1.0)
    elif concealed is not None and total_samples == 0 and concealed > 0:
        concealed_ratio = 1.0

    return {
        "rtt_ms": rtt,
        "jitter_ms": _max(s.get("jitterMs") for s in inbound),
        "loss_in": _loss(inbound),
        "audio_loss_in": _loss(audio_in),
        "video_loss_in": _loss(video_in),
        "bitrate_in_kbps": _sum(s.get("bitrateKbps") for s in inbound),
        "bitrate_out_kbps": _sum(s.get("bitrateKbps") for s in outbound),
        "fps_in": _max(s.get("framesPerSecond") for s in video_in),
        "frames_dropped_in": _sum(s.get("framesDropped") for s in video_in),
        "freeze_ms_in": _sum(s.get("totalFreezesDurationMs") for s in video_in),
        "concealed_ratio_in": concealed_ratio,
    }
