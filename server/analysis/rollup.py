"""A session's roll-up: what the reports need once its raw samples are gone.

Built from the raw samples when a session ends (server/retention/): the
session's summary and disruption events exactly as computed from the raw
samples, each event with the evidence that made it, and per participant and
minute the headline figures as median, 95th percentile and count, plus the
minute's no-media time and whether a disruption touched it. Reading a
pruned session back gives the same summary, verdict, events and disrupted
minutes as the raw samples gave; the timeline charts are drawn from the
per-minute medians (docs/operations.md, "What is kept").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from server.analysis.attribution import Attribution
from server.analysis.events import Disruption
from server.analysis.series import METRICS, ParticipantSeries, SessionData, from_array
from server.analysis.summary import MINUTE_MS, SessionSummary
from server.config import AnalysisConfig
from server.store import tables as t
from server.store.tables import ROLLUP_METRICS

# The sample column that is each event's evidence, and the threshold it is read against.
EVIDENCE_METRIC = {
    "video_freeze": "freeze_ms_in",
    "audio_dropout": "concealed_ratio_in",
    "loss_burst": "loss_in",
    "latency_spike": "rtt_ms",
}


def _threshold(kind: str, cfg: AnalysisConfig) -> float:
    return {
        "video_freeze": 0.0,
        "audio_dropout": cfg.audio_concealed_ratio,
        "loss_burst": cfg.loss_fraction,
        "latency_spike": cfg.rtt_ms,
    }[kind]


def _stat(v: np.ndarray, how: str) -> float | None:
    if v.size == 0:
        return None
    return float(np.median(v)) if how == "median" else float(np.percentile(v, 95))


def minute_rows(session_id: int, s: ParticipantSeries, t0_ms: int, n: int,
                events: list[Disruption]) -> list[dict[str, Any]]:
    """One row per minute 0..n-1 of the session's axis for this participant."""
    minute = (s.t_ms - t0_ms) // MINUTE_MS
    loss = s.col("loss_in")
    mine = [e for e in events if e.participant_id == s.participant_id]
    rows = []
    for m in range(n):
        sel = minute == m
        start = t0_ms + m * MINUTE_MS
        row: dict[str, Any] = {
            "participant_id": s.participant_id, "minute": m, "session_id": session_id, "t_ms": start,
            "samples": int(sel.sum()), "covered_ms": int(s.interval_ms[sel].sum()),
            # No inbound packets were counted (loss is null): no media received.
            "no_media_ms": int(s.interval_ms[sel & np.isnan(loss)].sum()),
            "disrupted": any(e.start_ms < start + MINUTE_MS and max(e.end_ms, e.start_ms + 1) > start for e in mine),
        }
        freeze = s.col("freeze_ms_in")[sel]
        freeze = freeze[~np.isnan(freeze)]
        row["freeze_total_ms"] = float(freeze.sum()) if freeze.size else None
        for name in ROLLUP_METRICS:
            v = s.col(name)[sel]
            v = v[~np.isnan(v)]
            row[f"{name}_median"] = _stat(v, "median")
            row[f"{name}_p95"] = _stat(v, "p95")
            row[f"{name}_n"] = int(v.size)
        rows.append(row)
    return rows


def evidence(e: Disruption, data: SessionData, cfg: AnalysisConfig) -> dict[str, Any]:
    """What the raw samples (or connection events) showed during the event."""
    out: dict[str, Any] = {"config_hash": cfg.fingerprint()}
    metric = EVIDENCE_METRIC.get(e.kind)
    if metric is None:
        out["connection_events"] = [
            {"kind": r.kind, "origin": r.origin, "t_ms": r.t_ms}
            for r in data.events
            if r.participant_id == e.participant_id and e.start_ms - 1000 <= r.t_ms <= e.end_ms + 1000
        ]
        return out
    s = next((p for p in data.participants if p.participant_id == e.participant_id), None)
    if s is None:
        return out
    sel = (s.end_ms > e.start_ms) & (s.t_ms < e.end_ms)
    v = s.col(metric)[sel]
    v = v[~np.isnan(v)]
    thr = _threshold(e.kind, cfg)
    out.update({
        "metric": metric, "threshold": thr, "samples": int(sel.sum()), "crossing": int((v > thr).sum()),
        "max": float(v.max()) if v.size else None, "mean": float(v.mean()) if v.size else None,
        "first_sample_ms": int(s.t_ms[sel][0]) if sel.any() else None,
        "last_sample_ms": int(s.t_ms[sel][-1]) if sel.any() else None,
    })
    return out


