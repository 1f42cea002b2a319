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

    .venv/bin/python bench/ingest.py [--participants 1000,2000,3000] [--pg URL] [--haproxy]

Load generators run in separate processes on the same machine, so they
compete with the server for the two cores: the figures are conservative.
The last line is ``ingest_samples_per_s: N`` (the flat-out figure).

Samples are a real Chromium call's (bench/data, recorded by
bench/record_samples.py, about 1,400 bytes each), replayed varied with a
seed drawn per run and printed (``--seed`` replays it). After Bondline's
flat-out phase the same load generators run against the bare reference
(bench/bare_ingest.py, same worker count, same machine, same run) and the
ratio of the two is printed. The 1 Hz steps stop at the first one not held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import bare_ingest, ingest_load  # noqa: E402
from bench.common import CPU_REFERENCE, cpu_reference_ms, stored_counts  # noqa: E402
from bench.real_samples import Replay  # noqa: E402
from tests.support.haproxy import HAProxy  # noqa: E402
from tests.support.server import ServerProcess, free_port  # noqa: E402


class _CpuSampler(threading.Thread):
    """Samples the server's CPU seconds twice a second, so the figure can be
    read over the steady-state window only."""

    def __init__(self, servers: list[ServerProcess]) -> None:
        super().__init__(daemon=True)
        self.servers = servers
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), sum(server_cpu(s) for s in self.servers)))
            self.stop.wait(0.5)

    def share(self, start: float, end: float) -> float:
        inside = [(t, c) for t, c in self.samples if start <= t <= end]
        if len(inside) < 2:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])



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
        ws = await ingest_load.auth(server.ws, token)
        for start in range(0, 3600, 500):
            await ws.send(ingest_load.batch_json(range(start, min(start + 500, 3600)), start))
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


