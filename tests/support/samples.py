"""Building ``bondline.sample/1`` messages and talking raw ingest protocol."""

from __future__ import annotations

import json
import time
from typing import Any

import websockets

SCHEMA = "bondline.sample/1"


def sample(seq: int, t0_ms: int | None = None, **extra: Any) -> dict[str, Any]:
    t0 = t0_ms if t0_ms is not None else int(time.time() * 1000) - 3_600_000
    s: dict[str, Any] = {
        "seq": seq,
        "startMs": t0 + seq * 1000,
        "intervalMs": 1000,
        "source": "python",
        "streams": [
            {"kind": "audio", "direction": "inbound", "packetsReceived": 49, "packetsLost": 1, "jitterMs": 4.0,
             "concealedSamples": 480, "totalSamplesReceived": 48000, "concealmentEvents": 1},
            {"kind": "video", "direction": "inbound", "packetsReceived": 100, "packetsLost": 2,
             "retransmittedPacketsReceived": 2, "framesDecoded": 20, "framesDropped": 0, "framesPerSecond": 20.0},
        ],
        "connection": {"state": "connected", "rttMs": 42.0, "localCandidateType": "host"},
    }
    s.update(extra)
    return s


def batch(samples: list[dict[str, Any]], batch_id: int = 0, events: list[dict[str, Any]] | None = None) -> str:
    msg: dict[str, Any] = {"type": "samples", "schema": SCHEMA, "batch": batch_id, "samples": samples}
    if events:
        msg["events"] = events
    return json.dumps(msg)


async def connect(ws_base: str, token: str) -> tuple[websockets.ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(ws_base + "/v1/telemetry", max_size=None)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def closed_with(ws: websockets.ClientConnection) -> tuple[int, str, dict[str, Any] | None]:
    """Read until the server closes; return (code, reason, error message)."""
    error: dict[str, Any] | None = None
    try:
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "error":
                error = msg
    except websockets.ConnectionClosed as e:
        assert e.rcvd is not None, "connection dropped without a close frame"
        return e.rcvd.code, e.rcvd.reason, error
