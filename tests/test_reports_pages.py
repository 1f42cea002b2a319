"""Report pages against a real ``bondline serve --demo`` process: access
rules, exports, the DEMO banner, and real ingest through to the report."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
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
from tests.support.login import create_user, login
from tests.support.samples import connect
from tests.support.server import ADMIN_KEY, ServerProcess, free_port, isolated_env


@dataclass
class DemoServer:
    base: str
    logins: list[tuple[str, str]]
    proc: subprocess.Popen[bytes]


def start_demo_server(db: Path, log: Path) -> subprocess.Popen[bytes]:
    port = free_port()
    # No scheduled pruning: these pages are checked against the raw samples
    # (tests/test_retention_*.py check the pruned ones).
    env = dict(isolated_env(), BONDLINE_ADMIN_API_KEY=ADMIN_KEY, PYTHONUNBUFFERED="1",
               BONDLINE_RETENTION_INTERVAL_MINUTES="0")
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


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    tmp = tmp_path_factory.mktemp("reports")
    db = tmp / "demo.db"
    result = build_demo(str(db), 4, clinicians=2, clients_per_clinician=4, sessions=(5, 7), duration_s=(600, 600))
    proc = start_demo_server(db, tmp / "server.log")
    try:
        yield DemoServer(proc.base, result.logins, proc)  # type: ignore[attr-defined]
    finally:
        stop_server(proc)


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
        assert page.text.count("<svg") == 2  # the scatter, drawn for a wide screen and for a phone
        assert 'data-term="within"' in page.text or "Not enough data for the model" in page.text
        client_ids = sorted({int(x.split('"')[0]) for x in page.text.split('href="/reports/clients/')[1:]})
        assert len(client_ids) == 4
        course = c.get(f"{demo.base}/reports/clients/{client_ids[0]}")
        assert course.status_code == 200 and "For the next session:" in course.text and "<svg" in course.text
        session_ids = [int(x.split('"')[0]) for x in course.text.split('href="/reports/sessions/')[1:]]
        assert session_ids
        report = c.get(f"{demo.base}/reports/sessions/{session_ids[0]}")
        assert report.status_code == 200
        assert report.text.count("chart timeline chart-wide") == 2
        assert report.text.count("chart timeline chart-narrow") == 2
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
        # Per-side disrupted minutes: the sides together account for every disrupted minute.
        for row in (r for r in rows if r["disrupted_minutes"]):
            sides = {k: int(row[f"disrupted_minutes_{k}"]) for k in
                     ("client_side", "clinician_side", "between", "undetermined")}
            assert (max(sides["client_side"], sides["clinician_side"]) + sides["between"] + sides["undetermined"]
                    <= int(row["disrupted_minutes"])
                    <= sides["client_side"] + sides["clinician_side"] + sides["between"] + sides["undetermined"]), row
        assert js["model_split"] is not None and "ok" in js["model_split"]
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
    # Only the client's collector ran, peer to peer: the loss on what it received is
    # the clinician's sending or the client's receiving, and the report says so.
    att = bursts[0]["attribution"]
    assert (att["verdict"], att["sender"], att["receiver"], att["legs"]) == ("between", "clinician", "client", [])
    assert [(x["figure"], x["reported_by"], x["value"]) for x in att["evidence"]] == [
        ("loss_in", "client", round(100 / 1500, 4))]
    assert data["summary"]["side_minutes"] == {"client": 0, "clinician": 0, "between": 1, "undetermined": 0}
    text = ("The connection between the two (your sending or the client's receiving; peer to peer these cannot be "
            "told apart) lost 7% of packets from 0:20 to 0:30; seen as a packet-loss burst (the client).")
    assert [i["text"] for i in data["incidents"]] == [text]
    assert data["minutes"] == [{"minute": 0, "legs": [], "verdicts": ["between"], "events": [0]}]
    assert text in html.unescape(page.text) and "of those, 1 between the two" in page.text
    row = page.text.split('id="disruption-count"')[1].split("</tr>")[0]
    assert '<td class="num">1</td>' in row
    assert page.status_code == 200 and page.text.count('chart timeline chart-wide') == 1
    # A session nobody connected to yet: a report that says so, not an error.
    empty = server.create_session(client_code="C-E2E", clinician=email)
    with httpx.Client(timeout=30) as c:
        login(c, server.base, email, password)
        r = c.get(f"{server.base}/reports/sessions/{empty['id']}")
        client_id = int(page.text.split('href="/reports/clients/')[1].split('"')[0])
        course = c.get(f"{server.base}/reports/clients/{client_id}")
    assert r.status_code == 200 and "No data: this session never started" in r.text
    assert "No connection samples were received" in r.text
    # Never started: "no data", never a zero that reads as a perfect connection.
    assert "0 min" not in r.text and ">0<" not in r.text and r.text.count("no data") >= 3
    assert course.status_code == 200 and course.text.count('href="/reports/sessions/') == 2


# The pages in a real browser, at desktop and phone sizes: tests/test_web_pages_browser.py.
