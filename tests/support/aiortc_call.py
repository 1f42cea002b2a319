"""A real two-peer aiortc call in one process, watched by the Python collector.

Each peer sends Opus audio and VP8 video and drains what it receives; each
has its own Uplink to a real server and an AiortcCollector. The tests that
impair the call wrap one peer's ICE transport between its offer and the
answer (``negotiate``'s ``on_offer``), before ICE starts.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from plugin.aiortc_collector import AiortcCollector
from plugin.uplink import Uplink
from server.analysis.events import Disruption, detect_all
from server.analysis.series import load_session
from server.config import AnalysisConfig, normalise_database_url
from server.store.db import make_engine

ROLES = ("clinician", "client")


async def drain(track: MediaStreamTrack) -> None:
    while True:
        await track.recv()


def payload_types(sdp: str) -> dict[int, str]:
    """RTP payload type -> "audio" / "video" for the media codecs of an SDP (RTX is left out)."""
    out = {}
    for pt, name in re.findall(r"a=rtpmap:(\d+) ([A-Za-z0-9]+)/", sdp):
        if name.upper() == "VP8":
            out[int(pt)] = "video"
        elif name.lower() == "opus":
            out[int(pt)] = "audio"
    return out


def disruptions(db_url: str, session_id: int) -> list[Disruption]:
    """What the analysis detects in the stored session (server.analysis, as the reports run it)."""
    engine = make_engine(normalise_database_url(db_url))
    try:
        with engine.connect() as conn:
            return detect_all(load_session(conn, session_id), AnalysisConfig())
    finally:
        engine.dispose()


class AiortcCall:
    def __init__(self, base: str, tokens: dict[str, str], *, interval_s: float, from_start: bool) -> None:
        self.pcs = {role: RTCPeerConnection() for role in ROLES}
        self.sinks: list[asyncio.Task[None]] = []
        for pc in self.pcs.values():
            pc.addTrack(AudioStreamTrack())
            pc.addTrack(VideoStreamTrack())
            pc.on("track", lambda track: self.sinks.append(asyncio.ensure_future(drain(track))))
        self.uplinks = {role: Uplink(base, tokens[role]) for role in ROLES}
        self.collectors = {role: AiortcCollector(self.pcs[role], self.uplinks[role], interval_s=interval_s,
                                                 from_start=from_start) for role in ROLES}

    async def start(self) -> None:
        for role in ROLES:
            assert await self.uplinks[role].start(wait_s=10)
            self.collectors[role].start()

    async def negotiate(self, offerer: str,
                        on_offer: Callable[[RTCPeerConnection], None] | None = None) -> None:
        a = self.pcs[offerer]
        b = self.pcs[ROLES[1 - ROLES.index(offerer)]]
        await a.setLocalDescription(await a.createOffer())
        if on_offer is not None:
            on_offer(a)  # its transport exists now, and ICE has not started
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)

    async def stop_collectors(self) -> None:
        for c in self.collectors.values():
            await c.stop()

    async def close(self) -> None:
        """Flush the uplinks, then end the media and the connections."""
        for role in ROLES:
            assert await self.uplinks[role].close(10)
        for t in self.sinks:
            t.cancel()
        for pc in self.pcs.values():
            await pc.close()


@dataclass
class RttLog:
    """Every RTT measurement aiortc's senders make: a receiver report that
    answers the sender's latest sender report (the condition of
    ``RTCRtpSender._handle_rtcp_packet``). Per sender SSRC: (epoch s, RTT s)."""

    measured: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    reports: dict[int, int] = field(default_factory=dict)  # receiver reports per sender SSRC, measuring or not
    # Reports that came after a measurement but answered an older sender report:
    # aiortc restamps its remote-inbound-rtp then, with the old RTT in it.
    unanswering: dict[int, int] = field(default_factory=dict)

    def watch(self, sender: RTCRtpSender) -> None:
        handle = sender._handle_rtcp_packet

        async def recorded(packet: Any) -> None:
            answers = [r for r in getattr(packet, "reports", ()) if r.ssrc == sender._ssrc]
            measures = any(r.lsr == sender._RTCRtpSender__lsr and r.dlsr for r in answers)  # type: ignore[attr-defined]
            await handle(packet)
            if answers:
                self.reports[sender._ssrc] = self.reports.get(sender._ssrc, 0) + 1
                if not measures and sender._ssrc in self.measured:
                    self.unanswering[sender._ssrc] = self.unanswering.get(sender._ssrc, 0) + 1
            if measures:
                rtt = sender._RTCRtpSender__rtt  # type: ignore[attr-defined]
                self.measured.setdefault(sender._ssrc, []).append((time.time(), rtt))

        sender._handle_rtcp_packet = recorded  # type: ignore[method-assign]


def assert_rtt_only_where_measured(role: str, rows: list[dict[str, Any]], rtts: RttLog) -> None:
    """Each stored RTT is a measurement aiortc made in that sample's interval (its
    latest), each measurement is stored at most once, and an interval without one
    has no RTT. aiortc's receiver reports come every 0.5-1.5 s and only those that
    answer the latest sender report measure, so at 0.5 s polls (or on a delayed
    path) many intervals have none. A measurement within 2 ms of a poll may fall
    on either side of it (the samples' stamps are whole ms)."""
    used: set[tuple[int, float]] = set()
    lines, empty = [], 0
    for r in rows:
        a, b = r["start_ms"] / 1000, (r["start_ms"] + r["interval_ms"]) / 1000
        for st in r["data"]["streams"]:
            if st["direction"] != "outbound" or st["ssrc"] not in rtts.measured:
                continue
            measured = rtts.measured[st["ssrc"]]
            near = [m for m in measured if a - 0.002 < m[0] <= b + 0.002 and (st["ssrc"], m[0]) not in used]
            inside = [m for m in measured if a + 0.002 < m[0] <= b - 0.002]
            lines.append((r["seq"], st["kind"], st.get("rttMs"), [(round(t - a, 3), round(v * 1000, 2))
                                                                  for t, v in near]))
            if "rttMs" in st:
                match = [m for m in near if round(m[1] * 1000, 2) == st["rttMs"]]
                assert match, (role, lines)
                used.add((st["ssrc"], match[-1][0]))
            else:
                assert not inside, (role, lines)
                empty += 1
    mine = {st["ssrc"] for r in rows for st in r["data"]["streams"] if st["direction"] == "outbound"}
    print(role, "receiver reports", sum(n for k, n in rtts.reports.items() if k in mine), "measurements",
          sum(len(v) for k, v in rtts.measured.items() if k in mine), "answering an older sender report",
          sum(n for k, n in rtts.unanswering.items() if k in mine), "stored RTTs", len(used),
          "intervals without a measurement", empty)
    assert used and empty, (role, lines)
