"""Report pages against a real ``bondline serve --demo`` process: access
rules, exports, the DEMO banner, and real ingest through to the report."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.demo.build import build_demo
from tests.support.browser_call import BASE_ARGS
from tests.support.login import create_user, login
from tests.support.samples import connect
from tests.support.server import ADMIN_KEY, ServerProcess, free_port


@dataclass
class DemoServer:
    base: str
    logins: list[tuple[str, str]]
    proc: subprocess.Popen[bytes]


def start_demo_server(db: Path, log: Path) -> subprocess.Popen[bytes]:
    port = free_port()
    env = dict(os.environ, BONDLINE_ADMIN_API_KEY=ADMIN_KEY, PYTHONUNBUFFERED="1")
    env.pop("BONDLINE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--demo", "--db", str(db), "--port", str(port)],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(base + "/healthz", timeout=1.0).status_code == 200:
                proc.base = base  # type: ignore[attr-defined]
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    tmp = tmp_path_factory.mktemp("reports")
    db = tmp / "demo.db"
    result = build_demo(str(db), 4, clinicians=2, clients_per_clinician=4, sessions=(5, 7), duration_s=(600, 600))
    proc = start_demo_server(db, tmp / "server.log")
    try:
        yield DemoServer(proc.base, result.logins, proc)  # type: ignore[attr-defined]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def logged_in(demo: DemoServer, who: int = 0) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        login(c, demo.base, *demo.logins[who])
        yield c


def test_pages_need_a_login(demo: DemoServer) -> None:
    r = httpx.get(demo.base + "/reports/caseload", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert httpx.get(demo.base + "/reports/export.csv", follow_redirects=False).status_code == 303


def test_caseload_course_and_session_pages(demo: DemoServer) -> None:
    with logged_in(demo) as c:
        page = c.get(demo.base + "/reports/caseload")
        assert page.status_code == 200
        assert 'id="demo-banner"' in page.text and "synthetic" in page.text
        assert page.text.count("<svg") == 1
        assert 'data-term="within"' in page.text or "Not enough data for the model" in page.text
        client_ids = sorted({int(x.split('"')[0]) for x in page.text.split('href="/reports/clients/')[1:]})
        assert len(client_ids) == 4
        course = c.get(f"{demo.base}/reports/clients/{client_ids[0]}")
        assert course.status_code == 200 and "For the next session:" in course.text and "<svg" in course.text
        session_ids = [int(x.split('"')[0]) for x in course.text.split('href="/reports/sessions/')[1:]]
        assert session_ids
        report = c.get(f"{demo.base}/reports/sessions/{session_ids[0]}")
        assert report.status_code == 200
        assert report.text.count('class="chart timeline"') == 2
        assert 'id="summary"' in report.text and 'id="verdict"' in report.text
        # The clinician's own rating form is reached from the session page.
        assert f'href="/sessions/{session_ids[0]}/rating"' in report.text
        assert c.get(f"{demo.base}/sessions/{session_ids[0]}/rating").status_code == 200
        data = c.get(f"{demo.base}/reports/sessions/{session_ids[0]}.json").json()
        assert data["summary"]["minutes"] == 10 and len(data["summary"]["participants"]) == 2
        assert {"summary", "events", "ratings", "scores"} <= set(data)
        bad = c.get(demo.base + "/reports/caseload?outcome=nonsense")
        assert bad.status_code == 422


def test_clinicians_see_only_their_own_caseload(demo: DemoServer) -> None:
    with logged_in(demo, 1) as other, logged_in(demo, 0) as me:
        theirs = other.get(demo.base + "/reports/export.json").json()
        mine = me.get(demo.base + "/reports/export.json").json()
        their_sessions = {s["session_id"] for s in theirs["sessions"]}
        my_sessions = {s["session_id"] for s in mine["sessions"]}
        assert their_sessions and my_sessions and not (their_sessions & my_sessions)
        sid = min(their_sessions)
        assert me.get(f"{demo.base}/reports/sessions/{sid}").status_code == 404
        assert me.get(f"{demo.base}/reports/sessions/{sid}.json").status_code == 404
        their_page = other.get(demo.base + "/reports/caseload").text
        their_client = int(their_page.split('href="/reports/clients/')[1].split('"')[0])
        assert me.get(f"{demo.base}/reports/clients/{their_client}").status_code == 404


def test_exports_are_tidy(demo: DemoServer) -> None:
    with logged_in(demo) as c:
        r = c.get(demo.base + "/reports/export.csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        js = c.get(demo.base + "/reports/export.json").json()
        assert len(rows) == len(js["sessions"]) > 0
        assert {"session_id", "client_code", "disrupted_minutes", "mos_median", "client.wai-sr-client.bond"} <= set(
            rows[0])
        assert all(row["client_code"].startswith("DEMO-") for row in rows)
        assert js["model"]["outcome"] == "client.wai-sr-client.bond"
        assert js["analysis_config"]["loss_fraction"] == 0.01
        # Missing values are empty cells, never zero.
        unrated = [row for row in rows if row["client.wai-sr-client.bond"] == ""]
        assert all(row["client.wai-sr-client.bond"] != "0" for row in unrated)


# --- real ingest through to the report, on both backends ------------------

T0 = int(time.time() * 1000) - 3_600_000


def _sample(seq: int, loss: int) -> dict[str, Any]:
    """A browser-like sample: clean, or ``loss`` of 100 video packets lost."""
    return {
        "seq": seq, "startMs": T0 + seq * 1000, "intervalMs": 1000, "source": "browser",
        "streams": [
            {"kind": "audio", "direction": "inbound", "packetsReceived": 50, "packetsLost": 0, "jitterMs": 3.0,
             "concealedSamples": 0, "totalSamplesReceived": 48000},
            {"kind": "video", "direction": "inbound", "packetsReceived": 100 - loss, "packetsLost": loss,
             "framesPerSecond": 20.0, "framesDropped": 0, "totalFreezesDurationMs": 0.0},
        ],
        "connection": {"state": "connected", "rttMs": 30.0},
    }


async def _send(ws_base: str, token: str) -> None:
    ws, welcome = await connect(ws_base, token)
    assert welcome["lastSeq"] is None
    samples = [_sample(i, 10 if 20 <= i < 30 else 0) for i in range(120)]
    await ws.send(json.dumps({"type": "samples", "schema": "bondline.sample/1", "batch": 1, "samples": samples}))
    ack = json.loads(await ws.recv())
    assert ack["stored"] == 120, ack
    await ws.close()


def test_ingested_samples_become_a_report(server: ServerProcess, db_url: str) -> None:
    email, password = "reports.e2e@example.org", "correct horse battery"
    create_user(db_url, email, password)
    s = server.create_session(client_code="C-E2E", clinician=email)
    asyncio.run(_send(server.ws, s["tokens"]["client"]))
    with httpx.Client(timeout=30) as c:
        login(c, server.base, email, password)
        data = c.get(f"{server.base}/reports/sessions/{s['id']}.json").json()
        page = c.get(f"{server.base}/reports/sessions/{s['id']}")
    bursts = [e for e in data["events"] if e["kind"] == "loss_burst"]
    assert [(e["role"], e["start_ms"] - T0, e["end_ms"] - T0, e["severity"]) for e in bursts] == [
        ("client", 20_000, 30_000, 6.7)]
    assert data["summary"]["minutes"] == 2 and data["summary"]["disrupted_minutes"] == 1
    assert page.status_code == 200 and page.text.count('class="chart timeline"') == 1
    # A session nobody connected to yet: a report that says so, not an error.
    empty = server.create_session(client_code="C-E2E", clinician=email)
    with httpx.Client(timeout=30) as c:
        login(c, server.base, email, password)
        r = c.get(f"{server.base}/reports/sessions/{empty['id']}")
        client_id = int(page.text.split('href="/reports/clients/')[1].split('"')[0])
        course = c.get(f"{server.base}/reports/clients/{client_id}")
    assert r.status_code == 200 and "No connection data was received" in r.text
    assert "No connection samples were received" in r.text
    assert course.status_code == 200 and course.text.count('href="/reports/sessions/') == 2


# --- real browser -----------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _charts_drawn(page: Any, selector: str, expected: int) -> None:
    charts = page.locator(selector)
    assert charts.count() == expected, f"{selector}: {charts.count()} charts"
    for i in range(expected):
        svg = charts.nth(i)
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150, box
        # Drawn content, not an empty frame: lines, bars or points as paths.
        assert svg.locator("path").count() > 20


@pytest.mark.browser
def test_pages_render_in_a_real_browser(demo: DemoServer) -> None:
    from playwright.sync_api import sync_playwright

    from tests.support.login import login_page

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=BASE_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems: list[str] = []
            # CSP refusals and script errors show as console errors; failed loads are
            # checked by URL instead (a browser asks for /favicon.ico on its own).
            page.on("console", lambda m: problems.append(m.text)
                    if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
            login_page(page, demo.base, *demo.logins[0])
            page.goto(demo.base + "/")
            page.click("a[href='/reports/caseload']")
            page.wait_for_selector(".chart.scatter svg")
            assert page.locator("#demo-banner").is_visible()
            _charts_drawn(page, ".chart.scatter svg", 1)
            page.screenshot(path=str(ARTIFACTS / "reports-caseload.png"), full_page=True)

            page.locator("#clients a").first.click()
            page.wait_for_selector(".chart.course svg")
            _charts_drawn(page, ".chart.course svg", 1)
            assert page.locator("#suggestion").inner_text().startswith("For the next session:")
            assert page.locator("#demo-banner").is_visible()
            page.screenshot(path=str(ARTIFACTS / "reports-course.png"), full_page=True)

            # The most disrupted session of this client, for a telling picture.
            rows = page.locator("#course tr").all()[1:]
            minutes = [int(r.locator("td").nth(2).inner_text().split("/")[0]) for r in rows]
            rows[minutes.index(max(minutes))].locator("a").first.click()
            page.wait_for_selector(".chart.timeline svg")
            _charts_drawn(page, ".chart.timeline svg", 2)
            assert page.locator("#verdict").inner_text().startswith("Connection was")
            page.screenshot(path=str(ARTIFACTS / "reports-session.png"), full_page=True)
            page.emulate_media(media="print")
            assert not page.locator("header").is_visible() and not page.locator("nav.crumbs").is_visible()
            assert page.locator(".chart.timeline svg").first.is_visible()
            page.screenshot(path=str(ARTIFACTS / "reports-session-print.png"), full_page=True)
            assert not problems, problems
        finally:
            browser.close()
