"""Who may call the JSON API with a key.

Two kinds of key, sent as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``:
- the bootstrap admin key (``BONDLINE_ADMIN_API_KEY``, or a random one
  printed at start), for the operator;
- per-integrator keys (``blk_...``), created and revoked by admins
  (server/accounts/apikeys.py), stored hashed.
Nothing is open by default. Clinicians logged in with a cookie use the API
through ``server.accounts.deps.api_identity`` instead.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

from server.accounts import apikeys

BOOTSTRAP = "admin-key"


@dataclass(frozen=True)
class KeyCaller:
    """A caller authenticated by an API key (``key_id`` None for the bootstrap key)."""

    name: str
    key_id: int | None


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def check_key(request: Request, key: str) -> KeyCaller | None:
    """The caller a presented key belongs to, or None when it is no live key."""
    expected: str = request.app.state.admin_key
    if hmac.compare_digest(key.encode(), expected.encode()):
        return KeyCaller(BOOTSTRAP, None)
    with request.app.state.engine.begin() as conn:
        found = apikeys.check_key(conn, key)
    if found is None:
        return None
    return KeyCaller(found.name, found.id)


def key_caller(request: Request) -> KeyCaller:
    """Dependency: an API key caller, or 401 (no key) / 403 (bad or revoked key)."""
    key = presented_key(request)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "API key required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    caller = check_key(request, key)
    if caller is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or revoked API key")
    request.state.actor = f"key:{caller.name}"
    return caller


def require_admin(request: Request) -> None:
    """Dependency kept for callers written before integrator keys: any live key."""
    key_caller(request)
