"""Who may call the JSON API with a key.

Two kinds of key, sent as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``:
- the bootstrap admin key (``BONDLINE_ADMIN_API_KEY``, or a random one
  printed at start), for the operator;
- per-integrator keys (``blk_...``), created and revoked by admins
  (server/accounts/apikeys.py), stored hashed.
Nothing is open by default. Every JSON endpoint checks its caller through
``server.accounts.deps.api_identity`` (a key, or a clinician's login cookie).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

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
