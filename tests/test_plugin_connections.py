"""The plugin measures every connection of a participant, labelled by leg.

Through an SFU a participant holds several connections at once (a publisher,
one or more subscribers renegotiated as others join and leave). These tests
make real connections in headless Chromium: the participant's side in the
page Bondline runs in, the far ends in a same-origin iframe, whose own
RTCPeerConnection is out of Bondline's reach as an SFU's would be. They check
that each stream is labelled with its connection and far end, that streams
added and removed by renegotiation are counted completely, and that the page
still sees every connection whatever the load order of adapter.js (Debian's
libjs-webrtc-adapter, the npm ``webrtc-adapter``), or when a library kept its
own reference to RTCPeerConnection; a connection found late is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.browser_call import launch
from tests.support.janus import PageServer
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

# In-page helpers: a far end in the iframe, and plain offer/answer signalling.
HELPERS = """() => {
  window.samples = [];
  const frame = document.createElement('iframe');
  document.body.appendChild(frame);
  window.FarPC = frame.contentWindow.RTCPeerConnection;
  window.farMedia = (constraints) => frame.contentWindow.navigator.mediaDevices.getUserMedia(constraints);
  window.link = (a, b) => {
    a.onicecandidate = (e) => { if (e.candidate) b.addIceCandidate(e.candidate); };
    b.onicecandidate = (e) => { if (e.candidate) a.addIceCandidate(e.candidate); };
  };
  window.negotiate = async (offerer, answerer) => {
    await offerer.setLocalDescription(await offerer.createOffer());
    await answerer.setRemoteDescription(offerer.localDescription);
    await answerer.setLocalDescription(await answerer.createAnswer());
    await offerer.setRemoteDescription(answerer.localDescription);
  };
  window.connected = (pc) => new Promise((resolve) => {
    if (pc.connectionState === 'connected') return resolve();
    pc.addEventListener('connectionstatechange', () => { if (pc.connectionState === 'connected') resolve(); });
  });
  window.sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // A constructor-replacing shim, as adapter.js installs on browsers that need
  // it (on this Chromium it leaves the constructor alone) and some SDKs do.
  window.shimSaw = 0;
  window.installShim = () => {
    const Orig = window.RTCPeerConnection;
    window.RTCPeerConnection = function RTCPeerConnection(cfg) { window.shimSaw += 1; return new Orig(cfg); };
    window.RTCPeerConnection.prototype = Orig.prototype;
  };
}"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Browser, ServerProcess]]:
    work = tmp_path_factory.mktemp("plugin-connections")
    site = PageServer().start()
    srv = ServerProcess(db_url=str(work / "b.db"), log_path=work / "server.log",
                        env={"BONDLINE_ALLOWED_ORIGINS": site.origin})
    srv.site = site  # type: ignore[attr-defined]
    try:
        srv.start()
        with sync_playwright() as pw:
            browser = launch(pw)
            yield browser, srv
            browser.close()
    finally:
        srv.stop()
        site.stop()


def new_page(browser: Browser, srv: ServerProcess, order: list[str]) -> tuple[Page, list[str]]:
    """A page of the server's origin with scripts loaded in ``order`` ("adapter", "bondline")."""
    page = browser.new_page()
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.goto(srv.site.origin + "/blank.html")  # type: ignore[attr-defined]
    page.evaluate(HELPERS)
    for name in order:
        if name == "adapter":
            page.add_script_tag(url="/adapter.js")
            page.wait_for_function("() => !!window.adapter")
        else:
            page.add_script_tag(url=srv.base + "/plugin/bondline.js")
            page.wait_for_function("() => !!window.Bondline")
    return page, warnings


def start(page: Page, srv: ServerProcess, **opts: Any) -> None:
    token = srv.create_session()["tokens"]["client"]
    page.evaluate("(o) => { Bondline.start(Object.assign(o, {onSample: (s) => window.samples.push(s)})); }",
                  {"server": srv.base, "token": token, "intervalMs": 500, **opts})