@dataclass
class Rollup:
    session: dict[str, Any]
    minutes: list[dict[str, Any]]
    events: list[dict[str, Any]]


def build(data: SessionData, summary: SessionSummary, events: list[Disruption], cfg: AnalysisConfig, *,
          now_ms: int, final: bool, attributions: list[Attribution] | None = None) -> Rollup:
    """The roll-up of a session from its raw samples and their quality; each
    event's attribution (whose connection) is kept with its evidence."""
    attrs = attributions if attributions is not None and len(attributions) == len(events) else None
    t0, n = summary.t0_ms, summary.minutes
    minutes: list[dict[str, Any]] = []
    if t0 is not None:
        for s in data.participants:
            if len(s):
                minutes += minute_rows(data.session_id, s, t0, n, events)
    event_rows = [
        {"session_id": data.session_id, "participant_id": e.participant_id, "role": e.role, "kind": e.kind,
         "direction": e.direction, "start_ms": e.start_ms, "end_ms": e.end_ms, "severity": e.severity,
         "evidence": orjson.dumps({**evidence(e, data, cfg),
                                   **({"frames_missing_ms": e.frames_missing_ms}
                                      if e.frames_missing_ms is not None else {}),
                                   **({"attribution": attrs[i].as_dict()} if attrs is not None else {})}).decode()}
        for i, e in enumerate(events)
    ]
    session = {
        "session_id": data.session_id, "config_hash": cfg.fingerprint(), "sample_count": data.sample_count,
        "last_received_ms": data.last_received_ms, "rolled_ms": now_ms, "final": final, "t0_ms": t0,
        "t1_ms": data.t1_ms, "summary": orjson.dumps(summary.as_dict()).decode(), "samples_pruned_ms": None,
    }
    return Rollup(session, minutes, event_rows)


def write(conn: Connection, r: Rollup) -> None:
    """Replace the session's roll-up (caller's transaction). Refuses a
    session whose samples were pruned: its roll-up is all that is left."""
    sid = r.session["session_id"]
    pruned = conn.execute(
        select(t.session_rollup.c.samples_pruned_ms).where(t.session_rollup.c.session_id == sid)
    ).scalar()
    if pruned is not None:
        raise ValueError(f"session {sid}: raw samples were pruned; its roll-up cannot be rebuilt")
    conn.execute(delete(t.minute_rollup).where(t.minute_rollup.c.session_id == sid))
    conn.execute(delete(t.event_rollup).where(t.event_rollup.c.session_id == sid))
    ins: Any = postgresql.insert(t.session_rollup) if conn.dialect.name == "postgresql" \
        else sqlite.insert(t.session_rollup)
    update = {k: v for k, v in r.session.items() if k != "session_id"}
    conn.execute(ins.values(**r.session).on_conflict_do_update(index_elements=["session_id"], set_=update))
    for i in range(0, len(r.minutes), 500):
        conn.execute(insert(t.minute_rollup), r.minutes[i: i + 500])
    if r.events:
        conn.execute(insert(t.event_rollup), r.events)


# ---------------------------------------------------------------------------
# Reading a pruned session back
# ---------------------------------------------------------------------------

