"""Ratings and instruments JSON API under /api/v1 (docs/surveys.md).

Callers: an API key (all sessions) or a logged-in clinician (their own
caseload only; another clinician's session is a 404, as if absent).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.engine import Connection

from server.accounts.deps import api_identity
from server.accounts.identity import Identity
from server.audit.log import record_view
from server.sessions import service as sessions
from server.store import tables as t
from server.surveys import fhir, links
from server.surveys.instruments import InstrumentError, Respondent
from server.surveys.ratings import RatingRecord, rating_by_id, ratings_for_sessions
from server.surveys.registry import registry_of
from server.timeutil import now_ms, to_iso
from server.web.urls import base_url

router = APIRouter(prefix="/api/v1", tags=["surveys"])
Caller = Annotated[Identity | None, Depends(api_identity)]
FHIR_JSON = "application/fhir+json"


class RatingOut(BaseModel):
    id: int
    session_id: int
    respondent: Respondent
    instrument_id: str
    instrument_version: str
    answers: dict[str, int | None] = Field(description="Raw answers by item id (before reverse scoring); null = blank.")
    total: float | None = Field(description="Sum of item scores (prorated over blanks per the instrument).")
    mean: float | None = Field(description="Mean of answered item scores.")
    subscales: dict[str, dict[str, float | None]] = Field(description='{"goal": {"sum": x, "mean": y}, ...}')
    shown: Literal["sum", "mean"] | None = Field(description="Which score the instrument says reports show first.")
    submitted_at: str


class LinkStatusOut(BaseModel):
    respondent: Respondent
    instruments: list[str]
    status: Literal["open", "answered", "expired"]
    used_at: str | None
    expires_at: str | None


class LinkRequest(BaseModel):
    instruments: list[str] | None = Field(default=None, description="Instrument ids; default: the server's set.")


class SessionRatings(BaseModel):
    session_id: int
    number: int
    scheduled_at: str | None
    started_at: str | None
    ended_at: str | None
    ratings: list[RatingOut]


class ClientCourse(BaseModel):
    client_code: str
    clinician: str
    sessions: list[SessionRatings]


class InstrumentSummary(BaseModel):
    id: str
    version: str
    title: str
    short_title: str
    respondent: Respondent
    items: int
    subscales: list[str]
    shown: Literal["sum", "mean"]
    citation: str
    permission: str


def rating_out(request: Request, r: RatingRecord) -> RatingOut:
    registry = registry_of(request.app)
    shown = registry.get(r.instrument_id).scoring.shown if r.instrument_id in registry else None
    return RatingOut(
        id=r.id, session_id=r.session_id, respondent=r.respondent,  # type: ignore[arg-type]
        instrument_id=r.instrument_id, instrument_version=r.instrument_version, answers=r.answers,
        total=r.total, mean=r.mean, subscales=r.subscales, shown=shown, submitted_at=to_iso(r.submitted_ms) or "",
    )


def _session(conn: Connection, session_id: int, caller: Identity | None) -> Any:
    try:
        return sessions.get_session_row(conn, session_id, clinician_id=caller.clinician_id if caller else None)
    except sessions.NotFound:
        raise HTTPException(404, f"no session {session_id}") from None


@router.get("/sessions/{session_id}/ratings", response_model=list[RatingOut])
def session_ratings(session_id: int, request: Request, caller: Caller) -> list[RatingOut]:
    """Every rating of one session (client and therapist, each instrument)."""
    with request.app.state.engine.connect() as conn:
        _session(conn, session_id, caller)
        rows = ratings_for_sessions(conn, [session_id])[session_id]
    record_view(request, "view", session_id=session_id, detail="api ratings")
    return [rating_out(request, r) for r in rows]


@router.get("/sessions/{session_id}/survey-links", response_model=list[LinkStatusOut])
def session_links(session_id: int, request: Request, caller: Caller) -> list[LinkStatusOut]:
    """State of the session's survey links (the links themselves are shown only when made)."""
    with request.app.state.engine.connect() as conn:
        _session(conn, session_id, caller)
        rows = links.list_for_session(conn, request.app.state.settings, session_id)
    now = now_ms()
    names = {links.LinkStatus.OK: "open", links.LinkStatus.USED: "answered", links.LinkStatus.EXPIRED: "expired"}
    return [
        LinkStatusOut(
            respondent=row.respondent, instruments=row.instruments,
            status=names[links.status(row, now)],  # type: ignore[arg-type]
            used_at=to_iso(row.used_ms), expires_at=to_iso(row.expires_ms),
        )
        for row in rows
    ]


@router.post("/sessions/{session_id}/survey-links/{respondent}", response_model=links.SurveyLinkOut)
def reissue_link(
    session_id: int,
    respondent: Respondent,
    request: Request,
    caller: Caller,
    body: Annotated[LinkRequest | None, Body()] = None,
) -> links.SurveyLinkOut:
    """A new link for a respondent (the old one stops working): for a lost
    link, or a session created without one. 409 once it was answered."""
    registry = registry_of(request.app)
    try:
        chosen = links.resolve_selection(
            registry, {respondent: body.instruments} if body and body.instruments is not None else None
        )[respondent]
    except InstrumentError as e:
        raise HTTPException(422, str(e)) from None
    if not chosen:
        raise HTTPException(422, f"no instruments to ask the {respondent} for")
    with request.app.state.engine.begin() as conn:
        _session(conn, session_id, caller)
        try:
            token = links.issue(conn, session_id, respondent, chosen, now_ms())
        except links.LinkUsed as e:
            raise HTTPException(409, str(e)) from None
    return links.SurveyLinkOut(respondent=respondent, url=links.survey_url(base_url(request), token))