# A participant on an SFU: a publisher (sends audio and video) and a subscriber
# whose far end adds a video stream, then removes its audio, by renegotiation.
SFU_CALL = """async () => {
  const mine = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 160, height: 120}});
  const pub = new RTCPeerConnection({});
  const pubFar = new FarPC({});
  link(pub, pubFar);
  mine.getTracks().forEach((t) => pub.addTransceiver(t, {direction: 'sendonly', streams: [mine]}));
  await negotiate(pub, pubFar);
  const theirs = await farMedia({audio: true, video: {width: 160, height: 120}});
  const subFar = new FarPC({});
  const sub = new RTCPeerConnection({});
  link(subFar, sub);
  const audioTx = subFar.addTransceiver(theirs.getAudioTracks()[0], {direction: 'sendonly'});
  await negotiate(subFar, sub);
  await Promise.all([connected(pub), connected(sub)]);
  await sleep(2000);
  const marks = {videoAdded: Date.now()};
  const videoTx = subFar.addTransceiver(theirs.getVideoTracks()[0], {direction: 'sendonly'});
  await negotiate(subFar, sub);
  await sleep(2500);
  marks.audioRemoved = Date.now();
  audioTx.stop();
  await negotiate(subFar, sub);
  await sleep(2000);
  // Quiet the subscriber's video so its counters stop, then let two polls pass.
  await videoTx.sender.replaceTrack(null);
  await sleep(1500);
  const report = await sub.getStats();
  const inbound = [...report.values()].filter((s) => s.type === 'inbound-rtp');
  marks.subVideo = inbound.filter((s) => s.kind === 'video')
    .map((s) => ({ssrc: s.ssrc, packetsReceived: s.packetsReceived}));
  marks.subAudio = inbound.filter((s) => s.kind === 'audio').length;
  const status = Bondline.status();
  await Bondline.stop(5000);
  return {marks, status, samples: window.samples};
}"""


def test_publisher_and_subscriber_legs_are_labelled_and_counted_completely(
        env: tuple[Browser, ServerProcess]) -> None:
    browser, srv = env
    page, warnings = new_page(browser, srv, ["adapter", "bondline"])
    start(page, srv, farEnd="sfu")
    out = page.evaluate(SFU_CALL)
    page.close()
    status, marks, samples = out["status"], out["marks"], out["samples"]
    assert status["missed"] == 0 and status["missedAfterMedia"] == 0, warnings
    assert [w["farEnd"] for w in status["watching"]] == ["sfu", "sfu"]
    assert status["rejected"] == 0 and status["acked"] >= len(samples) - 4, status
    streams = [(s["startMs"], st) for s in samples for st in s["streams"]]
    assert all(st["farEnd"] == "sfu" for _, st in streams)
    # Connection 1 is the publisher (outbound only), 2 the subscriber (inbound only).
    assert {(st["pc"], st["direction"]) for _, st in streams} == {(1, "outbound"), (2, "inbound")}
    sub_video = [(t, st) for t, st in streams if st["pc"] == 2 and st["kind"] == "video"]
    sub_audio = [(t, st) for t, st in streams if st["pc"] == 2 and st["kind"] == "audio"]
    # The video subscription added mid-call appears after it was added...
    assert sub_video and min(t for t, _ in sub_video) >= marks["videoAdded"] - 600
    # ...and is counted from its first packet: the deltas add up to the browser's own total.
    [truth] = marks["subVideo"]
    assert sum(st.get("packetsReceived", 0) for _, st in sub_video if st["ssrc"] == truth["ssrc"]) \
        == truth["packetsReceived"]
    # Its start-up is marked once, in its first sample with packets: that concealment is the
    # jitter buffer filling (docs/methodology.md, "Audio dropout").
    playing = [st for _, st in sub_audio if st.get("packetsReceived", 0) > 0]
    assert [st.get("playoutStart", False) for st in playing] == [True] + [False] * (len(playing) - 1)
    start_up = playing[0]
    print("subscriber audio start-up: concealed", start_up.get("concealedSamples"), "of",
          start_up.get("totalSamplesReceived"))
    # The audio subscription removed mid-call stops after it was removed.
    assert sub_audio and marks["subAudio"] == 0
    assert max(t for t, _ in sub_audio) <= marks["audioRemoved"] + 1000
    assert not [w for w in warnings if "[bondline]" in w]


