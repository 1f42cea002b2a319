"""Sessions JSON API under /api/v1.

An API key caller (admin or integrator) reaches every session; a clinician
logged in with a cookie only their own (server.accounts.deps.api_identity).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, EmailStr, Field

from server.accounts.deps import api_identity
from server.accounts.identity import Identity
from server.audit.log import record_view
from server.retention.rollups import minute_rows, pruned_at, roll_up
from server.sessions import service
from server.surveys.api import create_for_new_session
from server.surveys.links import SurveyLinkOut
from server.timeutil import from_datetime, now_ms, to_iso
from server.web.features import Feature
from server.web.urls import base_url

log = logging.getLogger("bondline.api")

router = APIRouter(prefix="/api/v1", tags=["sessions"], responses={401: {}, 403: {}})
Caller = Annotated[Identity | None, Depends(api_identity)]


def _scope(identity: Identity | None) -> int | None:
    """The clinician filter for this caller: None (every row) for key callers."""
    return identity.clinician_id if identity is not None else None

ClientCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class SessionCreate(BaseModel):
    clinician: EmailStr = Field(description="The treating clinician's account email.")
    client_code: ClientCode = Field(description="Pseudonymous client code (never a name); created if new.")
    platform: str = Field(default="", max_length=100)
    scheduled_at: datetime | None = None
    survey_instruments: dict[Literal["client", "therapist"], list[str]] | None = Field(
        default=None, description="Instrument ids each respondent's survey asks for; default: the server's set."
    )


class ParticipantAccess(BaseModel):
    role: Literal["clinician", "client"]
    token: str = Field(description="Ingest token; shown only in this response.")
    snippet: str = Field(description="HTML to paste into the platform's call page for this participant.")
    snippet_external: str = Field(
        description="The same as one external script tag that starts itself from its data attributes: for call "
        "pages whose Content-Security-Policy forbids inline scripts (add the Bondline server to script-src and "
        "connect-src).",
    )


class SessionOut(BaseModel):
    id: int
    number: int = Field(description="This session's number in the client's course (1 = first).")
    clinician: str
    client_code: str
    platform: str
    scheduled_at: str | None
    started_at: str | None
    ended_at: str | None
    created_at: str | None
    status: Literal["scheduled", "live", "ended"]


class SessionCreated(SessionOut):
    participants: list[ParticipantAccess]
    survey_links: list[SurveyLinkOut]


class SampleOut(BaseModel):
    role: str
    seq: int
    start_ms: int
    interval_ms: int
    source: str
    data: dict[str, Any]


class EventOut(BaseModel):
    id: int
    role: str | None
    kind: str
    origin: str
    t_ms: int
    end_ms: int | None
    severity: float | None
    data: dict[str, Any]


def _status(row: Any) -> Literal["scheduled", "live", "ended"]:
    if row.ended_ms is not None:
        return "ended"
    return "live" if row.started_ms is not None else "scheduled"


def session_out(row: Any) -> SessionOut:
    return SessionOut(
        id=row.id,
        number=row.number,
        clinician=row.clinician_email,
        client_code=row.client_code,
        platform=row.platform,
        scheduled_at=to_iso(row.scheduled_ms),
        started_at=to_iso(row.started_ms),
        ended_at=to_iso(row.ended_ms),
        created_at=to_iso(row.created_ms),
        status=_status(row),
    )


def plugin_snippet(base_url: str, token: str) -> str:
    return (
        f'<script src="{base_url}/plugin/bondline.js"></script>\n'
        f'<script>Bondline.start({{server: "{base_url}", token: "{token}"}});</script>'
    )


def plugin_snippet_external(base_url: str, token: str) -> str:
    """No inline script: the plugin starts itself from its own tag's data attributes."""
    return (f'<script src="{base_url}/plugin/bondline.js" data-bondline-server="{base_url}" '
            f'data-bondline-token="{token}"></script>')


@router.post("/sessions", status_code=201, response_model=SessionCreated)
def create_session(body: SessionCreate, request: Request, identity: Caller) -> SessionCreated:
    """Create a session (and the client code if new). The response holds one
    ingest token per role; they are stored hashed and never shown again.
    A logged-in clinician may create sessions only for themselves."""
    engine = request.app.state.engine
    if identity is not None and str(body.clinician).strip().lower() != identity.email:
        raise HTTPException(403, "clinicians create sessions only for themselves")
    with engine.begin() as conn:
        clinician_id = service.ensure_clinician(conn, str(body.clinician))
        created = service.create_session(
            conn,
            clinician_id=clinician_id,
            client_code=body.client_code,
            platform=body.platform,
            scheduled_ms=from_datetime(body.scheduled_at) if body.scheduled_at else None,
        )
        row = service.get_session_row(conn, created.session_id)
        links = create_for_new_session(
            conn, request, created.session_id, body.survey_instruments, row.created_ms
        )
    base = base_url(request)
    out = session_out(row)
    return SessionCreated(
        **out.model_dump(),
        survey_links=links,
        participants=[
            ParticipantAccess(role=role, token=token, snippet=plugin_snippet(base, token),  # type: ignore[arg-type]
                              snippet_external=plugin_snippet_external(base, token))
            for role, token in created.tokens.items()
        ],
    )


