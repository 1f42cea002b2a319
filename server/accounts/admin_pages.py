"""Admin pages: accounts, integrator API keys, the audit trail."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from server.accounts import apikeys, service
from server.accounts.deps import admin_identity, verify_csrf
from server.accounts.identity import Identity
from server.audit import log as audit
from server.timeutil import to_iso
from server.web.pages import render

router = APIRouter(prefix="/admin", include_in_schema=False)
Admin = Annotated[Identity, Depends(admin_identity)]


def _users_page(request: Request, admin: Identity, *, notice: str | None = None, secret: str | None = None,
                error: str | None = None, status_code: int = 200) -> Response:
    with request.app.state.engine.connect() as conn:
        accounts = service.list_accounts(conn)
    return render(request, "admin_users.html", {
        "identity": admin, "accounts": accounts, "notice": notice, "secret": secret, "error": error,
        "to_iso": to_iso,
    }, status_code=status_code)


@router.get("/users")
def users(request: Request, admin: Admin) -> Response:
    return _users_page(request, admin)


@router.post("/users", dependencies=[Depends(verify_csrf)])
def add_user(
    request: Request,
    admin: Admin,
    email: Annotated[str, Form(max_length=320)],
    display_name: Annotated[str, Form(max_length=200)] = "",
    is_admin: Annotated[str | None, Form()] = None,
) -> Response:
    password = secrets.token_urlsafe(12)
    try:
        with request.app.state.engine.begin() as conn:
            service.create_user(conn, email, password, is_admin=bool(is_admin), display_name=display_name,
                                must_change=True)
            detail = f"{service.normalise_email(email)} admin={bool(is_admin)}"
            audit.record(conn, request, "user.create", detail=detail)
    except service.AccountError as e:
        return _users_page(request, admin, error=str(e), status_code=400)
    return _users_page(request, admin, notice=f"Created {service.normalise_email(email)}. Give them this one-time "
                       "password by a separate channel; they must change it at first login:", secret=password,
                       status_code=201)


@router.post("/users/{clinician_id}/{action}", dependencies=[Depends(verify_csrf)])
def change_user(request: Request, admin: Admin, clinician_id: int, action: str) -> Response:
    if action not in ("password", "disable", "enable", "make-admin", "remove-admin"):
        raise HTTPException(404, "unknown action")
    if clinician_id == admin.clinician_id and action in ("disable", "remove-admin"):
        return _users_page(request, admin, error="You cannot disable yourself or remove your own admin rights.",
                           status_code=400)
    secret: str | None = None
    with request.app.state.engine.begin() as conn:
        account = service.get_account(conn, clinician_id)
        if account is None:
            raise HTTPException(404, f"no account {clinician_id}")
        if action == "password":
            secret = secrets.token_urlsafe(12)
            service.set_password(conn, clinician_id, secret, must_change=True)
        elif action in ("disable", "enable"):
            service.set_disabled(conn, clinician_id, action == "disable")
        else:
            service.set_admin(conn, clinician_id, action == "make-admin")
        audit.record(conn, request, "user.update", detail=f"{account.email}: {action}")
    if secret is not None:
        return _users_page(request, admin, notice=f"New one-time password for {account.email} (their logins were "
                           "ended; they must change it at next login):", secret=secret)
    return RedirectResponse("/admin/users", status_code=303)


def _keys_page(request: Request, admin: Identity, *, secret: str | None = None, notice: str | None = None,
               error: str | None = None, status_code: int = 200) -> Response:
    with request.app.state.engine.connect() as conn:
        keys = apikeys.list_keys(conn)
    return render(request, "admin_keys.html", {
        "identity": admin, "keys": keys, "secret": secret, "notice": notice, "error": error, "to_iso": to_iso,
    }, status_code=status_code)


@router.get("/api-keys")
def keys(request: Request, admin: Admin) -> Response:
    return _keys_page(request, admin)


@router.post("/api-keys", dependencies=[Depends(verify_csrf)])
def add_key(request: Request, admin: Admin, name: Annotated[str, Form(max_length=100)] = "") -> Response:
    try:
        with request.app.state.engine.begin() as conn:
            key_id, key = apikeys.create_key(conn, name, created_by=admin.clinician_id)
            audit.record(conn, request, "key.create", detail=f"key {key_id} ({name.strip()})")
    except ValueError as e:
        return _keys_page(request, admin, error=str(e), status_code=400)
    return _keys_page(request, admin, secret=key, status_code=201,
                      notice=f"Key {key_id} for {name.strip()}. Copy it now; it is stored only as a hash:")


@router.post("/api-keys/{key_id}/revoke", dependencies=[Depends(verify_csrf)])
def revoke(request: Request, admin: Admin, key_id: int) -> Response:
    with request.app.state.engine.begin() as conn:
        if not apikeys.revoke_key(conn, key_id):
            raise HTTPException(404, f"no live API key {key_id}")
        audit.record(conn, request, "key.revoke", detail=f"key {key_id}")
    return RedirectResponse("/admin/api-keys", status_code=303)


@router.get("/audit")
def audit_page(
    request: Request,
    admin: Admin,
    client_code: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    per_page = 100
    with request.app.state.engine.connect() as conn:
        rows, total = audit.entries(conn, client_code=client_code or None, actor=actor or None, limit=per_page,
                                    offset=(page - 1) * per_page)
    return render(request, "admin_audit.html", {
        "identity": admin, "rows": rows, "total": total, "page": page, "pages": max(1, -(-total // per_page)),
        "client_code": client_code or "", "actor": actor or "", "to_iso": to_iso,
    })
