"""Soak: many participants at 1 Hz against one server for a long time.

Starts a real ``bondline serve`` on a fresh database, creates sessions
through the API (two participants each), then streams one sample a second
per participant through the real Python ingest client (plugin/uplink.py),
from several load processes. It prints the server's resident memory at the
start (once every participant is connected) and at the end, the peak, the
trend over the run, and the loss: samples submitted against rows stored.

    .venv/bin/python bench/soak.py                      # 500 participants, 10 minutes
    .venv/bin/python bench/soak.py --minutes 1 --participants 100
    .venv/bin/python bench/soak.py --pg postgresql://postgres@127.0.0.1:5432/test

Last lines: ``soak_rss_start_mb``, ``soak_rss_end_mb``, ``soak_lost``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import make_sample, stored_counts  # noqa: E402
from plugin.uplink import Uplink  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402


async def _participant(base: str, token: str, seconds: float, start_at: float, ready: list[int]) -> dict[str, int]:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    up = Uplink(base, token, batch_max=20, http_fallback=True)
    await up.start(30.0)
    ready[0] += 1
    # Spread participants over the second, as real sessions are.
    await asyncio.sleep((hash(token) % 1000) / 1000)
    next_t = time.monotonic()
    end = next_t + seconds
    seq = 0
    while next_t < end:
        up.submit(make_sample(seq, "python"))
        seq += 1
        next_t += 1.0
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    delivered = await up.close(60.0)
    st = up.stats
    return {"submitted": seq, "acked": st.acked, "dropped": st.dropped, "rejected": st.rejected,
            "undelivered": 0 if delivered else up.outstanding, "connects": up.connects}


def _worker(base: str, tokens: list[str], seconds: float, ramp_s: float, out: Any, ready_q: Any) -> None:
    async def run() -> list[dict[str, int]]:
        ready = [0]
        t0 = time.monotonic() + 0.5
        tasks = [asyncio.create_task(_participant(base, tok, seconds, t0 + i * ramp_s / max(len(tokens), 1), ready))
                 for i, tok in enumerate(tokens)]
        while ready[0] < len(tokens) and not all(t.done() for t in tasks):
            await asyncio.sleep(0.2)
        ready_q.put(len(tokens))
        return await asyncio.gather(*tasks)

    out.put(asyncio.run(run()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--participants", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=10.0, help="how long each participant streams")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--pg", help="PostgreSQL admin URL: run on a fresh database created there")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between memory readings")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bondline-soak-"))
    pg_name = None
    if args.pg:
        import psycopg

        pg_name = "bl_soak_" + uuid.uuid4().hex[:10]
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        db_url = args.pg.rsplit("/", 1)[0] + "/" + pg_name
    else:
        db_url = str(tmp / "soak.db")
    server = ServerProcess(db_url=db_url, log_path=tmp / "server.log")
    server.start()
    try:
        assert server.proc is not None
        proc = psutil.Process(server.proc.pid)
        sessions = (args.participants + 1) // 2
        tokens: list[str] = []
        with httpx.Client(timeout=30) as c:
            for i in range(sessions):
                r = c.post(server.base + "/api/v1/sessions", headers=server.admin_headers,
                           json={"clinician": f"soak{i % 20}@example.org", "client_code": f"S-{i:05d}"})
                r.raise_for_status()
                tokens.extend(p["token"] for p in r.json()["participants"])
        tokens = tokens[: args.participants]
        seconds = args.minutes * 60
        ramp_s = min(30.0, max(3.0, args.participants / 50))
        chunks = [tokens[i:: args.procs] for i in range(args.procs)]
        out: Any = mp.Queue()
        ready_q: Any = mp.Queue()
        workers = [mp.Process(target=_worker, args=(server.base, ch, seconds, ramp_s, out, ready_q)) for ch in chunks]
        t_start = time.monotonic()
        for w in workers:
            w.start()
        for _ in workers:
            ready_q.get(timeout=300)
        rss: list[tuple[float, float]] = []
        rss_start = proc.memory_info().rss / 2**20
        print(f"{args.participants} participants connected after {time.monotonic() - t_start:.0f}s; "
              f"server RSS {rss_start:.1f} MB; streaming for {args.minutes:g} min", flush=True)
        results: list[dict[str, int]] = []
        while len(results) < args.participants:
            try:
                results.extend(out.get(timeout=args.every))
            except Exception:  # noqa: BLE001 - queue.Empty: time for a memory reading
                pass
            now = time.monotonic() - t_start
            mb = proc.memory_info().rss / 2**20
            rss.append((now, mb))
            if not results:
                print(f"  t={now:5.0f}s  server RSS {mb:6.1f} MB  cpu {proc.cpu_percent():5.1f}%", flush=True)
        for w in workers:
            w.join(60)
        rss_end = proc.memory_info().rss / 2**20
        time.sleep(1.0)
        rows, distinct = stored_counts(db_url)
    finally:
        server.stop()
        if pg_name and args.pg:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')

    submitted = sum(r["submitted"] for r in results)
    acked = sum(r["acked"] for r in results)
    dropped = sum(r["dropped"] + r["rejected"] + r["undelivered"] for r in results)
    reconnects = sum(r["connects"] - 1 for r in results)
    steady = [mb for _, mb in rss]
    half = steady[len(steady) // 2:] or steady
    print(f"store: {'postgresql' if args.pg else 'sqlite'}; participants {args.participants}; "
          f"{args.minutes:g} min at 1 Hz; load from {args.procs} processes on this machine")
    print(f"submitted {submitted}, acked {acked}, stored rows {rows} ({distinct} distinct), "
          f"client-side dropped/undelivered {dropped}, reconnects {reconnects}")
    print(f"server RSS: start {rss_start:.1f} MB, end {rss_end:.1f} MB, peak {max(steady):.1f} MB, "
          f"second-half range {min(half):.1f}-{max(half):.1f} MB")
    print(f"soak_rss_start_mb: {rss_start:.1f}")
    print(f"soak_rss_end_mb: {rss_end:.1f}")
    print(f"soak_lost: {submitted - distinct}")
    print(f"soak_duplicates: {rows - distinct}")
    return 0 if submitted == distinct == rows else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
