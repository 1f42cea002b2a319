"""Hostile use: tokens used where they do not belong or after they expire,
forms without CSRF tokens, oversized payloads, slow clients and floods."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import websockets

from tests.support.login import create_user, csrf_from, login
from tests.support.samples import batch, closed_with, connect, sample
from tests.support.server import ServerProcess
from tests.support.shared_server import once_per_module
from tests.test_security_idor import app_routes

sqlite_server = once_per_module("sqlite_server")

PW = "correct horse battery"


def _seqs(server: ServerProcess, session_id: int, role: str) -> list[int]:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/samples", params={"role": role},
                  headers=server.admin_headers)
    return [s["seq"] for s in r.json()]


def test_ingest_token_is_bound_to_one_participant_and_expires(server_factory, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = server_factory(sqlite_url, env={"BONDLINE_TOKEN_TTL_HOURS": "0"})
    a = srv.create_session("C-A")
    b = srv.create_session("C-B")

    async def send(token: str, seqs: range, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        ws, welcome = await connect(srv.ws, token)
        msg = json.loads(batch([sample(i) for i in seqs]))
        msg.update(extra or {})
        await ws.send(json.dumps(msg))
        ack = json.loads(await ws.recv())
        await ws.close()
        return {"welcome": welcome, "ack": ack}

    # A's token writes only into A's participant, whatever the message claims.
    out = asyncio.run(send(a["tokens"]["client"], range(5), {"session": b["id"], "participant": 999}))
    assert out["welcome"]["session"] == a["id"] and out["ack"]["stored"] == 5
    assert _seqs(srv, a["id"], "client") == list(range(5))
    assert _seqs(srv, b["id"], "client") == [] and _seqs(srv, b["id"], "clinician") == []
    # Over HTTP, a token in the body cannot be overridden by one in the header, nor reach B.
    r = httpx.post(srv.base + "/v1/telemetry", headers={"Authorization": f"Bearer {b['tokens']['client']}"},
                   json={"token": a["tokens"]["client"], "schema": "bondline.sample/1", "samples": [sample(5)]})
    assert r.status_code == 200
    assert _seqs(srv, b["id"], "client") == []
    # Ending A's session (token TTL 0) expires its tokens at once: 4403 / 403; B's still work.
    httpx.post(f"{srv.base}/api/v1/sessions/{a['id']}/end", headers=srv.admin_headers).raise_for_status()

    async def expired() -> tuple[int, str]:
        ws = await websockets.connect(srv.ws + "/v1/telemetry")
        await ws.send(json.dumps({"type": "auth", "token": a["tokens"]["client"]}))
        code, reason, _ = await closed_with(ws)
        return code, reason

    code, reason = asyncio.run(expired())
    assert code == 4403 and "expired" in reason
    r = httpx.post(srv.base + "/v1/telemetry",
                   json={"token": a["tokens"]["client"], "schema": "bondline.sample/1", "samples": [sample(9)]})
    assert r.status_code == 403
    assert _seqs(srv, a["id"], "client") == list(range(6))
    assert asyncio.run(send(b["tokens"]["client"], range(2)))["ack"]["stored"] == 2


def test_login_expires_when_idle(server_factory, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = server_factory(sqlite_url, env={"BONDLINE_LOGIN_IDLE_MINUTES": "0.02"})  # 1.2 s
    create_user(sqlite_url, "ann@example.org", PW)
    with httpx.Client() as c:
        login(c, srv.base, "ann@example.org", PW)
        assert c.get(srv.base + "/api/v1/sessions").status_code == 200
        time.sleep(1.5)
        assert c.get(srv.base + "/api/v1/sessions").status_code == 401
        r = c.get(srv.base + "/account/password", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_every_form_post_needs_the_csrf_token(sqlite_server: ServerProcess) -> None:
    """Every POST route outside the token/key-authenticated APIs refuses a
    logged-in browser's request that lacks the token (or carries another's)."""
    srv = sqlite_server
    create_user(srv.db_url, "boss@example.org", PW, is_admin=True)
    create_user(srv.db_url, "eve@example.org", PW)
    s = srv.create_session("C-1", clinician="boss@example.org")
    fills = {"session_id": s["id"], "clinician_id": 2, "key_id": 1, "action": "disable"}
    with httpx.Client() as boss, httpx.Client() as eve:
        login(boss, srv.base, "boss@example.org", PW)
        login(eve, srv.base, "eve@example.org", PW)
        eves_token = csrf_from(eve.get(srv.base + "/account/password").text)
        checked = []
        for method, template in app_routes():
            if method != "POST" or template.startswith(("/api/", "/v1/", "/survey/")) or template == "/login":
                continue
            path = template
            for k, v in fills.items():
                path = path.replace("{" + k + "}", str(v))
            if "{" in path:
                continue
            for data in ({"x": "1"}, {"csrf_token": ""}, {"csrf_token": eves_token}):
                r = boss.post(srv.base + path, data=data, follow_redirects=False)
                assert r.status_code == 403, (path, data, r.status_code, r.text[:200])
            checked.append(path)
        # Still logged in: the refused logout did nothing.
        assert boss.get(srv.base + "/admin/users").status_code == 200
    assert {"/logout", "/account/password", "/admin/users", "/admin/api-keys", "/clients/erase"} <= set(checked)


def test_oversized_payloads_are_refused_before_parsing(sqlite_server: ServerProcess) -> None:
    srv = sqlite_server
    big = b"email=" + b"a" * 2_000_000
    r = httpx.post(srv.base + "/login", content=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413

    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    # No Content-Length (chunked): counted as it arrives.
    r = httpx.post(srv.base + "/v1/telemetry", content=chunks())
    assert r.status_code == 413
    r = httpx.post(srv.base + "/api/v1/sessions", content=chunks(), headers=srv.admin_headers)
    assert r.status_code == 413
    # Long form fields inside the limit: a clear 4xx, never a 500.
    r = httpx.post(srv.base + "/login", data={"email": "a" * 5000, "password": "b" * 5000, "csrf_token": "x"})
    assert r.status_code in (403, 422)
    assert httpx.get(srv.base + "/healthz").status_code == 200


def test_slow_clients_do_not_block_others(server_factory, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = server_factory(sqlite_url, env={"BONDLINE_AUTH_TIMEOUT_S": "1"})
    s = srv.create_session()
    # Slowloris: many connections each sending half a request and stalling.
    stalled = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"sch")
        stalled.append(sock)
    try:
        # A WebSocket that never authenticates is closed with 4408.
        async def silent() -> int:
            ws = await websockets.connect(srv.ws + "/v1/telemetry")
            code, _, _ = await closed_with(ws)
            return code

        assert asyncio.run(silent()) == 4408
        # Everyone else is served meanwhile.
        assert httpx.get(srv.base + "/healthz", timeout=10).status_code == 200

        async def normal() -> int:
            ws, _ = await connect(srv.ws, s["tokens"]["client"])
            await ws.send(batch([sample(i) for i in range(10)]))
            ack = json.loads(await ws.recv())
            await ws.close()
            return int(ack["stored"])

        assert asyncio.run(normal()) == 10
    finally:
        for sock in stalled:
            sock.close()


def test_floods_beyond_the_rate_limit(server_factory, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = server_factory(sqlite_url, env={"BONDLINE_RATE_BURST": "10",
                                                         "BONDLINE_RATE_MESSAGES_PER_S": "1"})
    s = srv.create_session()

    async def flood() -> tuple[int, list[dict[str, Any]]]:
        ws, _ = await connect(srv.ws, s["tokens"]["client"])
        acks: list[dict[str, Any]] = []
        for i in range(40):
            try:
                await ws.send(batch([sample(i)], i))
            except websockets.ConnectionClosed:
                break
        code = 0
        try:
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] == "ack":
                    acks.append(msg)
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None
            code = e.rcvd.code
        return code, acks

    code, acks = asyncio.run(flood())
    assert code == 4429
    # What was acknowledged is stored, exactly; nothing refused slipped in.
    acked = sorted(a["seq"] for a in acks)
    assert 1 <= len(acked) <= 12
    assert _seqs(srv, s["id"], "client") == acked
    # Over HTTP the same limit answers 429 and stores nothing of the refused posts.
    statuses = []
    for i in range(100, 130):
        r = httpx.post(srv.base + "/v1/telemetry", json={"token": s["tokens"]["clinician"],
                                                         "schema": "bondline.sample/1", "samples": [sample(i)]})
        statuses.append(r.status_code)
    assert 429 in statuses and set(statuses) <= {200, 429}
    assert len(_seqs(srv, s["id"], "clinician")) == statuses.count(200)