def pruned_ids(conn: Connection, session_ids: list[int]) -> set[int]:
    """Which of these sessions have had their raw samples deleted."""
    out: set[int] = set()
    for i in range(0, len(session_ids), 500):
        chunk = session_ids[i: i + 500]
        out |= {int(sid) for (sid,) in conn.execute(
            select(t.session_rollup.c.session_id)
            .where(t.session_rollup.c.session_id.in_(chunk), t.session_rollup.c.samples_pruned_ms.is_not(None))
        )}
    return out


def read_quality(conn: Connection, session_id: int) -> tuple[SessionSummary, list[Disruption]]:
    """The summary and events stored when the session was rolled up."""
    raw = conn.execute(
        select(t.session_rollup.c.summary).where(t.session_rollup.c.session_id == session_id)
    ).scalar_one()
    events = [
        # A freeze's frames-missing span travels in its evidence.
        Disruption(r.kind, r.role, r.participant_id, r.direction, int(r.start_ms), int(r.end_ms), float(r.severity),
                   orjson.loads(r.evidence or "{}").get("frames_missing_ms"))
        for r in conn.execute(
            select(t.event_rollup).where(t.event_rollup.c.session_id == session_id)
            .order_by(t.event_rollup.c.id)
        )
    ]
    return SessionSummary.from_dict(orjson.loads(raw)), events


def read_attributions(conn: Connection, session_id: int) -> list[Attribution]:
    """Each rolled-up event's attribution, in read_quality's order; empty when
    any event was rolled up without one."""
    out = []
    for (raw,) in conn.execute(
        select(t.event_rollup.c.evidence).where(t.event_rollup.c.session_id == session_id)
        .order_by(t.event_rollup.c.id)
    ):
        a = orjson.loads(raw).get("attribution") if raw else None
        if a is None:
            return []
        out.append(Attribution.from_dict(a))
    return out


# Which per-minute figure stands for the minute on the timelines: the bad
# side of it (95th percentile where high is bad), as the raw timelines plot
# the worst value of their few seconds; the median where neither is.
CHART_STAT = {m: "p95" for m in ROLLUP_METRICS} | {"bitrate_in_kbps": "median", "fps_in": "median"}


def read_data(conn: Connection, session_id: int) -> SessionData:
    """The session as per-minute series (one point a minute, CHART_STAT):
    what the timeline charts draw once the raw samples are gone."""
    srow = conn.execute(
        select(t.session.c.started_ms, t.session.c.ended_ms, t.session_rollup.c.sample_count,
               t.session_rollup.c.last_received_ms, t.session_rollup.c.samples_pruned_ms)
        .join(t.session_rollup, t.session_rollup.c.session_id == t.session.c.id)
        .where(t.session.c.id == session_id)
    ).one()
    parts = list(conn.execute(
        select(t.participant.c.id, t.participant.c.role).where(t.participant.c.session_id == session_id)
        .order_by(t.participant.c.role)
    ))
    cols = [t.minute_rollup.c.t_ms, *(t.minute_rollup.c[f"{m}_{CHART_STAT[m]}"] for m in ROLLUP_METRICS)]
    # Series columns that are not rolled up (the placement counts) stay NaN.
    where = [2 + METRICS.index(m) for m in ROLLUP_METRICS]
    series = []
    for pid, role in parts:
        rows = [r for r in conn.execute(
            select(*cols).where(t.minute_rollup.c.participant_id == pid, t.minute_rollup.c.samples > 0)
            .order_by(t.minute_rollup.c.minute)
        )]
        arr = np.full((len(rows), 2 + len(METRICS)), np.nan, dtype=np.float64)
        if rows:
            body = np.array([tuple(r)[1:] for r in rows], dtype=np.float64)
            arr[:, 0] = [r[0] for r in rows]
            arr[:, 1] = MINUTE_MS
            arr[:, where] = body
        series.append(from_array(int(pid), str(role), arr))
    return SessionData(session_id=session_id, started_ms=srow.started_ms, ended_ms=srow.ended_ms,
                       participants=series, sample_count=int(srow.sample_count),
                       last_received_ms=int(srow.last_received_ms), samples_pruned_ms=srow.samples_pruned_ms)
