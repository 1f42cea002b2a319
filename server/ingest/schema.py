"""The ``bondline.sample/1`` telemetry contract, as validated TypedDicts.

docs/telemetry.md is the prose version of this file; keep them in step.
Validation is strict (no string-to-number coercion), so the validated sample
is what arrived, unknown fields included, and is what gets stored. TypedDicts
rather than models: validation yields plain dicts, about twice as fast as
building model objects, and ingest is the hot path.
Counters are per-interval deltas named after the W3C webrtc-stats counters
they come from; rates and durations carry their unit in the name.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

SCHEMA_ID = "bondline.sample/1"

# 2020-01-01T00:00:00Z: nothing older can be a live measurement.
EARLIEST_MS = 1_577_836_800_000
# Clocks on participants' machines drift; a day ahead is generous, more is a bug.
FUTURE_SLACK_MS = 86_400_000

Count = Annotated[int, Field(ge=0, le=10**12)]
# W3C packetsLost may go negative when duplicates arrive, so its delta may too.
SignedCount = Annotated[int, Field(ge=-(10**9), le=10**12)]
Ms = Annotated[float, Field(ge=0, le=3_600_000)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Kbps = Annotated[float, Field(ge=0, le=10_000_000)]
Fps = Annotated[float, Field(ge=0, le=1000)]
Label = Annotated[str, Field(max_length=128)]

CandidateType = Literal["host", "srflx", "prflx", "relay"]


def _printable_key(key: str) -> str:
    # The key is a column of its own: PostgreSQL cannot hold U+0000 in text,
    # and a control character in an id is a collector's bug either way.
    if any(c < " " or c == "\x7f" for c in key):
        raise ValueError("an event key may not hold control characters (U+0000 to U+001F, U+007F)")
    return key


EventKey = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_printable_key)]

# extra="allow": integrators may send figures we do not know yet; they are
# stored with their values. strict: "5" is not 5, so stored JSON holds the
# values that were sent.
_OPEN = ConfigDict(extra="allow", strict=True)


@with_config(_OPEN)
class StreamFigures(TypedDict):
    kind: Literal["audio", "video"]
    direction: Literal["inbound", "outbound"]
    id: NotRequired[Label | None]
    ssrc: NotRequired[Annotated[int, Field(ge=0, le=2**32 - 1)] | None]
    # Simulcast layer (RTP stream id) of an outbound stream.
    rid: NotRequired[Annotated[str, Field(max_length=16)] | None]
    # Who is at the far end of the stream's connection: through an SFU each of a
    # participant's connections is a different leg of the call (docs/telemetry.md).
    farEnd: NotRequired[Literal["sfu", "peer"] | None]
    # True in the one sample in which this inbound audio stream first received
    # packets: its concealment there is the jitter buffer filling (docs/methodology.md).
    playoutStart: NotRequired[bool | None]
    rttMs: NotRequired[Ms | None]
    jitterMs: NotRequired[Ms | None]
    packetsReceived: NotRequired[Count | None]
    packetsLost: NotRequired[SignedCount | None]
    packetsSent: NotRequired[Count | None]
    retransmittedPacketsReceived: NotRequired[Count | None]
    lossFraction: NotRequired[Fraction | None]
    bitrateKbps: NotRequired[Kbps | None]
    framesDecoded: NotRequired[Count | None]
    framesDropped: NotRequired[Count | None]
    framesReceived: NotRequired[Count | None]
    framesEncoded: NotRequired[Count | None]
    framesSent: NotRequired[Count | None]
    framesPerSecond: NotRequired[Fps | None]
    freezeCount: NotRequired[Count | None]
    totalFreezesDurationMs: NotRequired[Ms | None]
    pauseCount: NotRequired[Count | None]
    totalPausesDurationMs: NotRequired[Ms | None]
    concealedSamples: NotRequired[Count | None]
    silentConcealedSamples: NotRequired[Count | None]
    totalSamplesReceived: NotRequired[Count | None]
    concealmentEvents: NotRequired[Count | None]
    audioLevel: NotRequired[Fraction | None]
    qualityLimitationReason: NotRequired[Literal["none", "cpu", "bandwidth", "other"] | None]
    nackCount: NotRequired[Count | None]
    pliCount: NotRequired[Count | None]
    firCount: NotRequired[Count | None]


@with_config(_OPEN)
class ConnectionFacts(TypedDict):
    state: NotRequired[Literal["new", "connecting", "connected", "disconnected", "failed", "closed"] | None]
    iceState: NotRequired[
        Literal["new", "checking", "connected", "completed", "disconnected", "failed", "closed"] | None
    ]
    localCandidateType: NotRequired[CandidateType | None]
    remoteCandidateType: NotRequired[CandidateType | None]
    protocol: NotRequired[Literal["udp", "tcp"] | None]
    relayProtocol: NotRequired[Literal["udp", "tcp", "tls"] | None]
    rttMs: NotRequired[Ms | None]
    availableOutgoingBitrateKbps: NotRequired[Kbps | None]
    connections: NotRequired[Annotated[int, Field(ge=0, le=1000)] | None]


@with_config(_OPEN)
class Sample(TypedDict):
    schema: NotRequired[Literal["bondline.sample/1"]]
    seq: Annotated[int, Field(ge=0, le=2**53)]
    startMs: Annotated[int, Field(ge=EARLIEST_MS, le=10**14)]
    intervalMs: Annotated[int, Field(ge=50, le=600_000)]
    source: Literal["browser", "python", "probe", "import"]
    streams: NotRequired[Annotated[list[StreamFigures], Field(max_length=64)]]
    connection: NotRequired[ConnectionFacts | None]


@with_config(_OPEN)
class ClientEvent(TypedDict):
    key: EventKey
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,39}$")]
    tMs: Annotated[int, Field(ge=EARLIEST_MS, le=10**14)]
    endMs: NotRequired[Annotated[int, Field(ge=EARLIEST_MS, le=10**14)] | None]
    severity: NotRequired[Annotated[float, Field(ge=0, le=1e6)] | None]


@with_config(_OPEN)
class Batch(TypedDict):
    type: NotRequired[Literal["samples"]]
    schema: Literal["bondline.sample/1"]
    batch: NotRequired[Annotated[int, Field(ge=0, le=2**53)] | None]
    samples: NotRequired[list[Sample]]
    events: NotRequired[list[ClientEvent]]


batch_adapter: TypeAdapter[Batch] = TypeAdapter(Batch)
sample_adapter: TypeAdapter[Sample] = TypeAdapter(Sample)


def check_times(batch: Batch, now_ms: int | None = None) -> str | None:
    """Return a reason if any time lies implausibly far in the future."""
    limit = (now_ms if now_ms is not None else int(time.time() * 1000)) + FUTURE_SLACK_MS
    for s in batch.get("samples", ()):
        if s["startMs"] > limit:
            return f"sample seq {s['seq']}: startMs is more than a day in the future"
    for e in batch.get("events", ()):
        if e["tMs"] > limit:
            return f"event {e['key']}: tMs is more than a day in the future"
        end = e.get("endMs")
        if end is not None and end < e["tMs"]:
            return f"event {e['key']}: endMs is before tMs"
    return None


def as_dict(value: Any) -> dict[str, Any]:
    """A validated TypedDict viewed as a plain dict (for extra fields)."""
    return dict(value)
