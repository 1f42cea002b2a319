"""The ``bondline.sample/1`` telemetry contract, as pydantic models.

docs/telemetry.md is the prose version of this file; keep them in step.
Models are strict (no string-to-number coercion), so a message that passes
validation can be stored exactly as it arrived, unknown fields included.
Counters are per-interval deltas named after the W3C webrtc-stats counters
they come from; rates and durations carry their unit in the name.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class _Open(BaseModel):
    # extra="allow": integrators may send figures we do not know yet; they are
    # stored verbatim. strict: "5" is not 5, so stored JSON equals what passed.
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


class StreamFigures(_Open):
    kind: Literal["audio", "video"]
    direction: Literal["inbound", "outbound"]
    id: Label | None = None
    ssrc: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    rttMs: Ms | None = None
    jitterMs: Ms | None = None
    packetsReceived: Count | None = None
    packetsLost: SignedCount | None = None
    packetsSent: Count | None = None
    retransmittedPacketsReceived: Count | None = None
    lossFraction: Fraction | None = None
    bitrateKbps: Kbps | None = None
    framesDecoded: Count | None = None
    framesDropped: Count | None = None
    framesReceived: Count | None = None
    framesEncoded: Count | None = None
    framesSent: Count | None = None
    framesPerSecond: Fps | None = None
    freezeCount: Count | None = None
    totalFreezesDurationMs: Ms | None = None
    pauseCount: Count | None = None
    totalPausesDurationMs: Ms | None = None
    concealedSamples: Count | None = None
    silentConcealedSamples: Count | None = None
    totalSamplesReceived: Count | None = None
    concealmentEvents: Count | None = None
    audioLevel: Fraction | None = None
    qualityLimitationReason: Literal["none", "cpu", "bandwidth", "other"] | None = None
    nackCount: Count | None = None
    pliCount: Count | None = None
    firCount: Count | None = None


class ConnectionFacts(_Open):
    state: Literal["new", "connecting", "connected", "disconnected", "failed", "closed"] | None = None
    iceState: Literal["new", "checking", "connected", "completed", "disconnected", "failed", "closed"] | None = None
    localCandidateType: CandidateType | None = None
    remoteCandidateType: CandidateType | None = None
    protocol: Literal["udp", "tcp"] | None = None
    relayProtocol: Literal["udp", "tcp", "tls"] | None = None
    rttMs: Ms | None = None
    availableOutgoingBitrateKbps: Kbps | None = None
    connections: Annotated[int, Field(ge=0, le=1000)] | None = None


class Sample(_Open):
    schema_: Literal["bondline.sample/1"] | None = Field(default=None, alias="schema")
    seq: Annotated[int, Field(ge=0, le=2**53)]
    startMs: Annotated[int, Field(ge=EARLIEST_MS, le=10**14)]
    intervalMs: Annotated[int, Field(ge=50, le=600_000)]
    source: Literal["browser", "python", "probe", "import"]
    streams: Annotated[list[StreamFigures], Field(max_length=64)] = []
    connection: ConnectionFacts | None = None


class ClientEvent(_Open):
    key: Annotated[str, Field(min_length=1, max_length=80)]
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,39}$")]
    tMs: Annotated[int, Field(ge=EARLIEST_MS, le=10**14)]
    endMs: Annotated[int, Field(ge=EARLIEST_MS, le=10**14)] | None = None
    severity: Annotated[float, Field(ge=0, le=1e6)] | None = None


class Batch(_Open):
    type: Literal["samples"] = "samples"
    schema_: Literal["bondline.sample/1"] = Field(alias="schema")
    batch: Annotated[int, Field(ge=0, le=2**53)] | None = None
    samples: list[Sample] = []
    events: list[ClientEvent] = []


def check_times(batch: Batch, now_ms: int | None = None) -> str | None:
    """Return a reason if any time lies implausibly far in the future."""
    limit = (now_ms if now_ms is not None else int(time.time() * 1000)) + FUTURE_SLACK_MS
    for s in batch.samples:
        if s.startMs > limit:
            return f"sample seq {s.seq}: startMs is more than a day in the future"
    for e in batch.events:
        if e.tMs > limit:
            return f"event {e.key}: tMs is more than a day in the future"
        if e.endMs is not None and e.endMs < e.tMs:
            return f"event {e.key}: endMs is before tMs"
    return None
