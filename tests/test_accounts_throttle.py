"""Logins under load (issue 18): argon2 never runs on the event loop (a
login must not stall the ingest sockets of the same worker), and the login
throttle holds when many guesses arrive at once on two workers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from server.accounts import service
from server.app import create_app
from server.config import Settings
from tests.support.login import create_user, csrf_from
from tests.support.server import ServerProcess

PW = "correct horse battery"


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_password_hashing_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real app in-process; the real argon2 verify, observed: it must run
    on a worker thread, never on the thread that runs the event loop."""
    seen: list[tuple[str, bool]] = []
    real_verify, real_hash = service.verify_password, service.hash_password

    def verify(stored: str | None, password: str) -> bool:
        seen.append((threading.current_thread().name, _on_event_loop()))
        return real_verify(stored, password)

    def hash_(password: str) -> str:
        seen.append((threading.current_thread().name, _on_event_loop()))
        return real_hash(password)

    app = create_app(Settings(database_url=str(tmp_path / "b.db"), admin_api_key="k"))
    create_user(str(tmp_path / "b.db"), "loop@example.org", PW)
    monkeypatch.setattr(service, "verify_password", verify)
    monkeypatch.setattr(service, "hash_password", hash_)
    with TestClient(app) as c:
        for password in ("wrong password!!", PW):
            page = c.get("/login")
            c.post("/login", data={"email": "loop@example.org", "password": password,
                                   "csrf_token": csrf_from(page.text)}, follow_redirects=False)
        page = c.get("/account/password")
        c.post("/account/password", data={"current": PW, "new": "another good passphrase",
                                          "confirm": "another good passphrase",
                                          "csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert len(seen) >= 4, seen
    assert not [s for s in seen if s[1]], f"argon2 ran on the event loop: {seen}"


def _guess(base: str, email: str, password: str) -> int:
    with httpx.Client(timeout=60) as c:
        page = c.get(base + "/login")
        r = c.post(base + "/login", data={"email": email, "password": password, "csrf_token": csrf_from(page.text)})
        return r.status_code


def test_login_throttle_holds_with_two_workers(two_workers: ServerProcess) -> None:
    srv = two_workers
    create_user(srv.db_url, "many@example.org", PW)
    # 16 guesses at once over separate connections, spread over both workers.
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: _guess(srv.base, "many@example.org", f"wrong guess {i:04d}"), range(16)))
    assert set(codes) <= {401, 429}, codes
    assert codes.count(401) == 5, codes  # BONDLINE_LOGIN_MAX_FAILURES: exactly five guesses were judged
    assert _guess(srv.base, "many@example.org", PW) == 429
