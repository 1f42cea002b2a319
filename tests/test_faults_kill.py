"""kill -9 of the server while several participants stream through the real
Python ingest client (plugin/uplink.py): after a restart on the same
database every sample sent is stored exactly once."""

from __future__ import annotations

import asyncio
import time

import httpx

from plugin.uplink import Uplink
from tests.support.samples import sample
from tests.support.server import ServerProcess

PER_PARTICIPANT = 160
RATE_HZ = 40.0


def stored(server: ServerProcess, session_id: int, role: str) -> list[int]:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/samples", params={"role": role, "limit": 100000},
                  headers=server.admin_headers, timeout=30)
    r.raise_for_status()
    return [s["seq"] for s in r.json()]


def test_kill9_mid_session_loses_and_duplicates_nothing(server: ServerProcess) -> None:
    sessions = [server.create_session(f"C-K{i}") for i in range(2)]
    participants = [(s["id"], role, s["tokens"][role]) for s in sessions for role in ("clinician", "client")]
    t0 = int(time.time() * 1000) - 3_600_000

    async def run() -> list[Uplink]:
        loop = asyncio.get_running_loop()
        uplinks = [Uplink(server.base, token, backoff_initial_s=0.2, backoff_max_s=1.0, batch_max=20)
                   for _, _, token in participants]
        for u in uplinks:
            assert await u.start(10.0)

        async def feed(u: Uplink) -> None:
            for seq in range(PER_PARTICIPANT):
                u.submit(sample(seq, t0))
                await asyncio.sleep(1 / RATE_HZ)

        feeders = [asyncio.create_task(feed(u)) for u in uplinks]
        # Kill once a good part has been acknowledged and more is in flight.
        while min(u.stats.acked for u in uplinks) < PER_PARTICIPANT // 4:
            await asyncio.sleep(0.05)
        await loop.run_in_executor(None, server.kill9)
        await asyncio.sleep(0.5)  # samples keep coming while the server is down
        await loop.run_in_executor(None, server.start)
        await asyncio.gather(*feeders)
        for u in uplinks:
            assert await u.flush(60.0), f"not delivered: {u.outstanding} outstanding"
            await u.close()
        return uplinks

    uplinks = asyncio.run(run())
    # Every participant lived through the outage: it reconnected, or (when the
    # restart outlasted its three quick retries, as PostgreSQL's can on a busy
    # machine) delivered through the HTTP fallback meanwhile.
    assert all(u.connects >= 2 or u.http_posts > 0 for u in uplinks), [(u.connects, u.http_posts) for u in uplinks]
    assert all(u.stats.dropped == 0 and u.stats.rejected == 0 for u in uplinks)
    for session_id, role, _ in participants:
        seqs = stored(server, session_id, role)
        assert seqs == list(range(PER_PARTICIPANT)), (role, len(seqs))
