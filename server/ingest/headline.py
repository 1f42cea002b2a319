"""Per-sample headline figures, derived once at ingest.

These fill the typed columns of the ``sample`` table so a report can load a
whole session into NumPy without parsing JSON. Definitions are in
docs/telemetry.md ("Headline columns"); every value is None when the
figures it comes from are missing: absence is never reported as zero.

This runs for every sample on the ingest event loop, so it is one pass over
the streams with the accumulators inlined: helper calls per stream figure
cost a third of ingest's row building (docs/performance.md, "Telemetry
ingest").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.store.telemetry import HEADLINE_COLUMNS

__all__ = ["HEADLINE_COLUMNS", "Headline", "headline", "headline_row"]

_F = float | None
# One value per HEADLINE_COLUMNS entry, in that order.
Headline = tuple[_F, _F, _F, _F, _F, _F, _F, _F, _F, _F, _F, bool | None, _F, _F, _F]


def _fraction(seen: bool, lost: int, received: int) -> float | None:
    # No packet at all is not 0 % loss: nothing was measured (no_media_in says why).
    if not seen:
        return None
    total = lost + received
    return lost / total if total else None


def headline_row(sample: Mapping[str, Any]) -> Headline:
    """The headline figures of one valid sample, in HEADLINE_COLUMNS order."""
    rtt_streams = jitter = bitrate_in = bitrate_out = fps = dropped = freeze = None
    concealed = total_samples = frames = last_audio = None
    # Packet loss per inbound kind: (lost, new packets received, any stream
    # that reported both counters).
    lost_a = rx_a = lost_v = rx_v = lost_o = rx_o = 0
    seen_a = seen_v = seen_o = False
    for s in sample.get("streams") or ():
        v = s.get("rttMs")
        if v is not None and (rtt_streams is None or v > rtt_streams):
            rtt_streams = float(v)
        if s["direction"] != "inbound":
            v = s.get("bitrateKbps")
            if v is not None:
                bitrate_out = float(v) if bitrate_out is None else bitrate_out + v
            continue
        v = s.get("jitterMs")
        if v is not None and (jitter is None or v > jitter):
            jitter = float(v)
        v = s.get("bitrateKbps")
        if v is not None:
            bitrate_in = float(v) if bitrate_in is None else bitrate_in + v
        got = s.get("packetsReceived")
        lost = s.get("packetsLost")
        counted = got is not None and lost is not None
        if counted:
            # Retransmissions are counted in packetsReceived but are not new
            # media packets; leaving them in understates loss several-fold.
            rx = got - (s.get("retransmittedPacketsReceived") or 0)
            rx = rx if rx > 0 else 0
            lost = lost if lost > 0 else 0
        kind = s["kind"]
        if kind == "audio":
            if counted:
                seen_a = True
                lost_a += lost
                rx_a += rx
            # A stream's playout start conceals while its jitter buffer fills:
            # a subscription added mid-call is not a dropout (docs/methodology.md).
            if s.get("playoutStart") is not True:
                v = s.get("concealedSamples")
                if v is not None:
                    concealed = float(v) if concealed is None else concealed + v
                v = s.get("totalSamplesReceived")
                if v is not None:
                    total_samples = float(v) if total_samples is None else total_samples + v
            v = s.get("lastPacketReceivedMs")
            if v is not None and (last_audio is None or v > last_audio):
                last_audio = float(v)
        else:
            if counted:
                if kind == "video":
                    seen_v = True
                    lost_v += lost
                    rx_v += rx
                else:
                    seen_o = True
                    lost_o += lost
                    rx_o += rx
            if kind == "video":
                v = s.get("framesPerSecond")
                if v is not None and (fps is None or v > fps):
                    fps = float(v)
                v = s.get("framesReceived")
                if v is not None:
                    frames = float(v) if frames is None else frames + v
                v = s.get("framesDropped")
                if v is not None:
                    dropped = float(v) if dropped is None else dropped + v
                v = s.get("totalFreezesDurationMs")
                if v is not None:
                    freeze = float(v) if freeze is None else freeze + v

    connection = sample.get("connection")
    rtt = connection.get("rttMs") if connection else None
    if rtt is None:
        rtt = rtt_streams

    concealed_ratio: float | None = None
    if concealed is not None and total_samples:
        concealed_ratio = min(concealed / total_samples, 1.0)
    elif concealed is not None and total_samples == 0 and concealed > 0:
        concealed_ratio = 1.0

    seen = seen_a or seen_v or seen_o
    no_media = None if not seen else rx_a + rx_v + rx_o == 0
    return (
        rtt,
        jitter,
        None if no_media else _fraction(seen, lost_a + lost_v + lost_o, rx_a + rx_v + rx_o),
        None if no_media else _fraction(seen_a, lost_a, rx_a),
        None if no_media else _fraction(seen_v, lost_v, rx_v),
        bitrate_in,
        bitrate_out,
        fps,
        dropped,
        freeze,
        concealed_ratio,
        no_media,
        float(rx_a) if seen_a else None,
        frames,
        last_audio,
    )


def headline(sample: Mapping[str, Any]) -> dict[str, float | bool | None]:
    """Headline figures of one validated (or raw, already valid) sample."""
    return dict(zip(HEADLINE_COLUMNS, headline_row(sample), strict=True))
