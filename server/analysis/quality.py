"""Per-session quality, computed on demand and cached in ``session_quality``.

Disruption events are derived, never stored as ``event`` rows: they are
recomputed from the samples whenever the cache row is missing, was made
with other thresholds (config hash), or may be out of date. A row made
after the session's ingest tokens expired is final (no sample can arrive
any more), so course and caseload views over hundreds of sessions read
cached rows and do not rescan millions of samples.

A session whose raw samples were pruned (server/retention/) is read from
its roll-up instead: the summary and events computed from the raw samples
before they went, whatever the thresholds are now (docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from server.analysis import legs as leg_figures
from server.analysis import rollup
from server.analysis.attribution import Attribution, attribute_all, side_minutes
from server.analysis.events import Disruption, detect_all
from server.analysis.series import SessionData, load_session
from server.analysis.summary import SessionSummary, summarise
from server.config import AnalysisConfig, Settings
from server.sessions.tokens import token_expiry_ms
from server.store import tables as t
from server.timeutil import now_ms


@dataclass
class SessionQuality:
    summary: SessionSummary
    events: list[Disruption]
    # One per event (server/analysis/attribution.py); empty when read from the cache.
    attributions: list[Attribution] = field(default_factory=list)


def compute(data: SessionData, cfg: AnalysisConfig, conn: Connection | None = None) -> SessionQuality:
    """Events, their attribution and the summary. Without ``conn`` the leg
    figures in the samples' JSON are not read, and attribution falls back to
    what topology alone allows ("between the two" / "undetermined")."""
    events = detect_all(data, cfg)
    summary = summarise(data, cfg, events)
    roles = {p.participant_id: p.role for p in data.participants}
    # After each event, as far as its receiver reports may still arrive (report_lag_ms).
    after = int(max(cfg.merge_gap_ms, cfg.report_lag_ms))
    windows = [(e.start_ms - int(cfg.merge_gap_ms), e.end_ms + after) for e in events]
    by_pid = leg_figures.load(conn, roles, windows) if conn is not None and events else {}
    attrs = attribute_all(events, {s.role: s for s in by_pid.values()}, data.events, cfg)
    if summary.t0_ms is not None and summary.minutes:
        summary.side_minutes = side_minutes(events, attrs, summary.t0_ms, summary.minutes)
    return SessionQuality(summary, events, attrs)


def _events_from_json(raw: str) -> list[Disruption]:
    return [
        Disruption(e["kind"], e["role"], e["participant_id"], e["direction"], e["start_ms"], e["end_ms"],
                   e["severity"], e.get("frames_missing_ms"))
        for e in orjson.loads(raw)
    ]


def _upsert(conn: Connection, values: dict[str, Any]) -> None:
    name = conn.dialect.name
    ins: Any = postgresql.insert(t.session_quality) if name == "postgresql" else sqlite.insert(t.session_quality)
    update = {k: v for k, v in values.items() if k != "session_id"}
    conn.execute(ins.values(**values).on_conflict_do_update(index_elements=["session_id"], set_=update))


def store(conn: Connection, data: SessionData, q: SessionQuality, cfg: AnalysisConfig, settings: Settings,
          created_ms: int, ended_ms: int | None) -> None:
    now = now_ms()
    _upsert(
        conn,
        {
            "session_id": data.session_id,
            "config_hash": cfg.fingerprint(),
            "sample_count": data.sample_count,
            "last_received_ms": data.last_received_ms,
            "computed_ms": now,
            "final": now >= token_expiry_ms(settings, created_ms, ended_ms),
            "minutes": q.summary.minutes,
            "disrupted_minutes": q.summary.disrupted_minutes,
            "summary": orjson.dumps(q.summary.as_dict()).decode(),
            "events": orjson.dumps([e.as_dict() for e in q.events]).decode(),
        },
    )


def for_session(conn: Connection, session_id: int, cfg: AnalysisConfig,
                settings: Settings) -> tuple[SessionData, SessionQuality]:
    """Full data plus quality for one session (the session report). Always
    reads the samples (the charts need them); refreshes the cache row.
    A pruned session comes from its roll-up (per-minute series for the charts)."""
    if rollup.pruned_ids(conn, [session_id]):
        summary, events = rollup.read_quality(conn, session_id)
        return rollup.read_data(conn, session_id), SessionQuality(summary, events,
                                                                  rollup.read_attributions(conn, session_id))
    data = load_session(conn, session_id)
    q = compute(data, cfg, conn)
    row = conn.execute(select(t.session.c.created_ms, t.session.c.ended_ms).where(t.session.c.id == session_id)).one()
    cached = conn.execute(
        select(t.session_quality.c.config_hash, t.session_quality.c.sample_count,
               t.session_quality.c.last_received_ms, t.session_quality.c.final)
        .where(t.session_quality.c.session_id == session_id)
    ).first()
    fresh = (
        cached is not None and cached.final and cached.config_hash == cfg.fingerprint()
        and cached.sample_count == data.sample_count and cached.last_received_ms == data.last_received_ms
    )
    if not fresh:
        store(conn, data, q, cfg, settings, row.created_ms, row.ended_ms)
    return data, q


def for_sessions(conn: Connection, session_ids: list[int], cfg: AnalysisConfig,
                 settings: Settings) -> dict[int, SessionQuality]:
    """Quality of many sessions: final cached rows as they are, the rest recomputed."""
    out: dict[int, SessionQuality] = {}
    if not session_ids:
        return out
    fp = cfg.fingerprint()
    for chunk in _chunks(session_ids, 500):
        for r in conn.execute(
            select(t.session_quality.c.session_id, t.session_quality.c.summary, t.session_quality.c.events)
            .where(t.session_quality.c.session_id.in_(chunk), t.session_quality.c.final.is_(True),
                   t.session_quality.c.config_hash == fp)
        ):
            out[int(r.session_id)] = SessionQuality(
                SessionSummary.from_dict(orjson.loads(r.summary)), _events_from_json(r.events)
            )
    missing = [sid for sid in session_ids if sid not in out]
    for sid in sorted(rollup.pruned_ids(conn, missing)):
        out[sid] = SessionQuality(*rollup.read_quality(conn, sid))
    missing = [sid for sid in missing if sid not in out]
    if missing:
        times = {
            int(r.id): (int(r.created_ms), r.ended_ms)
            for chunk in _chunks(missing, 500)
            for r in conn.execute(
                select(t.session.c.id, t.session.c.created_ms, t.session.c.ended_ms).where(t.session.c.id.in_(chunk))
            )
        }
        for sid in missing:
            if sid not in times:
                continue
            data = load_session(conn, sid)
            q = compute(data, cfg, conn)
            store(conn, data, q, cfg, settings, *times[sid])
            out[sid] = q
    return out


def invalidate(conn: Connection, session_id: int) -> None:
    """Forget a session's cached quality (for anything that adds samples late)."""
    conn.execute(delete(t.session_quality).where(t.session_quality.c.session_id == session_id))


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