def bare_phase(args: argparse.Namespace, chunks: list[list[str]], bondline_rate: float, tmp: Path) -> str:
    """The same flat-out load against the bare reference (bench/bare_ingest.py)
    with as many worker processes as Bondline had; its figure and the ratio."""
    port = free_port()
    db_path = tmp / "bare.db"
    proc = bare_ingest.start(port, args.server_workers, db_path, tmp / "bare.log")
    try:
        t = time.monotonic()
        res = ingest_load.run_workers(ingest_load.flat_worker, chunks, f"ws://127.0.0.1:{port}",
                                      args.flat_seconds, args.batch, args.window)
        elapsed = time.monotonic() - t
    finally:
        proc.terminate()
        proc.wait(30)
    flat = [r for chunk in res for r in chunk]
    acked = sum(r["acked"] for r in flat)
    rows, _ = bare_ingest.stored_counts(db_path)
    rate = acked / elapsed
    return (f"bare reference (FastAPI + orjson + one multi-row INSERT, SQLite WAL synchronous=FULL, ack after "
            f"commit, {args.server_workers} worker process(es)): {acked} samples acked in {elapsed:.1f}s = "
            f"{rate:,.0f} samples/s, {rows} rows stored\n"
            f"bondline / bare reference: {bondline_rate:,.0f} / {rate:,.0f} = {bondline_rate / rate:.2f}")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--participants", default="1000,2000,3000,4000,6000,8000",
                    help="comma list of N for the 1 Hz phase (stops at the first step not held)")
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
    ap.add_argument("--seed", type=int, default=random.randrange(2**32), help="variation of the replayed samples")
    ap.add_argument("--synthetic", action="store_true", help="make_sample()'s one sample instead of the recorded call")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare reference")
    ap.add_argument("--haproxy", action="store_true",
                    help="run --server-workers separate one-process nodes behind HAProxy (docs/deploy.md)")
    ap.add_argument("--pg", help="PostgreSQL server URL to create a scratch database on (default: SQLite)")
    args = ap.parse_args()

    replay = None if args.synthetic else Replay(args.seed)
    ingest_load.REPLAY = replay
    if args.no_compression:
        ingest_load.COMPRESSION = None
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
    # The per-connection rate limit is policy, not capacity: lift it here.
    env = {"BONDLINE_RATE_MESSAGES_PER_S": "100000", "BONDLINE_RATE_BURST": "100000",
           "BONDLINE_SQLITE_SYNCHRONOUS": args.sqlite_synchronous}
    nodes: list[ServerProcess] = []
    proxy: HAProxy | None = None
    if args.haproxy:
        # Separate one-process nodes behind HAProxy, configured as
        # docs/deploy.md shows (tests/support/haproxy.py); the first migrates.
        for i in range(args.server_workers):
            nodes.append(ServerProcess(db_url=db_url, log_path=tmp / f"node{i}.log", env=env,
                                       args=["--workers", "1"]).start())
        proxy = HAProxy([n.port for n in nodes], tmp).start()
    else:
        nodes.append(ServerProcess(db_url=db_url, log_path=tmp / "server.log", env=env,
                                   args=["--workers", str(args.server_workers)]).start())
    server = nodes[0]
    ws_base = proxy.base.replace("http://", "ws://") if proxy else server.ws
    try:
        if proxy is not None:
            print(f"{len(nodes)} nodes behind HAProxy at {proxy.base}", flush=True)
        store = "postgresql" if args.pg else "sqlite synchronous=" + args.sqlite_synchronous
        print(f"store: {store}  server pid {server.proc.pid if server.proc else '?'}, "
              f"{args.server_workers} {'node' if proxy else 'worker'} process(es)"
              f"  cores: {os.cpu_count()}  websocket compression: {ingest_load.COMPRESSION or 'off'}", flush=True)
        print(f"cpu reference: {reference_ms:.1f} ms for {CPU_REFERENCE} (best of 5)", flush=True)
        if replay is not None:
            print(f"samples: recorded Chromium call, varied with seed {args.seed} (replay with --seed "
                  f"{args.seed}), mean {replay.mean_bytes():.0f} bytes", flush=True)
        else:
            one = len(ingest_load.batch_json(range(1), 0))
            print(f"samples: synthetic, {one} bytes per 1-sample batch", flush=True)
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
            sampler = _CpuSampler(nodes)
            sampler.start()
            res = ingest_load.run_workers(ingest_load.hz_worker, chunks, ws_base, args.hz_seconds, args.ramp, n)
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
            if not ok:
                break  # a larger step will not hold either
        print(f"largest 1 Hz step held (ack p99 < 250 ms, nothing lost), steps up to {max(steps, default=0)}: "
              f"{held}", flush=True)
        # Flat out.
        flat_tokens = tokens[: args.flat_connections]
        chunks = [flat_tokens[i:: args.workers] for i in range(args.workers)]
        t = time.monotonic()
        res = ingest_load.run_workers(ingest_load.flat_worker, chunks, ws_base, args.flat_seconds, args.batch,
                                      args.window)
        elapsed = time.monotonic() - t
        flat = [r for chunk in res for r in chunk]
        acked = sum(r["acked"] for r in flat)
        dup = sum(r["dup"] for r in flat)
        total_sent += sum(r["sent"] for r in flat)
        rate = acked / elapsed
        print(f"flat out: {args.flat_connections} connections x {args.batch}-sample batches, window "
              f"{args.window}: {acked} samples acked in {elapsed:.1f}s = {rate:,.0f} samples/s, "
              f"duplicates {dup}", flush=True)

        if not args.no_bare:
            print(bare_phase(args, chunks, rate, tmp), flush=True)
        print(readback(server, db_url), flush=True)
        total_sent += 7200
        rows, distinct = stored_counts(db_url)
        print(f"store check: sent {total_sent} distinct samples, stored {rows} rows, {distinct} distinct: "
              f"lost {total_sent - distinct}, duplicates {rows - distinct}", flush=True)
        print(f"participants_held_at_1hz: {held}")
        print(f"ingest_samples_per_s: {rate:.0f}")
    finally:
        if proxy is not None:
            proxy.stop()
        for node in nodes:
            node.stop()
        if args.pg:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
