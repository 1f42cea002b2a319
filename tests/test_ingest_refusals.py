"""Every refusal has its documented code and changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets

from tests.support.samples import SCHEMA, batch, closed_with, connect, sample
from tests.support.server import ServerProcess
from tests.support.shared_server import once_per_module

sqlite_server = once_per_module("sqlite_server")
server = once_per_module("server")


def count(server: ServerProcess, session_id: int) -> int:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/samples", headers=server.admin_headers)
    return len(r.json())


async def send_after_auth(server: ServerProcess, token: str, payload: str | bytes) -> tuple[int, str, Any]:
    ws, _ = await connect(server.ws, token)
    await ws.send(payload)
    return await closed_with(ws)


def bad_sample(**changes: Any) -> str:
    good = [sample(i) for i in range(3)]
    good[1].update(changes)
    return batch(good)


def nested_bad(path: str, value: Any) -> str:
    s = [sample(0), sample(1)]
    s[1]["streams"][0][path] = value
    return batch(s)


CASES: list[tuple[str, Callable[[], str | bytes], int, str]] = [
    ("malformed json", lambda: "{not json", 4400, "malformed JSON"),
    ("not an object", lambda: "[1, 2]", 4400, "JSON object"),
    ("unknown type", lambda: json.dumps({"type": "hello"}), 4400, "unknown message type"),
    ("wrong schema", lambda: json.dumps({"type": "samples", "schema": "bondline.sample/2", "samples": []}), 4415,
     "unsupported schema"),
    ("no schema", lambda: json.dumps({"type": "samples", "samples": [sample(0)]}), 4415, "unsupported schema"),
    ("negative seq", lambda: bad_sample(seq=-1), 4422, "samples.1.seq"),
    ("string number", lambda: bad_sample(intervalMs="1000"), 4422, "samples.1.intervalMs"),
    ("interval too short", lambda: bad_sample(intervalMs=10), 4422, "intervalMs"),
    ("unknown source", lambda: bad_sample(source="carrier-pigeon"), 4422, "source"),
    ("ancient start", lambda: bad_sample(startMs=1000), 4422, "startMs"),
    ("future start", lambda: bad_sample(startMs=sample(0)["startMs"] + 10 * 86_400_000), 4422, "future"),
    ("loss fraction above 1", lambda: nested_bad("lossFraction", 1.5), 4422, "lossFraction"),
    ("negative packets", lambda: nested_bad("packetsReceived", -3), 4422, "packetsReceived"),
    ("bad kind", lambda: nested_bad("kind", "smell"), 4422, "kind"),
    ("too many samples", lambda: batch([sample(i) for i in range(501)]), 4413, "at most 500"),
    # What pydantic's JSON parser reads but JSON does not have; must not slip
    # past through the fast path (server/ingest/protocol.py read_samples).
    ("NaN figure", lambda: batch([sample(0)]).replace('"rttMs": 42.0', '"rttMs": NaN'), 4400, "malformed JSON"),
    ("Infinity in unknown field", lambda: batch([sample(0, vendor=1)]).replace('"vendor": 1', '"vendor": -Infinity'),
     4400, "malformed JSON"),
    ("a valid batch without a type", lambda: json.dumps({"schema": SCHEMA, "samples": [sample(0)]}), 4400,
     "unknown message type"),
    ("oversized message", lambda: batch([sample(0, padding="x" * 1_100_000)]), 4413, "exceeds"),
]


@pytest.mark.parametrize("name,payload,code,reason", CASES, ids=[c[0] for c in CASES])
def test_websocket_refusals(sqlite_server: ServerProcess, name: str, payload: Callable[[], str], code: int,
                            reason: str) -> None:
    s = sqlite_server.create_session()
    got_code, got_reason, error = asyncio.run(send_after_auth(sqlite_server, s["tokens"]["client"], payload()))
    assert got_code == code, (got_code, got_reason)
    assert error is not None and error["code"] == code and reason in error["reason"]
    assert count(sqlite_server, s["id"]) == 0


def test_refusals_on_postgresql_change_nothing(server: ServerProcess) -> None:
    """A batch refused midway leaves nothing behind on either backend."""
    s = server.create_session()
    token = s["tokens"]["client"]

    async def run() -> tuple[int, str, Any]:
        ws, _ = await connect(server.ws, token)
        await ws.send(batch([sample(i) for i in range(5)], 0))
        await ws.recv()
        await ws.send(bad_sample(seq=-1))
        return await closed_with(ws)

    code, _, _ = asyncio.run(run())
    assert code == 4422
    assert count(server, s["id"]) == 5


def test_bad_tokens(sqlite_server: ServerProcess) -> None:
    async def attempt(first: dict[str, Any]) -> tuple[int, str, Any]:
        ws = await websockets.connect(sqlite_server.ws + "/v1/telemetry")
        await ws.send(json.dumps(first))
        return await closed_with(ws)

    assert asyncio.run(attempt({"type": "auth", "token": "blp_nope"}))[0] == 4401
    assert asyncio.run(attempt({"type": "auth"}))[0] == 4401
    assert asyncio.run(attempt({"type": "samples", "schema": SCHEMA, "samples": []}))[0] == 4401


def test_expired_token_after_session_end(server_factory: Any, sqlite_url: str) -> None:
    srv = server_factory(sqlite_url, env={"BONDLINE_TOKEN_TTL_HOURS": "0"})
    s = srv.create_session()
    token = s["tokens"]["client"]
    r = httpx.post(f"{srv.base}/api/v1/sessions/{s['id']}/end", headers=srv.admin_headers)
    assert r.status_code == 200 and r.json()["status"] == "ended"

    async def attempt() -> tuple[int, str, Any]:
        ws = await websockets.connect(srv.ws + "/v1/telemetry")
        await ws.send(json.dumps({"type": "auth", "token": token}))
        return await closed_with(ws)

    code, reason, _ = asyncio.run(attempt())
    assert code == 4403 and "expired" in reason
    body = json.loads(batch([sample(0)]))
    body["token"] = token
    r = httpx.post(srv.base + "/v1/telemetry", json=body)
    assert r.status_code == 403 and "expired" in r.json()["error"]


def test_auth_timeout(server_factory: Any, sqlite_url: str) -> None:
    srv = server_factory(sqlite_url, env={"BONDLINE_AUTH_TIMEOUT_S": "0.5"})

    async def attempt() -> tuple[int, str, Any]:
        ws = await websockets.connect(srv.ws + "/v1/telemetry")
        return await closed_with(ws)

    assert asyncio.run(attempt())[0] == 4408


def test_rate_limit(server_factory: Any, sqlite_url: str) -> None:
    srv = server_factory(sqlite_url, env={"BONDLINE_RATE_MESSAGES_PER_S": "1", "BONDLINE_RATE_BURST": "3"})
    s = srv.create_session()

    async def flood() -> tuple[int, str, Any]:
        ws, _ = await connect(srv.ws, s["tokens"]["client"])
        for i in range(10):
            await ws.send(json.dumps({"type": "ping", "t": i}))
        return await closed_with(ws)

    code, reason, _ = asyncio.run(flood())
    assert code == 4429 and "messages/s" in reason


@pytest.mark.parametrize(
    "body,status",
    [
        (b"{", 400),
        (json.dumps({"token": "blp_nope", "schema": SCHEMA, "samples": []}).encode(), 401),
        (b"x" * 1_100_000, 413),
    ],
    ids=["malformed", "bad-token", "oversized"],
)
def test_http_refusals(sqlite_server: ServerProcess, body: bytes, status: int) -> None:
    r = httpx.post(sqlite_server.base + "/v1/telemetry", content=body)
    assert r.status_code == status
    assert r.json()["error"]


def test_http_validation_refusal_stores_nothing(sqlite_server: ServerProcess) -> None:
    s = sqlite_server.create_session()
    body = json.loads(bad_sample(seq=-5))
    body["token"] = s["tokens"]["client"]
    r = httpx.post(sqlite_server.base + "/v1/telemetry", json=body)
    assert r.status_code == 422 and "seq" in r.json()["error"]
    body["schema"] = "other/1"
    assert httpx.post(sqlite_server.base + "/v1/telemetry", json=body).status_code == 415
    assert count(sqlite_server, s["id"]) == 0
