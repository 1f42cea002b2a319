"""Unit tests of the plugin's delta logic, executed inside Chromium.

The reducer is fed scripted stats reports (the shape Chromium's getStats()
returns) so counter resets, missing stats types and a replaced connection
can be set up exactly; the Python twin used by the importer
(server/importers/chrome_stats.py) must give the very same figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from server.importers.chrome_stats import ChromeStatsReducer
from tests.support.browser_call import launch, plugin_page
from tests.support.server import ServerProcess
from tests.test_plugin_import import history

pytestmark = pytest.mark.browser

REDUCE_ALL = """(args) => {
  const [polls, fromZero] = args;
  const r = new Bondline._internal.StatsReducer(fromZero);
  let prev = null;
  return polls.map(([t, report]) => {
    const out = r.reduce(new Map(Object.entries(report)), prev === null ? 1000 : t - prev);
    prev = t;
    delete out.ts; delete out.prevTs;  // the report's own times: what the sample window is made of
    return out;
  });
}"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    srv = ServerProcess(db_url=str(tmp_path_factory.mktemp("units") / "b.db"),
                        log_path=tmp_path_factory.mktemp("units-log") / "server.log").start()
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            p = plugin_page(browser, srv.base)
            p.server = srv  # type: ignore[attr-defined]
            yield p
            browser.close()
    finally:
        srv.stop()


