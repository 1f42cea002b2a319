"""API keys (bootstrap and per-integrator), admin pages, and per-clinician
scoping of the sessions API, against a real server on both backends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, text

from server.accounts.service import AccountError
from server.config import normalise_database_url
from tests.support.login import create_user, csrf_from, login
from tests.support.server import ServerProcess

PW = "correct horse battery"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One SQLite server for the tests below that need no fresh store (each uses its own accounts)."""
    d: Path = tmp_path_factory.mktemp("accounts-access")
    srv = ServerProcess(db_url=str(d / "bondline.db"), log_path=d / "server.log").start()
    yield srv
    srv.stop()


@contextmanager
def _admin_client(server: ServerProcess) -> Iterator[httpx.Client]:
    try:
        create_user(server.db_url, "boss@example.org", PW, is_admin=True)
    except AccountError:
        pass  # made by an earlier test on the shared server
    with httpx.Client() as c:
        login(c, server.base, "boss@example.org", PW)
        yield c


def _create_key(c: httpx.Client, base: str, name: str) -> tuple[int, str]:
    page = c.get(base + "/admin/api-keys")
    r = c.post(base + "/admin/api-keys", data={"csrf_token": csrf_from(page.text), "name": name})
    assert r.status_code == 201, r.text
    key = re.search(r'data-testid="secret">(blk_[^<]+)<', r.text)
    key_id = re.search(r"Key (\d+) for", r.text)
    assert key and key_id
    return int(key_id.group(1)), key.group(1)


def test_api_requires_a_key(shared: ServerProcess) -> None:
    url = shared.base + "/api/v1/sessions"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert httpx.get(url, headers={"X-API-Key": "blk_" + "a" * 43}).status_code == 403
    assert httpx.get(url, headers=shared.admin_headers).status_code == 200


def test_integrator_key_lifecycle(server: ServerProcess) -> None:
    with _admin_client(server) as admin:
        key_id, key = _create_key(admin, server.base, "Acme Telehealth")
        headers = {"Authorization": f"Bearer {key}"}
        # The integrator creates sessions for any clinician of its platform.
        for who in ("ann@example.org", "bob@example.org"):
            r = httpx.post(server.base + "/api/v1/sessions", headers=headers,
                           json={"clinician": who, "client_code": "C-1", "platform": "acme"})
            assert r.status_code == 201, r.text
        assert len(httpx.get(server.base + "/api/v1/sessions", headers=headers).json()) == 2
        # Stored only as a hash.
        engine = create_engine(normalise_database_url(server.db_url))
        with engine.connect() as conn:
            stored = conn.execute(text("select key_hash, prefix from api_key")).all()
        engine.dispose()
        assert len(stored) == 1 and stored[0][0] != key and key not in stored[0][0] and len(stored[0][0]) == 64
        listing = admin.get(server.base + "/admin/api-keys").text
        assert "Acme Telehealth" in listing and key not in listing
        # Revoked: refused at once.
        r = admin.post(f"{server.base}/admin/api-keys/{key_id}/revoke",
                       data={"csrf_token": csrf_from(listing)}, follow_redirects=False)
        assert r.status_code == 303
        assert httpx.get(server.base + "/api/v1/sessions", headers=headers).status_code == 403
        audit = admin.get(server.base + "/admin/audit").text
        assert "key.create" in audit and "key.revoke" in audit


def test_admin_pages_are_for_admins(shared: ServerProcess) -> None:
    create_user(shared.db_url, "plain@example.org", PW)
    with httpx.Client() as c:
        login(c, shared.base, "plain@example.org", PW)
        for path in ("/admin/users", "/admin/api-keys", "/admin/audit"):
            assert c.get(shared.base + path).status_code == 403
        token = csrf_from(c.get(shared.base + "/account/password").text)
        r = c.post(shared.base + "/admin/api-keys", data={"csrf_token": token, "name": "sneaky"})
        assert r.status_code == 403


