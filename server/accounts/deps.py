"""FastAPI dependencies for pages and JSON endpoints (docs/security.md).

- ``page_identity``: HTML pages; not logged in -> 303 to /login?next=...
- ``api_identity``: JSON endpoints; a login cookie gives that clinician's
  Identity, an API key gives None (key callers are not one clinician).
- ``csrf_field`` / ``verify_csrf``: the CSRF token of POST forms. A logged-in
  user's token lives with the login session in the store; before login a
  double-submit cookie carries it.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from markupsafe import Markup, escape

from server.accounts import logins
from server.accounts.access import check_key, presented_key
from server.accounts.identity import Identity
from server.config import Settings
from server.security.origins import is_same_origin

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PRE_CSRF_COOKIE = "bl_csrf"
PASSWORD_PAGE = "/account/password"
_UNSET = object()
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def cookie_secure(request: Request) -> bool:
    settings = _settings(request)
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")


def current_login(request: Request) -> logins.Login | None:
    """The request's live login (cached on the request), or None."""
    cached: Any = getattr(request.state, "bl_login", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[no-any-return]
    token = request.cookies.get(logins.COOKIE_NAME)
    login: logins.Login | None = None
    if token:
        with request.app.state.engine.begin() as conn:
            login = logins.resolve_login(conn, _settings(request), token)
    request.state.bl_login = login
    if login is not None:
        request.state.actor = login.identity.email
        request.state.actor_clinician_id = login.identity.clinician_id
    return login


def _next_path(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return path


def page_identity(request: Request) -> Identity:
    """The logged-in clinician of an HTML page, else a redirect to the login page."""
    login = current_login(request)
    if login is None:
        raise HTTPException(
            status.HTTP_303_SEE_OTHER,
            "login required",
            headers={"Location": "/login?next=" + quote(_next_path(request), safe="")},
        )
    if login.must_change and request.url.path != PASSWORD_PAGE:
        raise HTTPException(
            status.HTTP_303_SEE_OTHER,
            "password change required",
            headers={"Location": PASSWORD_PAGE + "?next=" + quote(_next_path(request), safe="")},
        )
    return login.identity


def admin_identity(request: Request) -> Identity:
    """A logged-in admin (page dependency); others get 403."""
    identity = page_identity(request)
    if not identity.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this page is for administrators")
    return identity


def _origin_ok(request: Request) -> bool:
    """A same-origin Origin (or, lacking one, Referer) on an unsafe request."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return False
        origin = referer
    return is_same_origin(origin, _settings(request), request.url.scheme, request.headers.get("host"))


# Declares the API key in the OpenAPI document, so /docs's "Authorize" sends it;
# the key itself is read (and may also come as X-API-Key) by presented_key.
API_KEY = HTTPBearer(auto_error=False, scheme_name="APIKey", bearerFormat="blk_...",
                     description="An integrator API key (Admin, API keys), sent as `Authorization: Bearer blk_...`.")


def api_identity(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(API_KEY)] = None,
) -> Identity | None:
    """JSON endpoints: None for an API key caller (full access), the clinician's
    Identity for a login cookie; 401 with neither, 403 for a bad key."""
    key = presented_key(request)
    if key is not None:
        caller = check_key(request, key)
        if caller is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or revoked API key")
        request.state.actor = f"key:{caller.name}"
        return None
    login = current_login(request)
    if login is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "log in, or send an API key (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if login.must_change:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "change your one-time password first")
    if request.method not in _SAFE_METHODS:
        # Cookies ride along on cross-site requests; a same-origin Origin or
        # the CSRF token in a header proves the page that sent it is ours.
        token = request.headers.get(CSRF_HEADER)
        if not (_origin_ok(request) or (token and hmac.compare_digest(token, login.csrf_token))):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused (CSRF check)")
    return login.identity


def csrf_token(request: Request) -> str:
    """The CSRF token forms on this response must carry."""
    login = current_login(request)
    if login is not None:
        return login.csrf_token
    existing = request.cookies.get(PRE_CSRF_COOKIE) or getattr(request.state, "bl_new_csrf", None)
    if existing and 20 <= len(existing) <= 100:
        return str(existing)
    fresh = secrets.token_urlsafe(32)
    # The security middleware sets this cookie on the response.
    request.state.bl_new_csrf = fresh
    request.state.bl_csrf_secure = cookie_secure(request)
    return fresh


def csrf_field(request: Request) -> Markup:
    """``<input type="hidden" name="csrf_token" ...>`` for a POST form."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(csrf_token(request)))


async def verify_csrf(request: Request) -> None:
    """Dependency for POST handlers: the form field (or X-CSRF-Token header)
    must match the login's token, or before login the double-submit cookie."""
    if request.method in _SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and not is_same_origin(
        origin, _settings(request), request.url.scheme, request.headers.get("host")
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site form post refused")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
    login = current_login(request)
    expected = login.csrf_token if login is not None else request.cookies.get(PRE_CSRF_COOKIE)
    if not presented or not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or invalid CSRF token; reload the page and retry")


def account_nav(request: Request | None) -> Markup:
    """The header's account links (email, password, admin, log out) when logged in."""
    if request is None:
        return Markup("")
    login = current_login(request)
    if login is None:
        return Markup("")
    admin = Markup(' <a href="/admin/users">Admin</a>') if login.identity.is_admin else Markup("")
    return Markup(
        '<nav class="account"><span>{}</span> <a href="/account/password">Password</a>{}'
        '<form method="post" action="/logout" class="inline">{}<button type="submit">Log out</button></form></nav>'
    ).format(login.identity.email, admin, csrf_field(request))
