"""The bare reference for bench/ingest.py: the least a Python stack can do
to take the same telemetry durably, measured in the same run.

A minimal FastAPI WebSocket endpoint speaking the same protocol as far as
the load generator sees it (auth -> welcome, batch -> ack after commit):
each batch is parsed with orjson and stored with one multi-row INSERT ...
ON CONFLICT DO NOTHING into an SQLite WAL file with synchronous=FULL,
committed, then acknowledged. No validation, no derived figures, no
per-connection state, no group commit, no token lookup (the participant is
a hash of the token). The gap between it and Bondline is what Bondline's
own work costs: run it as

    uvicorn bench.bare_ingest:app --workers N      (BARE_DB=path)

bench/ingest.py starts it with the worker count Bondline had and runs the
same flat-out load generator against it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import zlib
from itertools import chain
from pathlib import Path

import httpx
import orjson
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
_SCHEMA = ("CREATE TABLE IF NOT EXISTS sample (participant_id INTEGER NOT NULL, seq INTEGER NOT NULL, "
           "t_ms INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (participant_id, seq))")


def _connect(path: str | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(path or os.environ["BARE_DB"], isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(_SCHEMA)
    return conn


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.websocket("/v1/telemetry")
async def telemetry(ws: WebSocket) -> None:
    await ws.accept()
    conn = _connect()
    sql: dict[int, str] = {}
    try:
        auth = orjson.loads(await ws.receive_text())
        pid = zlib.crc32(str(auth.get("token")).encode())
        await ws.send_text('{"type":"welcome","lastSeq":null}')
        while True:
            msg = orjson.loads(await ws.receive_text())
            samples = msg["samples"]
            rows = [(pid, s["seq"], s["startMs"], orjson.dumps(s).decode()) for s in samples]
            n = len(rows)
            if n not in sql:
                sql[n] = ("INSERT INTO sample VALUES " + ",".join(["(?,?,?,?)"] * n)
                          + " ON CONFLICT (participant_id, seq) DO NOTHING")
            conn.execute("BEGIN IMMEDIATE")
            stored = conn.execute(sql[n], tuple(chain.from_iterable(rows))).rowcount
            conn.execute("COMMIT")
            await ws.send_text(orjson.dumps({"type": "ack", "batch": msg["batch"], "stored": stored,
                                             "duplicates": n - stored}).decode())
    except WebSocketDisconnect:
        pass
    finally:
        conn.close()


def start(port: int, workers: int, db_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """The reference server as a separate process, like ``bondline serve``."""
    env = {**os.environ, "BARE_DB": str(db_path)}
    _connect(str(db_path)).close()  # the file and table once, before the workers race to
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_ingest:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning", "--ws-max-size", str(4 * 1024 * 1024)],
        env=env, cwd=root, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bare reference exited: {log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("bare reference did not start")


def stored_counts(db_path: Path) -> tuple[int, int]:
    con = sqlite3.connect(db_path)
    try:
        rows = con.execute("SELECT count(*) FROM sample").fetchone()[0]
        return int(rows), int(rows)  # the primary key makes every row distinct
    finally:
        con.close()
