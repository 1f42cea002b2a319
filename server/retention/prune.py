"""``bondline db prune`` and the scheduled run inside ``serve``: roll up
what is due, then delete the raw samples of sessions that ended more than
``sample_retention_days`` ago.

Idempotent and crash-safe: each session is rolled up, checked and pruned in
one transaction (server/store/retention.py), so a run killed at any point
leaves each session whole, either with its raw samples or pruned with its
roll-up; the next run carries on where it stopped.

One run at a time per PostgreSQL database: several ``serve`` nodes each run
the schedule, and without the lock they would all roll up and prune the
same sessions at once (safe, but each would do the whole work and contend
for the same rows). A run that cannot take ``PRUNE_LOCK_KEY`` skips.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine

from server.config import Settings
from server.retention.rollups import roll_up, sweep
from server.store.partitions import drop_partition_if, is_partitioned, partitions
from server.store.retention import drop_samples, prunable_sessions
from server.timeutil import now_ms as wall_ms

log = logging.getLogger("bondline.retention")
DAY_MS = 86_400_000
# The session-level advisory lock a PostgreSQL prune run holds: "BondLine" in
# ASCII as a bigint. Outside int4, so it can never equal the hashtext() keys
# the transaction-level locks elsewhere use (server/store/partitions.py,
# server/accounts/logins.py).
PRUNE_LOCK_KEY = 0x426F6E644C696E65


@dataclass
class PruneReport:
    rolled_up: int = 0
    sessions_pruned: int = 0
    samples_deleted: int = 0
    # True when another run (another node) held the lock and this one did nothing.
    skipped: bool = False


@contextmanager
def _sole_runner(engine: Engine) -> Iterator[bool]:
    """Yield whether this run may prune. On PostgreSQL, a session-level
    advisory lock on a connection of its own, held for the whole run (a
    transaction-level lock would end with the first session's commit); if
    the process dies, PostgreSQL drops the lock with the connection. SQLite
    serves one node, so there is nobody to keep out."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PRUNE_LOCK_KEY}).scalar())
        # Autocommit so the idle lock connection does not sit in an open
        # transaction (holding back vacuum) for the length of the run.
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PRUNE_LOCK_KEY})
                conn.commit()


def _drop_partitions(engine: Engine, settings: Settings, now: int, cutoff: int, report: PruneReport,
                     pause_s: float) -> None:
    """On PostgreSQL, whole past weeks of samples go by dropping their
    partition (server/store/partitions.py) when every session with samples
    in it may be pruned; the rest is pruned session by session below. One
    transaction a week: its roll-ups, the drop and the marks commit together."""
    with engine.connect() as conn:
        if not is_partitioned(conn):
            return
        # A dropped week must never be written to again: only weeks in which
        # every participant's ingest token has expired.
        latest = min(cutoff, now - int(settings.token_max_age_days * DAY_MS))
        weeks = [w for w in partitions(conn) if w[2] <= latest]
        # Sessions only ever become prunable, never stop being: read once.
        may = set(prunable_sessions(conn, cutoff, limit=1_000_000)) if weeks else set()
    for name, lo, hi in weeks:
        with engine.begin() as conn:

            def may_go(sessions: frozenset[int]) -> bool:
                if not sessions <= may:
                    return False
                for sid in sessions:
                    # As below: a sample that slipped in after the roll-up is rolled up with it.
                    report.rolled_up += roll_up(conn, sid, settings, now)  # noqa: B023 - called at once
                return True

            dropped = drop_partition_if(conn, name, lo, hi, may_go)
            if dropped is None:
                continue
            deleted = dropped.samples
            for sid in dropped.sessions:
                # Marks it pruned; deletes what it had in other weeks, if anything.
                deleted += drop_samples(conn, sid, now)
        report.samples_deleted += deleted
        report.sessions_pruned += len(dropped.sessions)
        log.info("dropped sample partition %s: %d sessions, %d samples", name, len(dropped.sessions), deleted)
        if pause_s:
            time.sleep(pause_s)


def prune(engine: Engine, settings: Settings, *, now_ms: int | None = None, days: float | None = None,
          pause_s: float = 0.0) -> PruneReport:
    """Roll up, then prune, unless another run on the same PostgreSQL
    database is under way (then nothing, and ``skipped``). ``pause_s``
    between sessions lets the ingest writer take the database lock in
    between on a busy SQLite store."""
    with _sole_runner(engine) as alone:
        if not alone:
            log.info("another node is pruning (advisory lock %d held); this run skipped", PRUNE_LOCK_KEY)
            return PruneReport(skipped=True)
        return _prune(engine, settings, now_ms, days, pause_s)


def _prune(engine: Engine, settings: Settings, now_ms: int | None, days: float | None,
           pause_s: float) -> PruneReport:
    now = wall_ms() if now_ms is None else now_ms
    keep_days = settings.sample_retention_days if days is None else days
    report = PruneReport(rolled_up=sweep(engine, settings, now, pause_s=pause_s))
    cutoff = now - int(keep_days * DAY_MS)
    _drop_partitions(engine, settings, now, cutoff, report, pause_s)
    while True:
        with engine.connect() as conn:
            batch = prunable_sessions(conn, cutoff, limit=500)
        if not batch:
            break
        for sid in batch:
            with engine.begin() as conn:
                # A sample that slipped in after the roll-up (the writer's
                # last group before the token expired) is rolled up with it.
                report.rolled_up += roll_up(conn, sid, settings, now)
                report.samples_deleted += drop_samples(conn, sid, now)
            report.sessions_pruned += 1
            if pause_s:
                time.sleep(pause_s)
    if report.sessions_pruned:
        log.info("pruned raw samples of %d sessions (%d samples); %d roll-ups written",
                 report.sessions_pruned, report.samples_deleted, report.rolled_up)
    return report
