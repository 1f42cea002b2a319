"""plugin/uplink.py against a real ``bondline serve`` process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from plugin.uplink import Uplink
from tests.support.server import ServerProcess, stored
from tests.support.shared_server import once_per_module, running_server

server = once_per_module("server")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for this module's tests that each use their own session."""
    with running_server(tmp_path_factory.mktemp("shared-server")) as srv:
        yield srv


def make_sample(i: int, *, seq: int | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {
        "startMs": 1_700_000_000_000 + i * 1000,
        "intervalMs": 1000,
        "source": "python",
        "streams": [{"kind": "audio", "direction": "inbound", "packetsReceived": 50, "packetsLost": i % 3}],
        "marker": i,
    }
    if seq is not None:
        s["seq"] = seq
    return s


def events(srv: ServerProcess, session_id: int) -> list[dict[str, Any]]:
    r = httpx.get(f"{srv.base}/api/v1/sessions/{session_id}/events", headers=srv.admin_headers, timeout=10)
    r.raise_for_status()
    out: list[dict[str, Any]] = r.json()
    return out


def test_uplink_streams_and_a_restarted_collector_continues_seq(server: ServerProcess) -> None:
    s = server.create_session()
    token = s["tokens"]["clinician"]

    async def run() -> None:
        up = Uplink(server.base, token)
        assert await up.start(wait_s=10)
        for i in range(30):
            up.submit(make_sample(i))
        up.submit_event({"kind": "ice.state", "tMs": 1_700_000_000_500, "state": "connected", "key": "ev-1"})
        assert await up.flush(10)
        assert await up.close()
        assert up.stats.acked == 31 and up.stats.rejected == 0

        # A new collector process for the same participant must not reuse a seq.
        again = Uplink(server.base, token)
        assert await again.start(wait_s=10)
        assert again.welcome is not None and again.welcome["lastSeq"] == 29
        assert again.next_seq() == 30
        for i in range(5):
            again.submit(make_sample(100 + i))
        # The same event key again: stored once.
        again.submit_event({"kind": "ice.state", "tMs": 1_700_000_000_500, "state": "connected", "key": "ev-1"})
        assert await again.close(10)

    asyncio.run(run())
    rows = stored(server, s["id"])
    assert [r["seq"] for r in rows] == list(range(30)) + list(range(31, 36))
    assert [r["data"]["marker"] for r in rows] == list(range(30)) + list(range(100, 105))
    assert all(r["source"] == "python" for r in rows)
    ev = [e for e in events(server, s["id"]) if e["kind"] == "ice.state"]
    assert len(ev) == 1 and ev[0]["origin"] == "collector" and ev[0]["data"]["state"] == "connected"


def test_uplink_exactly_once_across_server_kill9(server_factory: Any, db_url: str) -> None:
    server: ServerProcess = server_factory(db_url)  # its own: this test kills it
    s = server.create_session()
    token = s["tokens"]["client"]
    total = 300

    async def run() -> Uplink:
        up = Uplink(server.base, token, backoff_initial_s=0.2, backoff_max_s=1.0, fallback_after=100)
        assert await up.start(wait_s=10)
        for i in range(total):
            up.submit(make_sample(i))
            if i == 100:
                # Batches are in flight when the process dies without a goodbye.
                await asyncio.to_thread(server.kill9)
            if i == 200:
                await asyncio.to_thread(server.start)
            await asyncio.sleep(0.005)
        assert await up.flush(60), f"outstanding {up.outstanding}"
        await up.close()
        return up

    up = asyncio.run(run())
    rows = stored(server, s["id"], role="client")
    assert [r["seq"] for r in rows] == list(range(total))
    assert [r["data"]["marker"] for r in rows] == list(range(total))
    assert up.connects >= 2 and up.stats.dropped == 0 and up.stats.rejected == 0


def test_uplink_bad_token_is_fatal_and_bad_sample_is_dropped_alone(shared_server: ServerProcess) -> None:
    srv = shared_server
    s = srv.create_session()

    async def bad_token() -> Uplink:
        up = Uplink(srv.base, "blp_not-a-real-token", backoff_initial_s=0.05)
        await up.start(wait_s=0)
        up.submit(make_sample(0, seq=0))
        assert not await up.flush(10)
        await asyncio.sleep(0.5)  # long enough for several retries, were it retrying
        await up.close(1)
        return up

    up = asyncio.run(bad_token())
    assert up.failed is not None and up.failed.startswith("4401")
    assert up.connect_attempts == 1

    async def bad_sample() -> Uplink:
        up = Uplink(srv.base, s["tokens"]["clinician"])
        await up.start(wait_s=10)
        for i in range(10):
            sample = make_sample(i)
            if i == 5:
                sample["streams"][0]["lossFraction"] = 7.0  # out of [0, 1]: refused with 4422
            up.submit(sample)
        assert await up.flush(20)
        await up.close()
        return up

    up = asyncio.run(bad_sample())
    rows = stored(srv, s["id"])
    assert [r["data"]["marker"] for r in rows] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert up.stats.rejected == 1 and up.stats.acked == 9 and up.failed is None


def test_uplink_bounded_queue_while_server_is_down(sqlite_server: ServerProcess) -> None:
    srv = sqlite_server
    s = srv.create_session()
    srv.stop()

    async def run() -> Uplink:
        up = Uplink(srv.base, s["tokens"]["client"], max_queue=50, backoff_initial_s=0.1, backoff_max_s=0.5)
        await up.start(wait_s=0)
        for i in range(80):
            up.submit(make_sample(i))
        assert up.stats.dropped == 30 and up.outstanding == 50
        await asyncio.sleep(0.5)
        await asyncio.to_thread(srv.start)
        assert await up.flush(30)
        await up.close()
        return up

    up = asyncio.run(run())
    assert up.stats.acked == 50
    rows = stored(srv, s["id"], role="client")
    # The oldest were dropped; the survivors are numbered from the welcome.
    assert [r["seq"] for r in rows] == list(range(50))
    assert [r["data"]["marker"] for r in rows] == list(range(30, 80))


async def _ws_blocking_proxy(upstream_port: int) -> asyncio.Server:
    """An HTTP proxy that refuses WebSocket upgrades, as some corporate proxies do."""

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"upgrade: websocket" in head.lower():
            writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        up_w.write(head)
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_uplink_falls_back_to_http_when_websockets_are_blocked(shared_server: ServerProcess) -> None:
    srv = shared_server
    s = srv.create_session()

    async def run() -> Uplink:
        proxy = await _ws_blocking_proxy(srv.port)
        port = proxy.sockets[0].getsockname()[1]
        up = Uplink(f"http://127.0.0.1:{port}", s["tokens"]["clinician"], fallback_after=1,
                    backoff_initial_s=0.1, backoff_max_s=0.3)
        await up.start(wait_s=0)
        for i in range(20):
            up.submit(make_sample(i, seq=i))
        t0 = time.monotonic()
        ok = await up.flush(20)
        await up.close(2)
        proxy.close()
        assert ok, f"not delivered after {time.monotonic() - t0:.1f}s"
        return up

    up = asyncio.run(run())
    assert up.connects == 0 and up.http_posts >= 1
    assert [r["seq"] for r in stored(srv, s["id"])] == list(range(20))
