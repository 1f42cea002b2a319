"""Wire the security middleware and its error handlers into the app."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from server.config import Settings
from server.security.middleware import SecurityMiddleware


def install_security(app: FastAPI, settings: Settings) -> None:
    """Security headers, origin checks and body limits on every request."""
    app.add_middleware(SecurityMiddleware, settings=settings)  # type: ignore[arg-type]
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(DataError, _out_of_range)


async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
    """An id or number the store cannot even represent (SQLite's 64-bit
    integers; PostgreSQL's range checks) names nothing: a client error."""
    return JSONResponse({"detail": "a number in the request is out of range"}, status_code=422)
