"""``bondline db prune`` killed with SIGKILL, twice, at points drawn per run
(seed printed; replay with BONDLINE_FUZZ_SEED=N): once while it rolls
sessions up, once while it deletes samples. After each kill every session
is whole (all its raw samples, or none and its roll-up) and reads as it did
before; a rerun finishes the job, and one more changes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from server.analysis.quality import SessionQuality, for_sessions
from server.config import Settings, normalise_database_url
from server.demo.build import build_demo
from server.store import tables as t
from server.store.db import make_engine
from server.store.partitions import week_start_ms
from tests.support.fuzz import FUZZ_SEED, SEED_ENV
from tests.support.server import isolated_env

DEMO_NOW = 1_790_000_000_000
PAUSE_MS = 150


def _prune(db: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "db", "prune", "--db", db, "--pause-ms", str(PAUSE_MS)],
        env=isolated_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def _kill_when(proc: subprocess.Popen[bytes], engine: Engine, column: str, at_least: int) -> int:
    """SIGKILL ``proc`` once ``at_least`` roll-ups exist (column "rolled")
    or sessions are pruned ("pruned"); returns the count seen at the kill."""
    r = t.session_rollup.c
    where = r.session_id.is_not(None) if column == "rolled" else r.samples_pruned_ms.is_not(None)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            n = int(conn.execute(select(func.count()).select_from(t.session_rollup).where(where)).scalar_one())
        if n >= at_least:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            return n
        assert proc.poll() is None, f"prune ended before the kill point: {proc.stdout.read() if proc.stdout else ''!r}"
        time.sleep(0.01)
    raise AssertionError("prune made no progress")


def _state(engine: Engine, settings: Settings) -> tuple[dict[int, SessionQuality], dict[int, int], set[int]]:
    """Each session's report quality, raw sample count and whether it is pruned."""
    with engine.connect() as conn:
        ids = [int(i) for (i,) in conn.execute(select(t.session.c.id).order_by(t.session.c.id))]
        counts = {int(sid): int(n) for sid, n in conn.execute(
            select(t.participant.c.session_id, func.count()).select_from(t.sample)
            .join(t.participant, t.participant.c.id == t.sample.c.participant_id)
            .group_by(t.participant.c.session_id))}
        pruned = {int(s) for (s,) in conn.execute(
            select(t.session_rollup.c.session_id).where(t.session_rollup.c.samples_pruned_ms.is_not(None)))}
        # No cached summaries: what the reports read must come from samples or roll-ups.
        conn.execute(t.session_quality.delete())
        quality = for_sessions(conn, ids, settings.analysis, settings)
        conn.rollback()
    return quality, {sid: counts.get(sid, 0) for sid in ids}, pruned


def test_prune_killed_twice_loses_nothing_and_rerun_completes(db_url: str) -> None:
    rng = np.random.default_rng(FUZZ_SEED)
    print(f"kill points seed {FUZZ_SEED} (replay with {SEED_ENV}={FUZZ_SEED})")
    db = db_url
    build_demo(db, FUZZ_SEED % 100_000, clinicians=1, clients_per_clinician=4, sessions=(5, 5),
               duration_s=(600, 600), now_ms=DEMO_NOW)
    settings = Settings(database_url=db)
    engine = make_engine(normalise_database_url(db))
    try:
        before, counts, pruned = _state(engine, settings)
        n = len(before)
        assert n == 20 and not pruned and all(c == 1200 for c in counts.values())

        def check_whole() -> set[int]:
            quality, now_counts, now_pruned = _state(engine, settings)
            for sid in before:
                # Whole: all raw samples, or none and pruned; never in between.
                assert now_counts[sid] == (0 if sid in now_pruned else counts[sid]), sid
                assert quality[sid].summary == before[sid].summary, sid
                assert quality[sid].events == before[sid].events, sid
            return now_pruned

        k1 = int(rng.integers(1, n))
        print(f"kill 1 after {k1} roll-ups")
        seen = _kill_when(_prune(db), engine, "rolled", k1)
        assert k1 <= seen < n and check_whole() == set()

        k2 = int(rng.integers(1, n))
        if db.startswith("postgresql"):
            # PostgreSQL prunes a week (a partition dropped whole, with all
            # its sessions) per transaction: the kill falls between weeks.
            with engine.connect() as conn:
                weeks = Counter(week_start_ms(int(ms)) for ms, in conn.execute(
                    select(func.min(t.participant.c.created_ms)).group_by(t.participant.c.session_id)))
            between = [int(k) for k in np.cumsum([weeks[w] for w in sorted(weeks)])[:-1]]
            assert between, f"all {n} sessions in one week: no kill point between weeks"
            k2 = int(rng.choice(between))
        print(f"kill 2 after {k2} pruned sessions")
        seen = _kill_when(_prune(db), engine, "pruned", k2)
        done = check_whole()
        assert k2 <= len(done) < n

        out = subprocess.run([sys.executable, "-m", "server.cli", "db", "prune", "--db", db],
                             env=isolated_env(), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"deleted the raw samples of {n - len(done)} sessions" in out.stdout
        assert check_whole() == set(before)
        again = subprocess.run([sys.executable, "-m", "server.cli", "db", "prune", "--db", db],
                               env=isolated_env(), capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "rolled up 0 sessions; deleted the raw samples of 0 sessions" in again.stdout
        assert check_whole() == set(before)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(t.sample)).scalar_one() == 0
    finally:
        engine.dispose()
