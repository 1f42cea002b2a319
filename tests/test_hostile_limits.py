"""Limits that hold and faults that are told apart (issue 18): probe
admission under concurrency, a token that expires or a client erased while
its socket is open, health that knows whether the store answers, and
header and body timeouts against slow clients."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from plugin.probe_agent import AgentResult, ProbeAgent, ProbeFailed
from tests.support.samples import batch, closed_with, connect, sample
from tests.support.server import ServerProcess

PROBE_CAP = 4


# Set in the test process while its server starts: a test server must not see them.
CALLERS_OWN = {"BONDLINE_MAX_BATCH_SAMPLES": "1", "BONDLINE_DATABASE_URL": "/nonexistent/caller.db"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("limits")
    saved = {k: os.environ.get(k) for k in CALLERS_OWN}
    os.environ.update(CALLERS_OWN)
    try:
        server = ServerProcess(db_url=str(d / "bondline.db"), log_path=d / "server.log", env={
            "BONDLINE_PROBE_MAX_PER_PROCESS": str(PROBE_CAP),
            "BONDLINE_TOKEN_TTL_HOURS": "0",
            "BONDLINE_TOKEN_RECHECK_S": "0.5",
            "BONDLINE_HTTP_HEADER_TIMEOUT_S": "1",
            "BONDLINE_HTTP_BODY_TIMEOUT_S": "2",
        }).start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield server
    server.stop()


def test_test_servers_do_not_inherit_the_callers_settings(srv: ServerProcess) -> None:
    s = srv.create_session("C-ENV")

    async def go() -> dict[str, Any]:
        ws, welcome = await connect(srv.ws, s["tokens"]["client"])
        await ws.close()
        return welcome

    welcome = asyncio.run(go())
    assert welcome["maxBatchSamples"] == 500, welcome  # the default, not the caller's 1
    assert (Path(srv.db_url)).exists()


# ---- 4. probe admission ----------------------------------------------------------

async def _gather_answers(server: ServerProcess, tokens: list[str]) -> list[dict[str, Any]]:
    answered: list[dict[str, Any]] = []
    hold = asyncio.Event()

    async def one(token: str) -> None:
        async with ws_connect(server.ws + "/v1/probe", open_timeout=30) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
            try:
                answered.append(orjson.loads(await asyncio.wait_for(ws.recv(), 30)))
            except ConnectionClosed:
                answered.append({"type": "dropped"})
            await hold.wait()

    tasks = [asyncio.create_task(one(tok)) for tok in tokens]
    deadline = time.monotonic() + 60
    while len(answered) < len(tokens) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return answered


def test_probe_limits_hold_under_concurrency(srv: ServerProcess) -> None:
    s = srv.create_session("C-PROBE-1")
    answers = asyncio.run(_gather_answers(srv, [s["tokens"]["client"]] * 50))
    assert len(answers) == 50
    welcomed = [a for a in answers if a["type"] == "welcome"]
    assert len(welcomed) == 2, answers  # two per participant
    assert all(a["type"] == "error" and a["code"] == 4429 for a in answers if a["type"] != "welcome"), answers
    tokens = [tok for i in range(6) for tok in srv.create_session(f"C-PROBE-{i + 2}")["tokens"].values()]
    answers = asyncio.run(_gather_answers(srv, tokens))
    welcomed = [a for a in answers if a["type"] == "welcome"]
    assert len(welcomed) == PROBE_CAP, answers  # the process's capacity
    assert all(a["type"] == "error" and a["code"] == 4503 for a in answers if a["type"] != "welcome"), answers
    # The slots were given back when those sockets closed.
    answers = asyncio.run(_gather_answers(srv, tokens[:1]))
    assert answers[0]["type"] == "welcome", answers


def test_refused_offer_does_not_start_the_session(srv: ServerProcess) -> None:
    s = srv.create_session("C-OFFER")

    async def go() -> tuple[list[dict[str, Any]], int | None]:
        got: list[dict[str, Any]] = []
        async with ws_connect(srv.ws + "/v1/probe", open_timeout=30) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": s["tokens"]["client"]}).decode())
            got.append(orjson.loads(await ws.recv()))
            await ws.send(orjson.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 RTP/AVP 0\r\n"}).decode())
            try:
                while True:
                    got.append(orjson.loads(await asyncio.wait_for(ws.recv(), 30)))
            except ConnectionClosed as e:
                return got, e.rcvd.code if e.rcvd else None

    got, code = asyncio.run(go())
    assert code == 4422 and got[-1]["type"] == "error", (got, code)
    r = httpx.get(f"{srv.base}/api/v1/sessions/{s['id']}", headers=srv.admin_headers)
    assert r.json()["status"] == "scheduled" and r.json()["started_at"] is None, r.json()


# ---- 6. an open socket and its token ---------------------------------------------

def test_open_socket_stops_writing_when_its_token_expires(srv: ServerProcess) -> None:
    s = srv.create_session("C-EXPIRE")

    async def go() -> tuple[list[dict[str, Any]], tuple[int, str, Any]]:
        ws, _ = await connect(srv.ws, s["tokens"]["client"])
        await ws.send(batch([sample(0)], 0))
        acks = [json.loads(await ws.recv())]
        r = httpx.post(f"{srv.base}/api/v1/sessions/{s['id']}/end", headers=srv.admin_headers)
        assert r.status_code == 200
        await asyncio.sleep(1.0)  # past the token re-check interval of this server
        await ws.send(batch([sample(1)], 1))
        return acks, await closed_with(ws)

    acks, (code, reason, error) = asyncio.run(go())
    assert acks[0]["stored"] == 1
    assert code == 4403 and "expired" in reason, (code, reason, error)
    r = httpx.get(f"{srv.base}/api/v1/sessions/{s['id']}/samples", headers=srv.admin_headers)
    assert [x["seq"] for x in r.json()] == [0]


def test_erasing_a_client_while_its_socket_is_open(srv: ServerProcess) -> None:
    s = srv.create_session("C-ERASE-OPEN", clinician="eraser@example.org")

    async def go() -> tuple[int, str, Any]:
        ws, _ = await connect(srv.ws, s["tokens"]["client"])
        await ws.send(batch([sample(0)], 0))
        assert json.loads(await ws.recv())["stored"] == 1
        r = httpx.delete(f"{srv.base}/api/v1/clients/C-ERASE-OPEN", params={"clinician": "eraser@example.org"},
                         headers=srv.admin_headers)
        assert r.status_code == 200, r.text
        await ws.send(batch([sample(1)], 1))
        return await closed_with(ws)

    code, reason, error = asyncio.run(go())
    assert code == 4403 and "erased" in reason, (code, reason, error)
    assert "Traceback" not in srv.log_path.read_text()


def test_erasing_a_client_stops_its_running_probe(srv: ServerProcess) -> None:
    """The probe socket re-checks its token as the telemetry socket does: a
    probe running when its client is erased is stopped with 4403."""
    s = srv.create_session("C-ERASE-PROBE", clinician="eraser@example.org")
    agent = ProbeAgent(srv.base, s["tokens"]["client"], uplink=False)

    async def go() -> tuple[AgentResult | ProbeFailed, float]:
        task = asyncio.create_task(agent.run(duration_s=60, reconnect=False))
        deadline = time.monotonic() + 30
        while agent.endpoint is None or agent.endpoint.pc.connectionState != "connected":
            assert time.monotonic() < deadline and not task.done(), "probe did not connect"
            await asyncio.sleep(0.1)
        r = await asyncio.to_thread(httpx.delete, f"{srv.base}/api/v1/clients/C-ERASE-PROBE",
                                    params={"clinician": "eraser@example.org"}, headers=srv.admin_headers)
        assert r.status_code == 200, r.text
        erased = time.monotonic()
        try:
            outcome: AgentResult | ProbeFailed = await asyncio.wait_for(task, 20)
        except ProbeFailed as e:
            outcome = e
        return outcome, time.monotonic() - erased

    outcome, after_s = asyncio.run(go())
    # Stopped by the server (the run was asked for 60 s), with the documented code and reason.
    assert after_s < 20
    said = str(outcome) if isinstance(outcome, ProbeFailed) else str(outcome.runs[-1].error)
    assert "4403" in said and "erased" in said, said
    assert "Traceback" not in srv.log_path.read_text()


# ---- 8. health ---------------------------------------------------------------------

@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_health_says_whether_the_store_answers(server: ServerProcess, db_url: str) -> None:
    admin_url, name = db_url.rsplit("/", 1)[0] + "/postgres", db_url.rsplit("/", 1)[1]
    r = httpx.get(server.base + "/healthz")
    assert r.status_code == 200 and r.json()["store"] == "ok", r.text
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    try:
        r = httpx.get(server.base + "/healthz", timeout=30)
        assert r.status_code == 503 and r.json()["status"] == "unavailable", r.text
        assert r.json()["store"] != "ok"
        live = httpx.get(server.base + "/livez")
        assert live.status_code == 200 and live.json() == {"status": "ok"}
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    deadline = time.monotonic() + 30
    while httpx.get(server.base + "/healthz", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "health did not recover"
        time.sleep(0.2)


# ---- 9. slow clients -------------------------------------------------------------

def _held_for(port: int, payload: bytes, limit: float = 15.0) -> tuple[float, bytes]:
    """Send ``payload`` and nothing more; how long until the server closes, and what it said."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        t0 = time.monotonic()
        if payload:
            sock.sendall(payload)
        got = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                got += chunk
        except TimeoutError:
            return float("inf"), got
        except ConnectionResetError:
            pass
        return time.monotonic() - t0, got


def test_half_sent_headers_and_slow_bodies_are_cut_off(srv: ServerProcess) -> None:
    took, said = _held_for(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert took < 10, "half-sent headers were held open"
    assert said == b"" or said.startswith(b"HTTP/1.1 408"), said[:200]
    took, said = _held_for(srv.port, b"")
    assert took < 10, "a silent connection was held open"
    body = b'{"schema": "bondline.sample/1", "samp'
    took, said = _held_for(srv.port, b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1000\r\n\r\n" + body)
    assert took < 10, "a slow body was held open"
    assert said.startswith(b"HTTP/1.1 408"), said[:200]
    # Slow is not the same as idle between requests: a kept-alive client that
    # sends its next request in time is served.
    with httpx.Client(base_url=srv.base) as c:
        assert c.get("/livez").status_code == 200
        time.sleep(0.5)
        assert c.get("/livez").status_code == 200
    assert "Traceback" not in Path(srv.log_path).read_text()
