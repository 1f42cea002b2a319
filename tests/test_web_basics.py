"""The web plumbing people and programs meet first, on a real server: HEAD,
/favicon.ico, error pages for browsers and JSON for the API, the API docs
served without a CDN (and their "Authorize"), the /help pages, and the demo
call's session endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.shared_server import running_server

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("web-basics")) as s:
        yield s


@pytest.mark.parametrize("path", ["/", "/login", "/reports/caseload", "/favicon.ico", "/static/bondline.css",
                                  "/docs", "/help/reports", "/nowhere"])
def test_head_answers_like_get(srv: ServerProcess, path: str) -> None:
    get = httpx.get(srv.base + path, headers=HTML, follow_redirects=False)
    head = httpx.head(srv.base + path, headers=HTML, follow_redirects=False)
    assert head.status_code == get.status_code != 405
    assert head.content == b""
    for name in ("content-type", "content-length", "location", "etag"):
        assert head.headers.get(name) == get.headers.get(name), name


def test_favicon(srv: ServerProcess) -> None:
    r = httpx.get(srv.base + "/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header


def test_errors_are_pages_for_people_and_json_for_programs(srv: ServerProcess) -> None:
    page = httpx.get(srv.base + "/nowhere", headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Page not found</h1>" in page.text and 'href="/"' in page.text
    assert httpx.get(srv.base + "/nowhere").json() == {"detail": "Not Found"}
    # The JSON API stays JSON even for a browser.
    api = httpx.get(srv.base + "/api/v1/sessions/999999", headers={**HTML, **srv.admin_headers})
    assert api.status_code == 404 and api.headers["content-type"] == "application/json"
    bad = httpx.get(srv.base + "/help/..%2F..%2Fetc%2Fpasswd", headers=HTML)
    assert bad.status_code == 404 and "text/html" in bad.headers["content-type"]


def test_api_docs_need_no_cdn_and_declare_the_api_key(srv: ServerProcess) -> None:
    pages = (("/docs", "/docs-assets/swagger-ui-bundle.js"), ("/redoc", "/docs-assets/redoc.standalone.js"))
    for path, script in pages:
        page = httpx.get(srv.base + path)
        assert page.status_code == 200 and script in page.text
        assert "http" not in page.text.split("<body>")[1], "the docs page loads something from elsewhere"
        assert "<script>" not in page.text  # no inline script: the CSP forbids them
        assert httpx.get(srv.base + script).status_code == 200
    spec = httpx.get(srv.base + "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["APIKey"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "blk_...",
        "description": spec["components"]["securitySchemes"]["APIKey"]["description"]}
    assert {"APIKey": []} in spec["paths"]["/api/v1/sessions"]["post"]["security"]


def test_help_pages_render_the_docs(srv: ServerProcess) -> None:
    r = httpx.get(srv.base + "/help/methodology")
    assert r.status_code == 200
    assert 'id="client-course"' in r.text and 'id="caseload-model"' in r.text
    assert httpx.get(srv.base + "/help/no-such-page").status_code == 404


def test_demo_call_creates_a_session_only_when_asked(srv: ServerProcess) -> None:
    count = lambda: len(httpx.get(srv.base + "/api/v1/sessions?limit=1000", headers=srv.admin_headers).json())  # noqa: E731
    before = count()
    with httpx.Client() as page:
        html = page.get(srv.base + "/demo/call")
        assert html.status_code == 200
        token = json.loads(html.text.split('id="demo-config">')[1].split("</script>")[0])["csrf"]
        # A cross-site form, or a request without the page's token, cannot make one.
        assert httpx.post(srv.base + "/demo/call/sessions", data={"x": "1"}).status_code == 403
        assert page.post(srv.base + "/demo/call/sessions", json={}).status_code == 403
        assert page.post(srv.base + "/demo/call/sessions", data={"x": "1"},
                         headers={"X-CSRF-Token": token}).status_code == 415
        assert count() == before
        r = page.post(srv.base + "/demo/call/sessions", json={}, headers={"X-CSRF-Token": token})
    assert r.status_code == 201 and set(r.json()["tokens"]) == {"clinician", "client"}
    assert r.headers["cache-control"] == "no-store"
    assert count() == before + 1
