"""Log in through the real login form, as a browser would.

``login`` drives an httpx.Client: it fetches /login (which sets the
pre-login CSRF cookie and renders the token into the form), posts the form
and checks that the server answered with the redirect of a successful
login. The client's cookie jar then carries the login session cookie.
``login_page`` does the same with a Playwright page.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token rendered into a page's first form."""
    m = _CSRF_RE.search(html)
    assert m, "no csrf_token field in the page"
    return m.group(1)


def login(client: httpx.Client, base: str, email: str, password: str) -> None:
    page = client.get(base + "/login")
    assert page.status_code == 200, page.text
    r = client.post(
        base + "/login",
        data={"email": email, "password": password, "csrf_token": csrf_from(page.text), "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, f"login as {email} failed: {r.status_code} {r.text[:300]}"
    assert "bl_session" in client.cookies, "no session cookie after login"


def login_page(page: Any, base: str, email: str, password: str) -> None:
    """Log a Playwright page in through the form (``page`` is playwright.sync_api.Page)."""
    page.goto(base + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/login" not in page.url, f"login as {email} failed; still on {page.url}"


def create_user(db_url: str, email: str, password: str, *, is_admin: bool = False) -> int:
    """Create an account directly in a server's database (the server may be running)."""
    from server.accounts.service import create_user as _create
    from server.config import normalise_database_url
    from server.store.db import make_engine

    engine = make_engine(normalise_database_url(db_url))
    try:
        with engine.begin() as conn:
            return _create(conn, email, password, is_admin=is_admin)
    finally:
        engine.dispose()
