"""Per-sample headline figures, derived once at ingest.

These fill the typed columns of the ``sample`` table so a report can load a
whole session into NumPy without parsing JSON. Definitions are in
docs/telemetry.md ("Headline columns"); every value is None when the
figures it comes from are missing: absence is never reported as zero.

This runs for every sample on the ingest event loop, so it makes a single
pass over the streams (docs/performance.md, "Telemetry ingest").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class _Loss:
    """Packet loss over a set of inbound streams."""

    __slots__ = ("lost", "received", "seen")

    def __init__(self) -> None:
        self.lost = 0
        self.received = 0
        self.seen = False

    def add(self, s: Mapping[str, Any]) -> None:
        got = s.get("packetsReceived")
        lost_delta = s.get("packetsLost")
        if got is None or lost_delta is None:
            return
        self.seen = True
        # Retransmissions are counted in packetsReceived but are not new
        # media packets; leaving them in understates loss several-fold.
        rx = got - (s.get("retransmittedPacketsReceived") or 0)
        if lost_delta > 0:
            self.lost += lost_delta
        if rx > 0:
            self.received += rx

    def fraction(self) -> float | None:
        if not self.seen:
            return None
        total = self.lost + self.received
        return self.lost / total if total else 0.0


def _add(acc: float | None, v: Any) -> float | None:
    if v is None:
        return acc
    return float(v) if acc is None else acc + v


def _top(acc: float | None, v: Any) -> float | None:
    if v is None:
        return acc
    return float(v) if acc is None or v > acc else acc


def headline(sample: Mapping[str, Any]) -> dict[str, float | None]:
    """Headline figures of one validated (or raw, already valid) sample."""
    rtt_streams: float | None = None
    jitter = bitrate_in = bitrate_out = fps = dropped = freeze = concealed = total_samples = None
    loss_all, loss_audio, loss_video = _Loss(), _Loss(), _Loss()
    for s in sample.get("streams") or ():
        rtt_streams = _top(rtt_streams, s.get("rttMs"))
        if s["direction"] != "inbound":
            bitrate_out = _add(bitrate_out, s.get("bitrateKbps"))
            continue
        jitter = _top(jitter, s.get("jitterMs"))
        bitrate_in = _add(bitrate_in, s.get("bitrateKbps"))
        loss_all.add(s)
        kind = s["kind"]
        if kind == "audio":
            loss_audio.add(s)
            concealed = _add(concealed, s.get("concealedSamples"))
            total_samples = _add(total_samples, s.get("totalSamplesReceived"))
        elif kind == "video":
            loss_video.add(s)
            fps = _top(fps, s.get("framesPerSecond"))
            dropped = _add(dropped, s.get("framesDropped"))
            freeze = _add(freeze, s.get("totalFreezesDurationMs"))

    connection = sample.get("connection")
    rtt = connection.get("rttMs") if connection else None
    if rtt is None:
        rtt = rtt_streams

    concealed_ratio: float | None = None
    if concealed is not None and total_samples:
        concealed_ratio = min(concealed / total_samples, 1.0)
    elif concealed is not None and total_samples == 0 and concealed > 0:
        concealed_ratio = 1.0

    return {
        "rtt_ms": rtt,
        "jitter_ms": jitter,
        "loss_in": loss_all.fraction(),
        "audio_loss_in": loss_audio.fraction(),
        "video_loss_in": loss_video.fraction(),
        "bitrate_in_kbps": bitrate_in,
        "bitrate_out_kbps": bitrate_out,
        "fps_in": fps,
        "frames_dropped_in": dropped,
        "freeze_ms_in": freeze,
        "concealed_ratio_in": concealed_ratio,
    }
