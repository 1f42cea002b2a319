"""Error answers: an HTML page for a person in a browser, JSON for programs.

A browser navigating to a page sends ``Accept: text/html``; it gets a page
with the status in words, what to do next and a way back. The JSON API,
ingest and exports (``/api/``, ``/v1/``, ``*.json``, ``*.csv``) and any
client that does not ask for HTML keep FastAPI's ``{"detail": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from server.web.pages import render

MACHINE_PREFIXES = ("/api/", "/v1/", "/plugin/", "/demo/call/")
MACHINE_SUFFIXES = (".json", ".csv", ".js", ".css")
TITLES = {
    400: "That request could not be understood",
    401: "Please log in",
    403: "You cannot open this page",
    404: "Page not found",
    405: "That action is not available here",
    409: "That conflicts with something already there",
    413: "That was too large",
    422: "Something in that address is not valid",
    429: "Too many requests",
}
ADVICE = {
    404: "The page may have moved, or the link was mistyped. If it was a client or session, it may have been "
         "erased, or it belongs to another clinician's caseload.",
    403: "Your account does not have access to this. Ask your Bondline administrator if you think it should.",
    401: "Log in and try again.",
    422: "Check the address; a number or choice in it is not one this page knows.",
}


def wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(MACHINE_PREFIXES) or path.endswith(MACHINE_SUFFIXES):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return render(request, "error.html", {
        "status": status,
        "title": TITLES.get(status, "Something went wrong"),
        "message": message,
        "advice": ADVICE.get(status, ""),
    }, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not wants_html(request) or exc.status_code < 400:
        return await http_exception_handler(request, exc)
    detail: Any = exc.detail
    return error_page(request, exc.status_code, detail if isinstance(detail, str) else "", exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not wants_html(request):
        return await request_validation_exception_handler(request, exc)
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                         for e in exc.errors())
    return error_page(request, 422, problems)


def install_error_pages(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
