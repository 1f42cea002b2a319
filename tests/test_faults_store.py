"""The store briefly unavailable while participants stream: the server keeps
their connections, delays acks, says so in its log, and loses nothing.

SQLite: another process holds an exclusive lock on the database file.
PostgreSQL: the database refuses connections and the server's backends are
terminated (pg_terminate_backend), as in a failover or restart.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable

import httpx
import psycopg
import pytest

from tests.support.samples import batch, connect, sample
from tests.support.server import ServerProcess


def _wait_for_log(server: ServerProcess, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log_path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged:\n{server.log_path.read_text()[-3000:]}")


def _outage(server: ServerProcess, begin: Callable[[], None], end: Callable[[], None], expect_log: str) -> None:
    s = server.create_session()
    token = s["tokens"]["client"]

    async def run() -> list[dict]:
        loop = asyncio.get_running_loop()
        ws, _ = await connect(server.ws, token)
        await ws.send(batch([sample(i) for i in range(10)], 0))
        acks = [json.loads(await ws.recv())]
        await loop.run_in_executor(None, begin)
        try:
            for b in range(1, 4):
                await ws.send(batch([sample(i) for i in range(b * 10, b * 10 + 10)], b))
            # No ack can come while the store is unavailable.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 1.0)
            await loop.run_in_executor(None, _wait_for_log, server, expect_log)
        finally:
            await loop.run_in_executor(None, end)
        # The same connection gets every delayed ack once the store is back.
        for _ in range(3):
            acks.append(json.loads(await asyncio.wait_for(ws.recv(), 60.0)))
        await ws.send(batch([sample(i) for i in range(40, 50)], 4))
        acks.append(json.loads(await asyncio.wait_for(ws.recv(), 60.0)))
        await ws.close()
        return acks

    acks = asyncio.run(run())
    assert [a["batch"] for a in acks] == [0, 1, 2, 3, 4]
    assert all(a["type"] == "ack" and a["stored"] == 10 and a["duplicates"] == 0 for a in acks)
    r = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/samples", params={"role": "client"},
                  headers=server.admin_headers, timeout=30)
    assert [x["seq"] for x in r.json()] == list(range(50))


def test_sqlite_locked_by_another_process(sqlite_server: ServerProcess, sqlite_url: str) -> None:
    holder = sqlite3.connect(sqlite_url, timeout=30, isolation_level=None, check_same_thread=False)

    def begin() -> None:
        holder.execute("BEGIN EXCLUSIVE")

    def end() -> None:
        holder.execute("ROLLBACK")

    try:
        _outage(sqlite_server, begin, end, "ingest store busy")
    finally:
        holder.close()
    _wait_for_log(sqlite_server, "ingest store answered after")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgres_unreachable_then_back(server: ServerProcess, db_url: str) -> None:
    admin_url, name = db_url.rsplit("/", 1)[0] + "/postgres", db_url.rsplit("/", 1)[1]

    def begin() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    def end() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    _outage(server, begin, end, "ingest store unavailable")
    _wait_for_log(server, "ingest store available again")
