"""Ingest benchmark: simulated participants over real WebSockets.

Starts a real ``bondline serve`` process on a fresh database, creates
sessions through the API, then measures
  1. flat out: a few connections sending 100-sample batches as fast as
     acknowledgements come back (a window of batches in flight);
  2. at 1 Hz: N participants each sending one sample a second, for several
     N, with p50/p99 acknowledgement latency in the steady state (after
     all have connected, at --ramp connections a second);
and finally counts the stored rows against what was sent (lost and
duplicate counts must both be 0).

    .venv/bin/python bench/ingest.py [--participants 1000,2000,3000] [--pg URL]

Load generators run in separate processes on the same machine, so they
compete with the server for the two cores: the figures are conservative.
The last line is ``ingest_samples_per_s: N`` (the flat-out figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CPU_REFERENCE, T0, cpu_reference_ms, make_sample, stored_counts  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

SCHEMA = "bondline.sample/1"


def _sample_tail() -> str:
    """make_sample's JSON after its two per-seq fields, to splice batches from."""
    text = orjson.dumps(make_sample(0)).decode()
    head = f'{{"seq":0,"startMs":{T0},'
    assert text.startswith(head), text
    return text[len(head):]


_TAIL = _sample_tail()


def batch_json(seqs: range, batch_id: int) -> str:
    """The JSON of a batch of make_sample() samples. Spliced from text rather
    than serialised: the load generators share the server's two cores, and
    building ~10 dicts a sample cost them CPU the server then lacked."""
    samples = ",".join(f'{{"seq":{q},"startMs":{T0 + q * 1000},{_TAIL}' for q in seqs)
    return f'{{"type":"samples","schema":"{SCHEMA}","batch":{batch_id},"samples":[{samples}]}}'


assert orjson.loads(batch_json(range(3, 5), 3)) == {
    "type": "samples", "schema": SCHEMA, "batch": 3, "samples": [make_sample(3), make_sample(4)]}


COMPRESSION: str | None = "deflate"


