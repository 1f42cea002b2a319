"""Three ``bondline serve`` nodes (separate processes, separate ports) on one
PostgreSQL behind HAProxy from Debian, configured as docs/deploy.md shows.
Collectors (plugin/uplink.py) stream through HAProxy; one node carrying
some of them is killed with kill -9 mid-stream and stays dead. Its
collectors reconnect through HAProxy to the others; every sample is stored
exactly once, every acknowledged one is there, and the pages and API
answer through HAProxy.

The moment of the kill and the participants' streaming rates are drawn per
run from the fuzz seed (printed in the header; BONDLINE_FUZZ_SEED replays)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from plugin.uplink import Uplink
from tests.support.fuzz import FUZZ_SEED
from tests.support.haproxy import HAProxy, haproxy_binary
from tests.support.login import create_user, login
from tests.support.samples import sample
from tests.support.server import ADMIN_KEY, ServerProcess

PER_PARTICIPANT = 150
SESSIONS = 4
ROLES = ("clinician", "client")
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
EMAIL, PASSWORD = "lb.clinician@example.org", "correct horse battery staple"

pytestmark = pytest.mark.skipif(haproxy_binary() is None, reason="haproxy missing: scripts/install-system-deps.sh")


@pytest.fixture
def lb(server_factory, db_url: str, tmp_path: Path) -> Iterator[tuple[HAProxy, list[ServerProcess]]]:  # type: ignore[no-untyped-def]
    # One node first: it migrates the database; the others find it done.
    nodes: list[ServerProcess] = [server_factory(db_url) for _ in range(3)]
    proxy = HAProxy([n.port for n in nodes], tmp_path).start()
    try:
        yield proxy, nodes
    finally:
        proxy.stop()


def _clients_on(node: ServerProcess) -> int:
    """Established connections into the node's port (HAProxy's, one per
    open collector socket; health checks come and go)."""
    assert node.proc is not None
    conns = psutil.Process(node.proc.pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == node.port)


def _stored(base: str, session_id: int, role: str) -> list[int]:
    r = httpx.get(f"{base}/api/v1/sessions/{session_id}/samples", params={"role": role, "limit": 100000},
                  headers=ADMIN, timeout=30)
    r.raise_for_status()
    return [s["seq"] for s in r.json()]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_kill9_of_one_node_behind_haproxy_loses_and_doubles_nothing(
        lb: tuple[HAProxy, list[ServerProcess]], db_url: str) -> None:
    proxy, nodes = lb
    rng = random.Random(FUZZ_SEED)
    kill_at = rng.uniform(0.2, 0.6)  # fraction of each stream acknowledged before the kill
    rates = [rng.uniform(25.0, 50.0) for _ in range(SESSIONS * len(ROLES))]
    print(f"seed {FUZZ_SEED}: kill after {kill_at:.2f} of the stream, rates {[round(r) for r in rates]} Hz")

    create_user(db_url, EMAIL, PASSWORD)
    sessions = []
    for i in range(SESSIONS):
        r = httpx.post(proxy.base + "/api/v1/sessions", headers=ADMIN, timeout=30,
                       json={"clinician": EMAIL, "client_code": f"C-LB{i}", "platform": "test"})
        r.raise_for_status()
        sessions.append(r.json())
    participants = [(s["id"], p["role"], p["token"]) for s in sessions for p in s["participants"]]
    t0 = int(time.time() * 1000) - 3_600_000
    victim: list[ServerProcess] = []

    async def run() -> list[Uplink]:
        loop = asyncio.get_running_loop()
        # WebSocket only: a participant of the dead node must come back
        # through HAProxy on a socket, not by the HTTP fallback.
        uplinks = [Uplink(proxy.base, token, backoff_initial_s=0.2, backoff_max_s=1.0, batch_max=10,
                          http_fallback=False) for _, _, token in participants]
        for u in uplinks:
            assert await u.start(10.0)

        async def feed(u: Uplink, rate: float) -> None:
            for seq in range(PER_PARTICIPANT):
                u.submit(sample(seq, t0))
                await asyncio.sleep(1 / rate)

        feeders = [asyncio.create_task(feed(u, r)) for u, r in zip(uplinks, rates, strict=True)]
        while min(u.stats.acked for u in uplinks) < PER_PARTICIPANT * kill_at:
            await asyncio.sleep(0.02)
        # The node carrying the most collectors (leastconn spreads them).
        load = [_clients_on(n) for n in nodes]
        victim.append(nodes[load.index(max(load))])
        assert max(load) >= 1, load
        print(f"connections per node {load}; killing port {victim[0].port}")
        await loop.run_in_executor(None, victim[0].kill9)
        await asyncio.gather(*feeders)
        for u in uplinks:
            assert await u.flush(60.0), f"not delivered: {u.outstanding} outstanding"
        moved = sum(_clients_on(n) for n in nodes if n is not victim[0])
        for u in uplinks:
            await u.close()
        assert moved >= len(uplinks), f"only {moved} sockets on the living nodes"
        return uplinks

    uplinks = asyncio.run(run())
    reconnected = [u.connects for u in uplinks if u.connects >= 2]
    assert reconnected, "no collector lost its node: the kill hit nobody"
    print(f"{len(reconnected)} collectors reconnected through HAProxy")
    assert all(u.http_posts == 0 and u.stats.dropped == 0 and u.stats.rejected == 0 for u in uplinks)
    assert all(u.stats.acked == PER_PARTICIPANT for u in uplinks), [u.stats for u in uplinks]
    for session_id, role, _ in participants:
        assert _stored(proxy.base, session_id, role) == list(range(PER_PARTICIPANT)), (session_id, role)

    # The pages through HAProxy: log in (one node) and read every report
    # (whichever node HAProxy picks; logins are shared, no sticky sessions).
    with httpx.Client(timeout=60) as c:
        login(c, proxy.base, EMAIL, PASSWORD)
        for s in sessions:
            page = c.get(f"{proxy.base}/reports/sessions/{s['id']}")
            data = c.get(f"{proxy.base}/reports/sessions/{s['id']}.json")
            assert page.status_code == 200 and data.status_code == 200
            assert data.json()["summary"]["minutes"] == -(-PER_PARTICIPANT // 60)
