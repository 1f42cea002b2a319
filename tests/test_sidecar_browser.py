"""Bondline.probe() in headless Chromium against the real sidecar: both
directions' samples arrive; and the pre-session check page gives a verdict
that is stored on the session."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from media.probe.profile import PROBE_SEQ_BASE, STREAM_PARTICIPANT, STREAM_SIDECAR
from server.sidecar.check import CheckFigures, judge
from tests.support.browser_call import CALL_ARGS
from tests.support.quiet import wait_for_quiet
from tests.support.server import ServerProcess

# The probe's Web Audio pilot starts without a click in this test page.
ARGS = [*CALL_ARGS, "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = "test-artifacts"

pytestmark = pytest.mark.browser


def _samples(server: ServerProcess, session_id: int) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/samples", headers=server.admin_headers,
                  params={"role": "client"})
    r.raise_for_status()
    out: list[dict[str, Any]] = r.json()
    return out


def _events(server: ServerProcess, session_id: int) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/events", headers=server.admin_headers)
    r.raise_for_status()
    out: list[dict[str, Any]] = r.json()
    return out


def test_browser_probe_both_directions_arrive(sqlite_server: ServerProcess) -> None:
    server = sqlite_server
    print(wait_for_quiet())  # counts of what arrived: a machine still busy with the last module stalls them
    s = server.create_session(client_code="C-BROWSER")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(server.base + "/healthz")
            # Alongside the passive plugin, as on a platform page: the probe extends its
            # Bondline object, and its own connection is not reported as the platform's call.
            page.add_script_tag(url="/plugin/bondline.js")
            page.add_script_tag(url="/plugin/bondline-probe.js")
            page.evaluate("(t) => { Bondline.start({server: location.origin, token: t}); }", s["tokens"]["client"])
            result = page.evaluate(
                """(token) => Bondline.probe({token: token, durationMs: 9000}).done""", s["tokens"]["client"])
            watched = page.evaluate("() => Bondline.status().connections")
            page.evaluate("() => Bondline.stop()")
            page.screenshot(path=f"{ARTIFACTS}/sidecar-browser-probe.png")
        finally:
            browser.close()
    assert result["ok"], result
    assert watched == 0
    part, side = result["participant"], result["sidecar"]
    # What the browser received from the sidecar, read from content.
    assert part["video"]["received"] >= 20, part
    assert part["audio"]["heard"] >= 200, part
    assert part["pings"]["rtts"] >= 20, part
    # What the sidecar received from the browser.
    assert side["video"]["received"] >= 20, side
    assert side["audio"]["heard"] >= 200, side
    samples = _samples(server, s["id"])
    streams = {(x["seq"] - PROBE_SEQ_BASE) % 4 for x in samples if x["source"] == "probe"}
    assert streams == {STREAM_SIDECAR, STREAM_PARTICIPANT}, samples
    down = [x["data"] for x in samples if (x["seq"] - PROBE_SEQ_BASE) % 4 == STREAM_PARTICIPANT]
    up = [x["data"] for x in samples if (x["seq"] - PROBE_SEQ_BASE) % 4 == STREAM_SIDECAR]
    assert len(down) >= 6 and len(up) >= 6
    # Only the probe's samples: its own connection is never reported as the platform's call.
    assert all(d.get("probe", {}).get("agent") == "browser" for d in down), [d for d in down if "probe" not in d]
    assert not [x for x in samples if x["source"] != "probe"], samples
    assert any(st["kind"] == "video" and st["direction"] == "inbound" and st["framesReceived"] > 0
               for d in down for st in d["streams"])
    assert any(st["kind"] == "audio" and st["direction"] == "outbound" and st["totalSamplesReceived"] > 0
               for d in up for st in d["streams"])
    kinds = [e["kind"] for e in _events(server, s["id"])]
    assert "probe.start" in kinds and "probe.end" in kinds


def test_check_page_gives_a_verdict_stored_on_the_session(sqlite_server: ServerProcess) -> None:
    server = sqlite_server
    s = server.create_session(client_code="C-CHECK")
    r = httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/probe/check-link", headers=server.admin_headers)
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(url)
            page.get_by_role("button", name="Start the check").click()
            page.wait_for_selector("#check-result:not([hidden])", timeout=60_000)
            words = page.text_content("#check-words") or ""
            page.screenshot(path=f"{ARTIFACTS}/sidecar-check-page.png", full_page=True)
            result = page.evaluate("() => window.bondlineCheckResult")
        finally:
            browser.close()
    verdict = result["verdict"]
    assert verdict is not None, result
    assert words == verdict["words"]
    # The media connected and both ends measured: the verdict is the rule's verdict on those
    # figures (how good a loopback path looks depends on how busy this machine is).
    assert verdict["level"] != "failed"
    figures = verdict["figures"]
    assert figures["rtt_median_ms"] is not None and figures["loss_down"] is not None
    assert judge(CheckFigures(**figures)).to_dict() == verdict
    checks = [e for e in _events(server, s["id"]) if e["kind"] == "probe.check"]
    assert len(checks) == 1 and checks[0]["origin"] == "probe"
    assert checks[0]["data"]["verdict"] == verdict
    # A pre-session check stores its verdict, not samples.
    assert [x for x in _samples(server, s["id"]) if x["source"] == "probe"] == []
