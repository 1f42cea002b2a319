"""The scale-out shape: two server processes on one PostgreSQL database,
ingesting concurrently, with participants moving between them (as a load
balancer may move a reconnecting collector) and resending overlaps."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from plugin.uplink import Uplink
from tests.support.samples import sample
from tests.support.server import ServerProcess

N = 120


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_one_database_no_loss_no_duplicates(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    a: ServerProcess = server_factory(db_url)
    b: ServerProcess = server_factory(db_url)
    sessions = [a.create_session(f"C-S{i}") if i % 2 else b.create_session(f"C-S{i}") for i in range(3)]
    participants = [(s["id"], role, s["tokens"][role]) for s in sessions for role in ("clinician", "client")]
    t0 = int(time.time() * 1000) - 3_600_000

    async def one(index: int, token: str) -> tuple[int, int]:
        first, second = (a, b) if index % 2 else (b, a)
        up = Uplink(first.base, token, batch_max=10)
        assert await up.start(10.0)
        half = N // 2
        for seq in range(half):
            up.submit(sample(seq, t0))
            await asyncio.sleep(0.005)
        assert await up.flush(30.0)
        await up.close()
        # Reconnected through the other worker: resend the last 15 (unsure
        # whether they landed) and carry on.
        up2 = Uplink(second.base, token, batch_max=10)
        assert await up2.start(10.0)
        assert up2.welcome is not None and up2.welcome["lastSeq"] == half - 1
        for seq in range(half - 15, N):
            up2.submit(sample(seq, t0))
            await asyncio.sleep(0.005)
        assert await up2.flush(30.0)
        await up2.close()
        return up.stats.acked + up2.stats.acked, up2.stats.duplicates

    async def run() -> list[tuple[int, int]]:
        return await asyncio.gather(*(one(i, tok) for i, (_, _, tok) in enumerate(participants)))

    results = asyncio.run(run())
    for (session_id, role, _), (_acked, dups) in zip(participants, results, strict=True):
        for srv in (a, b):  # both workers read the same store
            r = httpx.get(f"{srv.base}/api/v1/sessions/{session_id}/samples", params={"role": role},
                          headers=srv.admin_headers, timeout=30)
            assert [s["seq"] for s in r.json()] == list(range(N))
        assert dups == 15
