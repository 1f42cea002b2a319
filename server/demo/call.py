"""The demo call page, ``/demo/call``: a real WebRTC call between two peers
in one page, with the plugin on both sides. The media is a synthetic test
pattern and tone made in the page (no camera needed), or the device's own
camera and microphone if the visitor chooses them.

Visiting the page creates nothing. When the call's media is ready the page
asks ``POST /demo/call/sessions`` for a fresh session (a fixed demo
clinician and client code) and both participants' ingest tokens, so a call
that never starts (no camera, a link preview, a crawler) leaves no session
in anyone's caseload. That only ever
creates pseudonymous demo data, but it is still a way to create sessions
without an API key, so it is off unless ``BONDLINE_DEMO_CALL`` allows it:

- ``auto`` (default): when serving the synthetic demo database
  (``bondline serve --demo``), or when the server is reached on a loopback
  address from a loopback address (a newcomer's ``make run``); otherwise,
  under any other host name (even through a proxy on the same machine), 404;
- ``on``: always (a shared demo server);
- ``off``: never.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import func, select
from starlette.responses import Response

from server.accounts.deps import csrf_token, verify_csrf
from server.config import DemoSettings
from server.sessions import service
from server.store import tables as t
from server.web.assets import Asset
from server.web.features import Feature
from server.web.pages import render

router = APIRouter(include_in_schema=False)

HEADLINE = ("rtt_ms", "jitter_ms", "loss_in", "bitrate_in_kbps", "bitrate_out_kbps", "fps_in", "freeze_ms_in",
            "concealed_ratio_in")


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# server/demo/plan.py names the demo caseload's clinicians demo.clinician.a@..., .b@...
DEMO_DB_CLINICIAN = "demo.clinician.a@example.org"
PLAIN_CLINICIAN = "demo@bondline.example"


def _serving_demo_db(request: Request) -> bool:
    return bool(getattr(request.app.state, "demo", False)) if "app" in request.scope else False


def demo_clinician(request: Request, settings: DemoSettings) -> str:
    if settings.demo_clinician:
        return settings.demo_clinician
    return DEMO_DB_CLINICIAN if _serving_demo_db(request) else PLAIN_CLINICIAN


def demo_enabled(request: Request, settings: DemoSettings) -> bool:
    mode = settings.demo_call
    if mode != "auto":
        return mode == "on"
    if _serving_demo_db(request):
        return True
    peer = request.client.host if request.client else None
    return _loopback(peer) and _loopback(request.headers.get("host"))


def _require(request: Request) -> DemoSettings:
    settings: DemoSettings = request.app.state.settings.demo
    if not demo_enabled(request, settings):
        raise HTTPException(404, "The demo call is disabled on this server (BONDLINE_DEMO_CALL).")
    return settings


@router.get("/demo/call", response_class=HTMLResponse)
def demo_call(request: Request) -> Response:
    settings = _require(request)
    base = (request.app.state.settings.public_url or str(request.base_url)).rstrip("/")
    # The page sends the CSRF token back in a header (verify_csrf), as every POST here must.
    config = {"server": base, "csrf": csrf_token(request)}
    return render(request, "demo_call.html", {"config": config, "client_code": settings.demo_client_code})


@router.post("/demo/call/sessions", dependencies=[Depends(verify_csrf)])
def demo_call_session(request: Request) -> JSONResponse:
    """A session for a demo call whose media is ready, with its ingest tokens.
    It needs the page's CSRF token, and JSON: a cross-site form cannot send it."""
    settings = _require(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, "send this as application/json from the demo call page")
    with request.app.state.engine.begin() as conn:
        clinician_id = service.ensure_clinician(conn, demo_clinician(request, settings), display_name="Demo clinician")
        created = service.create_session(conn, clinician_id=clinician_id, client_code=settings.demo_client_code,
                                         platform="bondline demo call")
    # The answer carries live ingest tokens: never cached.
    return JSONResponse({"session": created.session_id, "number": created.number, "tokens": created.tokens},
                        status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/demo/call/{session_id}/telemetry")
def demo_telemetry(session_id: int, request: Request) -> JSONResponse:
    """What the server has stored for a demo call, so the page can show it arrive."""
    settings = _require(request)
    out: dict[str, Any] = {}
    with request.app.state.engine.connect() as conn:
        owner = conn.execute(
            select(t.clinician.c.email, t.client.c.code)
            .select_from(t.session.join(t.client, t.client.c.id == t.session.c.client_id)
                         .join(t.clinician, t.clinician.c.id == t.session.c.clinician_id))
            .where(t.session.c.id == session_id)
        ).first()
        # Only demo sessions are readable here; anything else is "not found".
        if owner is None or owner.email != demo_clinician(request, settings).lower() \
                or owner.code != settings.demo_client_code:
            raise HTTPException(404, "no such demo call")
        for role, pid in service.participants(conn, session_id).items():
            count = conn.execute(select(func.count()).where(t.sample.c.participant_id == pid)).scalar_one()
            last = conn.execute(
                select(t.sample).where(t.sample.c.participant_id == pid).order_by(t.sample.c.seq.desc()).limit(1)
            ).first()
            out[role] = {
                "stored": int(count),
                "lastSeq": last.seq if last is not None else None,
                "last": {k: getattr(last, k) for k in HEADLINE} if last is not None else None,
            }
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


FEATURE = Feature(
    "demo call",
    routers=[router],
    templates=Path(__file__).parent / "templates",
    assets={f"/plugin/{name}": Asset("server.demo", f"static/{name}") for name in ("demo-call.js", "demo-call.css")},
)