def test_admin_creates_account_with_one_time_password(shared: ServerProcess) -> None:
    with _admin_client(shared) as admin:
        page = admin.get(shared.base + "/admin/users")
        r = admin.post(shared.base + "/admin/users",
                       data={"csrf_token": csrf_from(page.text), "email": "New@Example.org"})
        assert r.status_code == 201
        otp = re.search(r'data-testid="secret">([^<]+)<', r.text)
        assert otp
        # Same email again is refused with a message, not a 500.
        r = admin.post(shared.base + "/admin/users",
                       data={"csrf_token": csrf_from(page.text), "email": "new@example.org"})
        assert r.status_code == 400 and "already exists" in r.text
    with httpx.Client() as c:
        page = c.get(shared.base + "/login")
        r = c.post(shared.base + "/login", data={"email": "new@example.org", "password": otp.group(1),
                                                        "csrf_token": csrf_from(page.text)}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/account/password")
        # The JSON API refuses a login that still has to change its one-time password.
        assert c.get(shared.base + "/api/v1/sessions").status_code == 403


def test_disabled_account_is_logged_out(shared: ServerProcess) -> None:
    ann = create_user(shared.db_url, "gone@example.org", PW)
    with _admin_client(shared) as admin, httpx.Client() as c:
        login(c, shared.base, "gone@example.org", PW)
        page = admin.get(shared.base + "/admin/users")
        r = admin.post(f"{shared.base}/admin/users/{ann}/disable", data={"csrf_token": csrf_from(page.text)},
                       follow_redirects=False)
        assert r.status_code == 303
        assert c.get(shared.base + "/api/v1/sessions").status_code == 401
        with httpx.Client() as again:
            page = again.get(shared.base + "/login")
            r = again.post(shared.base + "/login", data={"email": "gone@example.org", "password": PW,
                                                               "csrf_token": csrf_from(page.text)})
            assert r.status_code == 401


def test_clinician_sees_only_own_sessions(server: ServerProcess) -> None:
    create_user(server.db_url, "ann@example.org", PW)
    create_user(server.db_url, "bob@example.org", PW)
    ann_s = server.create_session("C-A", clinician="ann@example.org")
    bob_s = server.create_session("C-B", clinician="bob@example.org")
    with httpx.Client() as ann:
        login(ann, server.base, "ann@example.org", PW)
        listed = ann.get(server.base + "/api/v1/sessions").json()
        assert [s["id"] for s in listed] == [ann_s["id"]]
        assert ann.get(f"{server.base}/api/v1/sessions/{ann_s['id']}").status_code == 200
        for suffix in ("", "/samples", "/events"):
            r = ann.get(f"{server.base}/api/v1/sessions/{bob_s['id']}{suffix}")
            assert r.status_code == 404, (suffix, r.text)
        # Changing someone else's session: refused, and nothing changes.
        same_origin = {"Origin": server.base}
        r = ann.post(f"{server.base}/api/v1/sessions/{bob_s['id']}/end", headers=same_origin)
        assert r.status_code == 404
        bob_now = httpx.get(f"{server.base}/api/v1/sessions/{bob_s['id']}", headers=server.admin_headers).json()
        assert bob_now["status"] == "scheduled"
        # Creating a session for another clinician: refused.
        r = ann.post(server.base + "/api/v1/sessions", headers=same_origin,
                     json={"clinician": "bob@example.org", "client_code": "C-X"})
        assert r.status_code == 403
        r = ann.post(server.base + "/api/v1/sessions", headers=same_origin,
                     json={"clinician": "ann@example.org", "client_code": "C-A2"})
        assert r.status_code == 201
        # A cookie-authenticated change without a same-origin Origin or CSRF header: refused.
        r = ann.post(f"{server.base}/api/v1/sessions/{ann_s['id']}/end")
        assert r.status_code == 403
        r = ann.post(f"{server.base}/api/v1/sessions/{ann_s['id']}/end", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        token = csrf_from(ann.get(server.base + "/account/password").text)
        r = ann.post(f"{server.base}/api/v1/sessions/{ann_s['id']}/end", headers={"X-CSRF-Token": token})
        assert r.status_code == 200 and r.json()["status"] == "ended"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_sessions_are_shared_by_workers(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """A login made on one worker is honoured by another on the same database."""
    a = server_factory(db_url)
    b = server_factory(db_url)
    create_user(db_url, "ann@example.org", PW)
    with httpx.Client() as c:
        login(c, a.base, "ann@example.org", PW)
        cookie = c.cookies["bl_session"]
    r = httpx.get(b.base + "/api/v1/sessions", cookies={"bl_session": cookie})
    assert r.status_code == 200
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from login_session").fetchone() == (1,)
