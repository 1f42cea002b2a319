"""Deleting raw samples: the one place that does it.

Samples go per session, never per row: a session either still has all its
raw samples or none, and the same transaction that deletes them marks its
roll-up as pruned, so a crash (kill -9 included) at any point leaves every
session readable, from its samples or from its roll-up. Only sessions with
a final roll-up (their ingest tokens expired, so nothing can arrive any
more) whose end is older than the cut-off qualify.

On PostgreSQL a time-partitioned sample table could drop whole partitions
instead; callers only use ``prunable_sessions`` and ``drop_samples``.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, case, delete, func, select, update
from sqlalchemy.engine import Connection

from server.store import tables as t


def session_end_ms() -> ColumnElement[int]:
    """A session's end for retention: when it was ended, else its newest
    sample's receipt, else when it was created."""
    r, s = t.session_rollup.c, t.session.c
    return func.coalesce(s.ended_ms, case((r.last_received_ms > 0, r.last_received_ms), else_=None), s.created_ms)


def prunable_sessions(conn: Connection, cutoff_ms: int, limit: int = 10_000) -> list[int]:
    """Sessions whose raw samples may be deleted: a final roll-up, not yet
    pruned, ended before ``cutoff_ms``; oldest first."""
    r, s = t.session_rollup.c, t.session.c
    end = session_end_ms()
    q = (
        select(r.session_id)
        .join(t.session, s.id == r.session_id)
        .where(and_(r.final.is_(True), r.samples_pruned_ms.is_(None), end < cutoff_ms))
        .order_by(end, r.session_id)
        .limit(limit)
    )
    return [int(sid) for (sid,) in conn.execute(q)]


def sample_stats(conn: Connection, session_id: int) -> tuple[int, int]:
    """(count, newest receipt ms) of a session's raw samples: what its roll-up must match."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.max(t.sample.c.received_ms), 0))
        .select_from(t.sample)
        .join(t.participant, t.participant.c.id == t.sample.c.participant_id)
        .where(t.participant.c.session_id == session_id)
    ).one()
    return int(row[0]), int(row[1])


def drop_samples(conn: Connection, session_id: int, at_ms: int) -> int:
    """Delete one session's raw samples and mark its roll-up pruned, in the
    caller's transaction; returns how many samples went. Idempotent."""
    pids = select(t.participant.c.id).where(t.participant.c.session_id == session_id).scalar_subquery()
    deleted = conn.execute(delete(t.sample).where(t.sample.c.participant_id.in_(pids))).rowcount
    # A media server's raw statistics (server/sfu) go with the browsers' they are compared with.
    conn.execute(delete(t.sfu_stat).where(t.sfu_stat.c.participant_id.in_(pids)))
    marked = conn.execute(
        update(t.session_rollup)
        .where(t.session_rollup.c.session_id == session_id, t.session_rollup.c.samples_pruned_ms.is_(None))
        .values(samples_pruned_ms=at_ms)
    ).rowcount
    if deleted and not marked:
        # Never delete samples that no roll-up stands in for.
        raise RuntimeError(f"session {session_id} has no roll-up to keep; not pruning it")
    return int(deleted)
