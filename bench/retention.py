"""Retention: what pruning saves and how long it takes. Builds a demo
caseload (sessions long past the retention period), then runs the real
``bondline db prune`` code on it and prints the store before and after.

    .venv/bin/python bench/retention.py [--clients 4] [--sessions 5] [--minutes 50]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.config import Settings, normalise_database_url  # noqa: E402
from server.demo.build import build_demo  # noqa: E402
from server.retention.prune import prune  # noqa: E402
from server.store.db import make_engine  # noqa: E402

# The demo's planned "now": months before any real run, so every session is prunable.
DEMO_NOW = 1_790_000_000_000


def _compact_size(db: str) -> int:
    """File size once the WAL is folded in and free pages are dropped."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    finally:
        conn.close()
    return os.path.getsize(db)


def _rows(db: str, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--sessions", type=int, default=5, help="sessions per client")
    ap.add_argument("--minutes", type=int, default=50, help="length of each session")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "bondline.db")
        built = build_demo(db, 7, clinicians=1, clients_per_clinician=args.clients,
                           sessions=(args.sessions, args.sessions), duration_s=(args.minutes * 60,) * 2,
                           now_ms=DEMO_NOW)
        before = _compact_size(db)
        print(f"demo: {built.sessions} two-party sessions of {args.minutes} min, {built.samples} samples")
        print(f"before: {before / 1e6:.2f} MB")
        engine = make_engine(normalise_database_url(db))
        began = time.perf_counter()
        report = prune(engine, Settings(database_url=db))
        took = time.perf_counter() - began
        engine.dispose()
        after = _compact_size(db)
        print(f"prune: {report.rolled_up} roll-ups, {report.sessions_pruned} sessions pruned, "
              f"{report.samples_deleted} samples deleted in {took:.1f} s")
        print(f"after (VACUUM): {after / 1e6:.2f} MB ({100 * after / before:.2f} % of before)")
        for table in ("minute_rollup", "event_rollup", "session_rollup"):
            print(f"{table}: {_rows(db, table)} rows")
        print(f"load: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
