"""The connection check page in headless Chromium when a figure cannot be
measured: the page says "not measured" and what to try, never "good".

Two conditions, one check each:
- sound blocked, as a browser's autoplay rule or a site setting does: every
  Web Audio context stays suspended and refuses to resume, so the pilot
  never plays either way and neither direction's sound gaps are measured;
- a page that never hands its canvas frames to WebRTC: no video frame
  reaches the sidecar, so the picture's freezes are not measured.
Then the clinician, logged in, sees each check's result and date on the
session page and the client's course page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from server.sidecar.check import NOT_MEASURED, TIP_BROWSER, TIP_SOUND, WORDS
from server.sidecar.results import LEVEL_TEXT
from server.timeutil import to_iso
from tests.support.browser_call import ARTIFACTS, CALL_ARGS
from tests.support.login import create_user, login
from tests.support.shared_server import running_server

CLINICIAN = ("checks.clinician@example.org", "correct horse battery")

pytestmark = pytest.mark.browser

ARGS = CALL_ARGS
# What a browser that does not allow sound does to the page's audio (Playwright's
# clicks count as user gestures, so Chromium's own autoplay rule cannot be used here).
NO_SOUND = """
(() => {
  const Native = window.AudioContext;
  window.AudioContext = function (opts) { const c = new Native(opts); c.suspend(); return c; };
  window.AudioContext.prototype = Native.prototype;
  Native.prototype.resume = function () {
    return Promise.reject(new DOMException('sound is not allowed', 'NotAllowedError'));
  };
})();
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_server(tmp_path_factory.mktemp("check-page")) as srv:
        create_user(srv.db_url, *CLINICIAN)
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _check_link(server: Any, client_code: str) -> tuple[dict[str, Any], str]:
    s = server.create_session(client_code=client_code, clinician=CLINICIAN[0])
    r = httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/probe/check-link", headers=server.admin_headers)
    assert r.status_code == 201, r.text
    return s, r.json()["url"]


def _finish(page: Page, shot: str) -> tuple[dict[str, Any], str]:
    page.wait_for_selector("#check-result:not([hidden])", timeout=90_000)
    Path(ARTIFACTS).mkdir(exist_ok=True)
    page.screenshot(path=f"{ARTIFACTS}/{shot}", full_page=True)
    result: dict[str, Any] = page.evaluate("() => window.bondlineCheckResult")
    return result, page.inner_text("#check-result")


def _stored_check(server: Any, session_id: int) -> dict[str, Any]:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/events", headers=server.admin_headers)
    r.raise_for_status()
    checks = [e for e in r.json() if e["kind"] == "probe.check"]
    assert len(checks) == 1, checks
    event: dict[str, Any] = checks[0]
    return event


def _clinician_pages(server: Any, session_id: int) -> tuple[str, str]:
    """The session report and the client's course page, as the logged-in clinician gets them."""
    with httpx.Client(timeout=30) as c:
        login(c, server.base, *CLINICIAN)
        page = c.get(f"{server.base}/reports/sessions/{session_id}")
        assert page.status_code == 200, page.text
        client_id = int(page.text.split('href="/reports/clients/')[1].split('"')[0])
        course = c.get(f"{server.base}/reports/clients/{client_id}")
        assert course.status_code == 200, course.text
    return page.text, course.text


def _row_of(course_html: str, session_id: int) -> str:
    return course_html.split(f'href="/reports/sessions/{session_id}"')[1].split("</tr>")[0]


def test_sound_blocked_by_the_browser_is_not_measured(server: Any, browser: Browser) -> None:
    s, url = _check_link(server, "C-NOSOUND")
    page = browser.new_page()
    try:
        page.add_init_script(NO_SOUND)
        page.goto(url)
        page.get_by_role("button", name="Start the check").click()
        result, text = _finish(page, "sidecar-check-no-sound.png")
    finally:
        page.close()
    verdict = result["verdict"]
    assert verdict is not None, result
    # Neither pilot synchronised; video and pings still measured.
    assert result["participant"]["audio"]["heard"] == 0, result["participant"]["audio"]
    assert {"audio_gap_up", "audio_gap_down"} <= set(verdict["missing"]), verdict
    assert verdict["level"] != "good" and verdict["grades"]["sound"] == NOT_MEASURED, verdict
    assert verdict["figures"]["rtt_p95_ms"] is not None and verdict["figures"]["freeze_ms_down"] is not None
    # The words on the page: the verdict, what was not measured, and what to try.
    assert verdict["words"] in text and WORDS["good"] not in text
    assert "Not measured: Sound gaps (your sound); Sound gaps (sound you receive)." in text
    assert "Sound gaps: not measured" in text
    assert TIP_SOUND in text and TIP_BROWSER in text
    event = _stored_check(server, s["id"])
    assert event["data"]["verdict"] == verdict
    # The clinician sees the result and its date, with what was not measured.
    session_html, course_html = _clinician_pages(server, s["id"])
    checks = session_html.split('id="checks"')[1].split("</section>")[0]
    assert LEVEL_TEXT[verdict["level"]] in checks and f'datetime="{to_iso(event["t_ms"])}"' in checks, checks
    assert "not measured: sound gaps (client&#39;s sound), sound gaps (sound received)" in checks, checks
    row = _row_of(course_html, s["id"])
    assert LEVEL_TEXT[verdict["level"]] in row and f'datetime="{to_iso(event["t_ms"])}"' in row, row


# Withholds the picture: the canvas track exists but never delivers a frame.
NO_FRAMES = "CanvasCaptureMediaStreamTrack.prototype.requestFrame = function () {};"


def test_no_video_frame_is_not_measured(server: Any, browser: Browser) -> None:
    s, url = _check_link(server, "C-NOVIDEO")
    page = browser.new_page()
    try:
        page.add_init_script(NO_FRAMES)
        page.goto(url)
        page.get_by_role("button", name="Start the check").click()
        result, text = _finish(page, "sidecar-check-no-video.png")
    finally:
        page.close()
    verdict = result["verdict"]
    assert verdict is not None, result
    assert result["sidecar"]["video"]["received"] == 0, result["sidecar"]["video"]
    assert "freeze_ms_up" in verdict["missing"], verdict
    assert verdict["level"] != "good" and verdict["grades"]["freezes"] in (NOT_MEASURED, "fair", "poor"), verdict
    assert verdict["words"] in text and WORDS["good"] not in text
    assert "Video freezes (your picture)" in text.split("Not measured:")[1].split("\n")[0]
    assert TIP_BROWSER in text
    event = _stored_check(server, s["id"])
    assert event["data"]["verdict"] == verdict
    session_html, course_html = _clinician_pages(server, s["id"])
    checks = session_html.split('id="checks"')[1].split("</section>")[0]
    assert LEVEL_TEXT[verdict["level"]] in checks and "freezes (client&#39;s picture)" in checks, checks
    assert f'datetime="{to_iso(event["t_ms"])}"' in checks
    row = _row_of(course_html, s["id"])
    assert LEVEL_TEXT[verdict["level"]] in row and f'datetime="{to_iso(event["t_ms"])}"' in row, row


def test_a_session_without_a_check_says_so(server: Any) -> None:
    s = server.create_session(client_code="C-NOCHECK", clinician=CLINICIAN[0])
    session_html, course_html = _clinician_pages(server, s["id"])
    assert "No connection check was run for this session." in session_html
    assert '<span class="muted">none</span>' in _row_of(course_html, s["id"])
