"""Per-interval probe figures as ``bondline.sample/1`` samples and events.

Definitions of every figure are in docs/probe.md. A sample belongs to the
participant. The participant's side measures what it receives (its
inbound streams); the sidecar measures what it receives from the
participant, which is the participant's outbound media as the far end got
it, so those streams are marked outbound (the W3C "remote-inbound" view).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

from media.probe.audio_meter import BLOCK_MS, AudioInterval
from media.probe.pings import PingInterval
from media.probe.profile import STREAM_PARTICIPANT, STREAM_SIDECAR, ProbeProfile, probe_seq
from media.probe.receiver import RtpInterval
from media.probe.video_meter import VideoInterval

Side = Literal["participant", "sidecar"]
SAMPLES_PER_BLOCK = 960


@dataclass
class IntervalData:
    start_ms: int
    interval_ms: int
    side: Side
    run: str
    video: VideoInterval | None
    video_rtp: RtpInterval | None
    video_jitter_ms: float | None
    audio: AudioInterval | None
    audio_rtp: RtpInterval | None
    audio_jitter_ms: float | None
    pings: PingInterval
    connection: dict[str, Any] = field(default_factory=dict)
    clock: dict[str, float] = field(default_factory=dict)


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


def _video_stream(d: IntervalData, direction: str) -> dict[str, Any] | None:
    v = d.video
    if v is None:
        return None
    secs = d.interval_ms / 1000.0
    s: dict[str, Any] = {
        "kind": "video",
        "direction": direction,
        "id": f"probe-video-{direction}",
        "framesReceived": v.frames_received,
        "framesDecoded": v.frames_received + v.frames_corrupt,
        "framesPerSecond": _r(v.frames_received / secs),
        "freezeCount": len(v.freezes),
        "totalFreezesDurationMs": _r(sum(f.duration_ms for f in v.freezes), 1),
        "framesLost": max(v.frames_lost, 0),
        "framesLate": v.frames_late,
        "framesCorrupt": v.frames_corrupt,
        "jitterMs": _r(d.video_jitter_ms),
    }
    if d.video_rtp is not None:
        s["packetsReceived"] = d.video_rtp.received
        s["packetsLost"] = d.video_rtp.lost
        s["bitrateKbps"] = _r(d.video_rtp.bytes * 8 / d.interval_ms)
    return s


def _audio_stream(d: IntervalData, direction: str) -> dict[str, Any] | None:
    a = d.audio
    if a is None:
        return None
    s: dict[str, Any] = {
        "kind": "audio",
        "direction": direction,
        "id": f"probe-audio-{direction}",
        "totalSamplesReceived": a.expected * SAMPLES_PER_BLOCK,
        "concealedSamples": a.gap_blocks * SAMPLES_PER_BLOCK,
        "concealmentEvents": a.dropouts_started,
        "audioGapMs": _r(a.gap_blocks * BLOCK_MS, 1),
        "blocksMissing": a.missing,
        "blocksUnreadable": a.unreadable,
        "blocksLate": a.late,
        "jitterMs": _r(d.audio_jitter_ms),
    }
    if d.audio_rtp is not None:
        s["packetsReceived"] = d.audio_rtp.received
        s["packetsLost"] = d.audio_rtp.lost
        s["bitrateKbps"] = _r(d.audio_rtp.bytes * 8 / d.interval_ms)
    return s


def build_sample(d: IntervalData) -> dict[str, Any]:
    direction = "inbound" if d.side == "participant" else "outbound"
    stream = STREAM_PARTICIPANT if d.side == "participant" else STREAM_SIDECAR
    streams = [s for s in (_video_stream(d, direction), _audio_stream(d, direction)) if s is not None]
    p = d.pings
    rtt = statistics.median(p.rtt_ms) if p.rtt_ms else None
    connection = {k: v for k, v in d.connection.items() if v is not None}
    if rtt is not None:
        connection["rttMs"] = _r(rtt)
    probe: dict[str, Any] = {
        "side": d.side,
        "path": "down" if d.side == "participant" else "up",
        "run": d.run,
        "pingsSent": p.sent,
        "pingsReceived": p.received,
        "pingsLost": max(p.lost, 0),
        "rttMinMs": _r(min(p.rtt_ms)) if p.rtt_ms else None,
        "rttMaxMs": _r(max(p.rtt_ms)) if p.rtt_ms else None,
    }
    probe.update({k: _r(v) for k, v in d.clock.items()})
    return {
        "schema": "bondline.sample/1",
        "seq": probe_seq(d.start_ms, stream),
        "startMs": d.start_ms,
        "intervalMs": d.interval_ms,
        "source": "probe",
        "streams": streams,
        "connection": connection,
        "probe": {k: v for k, v in probe.items() if v is not None},
    }


@dataclass
class _Episode:
    kind: str
    start_ms: float
    end_ms: float
    peak: float


class EventTracker:
    """Turns interval figures into disruption events (docs/probe.md, "Events").

    Freezes and audio dropouts are reported as they end; loss bursts and
    latency spikes are runs of intervals over a threshold, reported when
    the run ends (or the probe stops)."""

    def __init__(self, profile: ProbeProfile, side: Side, run: str) -> None:
        self.profile = profile
        self.side = side
        self.run = run
        self._open: dict[str, _Episode] = {}

    def _event(self, kind: str, start: float, end: float | None, severity: float,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        path = "down" if self.side == "participant" else "up"
        ev: dict[str, Any] = {
            "key": f"probe-{self.run}-{self.side}-{kind}-{int(start)}",
            "kind": f"probe.{kind}",
            "tMs": int(start),
            "severity": round(float(severity), 2),
            "side": self.side,
            "path": path,
            "run": self.run,
        }
        if end is not None:
            ev["endMs"] = max(int(end), int(start))
        if extra:
            ev.update(extra)
        return ev

    def _run(self, kind: str, over: bool, d: IntervalData, value: float) -> list[dict[str, Any]]:
        ep = self._open.get(kind)
        end = d.start_ms + d.interval_ms
        if over:
            if ep is None:
                self._open[kind] = _Episode(kind, d.start_ms, end, value)
            else:
                ep.end_ms = end
                ep.peak = max(ep.peak, value)
            return []
        if ep is None:
            return []
        del self._open[kind]
        return [self._event(kind, ep.start_ms, ep.end_ms, ep.peak)]

    def interval(self, d: IntervalData) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if d.video is not None:
            for f in d.video.freezes:
                out.append(self._event("freeze", f.start_ms, f.end_ms, f.duration_ms,
                                       {"framesMissing": f.frames_missing}))
        if d.audio is not None:
            for drop in d.audio.dropouts:
                if drop.duration_ms >= self.profile.dropout_min_ms:
                    out.append(self._event("audio_dropout", drop.start_ms, drop.end_ms, drop.duration_ms,
                                           {"blocks": drop.blocks, "blocksMissing": drop.missing,
                                            "blocksUnreadable": drop.unreadable, "blocksLate": drop.late}))
        lost = max(d.pings.lost, 0)
        seen = d.pings.received + lost
        for rtp in (d.video_rtp, d.audio_rtp):
            if rtp is not None:
                lost += max(rtp.lost, 0)
                seen += rtp.received + max(rtp.lost, 0)
        fraction = lost / seen if seen else 0.0
        burst = lost >= self.profile.loss_burst_min_packets and fraction >= self.profile.loss_burst_fraction
        out.extend(self._run("loss_burst", burst, d, fraction))
        if self.side == "sidecar":
            rtt = statistics.median(d.pings.rtt_ms) if d.pings.rtt_ms else None
            spike = rtt is not None and rtt >= self.profile.latency_spike_ms
            out.extend(self._run("latency_spike", spike, d, rtt or 0.0))
        return out

    def close(self) -> list[dict[str, Any]]:
        out = [self._event(ep.kind, ep.start_ms, ep.end_ms, ep.peak) for ep in self._open.values()]
        self._open.clear()
        return out
