"""What a dump holds once read: one timeline of stats polls and state changes per peer connection."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Report = dict[str, dict[str, Any]]

STATE_EVENTS = {
    "iceconnectionstatechange": "ice.state",
    "oniceconnectionstatechange": "ice.state",
    "connectionstatechange": "connection.state",
    "onconnectionstatechange": "connection.state",
}
# Log entries only a page that watched the connection being set up can have. ("create" is not one:
# an rtcstats dump saved by a page opened mid-call still has it, with the connection's real
# creation time.)
SETUP_ENTRIES = frozenset({
    "transceiverAdded", "addTransceiver", "addTrack", "createOffer", "createAnswer", "createDataChannel",
    "setConfiguration", "addStream",
})
# A page opened while a connection exists writes a snapshot of it (descriptions, states), all
# stamped within a few ms of its opening: entries that close to the first are that snapshot.
SNAPSHOT_MS = 100.0
# Objects stamped with the time their RTCP report arrived, not the poll's.
RTCP_TYPES = frozenset({"remote-inbound-rtp", "remote-outbound-rtp"})
# Reports of one getStats() round share a timestamp, give or take a few ms; polls are about a second apart.
SAME_POLL_MS = 250.0
# chrome://webrtc-internals keeps at most this many points per stats series (its data_series.js).
PAGE_MAX_POINTS = 1000

# The stats fields the reducer (server/importers/chrome_stats.py), the connection checks and the
# coverage report read; everything else in a dump is skipped unread.
KEEP_FIELDS = frozenset({
    "id", "type", "kind", "mediaType", "ssrc", "timestamp", "localId", "remoteId", "transportId",
    "codecId", "mediaSourceId", "trackIdentifier", "mid",
    "packetsReceived", "packetsLost", "retransmittedPacketsReceived", "framesDecoded", "framesDropped",
    "framesReceived", "freezeCount", "pauseCount", "concealedSamples", "silentConcealedSamples",
    "totalSamplesReceived", "concealmentEvents", "nackCount", "pliCount", "firCount", "packetsSent",
    "framesEncoded", "framesSent", "bytesReceived", "bytesSent", "jitter", "framesPerSecond",
    "totalFreezesDuration", "totalPausesDuration", "audioLevel", "qualityLimitationReason", "roundTripTime",
    "totalRoundTripTime", "roundTripTimeMeasurements", "fractionLost", "selectedCandidatePairId",
    "localCandidateId", "remoteCandidateId", "candidateType", "protocol", "relayProtocol", "currentRoundTripTime",
    "responsesReceived", "availableOutgoingBitrate", "state", "nominated", "selected", "iceState",
    "localCertificateId", "remoteCertificateId", "fingerprint", "totalSamplesDuration", "address", "port",
    "lastPacketReceivedTimestamp",
})
# Fields that hold another stats object's id in the same report.
REFERENCES = ("transportId", "codecId", "localId", "selectedCandidatePairId", "localCandidateId",
              "remoteCandidateId", "localCertificateId", "remoteCertificateId")
TEXT_FIELDS = frozenset({
    "id", "type", "kind", "mediaType", "localId", "remoteId", "transportId", "codecId", "mediaSourceId",
    "trackIdentifier", "mid", "qualityLimitationReason", "selectedCandidatePairId", "localCandidateId",
    "remoteCandidateId", "candidateType", "protocol", "relayProtocol", "state", "iceState", "localCertificateId",
    "remoteCertificateId", "fingerprint", "address", "nominated", "selected",
})


class DumpError(Exception):
    """The file is not a usable dump; the message says why."""


@dataclass
class Timeline:
    """One peer connection as the dump recorded it."""

    key: str
    url: str | None = None
    polls: list[tuple[float, Report]] = field(default_factory=list)
    # Real state changes: (t_ms, kind, state).
    events: list[tuple[float, str, str]] = field(default_factory=list)
    # When the connection was created, if the dump says (its counters started at zero then).
    created_ms: float | None = None
    # The dump's log saw the connection being set up, so its stats history starts at creation.
    watched_from_creation: bool = False
    # First and last time the dump's log saw anything of this connection.
    log_first_ms: float | None = None
    log_last_ms: float | None = None
    # Entries the page made up when it was opened (a snapshot of the state then, stamped at
    # opening time): not events of the call.
    synthetic: int = 0
    # The log says media flowed (a track arrived, or the connection connected).
    carried_media: bool = False
    # The page's point limit cut the start of this connection's stats history.
    truncated: bool = False
    # Series (or report objects) the dump held for this connection.
    series: int = 0


def number(where: str, value: Any) -> float | None:
    """A stats value as a finite number; None for a value that is not a number at all;
    refuses NaN, Infinity and the null a browser writes for them, naming where."""
    if value is None:
        raise DumpError(f"{where} is null (a browser writes NaN or Infinity as null): not a usable number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        raise DumpError(f"{where} is {value} (not a finite number)")
    return float(value) if isinstance(value, float) else value


def clean_object(where: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The kept fields of one stats object, numbers checked."""
    out: dict[str, Any] = {}
    for name, value in obj.items():
        if name not in KEEP_FIELDS:
            continue
        if name in TEXT_FIELDS:
            if value is not None:
                out[name] = value
            continue
        v = number(f"{where}.{name}", value)
        if v is not None:
            out[name] = v
    return out


def read_log(tl: Timeline, entries: list[tuple[float, str, Any]]) -> None:
    """Take a connection's log entries (time, type, value) in order: state changes become
    events, except the snapshot a page opened mid-call writes (counted in ``synthetic``)."""
    snapshot_until: float | None = None
    for t_ms, kind, value in entries:
        tl.log_first_ms = t_ms if tl.log_first_ms is None else min(tl.log_first_ms, t_ms)
        tl.log_last_ms = t_ms if tl.log_last_ms is None else max(tl.log_last_ms, t_ms)
        if kind == "create":
            continue
        if kind in SETUP_ENTRIES and not tl.watched_from_creation and snapshot_until is None:
            tl.watched_from_creation = True
            if tl.created_ms is None:
                tl.created_ms = t_ms
        if not tl.watched_from_creation and snapshot_until is None:
            snapshot_until = t_ms + SNAPSHOT_MS
        state = _state(value) if kind in STATE_EVENTS or kind == "ontrack" else None
        if kind == "ontrack" or state in ("connected", "completed"):
            tl.carried_media = True
        if snapshot_until is not None and t_ms <= snapshot_until:
            tl.synthetic += 1
            continue
        if kind in STATE_EVENTS and state:
            tl.events.append((t_ms, STATE_EVENTS[kind], state))


def _state(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().strip('"')
    return v or None


def clock(ms: float | None) -> str:
    """A time as messages show it (UTC, to the ms)."""
    if ms is None:
        return "an unknown time"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
