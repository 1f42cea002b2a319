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
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from server.accounts.deps import page_identity
from server.accounts.identity import Identity
from server.analysis.attribution import Incident, incidents, minute_legs
from server.analysis.course import distinct
from server.analysis.events import LABELS, SEVERITY_UNITS
from server.analysis.scores import BOND, OUTCOMES, TELEHEALTH_ITEMS, instrument_name, label
from server.audit.log import record
from server.config import AnalysisConfig, Settings
from server.reports import export
from server.reports.cache import svg_cache
from server.reports.plain import Sentence, caseload_sentence, incident_sentence, session_sentence
from server.reports.views import (
    NotFound,
    analyse_caseload,
    caseload_rows,
    course_view,
    session_course_row,
    session_view,
)
from server.sfu.compare import session_comparison
from server.sidecar.results import check_results, latest_client_check
from server.timeutil import now_ms, to_iso
from server.web.assets import Asset
from server.web.features import Feature
from server.web.pages import render
from server.web.timefmt import ago, local_time

router = APIRouter(prefix="/reports", include_in_schema=False)
Me = Annotated[Identity, Depends(page_identity)]


def _ctx(request: Request) -> tuple[Any, Settings, AnalysisConfig]:
    settings: Settings = request.app.state.settings
    return request.app.state.engine, settings, settings.analysis


def _when(ms: int | None) -> Markup:
    return local_time(ms, missing="not started")


COMMON = {"when": _when, "ago": ago, "label": label, "kind_label": LABELS, "severity_unit": SEVERITY_UNITS,
          "telehealth_items": TELEHEALTH_ITEMS, "iso": to_iso, "instrument_name": instrument_name,
          "distinct": distinct}


@router.get("", response_class=HTMLResponse)
@router.get("/caseload", response_class=HTMLResponse)
def caseload_page(request: Request, me: Me, outcome: str = Query(BOND)) -> Response:
    if outcome not in OUTCOMES:
        raise HTTPException(422, f"unknown outcome {outcome!r}; choose one of {', '.join(OUTCOMES)}")
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        rows = caseload_rows(conn, me.clinician_id, cfg, settings)
        record(conn, request, "view", detail="caseload report")
    now = now_ms()
    view = analyse_caseload(rows, outcome, cfg, now)
    charts: list[tuple[str, Markup]] = []
    if view.points:
        from server.reports import charts as draw  # matplotlib: imported on first use, not at server start

        title = f"Sessions: disrupted minutes against {OUTCOMES[outcome]}"
        codes = {a.client_id: a.code for a in view.clients}
        charts = [(size, Markup(draw.scatter_svg(view.points, view.model, OUTCOMES[outcome], title, codes=codes,
                                                         narrow=narrow)))
                  for size, narrow in (("wide", False), ("narrow", True))]
    return render(request, "reports_caseload.html", {
        **COMMON, "view": view, "outcome": outcome, "outcomes": OUTCOMES, "charts": charts, "cfg": cfg,
        "sentence": caseload_sentence(view.model, outcome), "now": now,
    })


@router.get("/clients/{client_id}", response_class=HTMLResponse)
def course_page(client_id: int, request: Request, me: Me) -> Response:
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        try:
            code, refs, course = course_view(conn, me.clinician_id, client_id, cfg, settings)
        except NotFound:
            raise HTTPException(404, "no such client in your caseload") from None
        checks = check_results(conn, [r.id for r in refs])
        record(conn, request, "view", client_id=client_id, detail="client course report")
    from server.reports import charts

    title = f"Alliance and disruption per session, client {code}"
    course_charts = [(size, Markup(charts.course_svg(course.rows, cfg.early_sessions, title, narrow=narrow)))
                     for size, narrow in (("wide", False), ("narrow", True))] if course.rows else []
    return render(request, "reports_course.html", {
        **COMMON, "code": code, "client_id": client_id, "course": course, "charts": course_charts, "cfg": cfg,
        "check_of": {r.id: latest_client_check(checks, r.id) for r in refs},
    })


