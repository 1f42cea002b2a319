"""The Bondline collector for aiortc-based platforms.

    collector = AiortcCollector(pc, uplink)      # uplink: plugin.uplink.Uplink
    collector.start()
    ...
    await collector.stop()

Every interval it reads ``pc.getStats()``, turns aiortc's cumulative counters
into per-interval figures and submits one ``bondline.sample/1`` sample with
source ``"python"``. What aiortc measures (W3C names): inbound ``packetsReceived``,
``packetsLost``, ``jitter``; outbound ``packetsSent``, ``bytesSent``; the far
end's receiver reports (remote-inbound-rtp ``roundTripTime``, ``fractionLost``,
``packetsLost``, ``jitter``). Frames, freezes, concealment, inbound bytes and
candidate types are not measured by aiortc and stay null (absent), never 0.

aiortc reports ``jitter`` in RTP timestamp units, not seconds: it is divided
by the clock rate of the stream's negotiated codec (48 kHz Opus, 90 kHz video).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from plugin.uplink import Uplink

log = logging.getLogger("bondline.collector")

DEFAULT_CLOCK = {"audio": 48_000, "video": 90_000}
CONN_STATES = {"new", "connecting", "connected", "disconnected", "failed", "closed"}
MIN_INTERVAL_MS = 50.0
ICE_STATES = {"new", "checking", "connected", "completed", "disconnected", "failed", "closed"}


def _ssrcs_of(transceiver: Any) -> set[int]:
    out: set[int] = set()
    try:
        out.update(int(s.source) for s in transceiver.receiver.getSynchronizationSources())
    except (AttributeError, TypeError, ValueError):
        pass
    sender_ssrc = getattr(transceiver.sender, "_ssrc", None)  # aiortc keeps it private
    if isinstance(sender_ssrc, int):
        out.add(sender_ssrc)
    return out


def clock_rates(pc: Any) -> tuple[dict[int, int], dict[str, int]]:
    """Clock rate per SSRC where known, and per kind from the negotiated codecs."""
    by_ssrc: dict[int, int] = {}
    by_kind: dict[str, int] = {}
    for tr in pc.getTransceivers():
        codecs = getattr(tr, "_codecs", None) or []
        rate = getattr(codecs[0], "clockRate", None) if codecs else None
        if not isinstance(rate, int) or rate <= 0:
            continue
        by_kind.setdefault(tr.kind, rate)
        for ssrc in _ssrcs_of(tr):
            by_ssrc[ssrc] = rate
    return by_ssrc, by_kind


class StatsDeltas:
    """Per-interval figures from aiortc's cumulative stats, keyed by stats id.

    A counter lower than last time means the stream restarted (a new
    connection or SSRC): the current value is then the interval's. A stats
    object seen for the first time counts from zero, except on the first poll
    of a connection that was not watched from its creation (``from_start``):
    its history predates us, so that poll is only the baseline.
    """

    def __init__(self, from_start: bool = False) -> None:
        self.prev: dict[str, dict[str, Any]] = {}
        self.polls = 0
        self.from_start = from_start
        # Inbound audio ids that have had packets: the sample in which one first
        # does is its playout start (``playoutStart``, as the browser plugin marks it).
        self.playing: set[str] = set()

    def _delta(self, sid: str, cur: dict[str, Any], name: str, reset: bool) -> int | None:
        c = cur.get(name)
        if not isinstance(c, int | float):
            return None
        before = self.prev.get(sid)
        p = before.get(name) if before else None
        if not isinstance(p, int | float) or reset:
            return int(c)
        return int(c - p)

    def _reset(self, sid: str, cur: dict[str, Any], names: Iterable[str]) -> bool:
        before = self.prev.get(sid)
        if not before:
            return False
        return any(
            isinstance(cur.get(n), int | float) and isinstance(before.get(n), int | float) and cur[n] < before[n]
            for n in names
        )

    def reduce(
        self, stats: list[dict[str, Any]], interval_ms: float, clock: tuple[dict[int, int], dict[str, int]]
    ) -> list[dict[str, Any]] | None:
        """Stream figures for this interval, or None on the baseline poll."""
        by_ssrc, by_kind = clock
        # aiortc labels remote-inbound-rtp with the reporter's SSRC, not ours;
        # it shares the sender's id suffix ("outbound-rtp_<n>" / "remote-inbound-rtp_<n>").
        remote_in: dict[object, dict[str, Any]] = {}
        for s in stats:
            if s.get("type") == "remote-inbound-rtp":
                remote_in[str(s.get("id", "")).rpartition("_")[2]] = s
                remote_in.setdefault(s.get("ssrc"), s)
        baseline = self.polls == 0 and not self.from_start
        streams: list[dict[str, Any]] = []
        for s in stats:
            kind = s.get("kind")
            if s.get("type") not in ("inbound-rtp", "outbound-rtp") or kind not in ("audio", "video"):
                continue
            ssrc = s.get("ssrc")
            rate = by_ssrc.get(ssrc, by_kind.get(kind, DEFAULT_CLOCK[kind])) if isinstance(ssrc, int) else None
            if s["type"] == "inbound-rtp":
                f = self._inbound(s, kind, rate)
                got = s.get("packetsReceived")
                if kind == "audio" and s["id"] not in self.playing and isinstance(got, int | float) and got > 0:
                    self.playing.add(s["id"])
                    if not baseline:  # on the baseline poll it was already playing before we watched
                        f["playoutStart"] = True
            else:
                remote = remote_in.get(str(s.get("id", "")).rpartition("_")[2]) or remote_in.get(ssrc)
                f = self._outbound(s, kind, rate, remote, interval_ms)
            if not baseline:
                streams.append(f)
        self.prev = {s["id"]: s for s in stats if "id" in s}
        self.polls += 1
        return None if baseline else streams

    def _inbound(self, s: dict[str, Any], kind: str, rate: int | None) -> dict[str, Any]:
        sid = s["id"]
        reset = self._reset(sid, s, ("packetsReceived",))
        f: dict[str, Any] = {"kind": kind, "direction": "inbound"}
        if isinstance(s.get("ssrc"), int):
            f["ssrc"] = s["ssrc"]
        rx = self._delta(sid, s, "packetsReceived", reset)
        lost = self._delta(sid, s, "packetsLost", reset)
        if rx is not None:
            f["packetsReceived"] = max(rx, 0)
        if lost is not None:
            f["packetsLost"] = lost
        if rx is not None and lost is not None and max(lost, 0) + max(rx, 0) > 0:
            f["lossFraction"] = round(max(lost, 0) / (max(lost, 0) + max(rx, 0)), 4)
        jitter = s.get("jitter")
        if isinstance(jitter, int | float) and rate:
            f["jitterMs"] = round(jitter / rate * 1000, 2)
        last = s.get("lastPacketReceivedTimestamp")
        if kind == "audio" and isinstance(last, int | float) and last > 0:
            f["lastPacketReceivedMs"] = round(last, 1)
        return f

    def _outbound(
        self, s: dict[str, Any], kind: str, rate: int | None, remote: dict[str, Any] | None, interval_ms: float
    ) -> dict[str, Any]:
        sid = s["id"]
        reset = self._reset(sid, s, ("packetsSent", "bytesSent"))
        f: dict[str, Any] = {"kind": kind, "direction": "outbound"}
        if isinstance(s.get("ssrc"), int):
            f["ssrc"] = s["ssrc"]
        sent = self._delta(sid, s, "packetsSent", reset)
        if sent is not None:
            f["packetsSent"] = max(sent, 0)
        sent_bytes = self._delta(sid, s, "bytesSent", reset)
        if sent_bytes is not None and interval_ms > 0:
            f["bitrateKbps"] = round(max(sent_bytes, 0) * 8 / interval_ms, 1)
        if remote is not None:
            # What the far end reported about this stream (RTCP receiver reports).
            rtt = remote.get("roundTripTime")
            # aiortc restamps remote-inbound-rtp on every receiver report, but
            # measures RTT only from one that answers its latest sender report;
            # any other carries the old smoothed value on (on a delayed path,
            # most do). So a measurement is new only when the value moved: a
            # new one leaves the float exactly as it was practically never.
            # Repeated, the old value would be counted twice.
            seen = self.prev.get(str(remote.get("id")))
            stale = seen is not None and (seen.get("timestamp") == remote.get("timestamp")
                                          or seen.get("roundTripTime") == rtt)
            if isinstance(rtt, int | float) and rtt >= 0 and not stale:
                f["rttMs"] = round(rtt * 1000, 2)
            fl = remote.get("fractionLost")
            if isinstance(fl, int | float) and 0 <= fl <= 1:
                f["lossFraction"] = round(fl, 4)
            rj = remote.get("jitter")
            if isinstance(rj, int | float) and rate:
                f["jitterMs"] = round(rj / rate * 1000, 2)
            rl = self._delta(remote["id"], remote, "packetsLost", reset)
            if rl is not None:
                f["packetsLost"] = rl
        return f


def stats_dicts(report: Any) -> list[dict[str, Any]]:
    """aiortc's RTCStatsReport as plain dicts (dataclass fields, W3C names)."""
    out = []
    for stat in report.values():
        d = {k: v for k, v in vars(stat).items() if not k.startswith("_")}
        out.append(d)
    return out


