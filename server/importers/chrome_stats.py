"""Chromium ``getStats()`` reports to ``bondline.sample/1`` stream figures, in Python.

The same rules as the browser plugin's ``StatsReducer`` (plugin/js/bondline.js),
for reports that reach Python instead of running in the page: dumps from
``chrome://webrtc-internals`` and rtcstats (server/importers/dump_import.py). A test feeds
the same reports to both implementations inside Chromium and compares them
(tests/test_plugin_browser_units.py), so the two cannot drift apart silently.

Rules: counters are keyed on the stats object id (an RTP object renamed by a
renegotiation, same type, kind and SSRC, continues from its old id); a monotone counter that
went down means the stream restarted, and the current values are then the
interval's; an object seen for the first time counts from zero, except on
the baseline poll of a connection not watched from its creation. A counter
this object had before but not in the previous poll (a dump with a gap) has
no known value to subtract: its interval figure is unknown, never the whole
counter.
"""

from __future__ import annotations

import math
from typing import Any

INBOUND_COUNTERS = (
    "packetsReceived", "packetsLost", "retransmittedPacketsReceived", "framesDecoded", "framesDropped",
    "framesReceived", "freezeCount", "pauseCount", "concealedSamples", "silentConcealedSamples",
    "totalSamplesReceived", "concealmentEvents", "nackCount", "pliCount", "firCount",
)
OUTBOUND_COUNTERS = ("packetsSent", "framesEncoded", "framesSent", "nackCount", "pliCount", "firCount")
QL_REASONS = {"none", "cpu", "bandwidth", "other"}
CANDIDATE_TYPES = {"host", "srflx", "prflx", "relay"}
RTP_TYPES = {"inbound-rtp", "outbound-rtp", "remote-inbound-rtp", "remote-outbound-rtp"}

Stats = dict[str, Any]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if v == v and abs(v) != float("inf") else None


def _round(v: float | None, digits: int) -> float | int | None:
    if v is None:
        return None
    # JavaScript's Math.round(x * f) / f, so both sides print the same numbers.
    f = 10**digits
    r = math.floor(v * f + 0.5) / f
    return int(r) if r == int(r) else r


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        d[key] = int(value) if isinstance(value, float) and value == int(value) else value


