"""Server-rendered pages: the home page (more arrive with reports and surveys)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from server import __version__

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    engine = request.app.state.engine
    return templates.TemplateResponse(
        request,
        "home.html",
        {"version": __version__, "backend": engine.dialect.name},
    )


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
