"""Who may call the JSON API.

Until clinician accounts land, the whole admin API sits behind one key
(``BONDLINE_ADMIN_API_KEY``, or a random one printed at start), sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Nothing is open
by default.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def require_admin(request: Request) -> None:
    expected: str = request.app.state.admin_key
    key = presented_key(request)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "API key required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