def _session_charts(view: Any, cfg: AnalysisConfig) -> list[tuple[str, list[tuple[str, Markup]]]]:
    """Per participant, the timeline drawn twice: for a wide screen and for a phone."""
    from server.reports import charts

    data = view.data
    if data.t0_ms is None or data.t1_ms is None:
        return []
    out = []
    for p in data.participants:
        if len(p) == 0:
            continue
        sizes = []
        for size, narrow in (("wide", False), ("narrow", True)):
            key = (data.session_id, p.participant_id, data.sample_count, data.last_received_ms, cfg.fingerprint(),
                   data.samples_pruned_ms, size)
            svg = svg_cache.get(key)
            if svg is None:
                svg = charts.timeline_svg(p, view.events_for(p.participant_id), data.t0_ms, data.t1_ms,
                                          f"Connection timeline as received by the {p.role}",
                                          thresholds=charts.thresholds(cfg), narrow=narrow)
                svg_cache.put(key, svg)
            sizes.append((size, Markup(svg)))
        out.append((p.role, sizes))
    return out


def _attributions(q: Any) -> list[Any]:
    return list(q.attributions) if len(q.attributions) == len(q.events) else [None] * len(q.events)


def _incidents(view: Any, cfg: AnalysisConfig) -> list[tuple[Incident, Sentence]]:
    """The session's disruptions, one per overlap of events, each in a plain sentence."""
    q = view.quality
    t0 = q.summary.t0_ms
    if t0 is None or len(q.attributions) != len(q.events):
        return []
    return [(inc, incident_sentence(inc, t0, cfg.loss_fraction))
            for inc in incidents(q.events, q.attributions, cfg.merge_gap_ms)]


@router.get("/sessions/{session_id}.json")
def session_json(session_id: int, request: Request, me: Me) -> JSONResponse:
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        try:
            view = session_view(conn, me.clinician_id, session_id, cfg, settings)
        except NotFound:
            raise HTTPException(404, "no such session in your caseload") from None
        sfu = session_comparison(conn, session_id)
        record(conn, request, "export", session_id=session_id, detail="session report JSON")
    return JSONResponse({
        "schema": "bondline.session-report/1",
        "session_id": session_id,
        "client_code": view.ref.client_code,
        "number": view.ref.number,
        "summary": view.quality.summary.as_dict(),
        # A session rolled up before attribution existed has none: null, never a guess.
        "events": [{**e.as_dict(), "attribution": a.as_dict() if a is not None else None}
                   for e, a in zip(view.quality.events, _attributions(view.quality), strict=True)],
        "incidents": [{"start_ms": inc.start_ms, "end_ms": inc.end_ms, "text": sentence.text,
                       "legs": [{"role": leg.role, "direction": leg.direction} for leg in inc.legs],
                       "events": [view.quality.events.index(e) for e, _ in inc.events]}
                      for inc, sentence in _incidents(view, cfg)],
        "minutes": minute_legs(view.quality.events, view.quality.attributions, view.quality.summary.t0_ms or 0,
                               view.quality.summary.minutes)
        if len(view.quality.attributions) == len(view.quality.events) else None,
        "ratings": view.scores.ratings,
        "scores": view.scores.values,
        "sfu_comparison": [c.as_dict() for c in sfu],
    })


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
def session_page(session_id: int, request: Request, me: Me) -> Response:
    engine, settings, cfg = _ctx(request)
    with engine.begin() as conn:
        try:
            view = session_view(conn, me.clinician_id, session_id, cfg, settings)
        except NotFound:
            raise HTTPException(404, "no such session in your caseload") from None
        row, course = session_course_row(conn, me.clinician_id, view.ref, cfg, settings)
        checks = check_results(conn, [session_id]).get(session_id, [])
        sfu = session_comparison(conn, session_id)
        record(conn, request, "view", session_id=session_id, detail="session report")
    timelines = _session_charts(view, cfg)
    summary = view.quality.summary
    return render(request, "reports_session.html", {
        **COMMON, "v": view, "s": summary, "events": view.quality.events, "timelines": timelines,
        "incidents": _incidents(view, cfg),
        "cfg": cfg, "choice": _choice_labels(request, view.scores.ratings), "row": row, "course": course,
        "sentence": session_sentence(summary, row, course.threshold),
        "no_data": summary.minutes == 0 or summary.disrupted_pct is None, "checks": checks,
        "sfu": sfu,
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
    view = await run_in_threadpool(analyse_caseload, rows, outcome, cfg, now_ms())
    body = export.to_json(view, int(time.time() * 1000), cfg.model_dump())
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="bondline-caseload.json"'})


FEATURE = Feature(
    "reports",
    routers=[router],
    templates=Path(__file__).parent / "templates",
    assets={f"/reports/static/{name}": Asset("server.reports", f"static/{name}")
            for name in ("reports.css", "print.js")},
)
