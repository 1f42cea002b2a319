"""Security headers on every response, and the origin rules for the
cross-origin surfaces (plugin script, HTTP and WebSocket ingest)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.login import create_user, login, login_page
from tests.support.samples import batch, sample
from tests.support.server import ServerProcess
from tests.support.shared_server import once_per_module

sqlite_server = once_per_module("sqlite_server")

PW = "correct horse battery"
PLATFORM = "https://platform.example"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _assert_secure_headers(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"


def test_headers_on_every_kind_of_response(sqlite_server: ServerProcess) -> None:
    base = sqlite_server.base
    s = sqlite_server.create_session()
    responses = [
        httpx.get(base + "/"),
        httpx.get(base + "/login"),
        httpx.get(base + "/healthz"),
        httpx.get(base + "/static/bondline.css"),
        httpx.get(base + "/plugin/bondline.js"),
        httpx.get(base + "/no/such/page"),
        httpx.get(base + "/api/v1/sessions"),  # 401
        httpx.get(base + f"/api/v1/sessions/{s['id']}", headers=sqlite_server.admin_headers),
        httpx.post(base + "/v1/telemetry", content=b"{not json"),  # 400
        httpx.post(base + "/v1/telemetry", content=b"x" * 2_000_000),  # 413
        httpx.post(base + "/login", data={"email": "a", "password": "b"}),  # 403 CSRF
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 404, 401, 200, 400, 413, 403]
    for r in responses:
        _assert_secure_headers(r)
    # Pages and API answers are not cached; the style sheet and plugin script may be.
    assert responses[1].headers["cache-control"] == "no-store"
    assert responses[7].headers["cache-control"] == "no-store"
    assert "no-store" not in responses[3].headers.get("cache-control", "")
    assert responses[3].headers["content-type"].startswith("text/css")


def test_plugin_and_ingest_refuse_unlisted_origins_by_default(sqlite_server: ServerProcess) -> None:
    base = sqlite_server.base
    s = sqlite_server.create_session()
    token = s["tokens"]["client"]
    body = json.loads(batch([sample(0)]))
    body["token"] = token
    # Preflight from a platform that is not configured: refused.
    r = httpx.options(base + "/v1/telemetry", headers={"Origin": PLATFORM, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = httpx.post(base + "/v1/telemetry", json=body, headers={"Origin": PLATFORM})
    assert r.status_code == 403 and r.json()["code"] == 4403
    # The script itself loads (a plain <script> sends no Origin) but is not readable cross-origin.
    r = httpx.get(base + "/plugin/bondline.js", headers={"Origin": PLATFORM})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # Same origin and non-browser clients (no Origin) are fine.
    r = httpx.post(base + "/v1/telemetry", json=body, headers={"Origin": base})
    assert r.status_code == 200 and r.json()["stored"] == 1
    r = httpx.post(base + "/v1/telemetry", json={**body, "samples": [sample(1)]})
    assert r.status_code == 200 and r.json()["stored"] == 1
    stored = httpx.get(f"{base}/api/v1/sessions/{s['id']}/samples", headers=sqlite_server.admin_headers).json()
    assert [x["seq"] for x in stored] == [0, 1]

    async def ws_status(origin: str | None) -> tuple[int, str] | None:
        """None when the socket is welcomed; else the close code and reason the page's script sees."""
        headers = {"Origin": origin} if origin else None
        try:
            async with websockets.connect(sqlite_server.ws + "/v1/telemetry", additional_headers=headers) as ws:
                await ws.send(json.dumps({"type": "auth", "token": token}))
                assert json.loads(await ws.recv())["type"] == "welcome"
                return None
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None
            return e.rcvd.code, e.rcvd.reason

    # A refused origin is told why, with a code the plugin treats as final (not a 403 it sees as 1006).
    assert asyncio.run(ws_status(PLATFORM)) == (
        4403, "origin https://platform.example is not allowed: add it to BONDLINE_ALLOWED_ORIGINS")
    assert asyncio.run(ws_status("null")) == (4403, "origin null is not allowed: add it to BONDLINE_ALLOWED_ORIGINS")
    assert asyncio.run(ws_status(base)) is None
    assert asyncio.run(ws_status(None)) is None
    # Nothing from a refused origin was stored.
    stored = httpx.get(f"{base}/api/v1/sessions/{s['id']}/samples", headers=sqlite_server.admin_headers).json()
    assert [x["seq"] for x in stored] == [0, 1]
    assert "origin 'https://platform.example' is not allowed" in sqlite_server.log_path.read_text()


def test_configured_platform_origin_is_allowed(server_factory, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = server_factory(sqlite_url, env={"BONDLINE_ALLOWED_ORIGINS": f"{PLATFORM}, https://other.example:8443"})
    s = srv.create_session()
    token = s["tokens"]["client"]
    r = httpx.options(srv.base + "/v1/telemetry",
                      headers={"Origin": PLATFORM, "Access-Control-Request-Method": "POST",
                               "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == PLATFORM
    assert "credentials" not in " ".join(r.headers.keys())
    body = json.loads(batch([sample(0)]))
    body["token"] = token
    r = httpx.post(srv.base + "/v1/telemetry", json=body, headers={"Origin": PLATFORM})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == PLATFORM
    r = httpx.get(srv.base + "/plugin/bondline.js", headers={"Origin": "https://other.example:8443"})
    assert r.headers["access-control-allow-origin"] == "https://other.example:8443"
    r = httpx.post(srv.base + "/v1/telemetry", json=body, headers={"Origin": "https://platform.example.evil"})
    assert r.status_code == 403

    async def welcome() -> str:
        async with websockets.connect(srv.ws + "/v1/telemetry", additional_headers={"Origin": PLATFORM}) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            return str(json.loads(await ws.recv())["type"])

    assert asyncio.run(welcome()) == "welcome"
    # The JSON API is never opened to other origins.
    r = httpx.get(srv.base + "/api/v1/sessions", headers={"Origin": PLATFORM, **srv.admin_headers})
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.browser
def test_pages_render_under_the_csp_in_chromium(sqlite_server: ServerProcess) -> None:
    """A real browser enforces the policy: our pages load with no violation,
    their style sheet applies, and an injected inline script does not run."""
    from playwright.sync_api import sync_playwright

    create_user(sqlite_server.db_url, "boss@example.org", PW, is_admin=True)
    ARTIFACTS.mkdir(exist_ok=True)
    violations: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            login_page(page, sqlite_server.base, "boss@example.org", PW)
            for path in ("/", "/admin/users", "/admin/api-keys", "/admin/audit", "/clients/erase",
                         "/account/password"):
                page.goto(sqlite_server.base + path)
                assert page.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor") == "rgb(23, 50, 77)"
            page.screenshot(path=str(ARTIFACTS / "security-admin-users.png"))
            assert violations == []
            # An inline script (as an XSS would inject) is blocked by the policy.
            with pytest.raises(Exception, match="(?i)content security policy|refused"):
                page.add_script_tag(content="window.__pwned = 1")
            assert page.evaluate("window.__pwned === undefined")
            # Logging out through the header's form works under the policy too.
            with page.expect_navigation():
                page.click("nav.account button[type=submit]")
            assert page.url.endswith("/login")
            with httpx.Client() as c:
                login(c, sqlite_server.base, "boss@example.org", PW)
        finally:
            browser.close()
