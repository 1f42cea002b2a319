"""Real WebRTC calls in headless Chromium for plugin tests.

Each participant is a page of the Bondline server's origin (so the plugin
talks to it same-origin, as on a platform that proxies it) with the plugin
loaded from ``/plugin/bondline.js``. Signalling is done by the test: each
side gathers all its ICE candidates, then the descriptions are exchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# The flags every test browser starts with (headless Debian Chromium, fake
# camera and microphone, nothing fetched from the network).
BASE_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
# Pages that hold a WebRTC call over loopback, kept from being throttled.
CALL_ARGS = [
    *BASE_ARGS,
    "--allow-loopback-in-peer-connection",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]
# Two pages share the CPU: keep occluded ones running too.
CHROMIUM_ARGS = [*CALL_ARGS, "--disable-backgrounding-occluded-windows"]


# No enumeration of network interfaces for WebRTC: Chromium binds its sockets to the
# any-address, so a TURN server on 127.0.0.1 is reached from 127.0.0.1 (checked in the
# relay's trace). Enumerating, it also gathers on every veth other tests add and remove
# (Janus in its own network namespace); a call whose selected candidate pair sat on one
# lost all media both ways when it vanished (tests/test_attribution_browser.py).
ONE_INTERFACE_ARGS = ["--webrtc-ip-handling-policy=default_public_interface_only"]


def launch(pw: Playwright, extra_args: list[str] | None = None) -> Browser:
    return pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=[*CHROMIUM_ARGS, *(extra_args or [])])


def plugin_page(browser: Browser, base: str, path: str = "/healthz") -> Page:
    page = browser.new_page()
    page.goto(base + path)
    page.add_script_tag(url="/plugin/bondline.js")
    page.wait_for_function("() => !!window.Bondline")
    return page


_MAKE_PC = """async (cfg) => {
  const media = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 320, height: 240}});
  const pc = new RTCPeerConnection(cfg || {});
  media.getTracks().forEach(t => pc.addTrack(t, media));
  pc.ontrack = (ev) => {
    // Render what arrives, as a call page does: freezes are measured on rendered frames.
    let v = document.getElementById('remote-' + ev.track.kind);
    if (!v) {
      v = document.createElement(ev.track.kind === 'video' ? 'video' : 'audio');
      v.id = 'remote-' + ev.track.kind; v.autoplay = true; v.muted = true; v.playsInline = true;
      document.body.appendChild(v);
    }
    v.srcObject = new MediaStream([ev.track]);
  };
  (window.pcs = window.pcs || []).push(pc);
  window.pc = pc;
  return window.pcs.length - 1;
}"""

_GATHERED = """() => new Promise((resolve) => {
  if (window.pc.iceGatheringState === 'complete') return resolve();
  window.pc.addEventListener('icegatheringstatechange', () => {
    if (window.pc.iceGatheringState === 'complete') resolve();
  });
})"""


def make_pc(page: Page, config: dict[str, Any] | None = None) -> int:
    return int(page.evaluate(_MAKE_PC, config))


def _local(page: Page, kind: str, remote: dict[str, Any] | None = None) -> dict[str, Any]:
    if remote is not None:
        page.evaluate("async (d) => { await window.pc.setRemoteDescription(d); }", remote)
    page.evaluate(f"async () => {{ await window.pc.setLocalDescription(await window.pc.create{kind}()); }}")
    page.evaluate(_GATHERED)
    desc: dict[str, Any] = page.evaluate("() => ({type: window.pc.localDescription.type, "
                                         "sdp: window.pc.localDescription.sdp})")
    return desc


def connect(caller: Page, callee: Page, config: dict[str, Any] | None = None, timeout_ms: int = 20_000) -> None:
    """Create a connection on each page (with fake camera and microphone) and connect them."""
    make_pc(caller, config)
    make_pc(callee, config)
    negotiate(caller, callee, timeout_ms)


def negotiate(caller: Page, callee: Page, timeout_ms: int = 20_000) -> None:
    """Connect the connections ``make_pc`` made on each page (offer, answer, wait)."""
    offer = _local(caller, "Offer")
    answer = _local(callee, "Answer", offer)
    caller.evaluate("async (d) => { await window.pc.setRemoteDescription(d); }", answer)
    for p in (caller, callee):
        p.wait_for_function("() => window.pc.connectionState === 'connected'", timeout=timeout_ms)


def turn_config(port: int, user: str, password: str) -> dict[str, Any]:
    return {"iceServers": [{"urls": f"turn:127.0.0.1:{port}?transport=udp", "username": user, "credential": password}],
            "iceTransportPolicy": "relay"}