class ChromeStatsReducer:
    """One per RTCPeerConnection; ``reduce`` once per poll, in order."""

    def __init__(self, count_from_zero: bool) -> None:
        self.prev: dict[str, Stats] = {}
        self.count_from_zero = count_from_zero
        self.polls = 0
        # Fields each stats object has had so far.
        self.seen: dict[str, set[str]] = {}
        # Inbound audio ids that have had packets: the poll in which one first
        # does is its playout start (as the plugin marks it).
        self.playing: set[str] = set()

    def _delta(self, sid: str, cur: Stats, name: str, reset: bool) -> float | None:
        c = _num(cur.get(name))
        if c is None:
            return None
        before = self.prev.get(sid)
        p = _num(before.get(name)) if before else None
        if p is None and not reset and name in self.seen.get(sid, ()):
            return None  # the previous value is missing, not zero
        if p is None or reset:
            return c
        return c - p

    def _is_reset(self, sid: str, cur: Stats, names: tuple[str, ...]) -> bool:
        before = self.prev.get(sid)
        if not before:
            return False
        for n in names:
            c, p = _num(cur.get(n)), _num(before.get(n))
            if c is not None and p is not None and c < p:
                return True
        return False

    def _dt(self, sid: str, cur: Stats, reset: bool, fallback_ms: float) -> float:
        before = self.prev.get(sid)
        if before and not reset:
            a, b = _num(before.get("timestamp")), _num(cur.get("timestamp"))
            if a is not None and b is not None and b - a > 0:
                return b - a
        return fallback_ms

    def _bitrate(self, sid: str, cur: Stats, name: str, reset: bool, dt_ms: float) -> float | int | None:
        b = self._delta(sid, cur, name, reset)
        return None if b is None or dt_ms <= 0 else _round(b * 8 / dt_ms, 1)

    def _rtt(self, sid: str, cur: Stats, total: str, count: str, latest: str) -> float | int | None:
        before = self.prev.get(sid)
        t, n = _num(cur.get(total)), _num(cur.get(count))
        if before and t is not None and n is not None:
            bt, bn = _num(before.get(total)), _num(before.get(count))
            if bt is not None and bn is not None and n - bn > 0 and t - bt >= 0:
                return _round((t - bt) / (n - bn) * 1000, 1)
            if bt is not None and bn is not None and n == bn:
                return None  # no new measurement: the latest is an old one repeated (as the plugin does)
        v = _num(cur.get(latest))
        return None if v is None else _round(v * 1000, 1)

    def reduce(
        self, report: dict[str, Stats], interval_ms: float
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, bool]:
        """(streams, connection facts, baseline?) for one poll's report (id -> stats)."""
        stats = list(report.values())
        self._carry_over(stats, report)
        remote_in = {s["localId"]: s for s in stats if s.get("type") == "remote-inbound-rtp" and s.get("localId")}
        remote_out = {s["localId"]: s for s in stats if s.get("type") == "remote-outbound-rtp" and s.get("localId")}
        baseline = not self.count_from_zero and self.polls == 0
        streams: list[dict[str, Any]] = []
        for s in stats:
            if s.get("type") not in ("inbound-rtp", "outbound-rtp"):
                continue
            kind = s.get("kind") or s.get("mediaType")
            if kind not in ("audio", "video"):
                continue
            if baseline:
                if s["type"] == "inbound-rtp" and kind == "audio":
                    self._starts_playout(s)  # already playing before we watched: no mark
                continue
            if s["type"] == "inbound-rtp":
                streams.append(self._inbound(s, kind, remote_out.get(s["id"]), interval_ms))
                if kind == "audio" and self._starts_playout(s):
                    streams[-1]["playoutStart"] = True
            else:
                streams.append(self._outbound(s, kind, remote_in.get(s["id"]), interval_ms))
        connection = self._connection(stats, report)
        self.prev = {s["id"]: s for s in stats}
        for s in stats:
            self.seen.setdefault(s["id"], set()).update(s)
        self.polls += 1
        return streams, connection, baseline

    def _starts_playout(self, s: Stats) -> bool:
        if s["id"] in self.playing or not (_num(s.get("packetsReceived")) or 0) > 0:
            return False
        self.playing.add(s["id"])
        return True

    def _carry_over(self, stats: list[Stats], report: dict[str, Stats]) -> None:
        """A renamed RTP stats object (same type, kind and SSRC) continues from the one that vanished.

        Renegotiation can change Chromium's ids (they embed the transport's)
        while the counters carry on; counting such an object from zero would
        count its history twice."""
        def key(s: Stats) -> tuple[str, str, float] | None:
            ssrc = _num(s.get("ssrc"))
            return None if s.get("type") not in RTP_TYPES or ssrc is None else (s["type"], s.get("kind") or "", ssrc)
        gone = {k: p for sid, p in self.prev.items() if sid not in report and (k := key(p)) is not None}
        for s in stats:
            k = key(s)
            if s["id"] not in self.prev and k is not None and k in gone:
                self.prev[s["id"]] = p = gone.pop(k)
                if p["id"] in self.playing:
                    self.playing.add(s["id"])

    def _inbound(self, s: Stats, kind: str, remote: Stats | None, interval_ms: float) -> dict[str, Any]:
        sid = s["id"]
        reset = self._is_reset(sid, s, ("packetsReceived", "bytesReceived", "framesDecoded", "totalSamplesReceived"))
        dt = self._dt(sid, s, reset, interval_ms)
        f: dict[str, Any] = {"kind": kind, "direction": "inbound"}
        _put(f, "ssrc", _num(s.get("ssrc")))
        d: dict[str, float | None] = {}
        for name in INBOUND_COUNTERS:
            v = self._delta(sid, s, name, reset)
            if v is not None and name != "packetsLost" and v < 0:
                v = 0
            d[name] = v
            _put(f, name, v)
        rx, lost = d["packetsReceived"], d["packetsLost"]
        if rx is not None and lost is not None:
            # packetsReceived counts retransmissions (RTX) too: count first transmissions only.
            fresh = max(rx - (d["retransmittedPacketsReceived"] or 0), 0)
            lost_pos = max(lost, 0)
            if lost_pos + fresh > 0:
                _put(f, "lossFraction", _round(min(lost_pos / (lost_pos + fresh), 1), 4))
        jitter = _num(s.get("jitter"))
        _put(f, "jitterMs", None if jitter is None else _round(jitter * 1000, 1))
        _put(f, "bitrateKbps", self._bitrate(sid, s, "bytesReceived", reset, dt))
        if kind == "video":
            fps = _num(s.get("framesPerSecond"))
            if fps is None and d["framesDecoded"] is not None and dt > 0:
                fps = d["framesDecoded"] * 1000 / dt
            _put(f, "framesPerSecond", _round(fps, 1))
            fr = self._delta(sid, s, "totalFreezesDuration", reset)
            _put(f, "totalFreezesDurationMs", None if fr is None else _round(max(fr, 0) * 1000, 1))
            pa = self._delta(sid, s, "totalPausesDuration", reset)
            _put(f, "totalPausesDurationMs", None if pa is None else _round(max(pa, 0) * 1000, 1))
        else:
            level = _num(s.get("audioLevel"))
            if level is not None and 0 <= level <= 1:
                _put(f, "audioLevel", _round(level, 3))
            # When the last audio packet arrived (epoch ms): an outage's start, to the packet.
            last_rx = _num(s.get("lastPacketReceivedTimestamp"))
            if last_rx is not None and last_rx > 0:
                _put(f, "lastPacketReceivedMs", _round(last_rx, 1))
        if remote is not None:
            _put(f, "rttMs", self._rtt(remote["id"], remote, "totalRoundTripTime", "roundTripTimeMeasurements",
                                       "roundTripTime"))
        return f

    def _outbound(self, s: Stats, kind: str, remote: Stats | None, interval_ms: float) -> dict[str, Any]:
        sid = s["id"]
        reset = self._is_reset(sid, s, ("packetsSent", "bytesSent"))
        dt = self._dt(sid, s, reset, interval_ms)
        f: dict[str, Any] = {"kind": kind, "direction": "outbound"}
        _put(f, "ssrc", _num(s.get("ssrc")))
        rid = s.get("rid")
        if isinstance(rid, str) and len(rid) <= 16:
            f["rid"] = rid  # simulcast: one outbound stream per layer
        for name in OUTBOUND_COUNTERS:
            v = self._delta(sid, s, name, reset)
            _put(f, name, None if v is None else max(v, 0))
        _put(f, "bitrateKbps", self._bitrate(sid, s, "bytesSent", reset, dt))
        if kind == "video":
            _put(f, "framesPerSecond", _round(_num(s.get("framesPerSecond")), 1))
            if s.get("qualityLimitationReason") in QL_REASONS:
                f["qualityLimitationReason"] = s["qualityLimitationReason"]
        if remote is not None:
            _put(f, "rttMs", self._rtt(remote["id"], remote, "totalRoundTripTime", "roundTripTimeMeasurements",
                                       "roundTripTime"))
            rj = _num(remote.get("jitter"))
            _put(f, "jitterMs", None if rj is None else _round(rj * 1000, 1))
            _put(f, "packetsLost", self._delta(remote["id"], remote, "packetsLost", reset))
            fl = _num(remote.get("fractionLost"))
            if fl is not None and 0 <= fl <= 1:
                _put(f, "lossFraction", _round(fl, 4))
        return f

    def _connection(self, stats: list[Stats], by_id: dict[str, Stats]) -> dict[str, Any] | None:
        pair: Stats | None = None
        for s in stats:
            if s.get("type") == "transport" and s.get("selectedCandidatePairId") in by_id:
                pair = by_id[s["selectedCandidatePairId"]]
        if pair is None:
            for s in stats:
                if pair is None and s.get("type") == "candidate-pair" and (
                    s.get("selected") or (s.get("nominated") and s.get("state") == "succeeded")
                ):
                    pair = s
        if pair is None:
            return None
        c: dict[str, Any] = {}
        local = by_id.get(pair.get("localCandidateId", ""))
        remote = by_id.get(pair.get("remoteCandidateId", ""))
        if local:
            if local.get("candidateType") in CANDIDATE_TYPES:
                c["localCandidateType"] = local["candidateType"]
            if local.get("protocol") in ("udp", "tcp"):
                c["protocol"] = local["protocol"]
            if local.get("relayProtocol") in ("udp", "tcp", "tls"):
                c["relayProtocol"] = local["relayProtocol"]
        if remote and remote.get("candidateType") in CANDIDATE_TYPES:
            c["remoteCandidateType"] = remote["candidateType"]
        _put(c, "rttMs", self._rtt(pair["id"], pair, "totalRoundTripTime", "responsesReceived",
                                   "currentRoundTripTime"))
        aob = _num(pair.get("availableOutgoingBitrate"))
        if aob is not None:
            _put(c, "availableOutgoingBitrateKbps", _round(aob / 1000, 1))
        c["_bytes"] = (_num(pair.get("bytesSent")) or 0) + (_num(pair.get("bytesReceived")) or 0)
        return c