def inbound_streams(pc: Any) -> list[dict[str, Any]] | None:
    """One inbound-rtp dict per received media SSRC, read from the receivers.

    aiortc (1.16) gives every SSRC a receiver sees the receiver's one stats
    id, so once a retransmission (RTX) arrives the RTX stream's figures
    replace the media stream's in getStats(): video packetsReceived drops to
    a handful and its loss vanishes. The receivers keep the per-SSRC counters
    (private attributes, as clock_rates reads the codecs); RTX streams are
    left out, as the media stream already counts what they repaired as lost.
    None when this aiortc has no such attributes: getStats() is used as is.
    """
    out: list[dict[str, Any]] = []
    for tr in pc.getTransceivers():
        rx = tr.receiver
        streams = getattr(rx, "_RTCRtpReceiver__remote_streams", None)
        rtx = getattr(rx, "_RTCRtpReceiver__rtx_ssrc", None)
        if not isinstance(streams, dict) or not isinstance(rtx, dict):
            return None
        for ssrc, st in list(streams.items()):
            if ssrc in rtx:
                continue
            entry = {"type": "inbound-rtp", "id": f"inbound-rtp_{id(rx)}_{ssrc}", "kind": tr.kind, "ssrc": ssrc,
                     "packetsReceived": st.packets_received, "packetsLost": st.packets_lost, "jitter": st.jitter}
            # When the latest in-order packet arrived (wall clock, in the stream's clock
            # units): Chromium's lastPacketReceivedTimestamp, which places an outage's
            # edges better than packet counts do (docs/methodology.md).
            arrival, rate = getattr(st, "_last_arrival", None), getattr(st, "_clockrate", None)
            if isinstance(arrival, int) and isinstance(rate, int) and rate > 0:
                entry["lastPacketReceivedTimestamp"] = arrival * 1000 / rate
            out.append(entry)
    return out