@router.get("/ratings", response_model=ClientCourse)
def client_ratings(
    request: Request,
    caller: Caller,
    client_code: Annotated[str, Query(min_length=1, max_length=64)],
    clinician: Annotated[str | None, Query(max_length=320, description="Clinician email (API keys only).")] = None,
) -> ClientCourse:
    """A client's course of sessions in order, each with its ratings."""
    q = (
        select(t.client.c.id, t.clinician.c.email)
        .join(t.clinician, t.clinician.c.id == t.client.c.clinician_id)
        .where(t.client.c.code == client_code)
    )
    if caller is not None:
        q = q.where(t.client.c.clinician_id == caller.clinician_id)
    elif clinician is not None:
        q = q.where(t.clinician.c.email == clinician.strip().lower())
    with request.app.state.engine.connect() as conn:
        found = list(conn.execute(q))
        if not found:
            raise HTTPException(404, f"no client {client_code!r}")
        if len(found) > 1:
            raise HTTPException(400, "several clinicians use this client code: add clinician=<email>")
        client_id, email = found[0]
        rows = list(
            conn.execute(select(t.session).where(t.session.c.client_id == client_id).order_by(t.session.c.number))
        )
        by_session = ratings_for_sessions(conn, [r.id for r in rows])
    record_view(request, "view", client_id=client_id, detail="api ratings of the course")
    return ClientCourse(
        client_code=client_code,
        clinician=email,
        sessions=[
            SessionRatings(
                session_id=r.id, number=r.number, scheduled_at=to_iso(r.scheduled_ms), started_at=to_iso(r.started_ms),
                ended_at=to_iso(r.ended_ms), ratings=[rating_out(request, x) for x in by_session[r.id]],
            )
            for r in rows
        ],
    )


@router.get("/instruments", response_model=list[InstrumentSummary])
def list_instruments(request: Request, caller: Caller) -> list[InstrumentSummary]:
    return [
        InstrumentSummary(
            id=i.id, version=i.version, title=i.title, short_title=i.short_title, respondent=i.respondent,
            items=len(i.items), subscales=[s.id for s in i.subscales], shown=i.scoring.shown,
            citation=i.citation, permission=i.permission,
        )
        for i in registry_of(request.app).all()
    ]


def _instrument(request: Request, instrument_id: str) -> Any:
    try:
        return registry_of(request.app).get(instrument_id)
    except InstrumentError as e:
        raise HTTPException(404, str(e)) from None


@router.get("/instruments/{instrument_id}")
def get_instrument(instrument_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    """The instrument file's content, as loaded and checked."""
    out: dict[str, Any] = _instrument(request, instrument_id).model_dump(by_alias=True)
    return out


@router.get("/fhir/Questionnaire/{instrument_id}")
def fhir_questionnaire(instrument_id: str, request: Request, caller: Caller) -> JSONResponse:
    """The instrument as an HL7 FHIR R4 Questionnaire."""
    inst = _instrument(request, instrument_id)
    return JSONResponse(fhir.questionnaire(inst, base_url(request)), media_type=FHIR_JSON)


@router.get("/fhir/QuestionnaireResponse/{rating_id}")
def fhir_response(rating_id: int, request: Request, caller: Caller) -> JSONResponse:
    """One rating as an HL7 FHIR R4 QuestionnaireResponse."""
    with request.app.state.engine.connect() as conn:
        rating = rating_by_id(conn, rating_id)
        if rating is None:
            raise HTTPException(404, f"no rating {rating_id}")
        try:
            row = _session(conn, rating.session_id, caller)
        except HTTPException:
            raise HTTPException(404, f"no rating {rating_id}") from None
    registry = registry_of(request.app)
    inst = registry.get(rating.instrument_id) if rating.instrument_id in registry else None
    if inst is not None and inst.version != rating.instrument_version:
        inst = None  # the file changed since: keep to what was answered, codes only
    resource = fhir.questionnaire_response(
        rating, inst, base_url(request), clinician_id=row.clinician_id, client_code=row.client_code
    )
    record_view(request, "export", session_id=rating.session_id, detail=f"FHIR QuestionnaireResponse {rating_id}")
    return JSONResponse(resource, media_type=FHIR_JSON)


def create_for_new_session(
    conn: Connection, request: Request, session_id: int, chosen: links.Selection | None, created_ms: int
) -> list[links.SurveyLinkOut]:
    """Called by the sessions API inside its transaction: an unknown or
    mismatched instrument id is a 422 and, raised here, rolls it all back."""
    try:
        selection = links.resolve_selection(registry_of(request.app), chosen)
    except InstrumentError as e:
        raise HTTPException(422, str(e)) from None
    tokens = links.create_links(conn, session_id, selection, created_ms)
    base = base_url(request)
    return [links.SurveyLinkOut(respondent=r, url=links.survey_url(base, tok)) for r, tok in tokens.items()]
