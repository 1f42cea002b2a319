"""Janus event handler posts (janus.eventhandler.sampleevh) to per-leg rows.

Janus posts one event or, with ``grouping``, a JSON array of them. Of these,
media statistics (type 32, one per handle and medium every ``stats_period``
seconds) are the SFU's RTCP-derived view of a leg: ``lost`` counts what did
not reach Janus from the participant (their uplink), ``lost-by-remote`` and
``jitter-remote`` what the participant's receiver reports say of what Janus
sent them (their downlink), ``rtt`` the round trip Janus measured. Every
other event type is accepted and ignored.

A handle belongs to a participant through its opaque id, which the platform
sets to ``bondline-<session id>-<role>`` (docs/integrate-browser.md); events
of other handles (other rooms, other apps) are ignored, never refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from server.ingest.schema import EARLIEST_MS

MEDIA_EVENT = 32
OPAQUE = re.compile(r"^bondline-(?P<session>[0-9]{1,12})-(?P<role>clinician|client)$")
Count = Annotated[int, Field(ge=0, le=2**53, strict=True)]
Ms = Annotated[float, Field(ge=0, le=3_600_000, strict=True)]
# Janus's figures kept per row, renamed to this schema's words (docs/telemetry.md, "SFU statistics").
FIGURES = {
    "rtt": "rttMs", "lost": "lost", "lost-by-remote": "lostByRemote", "jitter-local": "jitterLocalMs",
    "jitter-remote": "jitterRemoteMs", "packets-received": "packetsReceived", "packets-sent": "packetsSent",
    "bytes-received": "bytesReceived", "bytes-sent": "bytesSent", "nacks-received": "nacksReceived",
    "nacks-sent": "nacksSent", "retransmissions-received": "retransmissionsReceived",
}


@with_config(ConfigDict(extra="allow", strict=True))
class MediaStats(TypedDict):
    media: Literal["audio", "video"]
    mid: NotRequired[Annotated[str, Field(max_length=32)]]
    substream: NotRequired[Annotated[int, Field(ge=0, le=16)]]
    rtt: NotRequired[Ms]
    lost: NotRequired[Count]
    # "lost-by-remote" and the other dashed names are checked by name below.


@with_config(ConfigDict(extra="allow", strict=True))
class JanusEvent(TypedDict):
    type: Annotated[int, Field(ge=0, le=2**16)]
    timestamp: NotRequired[Annotated[int, Field(ge=EARLIEST_MS * 1000, le=10**17)]]
    handle_id: NotRequired[Annotated[int, Field(ge=0, le=2**64)]]
    opaque_id: NotRequired[Annotated[str, Field(max_length=256)] | None]
    event: NotRequired[dict[str, Any]]


_events = TypeAdapter(list[JanusEvent])
_media = TypeAdapter(MediaStats)
_count = TypeAdapter(Count)
_ms = TypeAdapter(Ms)


class BadEvents(ValueError):
    """The post is not Janus events: refused whole, nothing stored."""


@dataclass(frozen=True)
class LegStat:
    session_id: int
    role: str
    handle: str
    media: str
    t_ms: int
    leg: str
    figures: dict[str, float | int | str]


@dataclass
class Parsed:
    stats: list[LegStat]
    ignored: int = 0     # not media statistics
    unmatched: int = 0   # media statistics of handles that are not a Bondline participant's


def _where(exc: ValidationError, prefix: str) -> str:
    e = exc.errors()[0]
    loc = ".".join(str(x) for x in e["loc"])
    return f"{prefix}{loc}: {e['msg']}"


def parse(body: Any) -> Parsed:
    """Janus's JSON (one event or a list) to leg statistics; raises BadEvents."""
    items = body if isinstance(body, list) else [body]
    try:
        events = _events.validate_python(items)
    except ValidationError as exc:
        raise BadEvents(_where(exc, "event ")) from None
    out = Parsed([])
    for i, ev in enumerate(events):
        data = ev.get("event")
        if ev["type"] != MEDIA_EVENT or not isinstance(data, dict) or "media" not in data:
            out.ignored += 1
            continue
        try:
            stats = _media.validate_python(data)
            figures: dict[str, float | int | str] = {}
            for name, key in FIGURES.items():
                if name in data:
                    adapter = _ms if key.endswith("Ms") else _count
                    figures[key] = adapter.validate_python(data[name])
        except ValidationError as exc:
            raise BadEvents(_where(exc, f"event {i}: ")) from None
        if "timestamp" not in ev or "handle_id" not in ev:
            raise BadEvents(f"event {i}: media statistics need timestamp and handle_id")
        m = OPAQUE.match(ev.get("opaque_id") or "")
        if m is None:
            out.unmatched += 1
            continue
        received = int(figures.get("packetsReceived", 0))
        sent = int(figures.get("packetsSent", 0))
        if received == sent == 0:
            out.ignored += 1  # no media yet on this handle: no leg to speak of
            continue
        leg = "uplink" if received and not sent else "downlink" if sent and not received else "both"
        media = stats["media"] + (f".{stats['substream']}" if "substream" in stats else "")
        if "mid" in stats:
            figures["mid"] = stats["mid"]
        out.stats.append(LegStat(int(m["session"]), m["role"], str(ev["handle_id"]), media,
                                 ev["timestamp"] // 1000, leg, figures))
    return out
