"""Serving the plugin script, and the demo call page in a real browser."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from playwright.sync_api import sync_playwright
from starlette.requests import Request

from server.config import DemoSettings
from server.demo.call import DEMO_DB_CLINICIAN, PLAIN_CLINICIAN, demo_clinician, demo_enabled
from tests.support.browser_call import ARTIFACTS, launch
from tests.support.server import ServerProcess
from tests.support.shared_server import running_server

JS = Path(__file__).resolve().parents[1] / "plugin" / "js" / "bondline.js"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for this module's tests that each use their own session."""
    with running_server(tmp_path_factory.mktemp("shared-server")) as srv:
        yield srv


def test_plugin_script_and_demo_page_are_served(shared_server: ServerProcess) -> None:
    srv = shared_server
    r = httpx.get(srv.base + "/plugin/bondline.js")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=300, must-revalidate"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.content == JS.read_bytes()
    etag = r.headers["etag"]
    assert etag == '"' + hashlib.sha256(JS.read_bytes()).hexdigest()[:32] + '"'
    again = httpx.get(srv.base + "/plugin/bondline.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert httpx.get(srv.base + "/plugin/routes.py").status_code == 404
    assert httpx.get(srv.base + "/plugin/..%2Fuplink.py").status_code == 404
    # The sessions API's snippet points at this script.
    s = srv.create_session()
    assert all(f"{srv.base}/plugin/bondline.js" in p["snippet"] for p in s["participants"])

    # The demo call, setting "auto": on when reached as 127.0.0.1 from 127.0.0.1; off under a public
    # host name (even through a reverse proxy on the same machine).
    assert httpx.get(srv.base + "/demo/call").status_code == 200
    r = httpx.get(srv.base + "/demo/call", headers={"Host": "bondline.example.org"})
    assert r.status_code == 404 and "BONDLINE_DEMO_CALL" in r.text
    assert httpx.get(srv.base + "/demo/call/1/telemetry", headers={"Host": "bondline.example.org"}).status_code == 404
    assert 'href="/demo/call"' in httpx.get(srv.base + "/").text


def _request(client: str, host: str, demo_db: bool = False) -> Request:
    app = SimpleNamespace(state=SimpleNamespace(demo=True) if demo_db else SimpleNamespace())
    return Request({"type": "http", "method": "GET", "path": "/demo/call", "headers": [(b"host", host.encode())],
                    "client": (client, 5000), "query_string": b"", "app": app})


@pytest.mark.parametrize(("mode", "client", "host", "demo_db", "enabled"), [
    ("auto", "127.0.0.1", "127.0.0.1:8000", False, True),
    ("auto", "127.0.0.1", "localhost:8000", False, True),
    ("auto", "::1", "[::1]:8000", False, True),
    ("auto", "10.1.2.3", "127.0.0.1:8000", False, False),
    ("auto", "127.0.0.1", "bondline.example.org", False, False),
    ("auto", "10.1.2.3", "bondline.example.org", True, True),  # bondline serve --demo
    ("off", "127.0.0.1", "127.0.0.1:8000", True, False),
    ("on", "10.1.2.3", "bondline.example.org", False, True),
])
def test_demo_call_setting(mode: str, client: str, host: str, demo_db: bool, enabled: bool) -> None:
    request = _request(client, host, demo_db)
    settings = DemoSettings(demo_call=mode)  # type: ignore[arg-type]
    assert demo_enabled(request, settings) is enabled
    # On the demo database the call belongs to a demo clinician who can log in and see it.
    assert demo_clinician(request, settings) == (DEMO_DB_CLINICIAN if demo_db else PLAIN_CLINICIAN)


@pytest.mark.browser
def test_demo_call_shows_live_telemetry(shared_server: ServerProcess) -> None:
    srv = shared_server
    other = srv.create_session(client_code="C-REAL")  # not a demo session: never readable through the demo
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        before = len(httpx.get(f"{srv.base}/api/v1/sessions?limit=1000", headers=srv.admin_headers).json())
        page.goto(srv.base + "/")
        page.click("text=Demo call")
        page.wait_for_url("**/demo/call")
        # Visiting the page creates no session: only a call that starts does.
        assert len(httpx.get(f"{srv.base}/api/v1/sessions?limit=1000", headers=srv.admin_headers).json()) == before
        # The synthetic test pattern is the default source (no camera is asked for;
        # tests/test_web_pages_browser.py runs a call with it). Here: the device's
        # camera and microphone, Chromium's fake ones.
        assert page.is_checked("input[name=source][value=synthetic]")
        page.check("input[name=source][value=devices]")
        page.click("#demo-start-button")
        # The page reads back what the server stored for each side.
        for role in ("clinician", "client"):
            page.wait_for_function(
                f"() => Number(document.querySelector('#side-{role} td[data-f=stored]').textContent) >= 3",
                timeout=30_000)
            state = page.get_attribute(f"#badge-{role} .bondline-badge", "data-state")
            assert state in ("good", "degraded"), page.evaluate(
                f"() => bondlineDemo.collectors['{role}'].status().lastSample")
        page.screenshot(path=str(ARTIFACTS / "demo-call.png"), full_page=True)
        page.click("#demo-hangup")
        page.wait_for_function("() => document.getElementById('demo-status').textContent.includes('Call ended')",
                               timeout=15_000)
        session_id = page.evaluate("() => JSON.parse(document.getElementById('demo-config').textContent).session")
        browser.close()
    assert errors == []
    data = httpx.get(f"{srv.base}/demo/call/{session_id}/telemetry").json()
    assert data["clinician"]["stored"] >= 3 and data["client"]["stored"] >= 3
    assert data["client"]["last"]["bitrate_in_kbps"] > 0
    assert httpx.get(f"{srv.base}/demo/call/{other['id']}/telemetry").status_code == 404
