"""Clinician report pages: caseload, client course, session report, export.

Every page needs a login (``page_identity``) and shows only the logged-in
clinician's own caseload; every view and export is written to the audit log.
Charts are matplotlib SVG inlined into the page (server/reports/charts.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from server.accounts.deps import page_identity
from server.accounts.identity import Identity
from server.analysis.config import AnalysisConfig, get_config
from server.analysis.events import LABELS, SEVERITY_UNITS
from server.analysis.scores import BOND, OUTCOMES, TELEHEALTH_ITEMS, instrument_name, label
from server.audit.log import record
from server.config import Settings
from server.reports import export
from server.reports.cache import svg_cache
from server.reports.templating import render
from server.reports.views import NotFound, analyse_caseload, caseload_rows, course_view, session_view
from server.timeutil import to_iso

router = APIRouter(prefix="/reports", include_in_schema=False)
STATIC = Path(__file__).parent / "static"
Me = Annotated[Identity, Depends(page_identity)]


def _ctx(request: Request) -> tuple[Any, Settings, AnalysisConfig]:
    return request.app.state.engine, request.app.state.settings, get_config()


def _when(ms: int | None) -> str:
    if ms is None:
        return "not started"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


COMMON = {"when": _when, "label": label, "kind_label": LABELS, "severity_unit": SEVERITY_UNITS,
          "telehealth_items": TELEHEALTH_ITEMS, "iso": to_iso, "instrument_name": instrument_name}


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    path = STATIC / name
    if name not in {"reports.css", "print.js"} or not path.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(path)


@router.get("", response_class=HTMLResponse)
@router.get("/caseload", response_class=HTMLResponse)
def caseload_page(request: Request, me: Me, outcome: str = Query(BOND)) -> Response:
    if outcome not in OUTCOMES:
        raise HTTPException(422, f"unknown outcome {outcome!r}; choose one of {', '.join(OUTCOMES)}")
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        rows = caseload_rows(conn, me.clinician_id, cfg, settings)
        record(conn, request, "view", detail="caseload report")
    view = analyse_caseload(rows, outcome, cfg)
    from server.reports import charts  # matplotlib: imported on first use, not at server start

    chart = charts.scatter_svg(view.points, view.model, OUTCOMES[outcome],
                               f"Sessions: disrupted minutes against {OUTCOMES[outcome]}")
    return render(request, "reports_caseload.html", {
        **COMMON, "view": view, "outcome": outcome, "outcomes": OUTCOMES, "chart": Markup(chart), "cfg": cfg,
    })


@router.get("/clients/{client_id}", response_class=HTMLResponse)
def course_page(client_id: int, request: Request, me: Me) -> Response:
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        try:
            code, refs, course = course_view(conn, me.clinician_id, client_id, cfg, settings)
        except NotFound:
            raise HTTPException(404, "no such client in your caseload") from None
        record(conn, request, "view", client_id=client_id, detail="client course report")
    from server.reports import charts

    chart = charts.course_svg(course.rows, cfg.early_sessions, f"Alliance and disruption per session, client {code}")
    return render(request, "reports_course.html", {
        **COMMON, "code": code, "client_id": client_id, "course": course, "chart": Markup(chart), "cfg": cfg,
    })


def _session_charts(view: Any, cfg: AnalysisConfig) -> list[tuple[str, Markup]]:
    from server.reports import charts

    data = view.data
    if data.t0_ms is None or data.t1_ms is None:
        return []
    out = []
    for p in data.participants:
        if len(p) == 0:
            continue
        key = (data.session_id, p.participant_id, data.sample_count, data.last_received_ms, cfg.fingerprint())
        svg = svg_cache.get(key)
        if svg is None:
            svg = charts.timeline_svg(p, view.events_for(p.participant_id), data.t0_ms, data.t1_ms,
                                      f"Connection timeline as received by the {p.role}")
            svg_cache.put(key, svg)
        out.append((p.role, Markup(svg)))
    return out


@router.get("/sessions/{session_id}.json")
def session_json(session_id: int, request: Request, me: Me) -> JSONResponse:
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        try:
            view = session_view(conn, me.clinician_id, session_id, cfg, settings)
        except NotFound:
            raise HTTPException(404, "no such session in your caseload") from None
        record(conn, request, "export", session_id=session_id, detail="session report JSON")
    return JSONResponse({
        "schema": "bondline.session-report/1",
        "session_id": session_id,
        "client_code": view.ref.client_code,
        "number": view.ref.number,
        "summary": view.quality.summary.as_dict(),
        "events": [e.as_dict() for e in view.quality.events],
        "ratings": view.scores.ratings,
        "scores": view.scores.values,
    })


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
def session_page(session_id: int, request: Request, me: Me) -> Response:
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        try:
            view = session_view(conn, me.clinician_id, session_id, cfg, settings)
        except NotFound:
            raise HTTPException(404, "no such session in your caseload") from None
        record(conn, request, "view", session_id=session_id, detail="session report")
    timelines = _session_charts(view, cfg)
    return render(request, "reports_session.html", {
        **COMMON, "v": view, "s": view.quality.summary, "events": view.quality.events, "timelines": timelines,
        "cfg": cfg, "choice": _choice_labels(request, view.scores.ratings),
    })


def _choice_labels(request: Request, ratings: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``{"instrument:item": {"4": "Agree", ...}}`` for the answers shown."""
    from server.surveys.instruments import InstrumentError
    from server.surveys.registry import registry_of

    out: dict[str, dict[str, str]] = {}
    registry = registry_of(request.app)
    for r in ratings:
        try:
            inst = registry.get(r["instrument_id"])
        except InstrumentError:
            continue
        for item in inst.items:
            out[f"{inst.id}:{item.id}"] = {str(c.value): c.label for c in inst.scale_of(item)}
    return out


def _caseload_for_export(request: Request, me: Identity, what: str) -> Any:
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        rows = caseload_rows(conn, me.clinician_id, cfg, settings)
        record(conn, request, "export", detail=f"caseload export {what} ({len(rows)} sessions)")
    return rows, cfg


@router.get("/export.csv")
def export_csv(request: Request, me: Me) -> Response:
    rows, _ = _caseload_for_export(request, me, "CSV")
    return Response(export.to_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="bondline-caseload.csv"'})


@router.get("/export.json")
async def export_json(request: Request, me: Me, outcome: str = Query(BOND)) -> Response:
    if outcome not in OUTCOMES:
        raise HTTPException(422, f"unknown outcome {outcome!r}")
    rows, cfg = await run_in_threadpool(_caseload_for_export, request, me, "JSON")
    view = await run_in_threadpool(analyse_caseload, rows, outcome, cfg)
    body = export.to_json(view, int(time.time() * 1000), cfg.model_dump())
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="bondline-caseload.json"'})
