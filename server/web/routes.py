"""Server-rendered pages of the server itself: the home page and health."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from server import __version__
from server.web.assets import Asset
from server.web.features import Feature
from server.web.help import router as help_router
from server.web.pages import render
from server.web.timefmt import local_time

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    engine = request.app.state.engine
    return render(request, "home.html", {"version": __version__, "backend": engine.dialect.name})


# A store that has not answered a trivial query in this long is as good as down
# for a load balancer deciding where to send collectors.
HEALTH_TIMEOUT_S = 3.0
# The ingest writer failing to commit for this long (locked or lost store)
# makes the process unhealthy even while reads still work.
WRITES_STALLED_S = 5.0


@router.get("/livez")
def livez() -> dict[str, str]:
    """Liveness: the process serves HTTP (restart it if this fails)."""
    return {"status": "ok"}


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        # A table, not "SELECT 1": SQLite answers that without its file.
        conn.execute(text("SELECT 1 FROM alembic_version LIMIT 1")).all()


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Readiness: 200 when the store answers and the ingest writer commits;
    503 with what is wrong otherwise (docs/operations.md)."""
    body: dict[str, Any] = {"status": "ok", "store": "ok", "writes": "ok"}
    try:
        await asyncio.wait_for(run_in_threadpool(_ping, request.app.state.engine), HEALTH_TIMEOUT_S)
    except TimeoutError:
        body["store"] = f"no answer within {HEALTH_TIMEOUT_S:g} s"
    except Exception as e:  # noqa: BLE001 - any failure to reach the store is the answer
        body["store"] = f"unreachable ({type(e).__name__})"
    stalled = getattr(request.app.state, "writer", None)
    since = stalled.failing_since if stalled is not None else None
    if since is not None and time.monotonic() - since >= WRITES_STALLED_S:
        body["writes"] = f"failing for {time.monotonic() - since:.0f} s"
    if body["store"] != "ok" or body["writes"] != "ok":
        body["status"] = "unavailable"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


FEATURE = Feature(
    "web",
    routers=[router, help_router],
    templates=Path(__file__).parent / "templates",
    template_globals={"local_time": local_time},
    assets={
        "/static/bondline.css": Asset("server.web", "static/bondline.css"),
        "/static/local-time.js": Asset("server.web", "static/local-time.js"),
        "/favicon.ico": Asset("server.web", "static/favicon.ico"),
    },
)
