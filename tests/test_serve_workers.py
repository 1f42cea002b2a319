"""``bondline serve --workers 2`` on one SQLite file: connections spread
over both processes, a worker killed with kill -9 is started again, and
collectors that were on it reconnect and resend without loss or doubles."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import websockets

from plugin.uplink import Uplink
from tests.support.samples import sample
from tests.support.server import ServerProcess


def _workers(srv: ServerProcess) -> list[psutil.Process]:
    assert srv.proc is not None
    # multiprocessing's resource tracker is a child too; workers are spawned.
    return [c for c in psutil.Process(srv.proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]


def _established(proc: psutil.Process, port: int) -> int:
    return sum(1 for c in proc.net_connections(kind="tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)


def _wait_for_workers(srv: ServerProcess, n: int, timeout: float = 30.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = _workers(srv)
        if len(procs) == n:
            return procs
        time.sleep(0.2)
    raise AssertionError(f"expected {n} workers, have {len(_workers(srv))}")


def test_connections_spread_over_both_workers(two_workers: ServerProcess) -> None:
    srv = two_workers
    tokens = [tok for i in range(12) for tok in srv.create_session(f"C-W{i}")["tokens"].values()]
    workers = _wait_for_workers(srv, 2)

    async def run() -> list[int]:
        conns = []
        for tok in tokens:
            ws = await websockets.connect(srv.ws + "/v1/telemetry")
            await ws.send(json.dumps({"type": "auth", "token": tok}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            conns.append(ws)
        # SO_REUSEPORT hashes by source address and port: with 24
        # connections both workers get some (all on one: p ~ 1e-7).
        counts = [_established(w, srv.port) for w in workers]
        for ws in conns:
            await ws.close()
        return counts

    counts = asyncio.run(run())
    assert sum(counts) == len(tokens)
    assert min(counts) > 0, counts


def test_killed_worker_restarts_and_nothing_is_lost_or_doubled(two_workers: ServerProcess, tmp_path: Path) -> None:
    srv = two_workers
    sessions = [srv.create_session(f"C-K{i}") for i in range(8)]
    participants = [(s["id"], role, tok) for s in sessions for role, tok in s["tokens"].items()]
    victim = _wait_for_workers(srv, 2)[0]
    n = 300
    t0 = int(time.time() * 1000) - 3_600_000

    async def stream(token: str) -> None:
        up = Uplink(srv.base, token, batch_max=5)
        assert await up.start(10.0)
        for seq in range(n):
            up.submit(sample(seq, t0))
            await asyncio.sleep(0.01)
        assert await up.flush(60.0)
        await up.close()

    on_victim: list[int] = []

    async def kill_midway() -> None:
        await asyncio.sleep(1.5)
        # 16 collectors hashed over two workers: some are on the victim.
        on_victim.append(_established(victim, srv.port))
        os.kill(victim.pid, signal.SIGKILL)

    async def run() -> None:
        await asyncio.gather(kill_midway(), *(stream(tok) for _, _, tok in participants))

    asyncio.run(run())
    assert on_victim[0] > 0
    # The supervisor noticed and started a replacement.
    replacement = _wait_for_workers(srv, 2)
    assert victim.pid not in [w.pid for w in replacement]
    assert "starting it again" in srv.log_path.read_text()

    con = sqlite3.connect(srv.db_url)
    try:
        for session_id, role, _ in participants:
            seqs = [r[0] for r in con.execute(
                "SELECT s.seq FROM sample s JOIN participant p ON p.id = s.participant_id "
                "WHERE p.session_id = ? AND p.role = ? ORDER BY s.seq", (session_id, role))]
            assert seqs == list(range(n)), (session_id, role, len(seqs))
    finally:
        con.close()