@router.get("/sessions", response_model=list[SessionOut])
def list_sessions(
    request: Request,
    identity: Caller,
    client_code: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[SessionOut]:
    with request.app.state.engine.connect() as conn:
        rows = service.list_session_rows(
            conn, clinician_id=_scope(identity), client_code=client_code, limit=limit, offset=offset
        )
    return [session_out(r) for r in rows]


def _get(request: Request, session_id: int, identity: Identity | None) -> SessionOut:
    with request.app.state.engine.connect() as conn:
        try:
            return session_out(service.get_session_row(conn, session_id, _scope(identity)))
        except service.NotFound as e:
            raise HTTPException(404, str(e)) from None


@router.get("/sessions/{session_id}", response_model=SessionOut)
def get_session(session_id: int, request: Request, identity: Caller) -> SessionOut:
    return _get(request, session_id, identity)


@router.post("/sessions/{session_id}/{action}", response_model=SessionOut)
def start_or_end(
    session_id: int, action: Literal["start", "end"], request: Request, identity: Caller
) -> SessionOut:
    """Mark the session started or ended. Ending starts the token expiry clock."""
    with request.app.state.engine.begin() as conn:
        try:
            service.get_session_row(conn, session_id, _scope(identity))
            service.set_session_time(conn, session_id, action)
        except service.NotFound as e:
            raise HTTPException(404, str(e)) from None
        except service.Conflict as e:
            raise HTTPException(409, str(e)) from None
    if action == "end":
        # The roll-up is written as the session ends (a late sample makes the
        # retention sweep rebuild it); its own transaction, so a failure
        # here never undoes the end.
        try:
            with request.app.state.engine.begin() as conn:
                roll_up(conn, session_id, request.app.state.settings, now_ms())
        except Exception:  # noqa: BLE001 - the sweep retries
            log.exception("roll-up of session %d at its end failed; the retention sweep will retry", session_id)
    return _get(request, session_id, identity)


@router.get("/sessions/{session_id}/samples", response_model=list[SampleOut])
def get_samples(
    session_id: int,
    request: Request,
    identity: Caller,
    role: Literal["clinician", "client"] | None = None,
    after_seq: Annotated[int, Query(ge=-1)] = -1,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> list[SampleOut]:
    """Samples as stored (``data`` is the sample as validated: every field the
    collector sent, with its value; docs/telemetry.md, "Where it is stored")."""
    out: list[dict[str, Any]] = []
    with request.app.state.engine.connect() as conn:
        try:
            service.get_session_row(conn, session_id, _scope(identity))
        except service.NotFound as e:
            raise HTTPException(404, str(e)) from None
        pruned = pruned_at(conn, session_id)
        if pruned is not None:
            raise HTTPException(410, f"the raw samples of session {session_id} were deleted at {to_iso(pruned)}, "
                                "after the retention period; its per-minute roll-up is at "
                                f"/api/v1/sessions/{session_id}/minutes")
        for r, pid in service.participants(conn, session_id).items():
            if role is not None and r != role:
                continue
            for s in service.sample_rows(conn, pid, after_seq=after_seq, limit=limit):
                out.append({"role": r, "seq": s.seq, "start_ms": s.t_ms, "interval_ms": s.interval_ms,
                            "source": s.source, "data": stored_json(s.data)})
    record_view(request, "view", session_id=session_id, detail="api samples")
    return json_response(out)  # type: ignore[return-value]


@router.get("/sessions/{session_id}/minutes")
def get_minutes(session_id: int, request: Request, identity: Caller) -> Response:
    """The per-minute roll-up of an ended session, per participant: each
    headline figure's median, 95th percentile and count, no-media time, and
    whether a disruption touched the minute (docs/operations.md, "What is
    kept"). Empty until the session has been rolled up."""
    with request.app.state.engine.connect() as conn:
        try:
            service.get_session_row(conn, session_id, _scope(identity))
        except service.NotFound as e:
            raise HTTPException(404, str(e)) from None
        rows = minute_rows(conn, session_id)
    record_view(request, "view", session_id=session_id, detail="api minutes")
    return json_response(rows)


def stored_json(text: str | None) -> orjson.Fragment:
    """Stored JSON, passed through as it is: the store holds only JSON the
    ingest wrote, and re-reading it would make any row that once got in
    (nested deeper than a reader allows, say) break the whole answer."""
    return orjson.Fragment(text or "{}")


def json_response(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


@router.get("/sessions/{session_id}/events", response_model=list[EventOut])
def get_events(session_id: int, request: Request, identity: Caller) -> list[EventOut]:
    with request.app.state.engine.connect() as conn:
        try:
            service.get_session_row(conn, session_id, _scope(identity))
        except service.NotFound as e:
            raise HTTPException(404, str(e)) from None
        rows = service.event_rows(conn, session_id)
    record_view(request, "view", session_id=session_id, detail="api events")
    return json_response([  # type: ignore[return-value]
        {"id": e.id, "role": e.role, "kind": e.kind, "origin": e.origin, "t_ms": e.t_ms, "end_ms": e.end_ms,
         "severity": e.severity, "data": stored_json(e.data)}
        for e in rows
    ])


FEATURE = Feature("sessions", routers=[router])