async def _auth(ws_base: str, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(ws_base + "/v1/telemetry", max_size=None, ping_interval=None,
                                  compression=COMPRESSION, open_timeout=60)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws


# ---- flat out ---------------------------------------------------------------

async def _flat_conn(ws_base: str, token: str, seconds: float, batch_size: int, window: int) -> dict[str, int]:
    ws = await _auth(ws_base, token)
    sent = acked = dup = 0
    seq = 0
    in_flight = 0
    deadline = time.monotonic() + seconds
    pending: list[str] = []

    def refill() -> None:
        nonlocal seq
        while len(pending) < window * 2:
            pending.append(batch_json(range(seq, seq + batch_size), seq))
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


def _flat_worker(tokens: list[str], ws_base: str, seconds: float, batch_size: int, window: int,
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
        ws = await _auth(ws_base, token)
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
        await ws.send(batch_json(range(seq, seq + 1), seq))
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


def _hz_worker(tokens: list[str], ws_base: str, seconds: float, ramp_per_s: float, n_total: int,
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


class _CpuSampler(threading.Thread):
    """Samples the server's CPU seconds twice a second, so the figure can be
    read over the steady-state window only."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), server_cpu(self.server)))
            self.stop.wait(0.5)

    def share(self, start: float, end: float) -> float:
        inside = [(t, c) for t, c in self.samples if start <= t <= end]
        if len(inside) < 2:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def _run_workers(target: Any, chunks: list[list[str]], *args: Any) -> list[Any]:
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


def create_tokens(server: ServerProcess, n: int) -> list[str]:
    tokens: list[str] = []
    with httpx.Client(base_url=server.base, headers=server.admin_headers, timeout=30) as c:
        for i in range((n + 1) // 2):
            r = c.post("/api/v1/sessions", json={"clinician": f"bench{i % 20}@example.org",
                                                 "client_code": f"B-{i:05d}"})
            r.raise_for_status()
            tokens.extend(p["token"] for p in r.json()["participants"])
    return tokens[:n]


def server_cpu(server: ServerProcess) -> float:
    """CPU seconds the server's processes (workers included) have used so far."""
    import psutil

    assert server.proc is not None
    top = psutil.Process(server.proc.pid)
    total = 0.0
    for proc in [top, *top.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def readback(server: ServerProcess, db_url: str) -> str:
    """Store a 60-minute two-party session and time reading it back for a report."""
    s = httpx.post(server.base + "/api/v1/sessions", json={"clinician": "rb@example.org", "client_code": "RB-1"},
                   headers=server.admin_headers).json()

    async def fill(token: str) -> None:
        ws = await _auth(server.ws, token)
        for start in range(0, 3600, 500):
            await ws.send(batch_json(range(start, min(start + 500, 3600)), start))
            json.loads(await ws.recv())
        await ws.close()

    async def both() -> None:
        await asyncio.gather(*(fill(p["token"]) for p in s["participants"]))

    asyncio.run(both())
    from sqlalchemy import select

    from server.config import normalise_database_url
    from server.store import tables as t
    from server.store.db import make_engine

    engine = make_engine(normalise_database_url(db_url))
    cols = [t.sample.c.seq, t.sample.c.t_ms, t.sample.c.rtt_ms, t.sample.c.jitter_ms, t.sample.c.loss_in,
            t.sample.c.fps_in, t.sample.c.freeze_ms_in, t.sample.c.concealed_ratio_in]
    timings = []
    for _ in range(5):
        t0 = time.perf_counter()
        with engine.connect() as conn:
            pids = [r[0] for r in conn.execute(select(t.participant.c.id).where(t.participant.c.session_id == s["id"]))]
            n = 0
            for pid in pids:
                rows = conn.execute(select(*cols).where(t.sample.c.participant_id == pid).order_by(t.sample.c.seq))
                n += len(rows.all())
        timings.append((time.perf_counter() - t0) * 1000)
    engine.dispose()
    return f"report read-back: {n} samples (60 min, two parties) in {min(timings):.1f} ms (best of 5), " \
           f"median {statistics.median(timings):.1f} ms"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--participants", default="1000,2000,3000", help="comma list of N for the 1 Hz phase")
    ap.add_argument("--hz-seconds", type=float, default=20.0,
                    help="seconds of steady state measured in each 1 Hz step, after the ramp")
    ap.add_argument("--ramp", type=float, default=500.0, help="participants connecting per second in the ramp")
    ap.add_argument("--flat-seconds", type=float, default=10.0)
    ap.add_argument("--flat-connections", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--window", type=int, default=4, help="batches in flight per connection when flat out")
    ap.add_argument("--workers", type=int, default=2, help="load generator processes")
    ap.add_argument("--sqlite-synchronous", default="FULL", choices=["FULL", "NORMAL", "OFF"])
    ap.add_argument("--no-compression", action="store_true",
                    help="do not negotiate permessage-deflate (browsers do; it costs both sides CPU)")
    ap.add_argument("--server-workers", type=int, default=os.cpu_count() or 1,
                    help="bondline serve --workers N (server processes sharing the port); default: one "
                         "per core, as docs/deploy.md recommends")
    ap.add_argument("--pg", help="PostgreSQL server URL to create a scratch database on (default: SQLite)")
    args = ap.parse_args()

    global COMPRESSION
    if args.no_compression:
        COMPRESSION = None
    tmp = Path(tempfile.mkdtemp(prefix="bondline-bench-"))
    if args.pg:
        import psycopg

        name = f"bl_bench_{os.getpid()}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = args.pg.rpartition("/")[0] + "/" + name
    else:
        db_url = str(tmp / "bench.db")
    steps = [int(x) for x in args.participants.split(",") if x]
    # Before the server and load generators start, so they do not slow it.
    reference_ms = cpu_reference_ms()
    server = ServerProcess(
        db_url=db_url,
        log_path=tmp / "server.log",
        # The per-connection rate limit is policy, not capacity: lift it here.
        env={"BONDLINE_RATE_MESSAGES_PER_S": "100000", "BONDLINE_RATE_BURST": "100000",
             "BONDLINE_SQLITE_SYNCHRONOUS": args.sqlite_synchronous},
        args=["--workers", str(args.server_workers)],
    ).start()
    try:
        store = "postgresql" if args.pg else "sqlite synchronous=" + args.sqlite_synchronous
        print(f"store: {store}  server pid {server.proc.pid if server.proc else '?'}, "
              f"{args.server_workers} worker process(es)"
              f"  cores: {os.cpu_count()}  websocket compression: {COMPRESSION or 'off'}", flush=True)
        print(f"cpu reference: {reference_ms:.1f} ms for {CPU_REFERENCE} (best of 5)", flush=True)
        need = max(steps, default=0) + args.flat_connections
        t = time.monotonic()
        tokens = create_tokens(server, need)
        print(f"created {len(tokens)} participants in {time.monotonic() - t:.1f}s", flush=True)
        total_sent = 0

        # 1 Hz steps; every step uses participants that have sent nothing yet,
        # so any duplicate the store reports is a real one.
        held = 0
        pool = tokens[args.flat_connections:]
        rate = 0.0
        used = 0
        for n in steps:
            if used + n > len(pool):
                extra = create_tokens(server, used + n - len(pool))
                pool += extra
            step_tokens = pool[used: used + n]
            used += n
            chunks = [step_tokens[i:: args.workers] for i in range(args.workers)]
            sampler = _CpuSampler(server)
            sampler.start()
            res = _run_workers(_hz_worker, chunks, server.ws, args.hz_seconds, args.ramp, n)
            sampler.stop.set()
            window = (max(r["window"][0] for r in res), min(r["window"][1] for r in res))
            server_share = sampler.share(*window)
            gen_share = sum(r["cpu_s"] for r in res) / max(r["wall_s"] for r in res)
            lat = [x for r in res for x in r["lat"]]
            ramp_lat = [x for r in res for x in r["ramp_lat"]]
            connect_lat = [x for r in res for x in r["connect_lat"]]
            counts = {k: sum(r["counts"][k] for r in res)
                      for k in ("sent", "acked", "dup", "unacked", "connected", "failed")}
            total_sent += counts["sent"]
            ramp_s = max(r["ramp_s"] for r in res)
            p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
            ok = (p99 < 250 and counts["unacked"] == 0 and counts["failed"] == 0
                  and counts["acked"] == counts["sent"])
            if ok:
                held = n
            print(f"1 Hz, {n} participants: connected {counts['connected']} (failed {counts['failed']}) in "
                  f"{ramp_s:.1f}s = {counts['connected'] / ramp_s:.0f}/s (asked {args.ramp:g}/s), connect+welcome "
                  f"p50 {pct(connect_lat, 50) * 1000:.0f} ms p99 {pct(connect_lat, 99) * 1000:.0f} ms, "
                  f"ack p99 while connecting {pct(ramp_lat, 99) * 1000:.0f} ms", flush=True)
            print(f"1 Hz, {n} participants, steady state {args.hz_seconds:.0f}s: {len(lat)} acks timed, "
                  f"ack latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; server CPU {server_share:.0%} of a core, "
                  f"load generators {gen_share:.0%}; whole step: {counts['sent']} sent, {counts['acked']} acked, "
                  f"unacked {counts['unacked']}, duplicates {counts['dup']} -> {'held' if ok else 'NOT held'}",
                  flush=True)
        # Flat out.
        flat_tokens = tokens[: args.flat_connections]
        chunks = [flat_tokens[i:: args.workers] for i in range(args.workers)]
        t = time.monotonic()
        res = _run_workers(_flat_worker, chunks, server.ws, args.flat_seconds, args.batch, args.window)
        elapsed = time.monotonic() - t
        flat = [r for chunk in res for r in chunk]
        acked = sum(r["acked"] for r in flat)
        dup = sum(r["dup"] for r in flat)
        total_sent += sum(r["sent"] for r in flat)
        rate = acked / elapsed
        print(f"flat out: {args.flat_connections} connections x {args.batch}-sample batches, window "
              f"{args.window}: {acked} samples acked in {elapsed:.1f}s = {rate:,.0f} samples/s, "
              f"duplicates {dup}", flush=True)

        print(readback(server, db_url), flush=True)
        total_sent += 7200
        rows, distinct = stored_counts(db_url)
        print(f"store check: sent {total_sent} distinct samples, stored {rows} rows, {distinct} distinct: "
              f"lost {total_sent - distinct}, duplicates {rows - distinct}", flush=True)
        print(f"participants_held_at_1hz: {held}")
        print(f"ingest_samples_per_s: {rate:.0f}")
    finally:
        server.stop()
        if args.pg:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
