"""Exactly-once ingest against a real server process, on both backends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from tests.support.samples import batch, connect, sample
from tests.support.server import ServerProcess
from tests.support.shared_server import once_per_module

server = once_per_module("server")


def stored_seqs(server: ServerProcess, session_id: int, role: str = "client") -> list[int]:
    r = httpx.get(
        f"{server.base}/api/v1/sessions/{session_id}/samples",
        params={"role": role, "limit": 100000},
        headers=server.admin_headers,
        timeout=30,
    )
    r.raise_for_status()
    return [s["seq"] for s in r.json()]


def test_resend_overlap_across_reconnects_stores_each_sample_once(server: ServerProcess) -> None:
    s = server.create_session()
    token = s["tokens"]["client"]

    async def run() -> list[dict]:
        acks = []
        ws, welcome = await connect(server.ws, token)
        assert welcome["lastSeq"] is None
        for b in range(5):  # seqs 0..49, all acked
            await ws.send(batch([sample(i) for i in range(b * 10, b * 10 + 10)], b))
            acks.append(json.loads(await ws.recv()))
        # Send two more batches and drop the connection without reading acks.
        await ws.send(batch([sample(i) for i in range(50, 60)], 5))
        await ws.send(batch([sample(i) for i in range(60, 70)], 6))
        await ws.close()
        # Reconnect: the collector does not know whether 50..69 landed and
        # resends from its last ack, overlapping what the server has.
        ws, welcome = await connect(server.ws, token)
        assert welcome["lastSeq"] in (49, 59, 69)
        await ws.send(batch([sample(i) for i in range(50, 80)], 7))
        acks.append(json.loads(await ws.recv()))
        await ws.close()
        # A third connection resends everything once more.
        ws, welcome = await connect(server.ws, token)
        assert welcome["lastSeq"] == 79
        await ws.send(batch([sample(i) for i in range(0, 80)], 8))
        acks.append(json.loads(await ws.recv()))
        await ws.close()
        return acks

    acks = asyncio.run(run())
    assert [a["stored"] for a in acks[:5]] == [10] * 5
    assert acks[5]["seq"] == 79 and acks[5]["stored"] + acks[5]["duplicates"] == 30
    assert acks[6] == {"type": "ack", "batch": 8, "seq": 79, "stored": 0, "duplicates": 80, "events": 0}
    assert stored_seqs(server, s["id"]) == list(range(80))
    assert stored_seqs(server, s["id"], role="clinician") == []


def test_samples_survive_kill_9_and_restart(server_factory: Any, db_url: str) -> None:
    server: ServerProcess = server_factory(db_url)  # its own: this test kills it
    s = server.create_session()
    token = s["tokens"]["client"]
    acked: set[int] = set()
    sent_before_kill = 0

    async def stream_until_killed() -> None:
        nonlocal sent_before_kill
        ws, _ = await connect(server.ws, token)
        seq = 0
        try:
            while True:
                await ws.send(batch([sample(i) for i in range(seq, seq + 20)], seq))
                ack = json.loads(await ws.recv())
                acked.update(range(seq, ack["seq"] + 1))
                seq += 20
                sent_before_kill = seq
                if seq == 400:
                    server.kill9()
        except (websockets.ConnectionClosed, OSError):
            return

    asyncio.run(stream_until_killed())
    assert len(acked) >= 400
    server.start()

    async def resume() -> int:
        ws, welcome = await connect(server.ws, token)
        last = welcome["lastSeq"]
        # Everything acknowledged before the kill was durable.
        assert last is not None and last >= max(acked)
        # Resend from the last acknowledged seq the client knows about.
        start = max(acked) + 1
        await ws.send(batch([sample(i) for i in range(start - 20, 600)], 1))
        ack = json.loads(await ws.recv())
        await ws.close()
        return int(ack["seq"])

    assert asyncio.run(resume()) == 599
    assert stored_seqs(server, s["id"]) == list(range(600))


def test_collector_events_are_stored_once(server: ServerProcess) -> None:
    s = server.create_session()
    token = s["tokens"]["clinician"]
    ev = {"key": "ice-1", "kind": "connection.state", "tMs": sample(0)["startMs"], "state": "disconnected"}

    async def run() -> list[dict]:
        out = []
        for attempt in range(2):
            ws, _ = await connect(server.ws, token)
            await ws.send(batch([sample(0)], attempt, events=[ev]))
            out.append(json.loads(await ws.recv()))
            await ws.close()
        return out

    first, second = asyncio.run(run())
    assert first["events"] == 1 and second["events"] == 0
    events = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/events", headers=server.admin_headers).json()
    kinds = [e["kind"] for e in events]
    assert kinds.count("connection.state") == 1
    stored = next(e for e in events if e["kind"] == "connection.state")
    assert stored["data"] == {"state": "disconnected"} and stored["origin"] == "collector"
    assert stored["role"] == "clinician"
    # The server records each collector connection; the second is a reconnect.
    connects = [e for e in events if e["kind"] == "collector.connect"]
    assert [c["data"]["lastSeq"] for c in connects] == [None, 0]


def test_http_fallback_shares_exactly_once_with_websocket(server: ServerProcess) -> None:
    s = server.create_session()
    token = s["tokens"]["client"]

    async def ws_part() -> None:
        ws, _ = await connect(server.ws, token)
        await ws.send(batch([sample(i) for i in range(10)], 0))
        await ws.recv()
        await ws.close()

    asyncio.run(ws_part())
    body = json.loads(batch([sample(i) for i in range(5, 15)], 1))
    body["token"] = token
    # sendBeacon posts text/plain; the endpoint must not care.
    r = httpx.post(f"{server.base}/v1/telemetry", content=json.dumps(body), headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json() == {"type": "ack", "batch": 1, "seq": 14, "stored": 5, "duplicates": 5, "events": 0}
    # Bearer header instead of a body token.
    body2 = json.loads(batch([sample(15)], 2))
    r = httpx.post(f"{server.base}/v1/telemetry", json=body2, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["stored"] == 1
    assert stored_seqs(server, s["id"]) == list(range(16))