def js_reduce(page: Page, polls: list[tuple[float, dict[str, Any]]], from_zero: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = page.evaluate(REDUCE_ALL, [polls, from_zero])
    return out


def py_reduce(polls: list[tuple[float, dict[str, Any]]], from_zero: bool) -> list[dict[str, Any]]:
    r = ChromeStatsReducer(from_zero)
    out, prev = [], None
    for t, report in polls:
        streams, conn, baseline = r.reduce(report, 1000 if prev is None else t - prev)
        out.append({"streams": streams, "connection": conn, "baseline": baseline})
        prev = t
    return out


@pytest.mark.parametrize("from_zero", [False, True])
def test_browser_and_python_reducers_agree(page: Page, from_zero: bool) -> None:
    polls = history()
    js, py = js_reduce(page, polls, from_zero), py_reduce(polls, from_zero)
    assert js == py
    assert js[0]["streams"] == ([] if not from_zero else js[0]["streams"])
    assert js[0]["baseline"] is (not from_zero)


def _inbound(sid: str, ts: float, **counters: Any) -> dict[str, Any]:
    return {"id": sid, "type": "inbound-rtp", "kind": "audio", "timestamp": ts, **counters}


def test_counter_reset_and_duplicates(page: Page) -> None:
    polls = [
        (0.0, {"A": _inbound("A", 0, packetsReceived=500, packetsLost=5, bytesReceived=50_000)}),
        (1000.0, {"A": _inbound("A", 1000, packetsReceived=550, packetsLost=4, bytesReceived=55_000)}),
        # Same id, counters restarted (the stream was re-created): the current values are the interval's.
        (2000.0, {"A": _inbound("A", 2000, packetsReceived=20, packetsLost=1, bytesReceived=2000)}),
        (3000.0, {"A": _inbound("A", 3000, packetsReceived=70, packetsLost=1, bytesReceived=7000)}),
    ]
    out = js_reduce(page, polls, False)
    assert out[0]["streams"] == []  # baseline: history from before we watched
    a1, a2, a3 = (o["streams"][0] for o in out[1:])
    # A late packet counted lost earlier: packetsLost may go down by a little without a reset.
    assert a1["packetsReceived"] == 50 and a1["packetsLost"] == -1 and a1["lossFraction"] == 0
    assert a1["bitrateKbps"] == 40
    assert a2["packetsReceived"] == 20 and a2["packetsLost"] == 1 and a2["bitrateKbps"] == 16
    assert a3["packetsReceived"] == 50 and a3["packetsLost"] == 0
    assert out == py_reduce(polls, False)


def test_missing_stats_types_give_absent_figures_not_errors(page: Page) -> None:
    polls = [
        (0.0, {}),
        (1000.0, {"A": _inbound("A", 1000, packetsReceived=40)}),  # no packetsLost, no pair, no remote stats
        (2000.0, {"A": _inbound("A", 2000, packetsReceived=90, packetsLost=2),
                  "X": {"id": "X", "type": "media-playout", "timestamp": 2000},
                  "Y": {"id": "Y", "type": "inbound-rtp", "timestamp": 2000, "packetsReceived": 3}}),  # no kind
    ]
    out = js_reduce(page, polls, False)
    assert out[0] == {"streams": [], "connection": None, "baseline": True}
    # A stream that appeared after the baseline poll started playing in this interval.
    assert out[1]["streams"] == [{"kind": "audio", "direction": "inbound", "packetsReceived": 40,
                                  "playoutStart": True}]
    assert out[1]["connection"] is None
    # packetsLost appears for the first time: counted from zero, so the loss is over the stream's life.
    assert out[2]["streams"] == [{"kind": "audio", "direction": "inbound", "packetsReceived": 50, "packetsLost": 2,
                                  "lossFraction": round(2 / 52, 4)}]
    assert out == py_reduce(polls, False)


REPLACED = """async (server) => {
  // Scripted connections: getStats() answers from a script, state is set by hand.
  function fakePc(reports) {
    let i = 0;
    return { connectionState: 'connected', iceConnectionState: 'connected', signalingState: 'stable',
      addEventListener() {}, removeEventListener() {},
      getStats() {
        const r = reports[Math.min(i++, reports.length - 1)];
        return r === 'reject' ? Promise.reject(new Error('gone')) : Promise.resolve(new Map(Object.entries(r)));
      } };
  }
  const ib = (id, ts, rx) => ({ id, type: 'inbound-rtp', kind: 'video', timestamp: ts, packetsReceived: rx,
                                packetsLost: 0, framesDecoded: rx / 2 });
  const c = new Bondline._internal.Collector({server: server.base, token: server.token, intervalMs: 60000});
  // attach() polls at once (the baseline), then each tick polls again.
  const pc1 = fakePc([{ a: ib('a', 0, 1000) }, { a: ib('a', 1000, 1100) }, { a: ib('a', 2000, 1200) },
                      { a: ib('a', 3000, 1300) }, 'reject']);
  c.attach(pc1, false);
  const seen = [];
  await c.tick(); await c.tick(); seen.push(c.lastSample);
  // The platform drops the connection and opens another; stats ids restart.
  pc1.connectionState = 'closed';
  const pc2 = fakePc([{ a: ib('a', 3000, 40) }, { a: ib('a', 4000, 140) }]);
  c.attach(pc2, true);
  await c.tick(); seen.push(c.lastSample);
  await c.tick(); seen.push(c.lastSample);
  const status = c.status();
  await c.stop(5000);
  return { seen, watched: status.connections };
}"""


def test_a_connection_replaced_mid_session(page: Page) -> None:
    srv: ServerProcess = page.server  # type: ignore[attr-defined]
    s = srv.create_session()
    out = page.evaluate(REPLACED, {"base": srv.base, "token": s["tokens"]["client"]})
    first, during, after = out["seen"]
    assert [st["packetsReceived"] for st in first["streams"]] == [100]
    # The closed connection's final poll and the new one's first (counted from zero, as it
    # was watched from its creation) share the interval; nothing negative, nothing huge.
    assert sorted(st["packetsReceived"] for st in during["streams"]) == [40, 100]
    assert during["connection"]["connections"] == 1
    assert [st["packetsReceived"] for st in after["streams"]] == [100]
    assert out["watched"] == 1


def test_badge_classification_thresholds(page: Page) -> None:
    cases = page.evaluate("""() => {
      const c = Bondline._internal.classify;
      const s = (streams, conn) => ({ streams, connection: conn || {} });
      const a = (lost, rx, extra) => Object.assign({ kind: 'audio', direction: 'inbound', packetsLost: lost,
                                                     packetsReceived: rx }, extra || {});
      return {
        idle: c(s([])),
        good: c(s([a(0, 50)], { rttMs: 40 })),
        lossDegraded: c(s([a(2, 48)])),
        lossPoor: c(s([a(5, 45)])),
        rttDegraded: c(s([a(0, 50)], { rttMs: 350 })),
        rttPoor: c(s([a(0, 50)], { rttMs: 700 })),
        concealPoor: c(s([a(0, 50, { concealedSamples: 9600, totalSamplesReceived: 48000 })])),
        // A stream that started playing in this interval conceals while its jitter buffer fills.
        startingUp: c(s([a(0, 50, { concealedSamples: 0, totalSamplesReceived: 48000 }),
                         a(0, 30, { concealedSamples: 28800, totalSamplesReceived: 48000, playoutStart: true })])),
        startUnmarked: c(s([a(0, 50, { concealedSamples: 0, totalSamplesReceived: 48000 }),
                            a(0, 30, { concealedSamples: 28800, totalSamplesReceived: 48000 })])),
        freezePoor: c(s([{ kind: 'video', direction: 'inbound', totalFreezesDurationMs: 800 }])),
        rtxNotLoss: c(s([{ kind: 'video', direction: 'inbound', packetsLost: 1, packetsReceived: 80,
                          retransmittedPacketsReceived: 30 }])),
      };
    }""")
    assert cases == {"idle": "idle", "good": "good", "lossDegraded": "degraded", "lossPoor": "poor",
                     "rttDegraded": "degraded", "rttPoor": "poor", "concealPoor": "poor", "freezePoor": "poor",
                     "rtxNotLoss": "good", "startingUp": "good", "startUnmarked": "poor"}


def test_public_api_never_throws_into_the_page(page: Page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    out = page.evaluate("""async () => {
      const r = {};
      r.noOptions = Bondline.start();            // warns, returns null
      r.badToken = Bondline.start({server: 1});  // warns, returns null
      r.attachNothing = Bondline.attach(null);
      r.status = Bondline.status();
      r.stop = await Bondline.stop();
      return r;
    }""")
    assert out == {"noOptions": None, "badToken": None, "attachNothing": False, "status": None, "stop": True}
    assert errors == []


def test_a_stats_object_renamed_by_renegotiation_continues(page: Page) -> None:
    """Removing a bundled transceiver renamed Chromium's inbound-rtp ids (seen in
    tests/test_plugin_connections.py) while the counters went on: no double count."""
    polls = [
        (1000.0, {"IT01V7": _inbound("IT01V7", 1000.0, kind="video", ssrc=7, packetsReceived=100, packetsLost=1)}),
        (2000.0, {"IT01V7": _inbound("IT01V7", 2000.0, kind="video", ssrc=7, packetsReceived=150, packetsLost=1)}),
        (3000.0, {"IT02V7": _inbound("IT02V7", 3000.0, kind="video", ssrc=7, packetsReceived=190, packetsLost=2)}),
        # A new stream reusing the SSRC starts low again: a reset, counted as new.
        (4000.0, {"IT03V7": _inbound("IT03V7", 4000.0, kind="video", ssrc=7, packetsReceived=30, packetsLost=0)}),
    ]
    js, py = js_reduce(page, polls, True), py_reduce(polls, True)
    assert js == py
    assert [[s["packetsReceived"] for s in p["streams"]] for p in js] == [[100], [50], [40], [30]]
    assert [[s["packetsLost"] for s in p["streams"]] for p in js] == [[1], [0], [1], [0]]


@pytest.mark.parametrize("from_zero", [False, True])
def test_an_audio_streams_first_sample_with_packets_is_its_playout_start(page: Page, from_zero: bool) -> None:
    """Marked once per stream, in the sample in which it first has packets: a stream
    subscribed mid-call (B), one renamed by renegotiation continuing (A to A2), and none
    on a baseline poll, where what plays was playing before the plugin watched."""
    def a(sid: str, ts: float, got: int, ssrc: int, kind: str = "audio") -> dict[str, Any]:
        return _inbound(sid, ts, kind=kind, ssrc=ssrc, packetsReceived=got, packetsLost=0,
                        concealedSamples=0, totalSamplesReceived=48 * got)
    polls = [
        (1000.0, {"A": a("A", 1000.0, 40, 1), "B": a("B", 1000.0, 0, 2), "V": a("V", 1000.0, 80, 3, "video")}),
        (2000.0, {"A": a("A", 2000.0, 90, 1), "B": a("B", 2000.0, 0, 2), "V": a("V", 2000.0, 160, 3, "video")}),
        (3000.0, {"A": a("A", 3000.0, 140, 1), "B": a("B", 3000.0, 25, 2), "V": a("V", 3000.0, 240, 3, "video")}),
        (4000.0, {"A2": a("A2", 4000.0, 190, 1), "B": a("B", 4000.0, 75, 2), "V": a("V", 4000.0, 320, 3, "video")}),
    ]
    js, py = js_reduce(page, polls, from_zero), py_reduce(polls, from_zero)
    assert js == py
    marks = [sorted((s["ssrc"], s.get("playoutStart", False)) for s in p["streams"]) for p in js]
    first = [] if not from_zero else [(1, True), (2, False), (3, False)]
    assert marks == [first, [(1, False), (2, False), (3, False)], [(1, False), (2, True), (3, False)],
                     [(1, False), (2, False), (3, False)]]


def test_simulcast_layers_are_streams_of_their_own(page: Page) -> None:
    def out(sid: str, ts: float, rid: str, ssrc: int, sent: int) -> dict[str, Any]:
        return {"id": sid, "type": "outbound-rtp", "kind": "video", "timestamp": ts, "rid": rid, "ssrc": ssrc,
                "packetsSent": sent, "bytesSent": sent * 1000}
    polls = [(t, {f"OT{rid}": out(f"OT{rid}", t, rid, ssrc, int(t / 1000) * n)
                  for rid, ssrc, n in (("h", 11, 30), ("m", 12, 20), ("l", 13, 10))}) for t in (1000.0, 2000.0)]
    js, py = js_reduce(page, polls, True), py_reduce(polls, True)
    assert js == py
    assert sorted((s["rid"], s["ssrc"], s["packetsSent"]) for s in js[1]["streams"]) == [
        ("h", 11, 30), ("l", 13, 10), ("m", 12, 20)]


def test_a_repeated_rtt_is_not_a_new_measurement(page: Page) -> None:
    """RTT only for intervals in which a measurement arrived (the count grew); the latest value
    repeated is left out, so a median over intervals counts each measurement once."""
    def poll(t: float, n: int, total: float, pair_n: int, pair_total: float) -> tuple[float, dict[str, Any]]:
        return (t, {
            "O": {"id": "O", "type": "outbound-rtp", "kind": "audio", "timestamp": t, "packetsSent": int(t / 20)},
            "R": {"id": "R", "type": "remote-inbound-rtp", "kind": "audio", "localId": "O", "timestamp": t,
                  "roundTripTime": 0.080, "totalRoundTripTime": total, "roundTripTimeMeasurements": n},
            "T": {"id": "T", "type": "transport", "timestamp": t, "selectedCandidatePairId": "P"},
            "P": {"id": "P", "type": "candidate-pair", "timestamp": t, "currentRoundTripTime": 0.060,
                  "totalRoundTripTime": pair_total, "responsesReceived": pair_n},
        })
    polls = [poll(0, 1, 0.08, 1, 0.06), poll(1000, 2, 0.18, 1, 0.06), poll(2000, 2, 0.18, 2, 0.12),
             poll(3000, 2, 0.18, 2, 0.12)]
    out = js_reduce(page, polls, False)
    assert out == py_reduce(polls, False)
    rtts = [(o["streams"][0].get("rttMs"), (o["connection"] or {}).get("rttMs")) for o in out[1:]]
    assert rtts == [(100.0, None), (None, 60.0), (None, None)]
