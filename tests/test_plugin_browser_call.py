"""The browser plugin in a real call: two headless Chromium pages, a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.support.browser_call import ARTIFACTS, connect, launch, plugin_page
from tests.support.quiet import wait_for_quiet
from tests.support.server import ServerProcess
from tests.support.shared_server import running_server
from tests.support.tcp_gate import TcpGate
from tests.test_plugin_uplink import events, stored

pytestmark = pytest.mark.browser
ROLES = ("clinician", "client")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for this module's tests that each use their own session."""
    with running_server(tmp_path_factory.mktemp("shared-server")) as srv:
        yield srv


def status(page: Page) -> dict[str, Any]:
    st: dict[str, Any] = page.evaluate("() => Bondline.status()")
    return st


def wait_for(page: Page, condition: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(f"() => {{ const s = Bondline.status(); return !!s && ({condition}); }}",
                           timeout=timeout_ms)


def test_call_streams_both_sides_exactly_once_through_restart_and_reconnect(shared_server: ServerProcess) -> None:
    srv = shared_server
    s = srv.create_session()
    with sync_playwright() as pw:
        browser = launch(pw)
        pages = {role: plugin_page(browser, srv.base) for role in ROLES}
        for role, page in pages.items():
            # The platform's page: start() first, then the platform makes its connections.
            page.evaluate("(o) => { Bondline.start(o); }",
                          {"server": srv.base, "token": s["tokens"][role], "intervalMs": 1000, "badge": True})
        connect(pages["clinician"], pages["client"])
        for page in pages.values():
            wait_for(page, "s.acked >= 4 && s.badge === 'good'")
        pages["clinician"].screenshot(path=str(ARTIFACTS / "plugin-call-badge.png"))

        # The server dies without a goodbye and comes back on the same database.
        srv.kill9()
        time.sleep(2.5)
        srv.start()
        for page in pages.values():
            wait_for(page, "s.connects >= 2 && s.queued === 0", timeout_ms=45_000)

        # The platform drops the connection and makes a new one (as after a network change).
        for page in pages.values():
            page.evaluate("() => window.pc.close()")
        connect(pages["clinician"], pages["client"])
        for page in pages.values():
            before = status(page)["cost"]["samples"]
            wait_for(page, f"s.cost.samples >= {before + 3} && s.queued === 0")
        finals = {}
        for role, page in pages.items():
            assert page.evaluate("() => Bondline.stop(5000)") is True
            finals[role] = status(page)
            assert finals[role] is None  # stopped: no collector left
            assert page.evaluate("() => window.RTCPeerConnection.name") == "RTCPeerConnection"
        browser.close()

    for role in ROLES:
        rows = stored(srv, s["id"], role=role)
        # Every sample the page made is stored once, numbered without gaps,
        # across the restart (welcome lastSeq) and the resends.
        assert [r["seq"] for r in rows] == list(range(len(rows)))
        assert len(rows) >= 10
        assert all(r["source"] == "browser" for r in rows)
        for r in rows:
            for st in r["data"]["streams"]:
                # Deltas across a replaced connection: never negative, never a whole call's worth.
                for k, most in (("packetsReceived", 2000), ("packetsSent", 2000), ("framesDecoded", 200),
                                ("totalSamplesReceived", 100_000)):
                    assert 0 <= st.get(k, 0) < most, (r["seq"], k, st)
                assert 0 <= st.get("concealedSamples", 0) <= max(st.get("totalSamplesReceived", 0), 48_000)
        inbound = [st for r in rows for st in r["data"]["streams"] if st["direction"] == "inbound"]
        assert {st["kind"] for st in inbound} == {"audio", "video"}
        assert sum(st["packetsReceived"] for st in inbound) > 500
        assert max(r["data"]["connection"]["connections"] for r in rows) >= 1
        kinds = [e["kind"] for e in events(srv, s["id"]) if e["role"] == role and e["origin"] == "collector"]
        assert kinds.count("pc.open") == 2
        assert "connection.state" in kinds and "ice.state" in kinds


def test_pagehide_flushes_the_queue_with_send_beacon(shared_server: ServerProcess) -> None:
    srv = shared_server
    print(wait_for_quiet())  # a busy machine can hold the beacon past the test's wait
    s = srv.create_session()
    gate = TcpGate(srv.port).start()
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            page = plugin_page(browser, gate.base)
            page.evaluate("(o) => { Bondline.start(o); }",
                          {"server": gate.base, "token": s["tokens"]["client"], "intervalMs": 500})
            # One page, two connections to each other: both are watched by the one collector.
            _loopback_call(page)
            wait_for(page, "s.nextSeq >= 2 && s.queued === 0")
            gate.cut_websockets()
            wait_for(page, "!s.connected && s.queued >= 3")
            deadline = time.monotonic() + 20
            while gate.ws_refused < 1 and time.monotonic() < deadline:
                time.sleep(0.1)  # the plugin tried to reconnect and the network refused
            numbered = status(page)["nextSeq"]
            page.goto("about:blank")  # pagehide: the queue goes out with navigator.sendBeacon
            browser.close()
        deadline = time.monotonic() + 15
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = stored(srv, s["id"], role="client")
            if len(rows) >= numbered:
                break
            time.sleep(0.2)
        assert [r["seq"] for r in rows] == list(range(len(rows)))
        assert len(rows) >= numbered
        assert gate.ws_refused >= 1 and gate.http_requests >= 1
    finally:
        gate.stop()


def _loopback_call(page: Page) -> None:
    page.evaluate("""async () => {
      const media = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
      const a = new RTCPeerConnection(), b = new RTCPeerConnection();
      media.getTracks().forEach(t => a.addTrack(t, media));
      a.onicecandidate = e => e.candidate && b.addIceCandidate(e.candidate);
      b.onicecandidate = e => e.candidate && a.addIceCandidate(e.candidate);
      await a.setLocalDescription(await a.createOffer());
      await b.setRemoteDescription(a.localDescription);
      await b.setLocalDescription(await b.createAnswer());
      await a.setRemoteDescription(b.localDescription);
      window.pcs = [a, b];
    }""")
