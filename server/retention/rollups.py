"""Rolling sessions up when they end: at the API's "end", and by a sweep
for sessions that never said so (idle for ``rollup_idle_hours``) or that
received samples after their roll-up was made (it is then rebuilt).

Each session is rolled up in its own transaction, so a crash loses at most
the one in progress, and a rerun redoes it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection, Engine

from server.analysis import rollup
from server.analysis.quality import compute
from server.analysis.series import load_session
from server.config import Settings
from server.sessions.tokens import token_expiry_ms
from server.store import tables as t
from server.store.retention import sample_stats

log = logging.getLogger("bondline.retention")


def roll_up(conn: Connection, session_id: int, settings: Settings, now_ms: int) -> bool:
    """Write the session's roll-up from its raw samples unless the stored one
    is current; returns whether it wrote. No-op for a pruned session."""
    cfg = settings.analysis
    s = conn.execute(
        select(t.session.c.created_ms, t.session.c.ended_ms).where(t.session.c.id == session_id)
    ).one()
    final = now_ms >= token_expiry_ms(settings, s.created_ms, s.ended_ms)
    have = conn.execute(
        select(t.session_rollup.c.sample_count, t.session_rollup.c.last_received_ms, t.session_rollup.c.final,
               t.session_rollup.c.config_hash, t.session_rollup.c.samples_pruned_ms)
        .where(t.session_rollup.c.session_id == session_id)
    ).first()
    if have is not None:
        if have.samples_pruned_ms is not None:
            return False
        if (have.final == final and have.config_hash == cfg.fingerprint()
                and (have.sample_count, have.last_received_ms) == sample_stats(conn, session_id)):
            return False
    data = load_session(conn, session_id)
    q = compute(data, cfg, conn)  # with conn: whose connection is read from the raw samples while they exist
    rollup.write(conn, rollup.build(data, q.summary, q.events, cfg, now_ms=now_ms, final=final,
                                    attributions=q.attributions))
    return True


def sessions_due(conn: Connection, settings: Settings, now_ms: int) -> list[int]:
    """Sessions to (re)roll: ended, or idle since ``rollup_idle_hours``, and
    without a final roll-up. A session still receiving is left alone."""
    idle_since = now_ms - int(settings.rollup_idle_hours * 3_600_000)
    s, r = t.session.c, t.session_rollup.c
    newest = (
        select(func.max(t.sample.c.received_ms))
        .join(t.participant, t.participant.c.id == t.sample.c.participant_id)
        .where(t.participant.c.session_id == s.id)
        .scalar_subquery()
    )
    q = (
        select(s.id)
        .outerjoin(t.session_rollup, r.session_id == s.id)
        .where(or_(r.session_id.is_(None), r.final.is_(False)))
        # created_ms first: a session younger than the idle time is not
        # idle, and its samples need not be scanned to say so.
        .where(or_(s.ended_ms.is_not(None),
                   and_(s.created_ms < idle_since, func.coalesce(newest, s.created_ms) < idle_since)))
        .order_by(s.id)
    )
    return [int(sid) for (sid,) in conn.execute(q)]


def sweep(engine: Engine, settings: Settings, now_ms: int, *, pause_s: float = 0.0) -> int:
    """Roll up every session that is due; returns how many were written."""
    with engine.connect() as conn:
        due = sessions_due(conn, settings, now_ms)
    written = 0
    for sid in due:
        with engine.begin() as conn:
            wrote = roll_up(conn, sid, settings, now_ms)
        written += wrote
        if wrote and pause_s:
            time.sleep(pause_s)
    if written:
        log.info("rolled up %d sessions", written)
    return written


def pruned_at(conn: Connection, session_id: int) -> int | None:
    """When the session's raw samples were deleted (None: they are kept)."""
    value = conn.execute(
        select(t.session_rollup.c.samples_pruned_ms).where(t.session_rollup.c.session_id == session_id)
    ).scalar()
    return None if value is None else int(value)


def minute_rows(conn: Connection, session_id: int) -> list[dict[str, Any]]:
    """The session's per-minute roll-up rows, with each participant's role."""
    q = (
        select(t.participant.c.role, t.minute_rollup)
        .join(t.participant, t.participant.c.id == t.minute_rollup.c.participant_id)
        .where(t.minute_rollup.c.session_id == session_id)
        .order_by(t.participant.c.role, t.minute_rollup.c.minute)
    )
    return [{str(k): v for k, v in r._asdict().items() if k not in ("participant_id", "session_id")}
            for r in conn.execute(q)]
