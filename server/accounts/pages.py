"""Login, logout and password change pages (server-rendered, POST forms with CSRF)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from server.accounts import logins, service
from server.accounts.deps import (
    PRE_CSRF_COOKIE,
    cookie_secure,
    csrf_token,
    current_login,
    page_identity,
    verify_csrf,
)
from server.accounts.identity import Identity
from server.accounts.passwords import policy_problem
from server.audit.log import client_ip, record
from server.config import Settings
from server.web.pages import render

router = APIRouter(include_in_schema=False)


def safe_next(value: str | None) -> str:
    """Only local paths: an open redirect after login would aid phishing."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 for c in value):
        return "/"
    return value


def set_login_cookie(request: Request, response: Response, token: str) -> None:
    settings: Settings = request.app.state.settings
    response.set_cookie(
        logins.COOKIE_NAME,
        token,
        max_age=int(settings.login_max_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
        path="/",
    )


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    if current_login(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    csrf_token(request)
    return render(request, "login.html", {"next": safe_next(next), "error": None, "email": ""})


def _attempt(engine: Engine, settings: Settings, email: str, password: str,
             ip: str) -> tuple[bool, service.Account | None, str | None]:
    """(throttled, account, login cookie) of one login attempt. The attempt is
    counted before the password is checked (logins.admit_attempt), and the
    slow check runs outside any write transaction."""
    with engine.begin() as conn:
        attempt = logins.admit_attempt(conn, settings, email, ip)
    if attempt is None:
        return True, None, None
    with engine.begin() as conn:
        account = service.check_password(conn, email, password) if email and password else None
        logins.settle_attempt(conn, attempt, account is not None)
        token = logins.start_login(conn, settings, account.id) if account is not None else None
    return False, account, token


def _record_login(engine: Engine, request: Request, account: service.Account) -> None:
    with engine.begin() as conn:
        record(conn, request, "login", actor=account.email, actor_clinician_id=account.id)


@router.post("/login")
async def login_submit(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    await verify_csrf(request)
    settings: Settings = request.app.state.settings
    email = service.normalise_email(email)
    ip = client_ip(request)
    target = safe_next(next)
    engine = request.app.state.engine
    # argon2 takes tens of milliseconds of CPU: on the event loop it would
    # stall every socket of this worker, so the whole attempt runs on a thread.
    blocked, account, token = await run_in_threadpool(_attempt, engine, settings, email, password, ip)
    if blocked:
        minutes = int(settings.login_window_minutes)
        return render(
            request,
            "login.html",
            {"next": target, "email": email,
             "error": f"Too many failed attempts. Wait {minutes} minutes and try again."},
            status_code=429,
        )
    if account is None or token is None:
        return render(
            request, "login.html", {"next": target, "email": email, "error": "Wrong email or password."},
            status_code=401,
        )
    await run_in_threadpool(_record_login, engine, request, account)
    if account.must_change:
        target = "/account/password?next=" + quote(target, safe="")
    response = RedirectResponse(target, status_code=303)
    set_login_cookie(request, response, token)
    response.delete_cookie(PRE_CSRF_COOKIE, path="/")
    return response


@router.post("/logout", dependencies=[Depends(verify_csrf)])
def logout(request: Request) -> Response:
    with request.app.state.engine.begin() as conn:
        logins.end_login(conn, request.cookies.get(logins.COOKIE_NAME))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(logins.COOKIE_NAME, path="/", httponly=True, samesite="lax",
                           secure=cookie_secure(request))
    return response


@router.get("/account/password")
def password_form(request: Request, identity: Annotated[Identity, Depends(page_identity)],
                  next: str = "/") -> Response:
    login = current_login(request)
    return render(request, "password.html", {
        "identity": identity, "error": None, "next": safe_next(next),
        "forced": bool(login and login.must_change),
    })


@router.post("/account/password", dependencies=[Depends(verify_csrf)])
def password_submit(
    request: Request,
    identity: Annotated[Identity, Depends(page_identity)],
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    confirm: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    settings: Settings = request.app.state.settings
    login = current_login(request)
    forced = bool(login and login.must_change)

    def again(error: str, code: int) -> Response:
        return render(request, "password.html", {"identity": identity, "error": error, "next": safe_next(next),
                                                 "forced": forced}, status_code=code)

    with request.app.state.engine.begin() as conn:
        if service.check_password(conn, identity.email, current) is None:
            return again("The current password is wrong.", 400)
        if new != confirm:
            return again("The two new passwords differ.", 400)
        if new == current:
            return again("The new password must differ from the current one.", 400)
        problem = policy_problem(new, identity.email)
        if problem:
            return again(problem[0].upper() + problem[1:] + ".", 400)
        # Every login of the account ends (a thief's too); this browser gets a new one.
        service.set_password(conn, identity.clinician_id, new)
        token = logins.start_login(conn, settings, identity.clinician_id)
        record(conn, request, "password.change")
    response = RedirectResponse(safe_next(next), status_code=303)
    set_login_cookie(request, response, token)
    return response
