"""Wire the security middleware and the static files into the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError

from server.config import Settings
from server.security.middleware import SecurityMiddleware

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"


def install_security(app: FastAPI, settings: Settings) -> None:
    """Security headers, origin checks and body limits on every request;
    /static serves server/web/static (style sheets and scripts: the CSP
    allows no inline ones)."""
    app.add_middleware(SecurityMiddleware, settings=settings)  # type: ignore[arg-type]
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(DataError, _out_of_range)
    if not any(getattr(r, "path", None) == "/static" for r in app.routes):
        app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")


async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
    """An id or number the store cannot even represent (SQLite's 64-bit
    integers; PostgreSQL's range checks) names nothing: a client error."""
    return JSONResponse({"detail": "a number in the request is out of range"}, status_code=422)