# Connections made three ways after start(): through the page's
# RTCPeerConnection (with adapter.js's url -> urls fix, which only works if
# adapter.js's shim is still in the constructor chain), through a reference a
# library kept before start(), and one that library made and connected before
# start(), renegotiated later.
LOAD_ORDER = """async () => {
  const mine = await navigator.mediaDevices.getUserMedia({audio: true, video: false});
  const call = async (pc) => {
    const far = new FarPC({});
    link(pc, far);
    mine.getTracks().forEach((t) => pc.addTrack(t, mine));
    await negotiate(pc, far);
    await connected(pc);
    return far;
  };
  const early = new window.KeptPC({});
  const earlyFar = await call(early);
  window.startBondline();
  if (window.shimAfterStart) window.installShim();
  const wrapped = new RTCPeerConnection({});
  await call(wrapped);
  const afterStatus1 = Bondline.status();
  const kept = new window.KeptPC({});
  await call(kept);
  const afterStatus2 = Bondline.status();
  await negotiate(earlyFar, early);  // a renegotiation reveals the early one
  await sleep(1200);
  const status = Bondline.status();
  await Bondline.stop(5000);
  // After stop(), the page's constructor (perhaps adapter.js wrapping Bondline's) still works.
  const shimBefore = window.shimSaw;
  const after = new RTCPeerConnection({});
  const worksAfterStop = typeof after.createOffer === 'function';
  after.close();
  return {afterStatus1, afterStatus2, status, samples: window.samples, worksAfterStop, shimSaw: shimBefore};
}"""


@pytest.mark.parametrize("order", ["adapter-bondline", "bondline-adapter", "shim-start", "start-shim"])
def test_every_connection_seen_whatever_the_load_order(env: tuple[Browser, ServerProcess], order: str) -> None:
    browser, srv = env
    scripts = {"adapter-bondline": ["adapter", "bondline"], "bondline-adapter": ["bondline", "adapter"]}
    page, warnings = new_page(browser, srv, scripts.get(order, ["bondline"]))
    token = srv.create_session()["tokens"]["client"]
    if order == "shim-start":
        page.evaluate("() => window.installShim()")
    page.evaluate("""(o) => {
      window.KeptPC = window.RTCPeerConnection;  // what an SDK does when it loads
      window.startBondline = () => Bondline.start(Object.assign(o, {onSample: (s) => window.samples.push(s)}));
      window.shimAfterStart = o.shimAfterStart;
    }""", {"server": srv.base, "token": token, "intervalMs": 500, "shimAfterStart": order == "start-shim"})
    out = page.evaluate(LOAD_ORDER)
    page.close()
    # The connection made through the page's constructor is watched from its creation.
    assert out["afterStatus1"]["connections"] == 1 and out["afterStatus1"]["missed"] == 0
    # The kept reference's connection is found when it negotiates, before any media.
    assert out["afterStatus2"]["connections"] == 2
    assert (out["afterStatus2"]["missed"], out["afterStatus2"]["missedAfterMedia"]) == (1, 0)
    # The one connected before start() is found at its renegotiation, and said to be late.
    status = out["status"]
    assert status["connections"] == 3
    assert (status["missed"], status["missedAfterMedia"]) == (2, 1)
    late = [w for w in warnings if "[bondline]" in w and "without the RTCPeerConnection wrapper" in w]
    assert len(late) == 2 and "figures before now are missing" in late[1], warnings
    assert {st["pc"] for s in out["samples"] for st in s["streams"]} == {1, 2, 3}
    assert all(st["farEnd"] == "peer" for s in out["samples"] for st in s["streams"])
    assert out["worksAfterStop"] is True
    if "shim" in order:
        # The shim stayed in the constructor chain: Bondline wrapped it, or it wrapped Bondline.
        assert out["shimSaw"] >= 1


def test_label_sets_the_far_end_per_connection(env: tuple[Browser, ServerProcess]) -> None:
    browser, srv = env
    page, _ = new_page(browser, srv, ["bondline"])
    start(page, srv, farEnd="sfu")
    out = page.evaluate("""async () => {
      const a = new RTCPeerConnection({}), b = new RTCPeerConnection({});
      const before = new (window.FarPC)({});
      return [Bondline.label(a, 'peer'), Bondline.label(b, 'nonsense'), Bondline.label(before, 'peer'),
              Bondline.status().watching.map((w) => w.farEnd)];
    }""")
    page.evaluate("() => Bondline.stop(2000)")
    page.close()
    assert out == [True, False, True, ["peer", "sfu"]]
