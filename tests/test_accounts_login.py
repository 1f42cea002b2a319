"""Login, logout, password change, throttling and cookies, through the real
forms of a real server process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.login import create_user, csrf_from, login
from tests.support.server import ServerProcess
from tests.support.shared_server import once_per_module

server = once_per_module("server")

PW = "correct horse battery"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One SQLite server for the tests below that need no fresh store (each uses its own account)."""
    d: Path = tmp_path_factory.mktemp("accounts-login")
    srv = ServerProcess(db_url=str(d / "bondline.db"), log_path=d / "server.log").start()
    yield srv
    srv.stop()


def _post_login(c: httpx.Client, base: str, email: str, password: str) -> httpx.Response:
    page = c.get(base + "/login")
    return c.post(base + "/login", data={"email": email, "password": password, "csrf_token": csrf_from(page.text)})


def test_login_logout_and_scoped_session(server: ServerProcess) -> None:
    create_user(server.db_url, "ann@example.org", PW)
    with httpx.Client() as c:
        # Not logged in: a page redirects to the login form with next=.
        r = c.get(server.base + "/account/password", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Faccount%2Fpassword"
        login(c, server.base, "ann@example.org", PW)
        r = c.get(server.base + "/account/password")
        assert r.status_code == 200 and "ann@example.org" in r.text
        # Logout needs the CSRF token; it ends the session in the store.
        token = csrf_from(r.text)
        assert c.post(server.base + "/logout", data={}).status_code == 403
        r = c.post(server.base + "/logout", data={"csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        old = c.cookies.get("bl_session")
        assert old is None
    with httpx.Client() as c2:
        # The old cookie value no longer works anywhere.
        login(c2, server.base, "ann@example.org", PW)
        stolen = c2.cookies["bl_session"]
        page = c2.get(server.base + "/account/password")
        c2.post(server.base + "/logout", data={"csrf_token": csrf_from(page.text)})
        r = httpx.get(server.base + "/account/password", cookies={"bl_session": stolen}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_cookie_flags(shared: ServerProcess) -> None:
    create_user(shared.db_url, "cookie@example.org", PW)
    with httpx.Client() as c:
        r = _post_login(c, shared.base, "cookie@example.org", PW)
        assert r.status_code == 303
        set_cookie = r.headers["set-cookie"]
        assert "bl_session=" in set_cookie and "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
        assert "Secure" not in set_cookie  # plain HTTP on 127.0.0.1
    # Behind a TLS-terminating proxy (X-Forwarded-Proto trusted from 127.0.0.1) the cookie is Secure.
    with httpx.Client(headers={"X-Forwarded-Proto": "https"}) as c:
        page = c.get(shared.base + "/login")
        pre = page.headers["set-cookie"]
        assert pre.startswith("bl_csrf=") and "Secure" in pre and "HttpOnly" in pre
        # httpx keeps Secure cookies off plain http, so hand it back as the browser would over TLS.
        r = c.post(shared.base + "/login", headers={"Cookie": pre.split(";")[0]},
                   data={"email": "cookie@example.org", "password": PW, "csrf_token": csrf_from(page.text)})
        assert r.status_code == 303
        assert "Secure" in r.headers["set-cookie"]
        assert r.headers["strict-transport-security"].startswith("max-age=")


def test_wrong_password_and_unknown_email_look_the_same(shared: ServerProcess) -> None:
    create_user(shared.db_url, "wrong@example.org", PW)
    with httpx.Client() as c:
        r = _post_login(c, shared.base, "wrong@example.org", "wrong password!")
        assert r.status_code == 401 and "Wrong email or password" in r.text
        r = _post_login(c, shared.base, "nobody@example.org", PW)
        assert r.status_code == 401 and "Wrong email or password" in r.text
        assert "bl_session" not in c.cookies


def test_login_without_csrf_is_refused(shared: ServerProcess) -> None:
    create_user(shared.db_url, "csrf@example.org", PW)
    with httpx.Client() as c:
        c.get(shared.base + "/login")
        r = c.post(shared.base + "/login", data={"email": "csrf@example.org", "password": PW})
        assert r.status_code == 403
        r = c.post(shared.base + "/login",
                   data={"email": "csrf@example.org", "password": PW, "csrf_token": "x" * 43})
        assert r.status_code == 403
        assert "bl_session" not in c.cookies
    # A token without its cookie (another browser's token) is refused too.
    with httpx.Client() as a, httpx.Client() as b:
        token = csrf_from(a.get(shared.base + "/login").text)
        b.get(shared.base + "/login")
        r = b.post(shared.base + "/login", data={"email": "csrf@example.org", "password": PW,
                                                        "csrf_token": token})
        assert r.status_code == 403


def test_login_throttle(shared: ServerProcess) -> None:
    create_user(shared.db_url, "throttle@example.org", PW)
    with httpx.Client() as c:
        for _ in range(5):
            assert _post_login(c, shared.base, "throttle@example.org", "guess guess guess").status_code == 401
        # The sixth try is refused even with the right password.
        r = _post_login(c, shared.base, "throttle@example.org", PW)
        assert r.status_code == 429 and "Too many failed attempts" in r.text
        assert "bl_session" not in c.cookies


def test_password_change_ends_other_logins(server: ServerProcess) -> None:
    create_user(server.db_url, "pat@example.org", PW)
    new = "a much better passphrase"
    with httpx.Client() as here, httpx.Client() as elsewhere:
        login(here, server.base, "pat@example.org", PW)
        login(elsewhere, server.base, "pat@example.org", PW)
        page = here.get(server.base + "/account/password")
        token = csrf_from(page.text)
        r = here.post(server.base + "/account/password",
                      data={"csrf_token": token, "current": PW, "new": "short", "confirm": "short"})
        assert r.status_code == 400 and "at least 10" in r.text
        r = here.post(server.base + "/account/password",
                      data={"csrf_token": token, "current": "wrong!", "new": new, "confirm": new})
        assert r.status_code == 400 and "current password is wrong" in r.text
        r = here.post(server.base + "/account/password",
                      data={"csrf_token": token, "current": PW, "new": new, "confirm": new}, follow_redirects=False)
        assert r.status_code == 303
        # This browser keeps a (new) login; the other one is logged out.
        assert here.get(server.base + "/account/password", follow_redirects=False).status_code == 200
        assert elsewhere.get(server.base + "/account/password", follow_redirects=False).status_code == 303
    with httpx.Client() as c:
        assert _post_login(c, server.base, "pat@example.org", PW).status_code == 401
        login(c, server.base, "pat@example.org", new)


def test_first_admin_one_time_password(sqlite_server: ServerProcess) -> None:
    log = sqlite_server.log_path.read_text()
    m = re.search(r"admin account (\S+) with one-time password (\S+)", log)
    assert m, log
    email, otp = m.group(1), m.group(2)
    with httpx.Client() as c:
        r = _post_login(c, sqlite_server.base, email, otp)
        assert r.status_code == 303 and r.headers["location"].startswith("/account/password")
        # Until the password is changed every page sends the admin back there.
        r = c.get(sqlite_server.base + "/admin/users", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/account/password")
        page = c.get(sqlite_server.base + "/account/password")
        assert "one-time password" in page.text
        new = "admin's own passphrase"
        r = c.post(sqlite_server.base + "/account/password", data={
            "csrf_token": csrf_from(page.text), "current": otp, "new": new, "confirm": new, "next": "/admin/users"},
            follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/admin/users"
        assert c.get(sqlite_server.base + "/admin/users").status_code == 200
    # A restart does not create another admin or print another password.
    sqlite_server.stop()
    sqlite_server.start()
    assert sqlite_server.log_path.read_text().count("with one-time password") == 1


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_next_is_never_an_open_redirect(shared: ServerProcess, target: str) -> None:
    email = f"next{abs(hash(target)) % 10**8}@example.org"
    create_user(shared.db_url, email, PW)
    with httpx.Client() as c:
        page = c.get(shared.base + "/login")
        r = c.post(shared.base + "/login", data={"email": email, "password": PW,
                                                        "csrf_token": csrf_from(page.text), "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/"
