"""The load generators of bench/ingest.py: simulated participants over real
WebSockets, in separate processes (forked, so they inherit REPLAY and
COMPRESSION as bench/ingest.py set them)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import queue
import random
import resource
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
import websockets

from bench.common import T0, make_sample
from bench.real_samples import Replay

SCHEMA = "bondline.sample/1"


def _sample_tail() -> str:
    """make_sample's JSON after its two per-seq fields, to splice batches from."""
    text = orjson.dumps(make_sample(0)).decode()
    head = f'{{"seq":0,"startMs":{T0},'
    assert text.startswith(head), text
    return text[len(head):]


_TAIL = _sample_tail()


# The recorded real samples, when the run uses them (set in main, inherited
# by the forked load generators).
REPLAY: Replay | None = None


def batch_json(seqs: range, batch_id: int, offset: int = 0) -> str:
    """The JSON of a batch of samples: the recorded call's, varied (REPLAY),
    or make_sample()'s. Spliced from text rather than serialised: the load
    generators share the server's two cores, and building ~10 dicts a
    sample cost them CPU the server then lacked."""
    if REPLAY is not None:
        return REPLAY.batch_json(seqs, batch_id, T0, offset)
    samples = ",".join(f'{{"seq":{q},"startMs":{T0 + q * 1000},{_TAIL}' for q in seqs)
    return f'{{"type":"samples","schema":"{SCHEMA}","batch":{batch_id},"samples":[{samples}]}}'


assert orjson.loads(batch_json(range(3, 5), 3)) == {
    "type": "samples", "schema": SCHEMA, "batch": 3, "samples": [make_sample(3), make_sample(4)]}


COMPRESSION: str | None = "deflate"


async def auth(ws_base: str, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(ws_base + "/v1/telemetry", max_size=None, ping_interval=None,
                                  compression=COMPRESSION, open_timeout=60)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws


# ---- flat out ---------------------------------------------------------------

async def _flat_conn(ws_base: str, token: str, seconds: float, batch_size: int, window: int) -> dict[str, int]:
    ws = await auth(ws_base, token)
    offset = zlib.crc32(token.encode())
    sent = acked = dup = 0
    seq = 0
    in_flight = 0
    deadline = time.monotonic() + seconds
    pending: list[str] = []

    def refill() -> None:
        nonlocal seq
        while len(pending) < window * 2:
            pending.append(batch_json(range(seq, seq + batch_size), seq, offset))
            seq += batch_size

    refill()
    while time.monotonic() < deadline or in_flight:
        while in_flight < window and time.monotonic() < deadline:
            await ws.send(pending.pop(0))
            sent += batch_size
            in_flight += 1
        ack = orjson.loads(await ws.recv())
        assert ack["type"] == "ack", ack
        acked += ack["stored"]
        dup += ack["duplicates"]
        in_flight -= 1
        if len(pending) < window:
            refill()
    await ws.close()
    return {"sent": sent, "acked": acked, "dup": dup}


def flat_worker(tokens: list[str], ws_base: str, seconds: float, batch_size: int, window: int,
                 out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> list[dict[str, int]]:
        return await asyncio.gather(*(_flat_conn(ws_base, t, seconds, batch_size, window) for t in tokens))

    out.put(asyncio.run(run()))


# ---- 1 Hz -------------------------------------------------------------------

@dataclass
class _Window:
    """The steady-state window of one load generator: it opens two seconds
    after the last of its participants has connected (however long the
    ramp took) and lasts the asked number of seconds."""

    seconds: float
    pending: int
    measure_from: float = float("inf")
    end: float = float("inf")

    def settle(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.measure_from = time.monotonic() + 2.0
            self.end = self.measure_from + self.seconds


async def _hz_conn(ws_base: str, token: str, start_at: float, win: _Window, lat: list[float],
                   ramp_lat: list[float], connect_lat: list[float], counts: dict[str, int]) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    t_connect = time.monotonic()
    try:
        ws = await auth(ws_base, token)
    except (OSError, TimeoutError, websockets.WebSocketException):
        counts["failed"] += 1
        win.settle()
        return
    connect_lat.append(time.monotonic() - t_connect)
    counts["connected"] += 1
    win.settle()
    # Spread participants over the second, as real sessions are.
    await asyncio.sleep(random.random())
    sent_at: dict[int, float] = {}
    closing = False

    async def reader() -> None:
        async for raw in ws:
            ack = orjson.loads(raw)
            t = sent_at.pop(ack["batch"], None)
            if t is not None:
                if win.measure_from <= t < win.end:
                    lat.append(time.monotonic() - t)
                elif t < win.measure_from:
                    ramp_lat.append(time.monotonic() - t)
            counts["acked"] += ack["stored"]
            counts["dup"] += ack["duplicates"]
            if not sent_at and closing:
                return

    task = asyncio.create_task(reader())
    next_t = time.monotonic()
    seq = 0
    while next_t < win.end:
        sent_at[seq] = time.monotonic()
        await ws.send(batch_json(range(seq, seq + 1), seq, zlib.crc32(token.encode())))
        counts["sent"] += 1
        seq += 1
        next_t += 1.0
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    closing = True
    try:
        await asyncio.wait_for(task, timeout=30)
    except TimeoutError:
        counts["unacked"] += len(sent_at)
    await ws.close()


def hz_worker(tokens: list[str], ws_base: str, seconds: float, ramp_per_s: float, n_total: int,
               out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> dict[str, Any]:
        lat: list[float] = []
        ramp_lat: list[float] = []
        connect_lat: list[float] = []
        counts = {"sent": 0, "acked": 0, "dup": 0, "unacked": 0, "connected": 0, "failed": 0}
        win = _Window(seconds, len(tokens))
        # Connect in a ramp (as a clinic's sessions start), then measure the
        # steady state once every participant is connected and sending.
        t0 = time.monotonic() + 0.5
        ramp = n_total / ramp_per_s
        t_start = time.time()
        await asyncio.gather(*(
            _hz_conn(ws_base, tok, t0 + i * ramp / max(len(tokens), 1), win, lat, ramp_lat, connect_lat, counts)
            for i, tok in enumerate(tokens)
        ))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        # Wall-clock bounds of the steady state, for the server CPU figure.
        to_wall = time.time() - time.monotonic()
        return {"lat": lat, "ramp_lat": ramp_lat, "connect_lat": connect_lat, "counts": counts,
                "cpu_s": ru.ru_utime + ru.ru_stime, "wall_s": time.time() - t_start,
                "ramp_s": win.measure_from - 2.0 - t0, "window": (win.measure_from + to_wall, win.end + to_wall)}

    out.put(asyncio.run(run()))


def run_workers(target: Any, chunks: list[list[str]], *args: Any) -> list[Any]:
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=target, args=(chunk, *args, out)) for chunk in chunks]
    for p in procs:
        p.start()
    results: list[Any] = []
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=5))
        except queue.Empty:
            # A worker that died without a result would otherwise hang the run.
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                msg = f"load generator exited with code {dead[0].exitcode}; see its traceback above"
                raise SystemExit(msg) from None
    for p in procs:
        p.join()
    return results