class AiortcCollector:
    """Watches one aiortc RTCPeerConnection and sends its figures via an Uplink."""

    def __init__(self, pc: Any, uplink: Uplink, *, interval_s: float = 1.0, from_start: bool = False) -> None:
        if interval_s < 0.05:
            raise ValueError("interval_s must be at least 0.05")
        self.pc = pc
        self.uplink = uplink
        self.interval_s = interval_s
        # from_start: the connection was created just now, so its counters
        # cover only time we watch; otherwise the first poll is a baseline.
        self.deltas = StatsDeltas(from_start)
        self.samples = 0
        self.last_stats: list[dict[str, Any]] = []  # the report behind the latest sample
        self._task: asyncio.Task[None] | None = None
        self._last_ms = time.time() * 1000
        self._conn_state: str | None = None
        self._ice_state: str | None = None
        self._wake = asyncio.Event()
        self._final_done = False
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("iceconnectionstatechange", self._on_ice_state)

    def _on_connection_state(self) -> None:
        self._event("connection.state", self.pc.connectionState)
        if self.pc.connectionState == "closed":
            self._wake.set()  # the final poll now, not up to an interval later

    def _on_ice_state(self) -> None:
        self._event("ice.state", self.pc.iceConnectionState)

    def _event(self, kind: str, state: str) -> None:
        self.uplink.submit_event({"kind": kind, "tMs": int(time.time() * 1000), "state": state})

    def start(self) -> None:
        if self._task is None:
            self._last_ms = time.time() * 1000
            self._task = asyncio.create_task(self._run(), name="bondline-aiortc-collector")

    async def stop(self) -> None:
        """Stop polling after one last poll, so the partial interval since the
        previous one is sent too (the uplink is the caller's to flush and close)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
            await self._final_poll()

    async def _final_poll(self) -> None:
        if self._final_done:
            return
        self._final_done = True
        try:
            # aiortc keeps its counters readable after close().
            await self.poll()
        except Exception:  # noqa: BLE001 - stopping must not fail on a broken connection
            log.warning("final stats poll failed", exc_info=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.deltas.from_start:
            # Poll at attach: what came before is the baseline, and every
            # stream that appears after it counts from zero (its first second too).
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - no baseline: the next poll is the baseline then
                log.warning("stats poll failed", exc_info=True)
        next_at = loop.time()
        while True:
            next_at += self.interval_s
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_at - loop.time()))
            except TimeoutError:
                pass
            if self.pc.connectionState == "closed":
                await self._final_poll()
                return
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - a bad poll must not end the collector or the call
                log.warning("stats poll failed", exc_info=True)

    async def poll(self) -> dict[str, Any] | None:
        """Read the stats once and submit a sample (None on the baseline poll)."""
        # A sample covers at least 50 ms (the protocol's floor). A poll sooner
        # than that after the last one (stop() just after a tick) waits for
        # it, so the interval a sample states is the one its figures cover.
        early = MIN_INTERVAL_MS - (time.time() * 1000 - self._last_ms)
        if early > 0:
            await asyncio.sleep(early / 1000)
        report = await self.pc.getStats()
        now_ms = time.time() * 1000
        start_ms, self._last_ms = self._last_ms, now_ms
        interval_ms = max(MIN_INTERVAL_MS, now_ms - start_ms)
        self.last_stats = stats_dicts(report)
        inbound = inbound_streams(self.pc)
        if inbound is not None:
            self.last_stats = [s for s in self.last_stats if s.get("type") != "inbound-rtp"] + inbound
        streams = self.deltas.reduce(self.last_stats, interval_ms, clock_rates(self.pc))
        if streams is None:
            return None
        connection: dict[str, Any] = {"connections": 1}
        if self.pc.connectionState in CONN_STATES:
            connection["state"] = self.pc.connectionState
        if self.pc.iceConnectionState in ICE_STATES:
            connection["iceState"] = self.pc.iceConnectionState
        sample = {
            "startMs": int(start_ms),
            "intervalMs": int(round(interval_ms)),
            "source": "python",
            "streams": streams[:64],
            "connection": connection,
        }
        self.uplink.submit(sample)
        self.samples += 1
        return sample
