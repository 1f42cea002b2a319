"""Pruning on PostgreSQL drops whole weeks of samples (server/store/partitions.py)
when every session with samples in the week may lose them, prunes the rest
session by session, and ends in the same state as row-by-row pruning: the
sessions ended before the cut-off have no samples and a pruned roll-up, the
others keep every sample. Demo caseload drawn from the run's fuzz seed."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from server.config import Settings, normalise_database_url
from server.demo.build import build_demo
from server.retention.prune import DAY_MS, PRUNE_LOCK_KEY, prune
from server.store import tables as t
from server.store.db import make_engine
from server.store.partitions import partitions, week_start_ms
from tests.conftest import fresh_pg_database
from tests.support.fuzz import FUZZ_SEED, SEED_ENV

DEMO_NOW = 1_790_000_000_000


@pytest.fixture
def demo_pg() -> Iterator[tuple[Engine, Settings]]:
    with fresh_pg_database() as url:
        print(f"demo caseload seed {FUZZ_SEED} (replay with {SEED_ENV}={FUZZ_SEED})")
        build_demo(url, FUZZ_SEED % 100_000, clinicians=1, clients_per_clinician=3, sessions=(5, 6),
                   duration_s=(300, 420), now_ms=DEMO_NOW)
        engine = make_engine(normalise_database_url(url))
        try:
            yield engine, Settings(database_url=url)
        finally:
            engine.dispose()


def _per_session(engine: Engine) -> dict[int, tuple[int, int, int | None]]:
    """session -> (ended_ms, samples, samples_pruned_ms)."""
    with engine.connect() as conn:
        n = dict(conn.execute(select(t.participant.c.session_id, func.count()).select_from(t.sample)
                              .join(t.participant).group_by(t.participant.c.session_id)).all())
        rows = conn.execute(select(t.session.c.id, t.session.c.ended_ms, t.session_rollup.c.samples_pruned_ms)
                            .outerjoin(t.session_rollup, t.session_rollup.c.session_id == t.session.c.id)).all()
    return {sid: (int(ended), int(n.get(sid, 0)), pruned) for sid, ended, pruned in rows}


def test_prune_drops_whole_weeks_and_ends_as_row_by_row_pruning_would(demo_pg: tuple[Engine, Settings]) -> None:
    engine, settings = demo_pg
    before = _per_session(engine)
    with engine.connect() as conn:
        weeks_before = partitions(conn)
        created = dict(conn.execute(select(t.session.c.id, t.session.c.created_ms)).all())
    ends = sorted(e for e, _, _ in before.values())
    # A cut-off between the middle two sessions' ends, 30 days back from "now".
    mid = (ends[len(ends) // 2 - 1] + ends[len(ends) // 2]) // 2
    now = mid + 30 * DAY_MS
    report = prune(engine, settings, now_ms=now, days=30)
    after = _per_session(engine)
    gone = {sid for sid, (ended, _, _) in before.items() if ended < mid}
    assert report.sessions_pruned == len(gone)
    assert report.samples_deleted == sum(before[sid][1] for sid in gone)
    for sid, (_ended, n, _) in before.items():
        _, left, pruned = after[sid]
        assert (left, pruned is not None) == ((0, True) if sid in gone else (n, False)), sid
    # Whole weeks went: each week whose sessions all ended before the
    # cut-off (and whose tokens have all expired) is no longer a partition.
    latest = min(mid, now - int(settings.token_max_age_days * DAY_MS))
    whole = {week_start_ms(created[sid]) for sid in gone} - {week_start_ms(created[sid]) for sid in before
                                                               if sid not in gone}
    whole = {w for w in whole if w + 7 * DAY_MS <= latest}
    with engine.connect() as conn:
        left_weeks = {lo for _, lo, _ in partitions(conn)}
    assert whole, f"no whole week to drop in this caseload: {sorted(ends)}"
    assert not whole & left_weeks
    assert len(left_weeks) < len(weeks_before)
    # Idempotent.
    again = prune(engine, settings, now_ms=now, days=30)
    assert (again.sessions_pruned, again.samples_deleted) == (0, 0)


def test_a_run_skips_while_another_node_holds_the_prune_lock(demo_pg: tuple[Engine, Settings],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """Several nodes on one PostgreSQL: the one that takes the advisory lock
    prunes, the others skip. The other node is a plain connection of its own
    (another process's session as far as PostgreSQL knows)."""
    engine, settings = demo_pg
    before = _per_session(engine)
    ends = sorted(e for e, _, _ in before.values())
    now = ends[-1] + 31 * DAY_MS
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (PRUNE_LOCK_KEY,)).fetchone() == (True,)
        with caplog.at_level(logging.INFO, logger="bondline.retention"):
            held = prune(engine, settings, now_ms=now, days=30)
        assert held.skipped
        assert (held.rolled_up, held.sessions_pruned, held.samples_deleted) == (0, 0, 0)
        assert "another node is pruning" in caplog.text
        assert _per_session(engine) == before
        other.execute("SELECT pg_advisory_unlock(%s)", (PRUNE_LOCK_KEY,))
        report = prune(engine, settings, now_ms=now, days=30)
        assert not report.skipped
        assert report.sessions_pruned == len(before)
        assert all(n == 0 and pruned is not None for _, n, pruned in _per_session(engine).values())
        # The run let its lock go: the other node can take it now.
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (PRUNE_LOCK_KEY,)).fetchone() == (True,)
