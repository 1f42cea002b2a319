"""What each report page shows, assembled from the store for one clinician.

Every query here is limited to ``clinician_id``: a session or client of
another clinician is reported as not found, so its existence does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.engine import Connection

from server.analysis.attention import Attention, assess, rank
from server.analysis.caseload import Correlation, ModelResult, Point, correlation, fit_model, fit_split_model
from server.analysis.course import Course, CourseInput, CourseRow, analyse_course
from server.analysis.events import Disruption
from server.analysis.quality import SessionQuality, for_session, for_sessions
from server.analysis.scores import BOND, OUTCOMES, SessionScores, load_scores
from server.analysis.series import SessionData
from server.config import AnalysisConfig, Settings
from server.store import tables as t


class NotFound(Exception):
    pass


@dataclass
class SessionRef:
    id: int
    client_id: int
    client_code: str
    number: int
    started_ms: int | None
    ended_ms: int | None
    platform: str


@dataclass
class SessionView:
    ref: SessionRef
    data: SessionData
    quality: SessionQuality
    scores: SessionScores
    prev_id: int | None
    next_id: int | None

    def events_for(self, participant_id: int) -> list[Disruption]:
        return [e for e in self.quality.events if e.participant_id == participant_id]


@dataclass
class CaseloadRow:
    ref: SessionRef
    quality: SessionQuality | None
    scores: SessionScores


@dataclass
class CaseloadView:
    rows: list[CaseloadRow]
    outcome: str
    points: list[Point]
    model: ModelResult
    correlations: list[Correlation]
    clients: list[Attention] = field(default_factory=list)
    # Score keys left out of the correlations because their values are those of
    # an earlier key, session for session: {left out: kept}.
    same_as: dict[str, str] = field(default_factory=dict)
    # The model with the within-client term split by whose connection (fit_split_model).
    split_model: ModelResult | None = None


def _refs(conn: Connection, clinician_id: int, *, client_id: int | None = None,
          session_id: int | None = None) -> list[SessionRef]:
    q = (
        select(t.session.c.id, t.session.c.client_id, t.client.c.code, t.session.c.number, t.session.c.started_ms,
               t.session.c.ended_ms, t.session.c.platform)
        .join(t.client, t.client.c.id == t.session.c.client_id)
        .where(t.session.c.clinician_id == clinician_id)
        .order_by(t.client.c.code, t.session.c.number)
    )
    if client_id is not None:
        q = q.where(t.session.c.client_id == client_id)
    if session_id is not None:
        q = q.where(t.session.c.id == session_id)
    return [SessionRef(r.id, r.client_id, r.code, r.number, r.started_ms, r.ended_ms, r.platform)
            for r in conn.execute(q)]


def session_view(conn: Connection, clinician_id: int, session_id: int, cfg: AnalysisConfig,
                 settings: Settings) -> SessionView:
    refs = _refs(conn, clinician_id, session_id=session_id)
    if not refs:
        raise NotFound(f"no session {session_id}")
    ref = refs[0]
    data, quality = for_session(conn, session_id, cfg, settings)
    scores = load_scores(conn, [session_id]).get(session_id, SessionScores())
    siblings = [r.id for r in _refs(conn, clinician_id, client_id=ref.client_id)]
    i = siblings.index(session_id)
    return SessionView(ref, data, quality, scores, siblings[i - 1] if i > 0 else None,
                       siblings[i + 1] if i + 1 < len(siblings) else None)


def course_input(ref: SessionRef, q: SessionQuality | None, v: dict[str, float]) -> CourseInput:
    measured = q is not None and q.summary.minutes > 0
    return CourseInput(
        session_id=ref.id, number=ref.number, when_ms=ref.started_ms,
        disrupted_minutes=q.summary.disrupted_minutes if q is not None and measured else None,
        minutes=q.summary.minutes if q is not None else None, verdict=q.summary.verdict if q is not None else None,
        bond=v.get(BOND), goal=v.get("client.wai-sr-client.goal"), task=v.get("client.wai-sr-client.task"),
        total=v.get("client.wai-sr-client.mean"),
        side_minutes=q.summary.side_minutes if q is not None and measured else None,
    )


def _caseload_bonds(scores: dict[int, SessionScores]) -> list[float]:
    return [s.values[BOND] for s in scores.values() if BOND in s.values]


def course_view(conn: Connection, clinician_id: int, client_id: int, cfg: AnalysisConfig,
                settings: Settings) -> tuple[str, list[SessionRef], Course]:
    code = conn.execute(
        select(t.client.c.code).where(t.client.c.id == client_id, t.client.c.clinician_id == clinician_id)
    ).scalar()
    if code is None:
        raise NotFound(f"no client {client_id}")
    refs = _refs(conn, clinician_id, client_id=client_id)
    quality = for_sessions(conn, [r.id for r in refs], cfg, settings)
    # The reliable-change reference spread comes from the whole caseload.
    all_ids = [r.id for r in _refs(conn, clinician_id)]
    all_scores = load_scores(conn, all_ids)
    items = [course_input(r, quality.get(r.id), all_scores.get(r.id, SessionScores()).values) for r in refs]
    return str(code), refs, analyse_course(items, _caseload_bonds(all_scores), cfg)


def session_course_row(conn: Connection, clinician_id: int, ref: SessionRef, cfg: AnalysisConfig,
                       settings: Settings) -> tuple[CourseRow | None, Course]:
    """This session's row of its client's course: the usual level and the rupture flag."""
    _, _, course = course_view(conn, clinician_id, ref.client_id, cfg, settings)
    return next((r for r in course.rows if r.session_id == ref.id), None), course


def caseload_rows(conn: Connection, clinician_id: int, cfg: AnalysisConfig, settings: Settings) -> list[CaseloadRow]:
    refs = _refs(conn, clinician_id)
    ids = [r.id for r in refs]
    quality = for_sessions(conn, ids, cfg, settings)
    scores = load_scores(conn, ids)
    return [CaseloadRow(r, quality.get(r.id), scores.get(r.id, SessionScores())) for r in refs]


def score_keys(rows: list[CaseloadRow]) -> list[str]:
    """Score keys present in the caseload: the outcome menu first, then items."""
    present = {k for r in rows for k in r.scores.values}
    return [k for k in OUTCOMES if k in present] + sorted(k for k in present if k not in OUTCOMES)


def analyse_caseload(rows: list[CaseloadRow], outcome: str, cfg: AnalysisConfig, now_ms: int) -> CaseloadView:
    usable = [r for r in rows if r.quality is not None and r.quality.summary.minutes > 0]
    points = [
        Point(r.ref.id, r.ref.client_id, r.ref.number, float(r.quality.summary.disrupted_minutes),
              r.scores.values[outcome], *_sides(r.quality))
        for r in usable if outcome in r.scores.values and r.quality is not None
    ]
    model = fit_model(points, cfg)
    split = fit_split_model(points, cfg)
    corrs = []
    seen: dict[tuple[tuple[int, float], ...], str] = {}
    same_as: dict[str, str] = {}
    for key in score_keys(rows):
        pairs = [(r.ref.id, float(r.quality.summary.disrupted_minutes), r.scores.values[key])
                 for r in usable if key in r.scores.values and r.quality is not None]
        # A score that equals another one in every session (a one-item subscale
        # and its item, say) is one figure: show it once.
        values = tuple((sid, round(v, 9)) for sid, _, v in pairs)
        if values and values in seen:
            same_as[key] = seen[values]
            continue
        seen[values] = key
        corrs.append(correlation(key, [p[1] for p in pairs], [p[2] for p in pairs], cfg))
    bonds = [r.scores.values[BOND] for r in rows if BOND in r.scores.values]
    by_client: dict[int, list[CaseloadRow]] = {}
    for r in rows:
        by_client.setdefault(r.ref.client_id, []).append(r)
    clients = []
    for client_id, mine in by_client.items():
        items = [course_input(r.ref, r.quality, r.scores.values) for r in mine]
        clients.append(assess(client_id, mine[0].ref.client_code, analyse_course(items, bonds, cfg), now_ms, cfg))
    return CaseloadView(rows, outcome, points, model, corrs, rank(clients), same_as, split)


def _sides(q: SessionQuality) -> tuple[float | None, float | None]:
    m = q.summary.side_minutes
    if m is None:
        return None, None
    return float(m.get("client", 0)), float(m.get("clinician", 0))
