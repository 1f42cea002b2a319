"""Truth for the browser probe: Bondline.probe() in headless Chromium against
the real sidecar, its media forced through a local TURN server behind the
user-space impairment relay (tests/support/udp_impair.py), which drops and
delays packets by a seeded plan (tests/support/impair_plan.py: delay with
jitter, random and bursty video loss, an outage) and records every packet.

Each direction crosses the relay once: "up" is the browser's media to the
sidecar (Chromium's own VP8, inter frames; its Opus), "down" the sidecar's
(VP8 key frames; its Opus pilot). Checked against the record, default
profile (5 fps, 60 ms pilot packets, 5 pings/s):
- frames: every frame number the receiver did not read is a frame the relay
  left incomplete (or shown too late), a frame spoiled by a lost reference,
  or one the browser's encoder never produced: exactly, both ways; the
  spoiled ones are exactly those counted unreadable;
- audio gap within 40 ms of the audio the outage dropped, each way (up, the
  blocks with no audio; the blocks Opus then decodes wrong are printed);
- RTT within 5 ms + 5 % of the delay the relay applied both ways;
- freezes found with F1 >= 0.95 against the freezes of the frames the
  record says were shown;
- the browser reached TURN from loopback only, over one relay candidate
  pair for the whole call (ONE_INTERFACE_ARGS: no candidates on other
  tests' short-lived veth interfaces).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from media.probe.profile import PROBE_SEQ_BASE, STREAM_PARTICIPANT, STREAM_SIDECAR
from tests.support import frame_truth as ft
from tests.support.browser_call import ARTIFACTS, CHROMIUM_ARGS, ONE_INTERFACE_ARGS
from tests.support.impair_plan import OPUS_PT, ImpairPlan, draw_seed
from tests.support.quiet import wait_for_quiet
from tests.support.server import ServerProcess
from tests.support.shared_server import running_server
from tests.support.turn import TurnServer
from tests.support.udp_impair import Crossing, UdpImpair

pytestmark = pytest.mark.browser
RUN_S = 30.0
VIDEO_TICKS = 90_000 / 5  # RTP ticks per frame at the default 5 fps
# Kept from throttling and backgrounding, as the plugin ground-truth calls are; WebRTC
# sockets on the any-address, not on every interface (tests/support/browser_call.py).
ARGS = [*CHROMIUM_ARGS, *ONE_INTERFACE_ARGS, "--autoplay-policy=no-user-gesture-required"]

# Keeps the probe's peer connection visible to the test (the probe captures
# window.RTCPeerConnection when it loads), and samples its selected candidate pair
# twice a second: "local type address -> remote type address" -> samples.
WATCH_PAIRS = """() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = []; window.__pairs = {};
  window.RTCPeerConnection = class extends Native {
    constructor(cfg) { super(cfg); window.__pcs.push(this); }
  };
  setInterval(async () => {
    for (const pc of window.__pcs) {
      if (pc.connectionState !== 'connected') continue;
      let report;
      try { report = await pc.getStats(); } catch (e) { continue; }
      report.forEach((t) => {
        if (t.type !== 'transport' || !t.selectedCandidatePairId) return;
        const pair = report.get(t.selectedCandidatePairId);
        const l = report.get(pair.localCandidateId), r = report.get(pair.remoteCandidateId);
        const key = `${l.candidateType} ${l.address} -> ${r.candidateType} ${r.address}`;
        window.__pairs[key] = (window.__pairs[key] || 0) + 1;
      });
    }
  }, 500);
}"""


@dataclass
class Outcome:
    plan: ImpairPlan
    record: list[Crossing]
    result: dict[str, Any]
    events: list[dict[str, Any]]
    pairs: dict[str, int]  # selected candidate pair -> samples (twice a second)
    clients: frozenset[str]  # addresses the browser reached the relay from
    # Per side, the span its reported intervals cover (epoch ms): what came before the first
    # whole-second boundary after the probe started was warm-up (docs/probe.md, "Intervals").
    measured: dict[str, tuple[float, float]]


def _run(server: ServerProcess, tmp: Path) -> Outcome:
    print(wait_for_quiet())
    seed = draw_seed()
    plan = ImpairPlan.draw(seed, RUN_S)
    print("impairment:", plan.describe())
    turn = TurnServer(tmp / "turn").start()
    relay = UdpImpair(turn.port, seed=seed, record=True)
    relay.set("up", delay_ms=plan.delay_ms["up"])
    relay.set("down", delay_ms=plan.delay_ms["down"])
    relay.policy = plan
    relay.start()
    s = server.create_session(client_code="C-TRUTH")
    ice = [{"urls": f"turn:127.0.0.1:{relay.port}?transport=udp", "username": turn.user,
            "credential": turn.password}]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            try:
                page = browser.new_page()
                page.goto(server.base + "/healthz")
                page.evaluate(WATCH_PAIRS)
                page.add_script_tag(url="/plugin/bondline-probe.js")
                result = page.evaluate(
                    """([token, ice, ms]) => Bondline.probe({token: token, durationMs: ms, iceServers: ice,
                                                              iceTransportPolicy: 'relay'}).done""",
                    [s["tokens"]["client"], ice, int(RUN_S * 1000)])
                Path(ARTIFACTS).mkdir(exist_ok=True)
                page.screenshot(path=f"{ARTIFACTS}/sidecar-browser-truth.png")
                pairs = page.evaluate("() => window.__pairs")
            finally:
                browser.close()
    finally:
        relay.stop()
        turn.stop()
    r = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/events", headers=server.admin_headers)
    r.raise_for_status()
    assert result["ok"], result
    samples = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/samples", headers=server.admin_headers)
    samples.raise_for_status()
    spans: dict[str, tuple[float, float]] = {}
    for side, stream in (("sidecar", STREAM_SIDECAR), ("participant", STREAM_PARTICIPANT)):
        mine = [x for x in samples.json() if x["seq"] >= PROBE_SEQ_BASE and (x["seq"] - PROBE_SEQ_BASE) % 4 == stream]
        assert mine, side
        spans[side] = (min(x["start_ms"] for x in mine), max(x["start_ms"] + x["interval_ms"] for x in mine))
    return Outcome(plan, relay.crossings or [], result, r.json(), pairs, relay.clients(), spans)


# Chromium's own timing is part of what is checked: the suite runs this file first,
# on a quiet machine (tests/conftest.py GROUND_TRUTH_FILES); it never skips.
@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    tmp = tmp_path_factory.mktemp("browser-truth")
    with running_server(tmp) as server:
        yield _run(server, tmp)


def _video(outcome: Outcome, direction: str) -> list[ft.RelayFrame]:
    ssrc = ft.video_ssrc(outcome.record, direction, OPUS_PT)
    fs = ft.frames(outcome.record, direction, ssrc)
    # Frames each sender produced: the sidecar's all leave it; the browser's encoder says.
    sender = outcome.result["sidecar" if direction == "down" else "participant"]
    encoded = None if direction == "down" else (sender.get("encoder") or {}).get("framesEncoded")
    problem = ft.number(fs, VIDEO_TICKS, sender["sent"]["frames"], encoded)
    assert problem is None, f"{direction}: {problem}"
    return fs


def _span(summary: dict[str, Any]) -> tuple[int, int]:
    v = summary["video"]
    return v["missedAtStart"], v["sent"] - 1 - v["missedAtEnd"]


def test_down_frames_accounted_exactly(outcome: Outcome) -> None:
    # The sidecar sends key frames only: a frame the relay never completed is lost, one
    # completed before any later frame is shown. One completed only after a later frame
    # (its packet resent on Chromium's NACK) is shown if it beat that frame's playout
    # time in Chromium's jitter buffer, which the record cannot see: it may go either way.
    fs = _video(outcome, "down")
    part = outcome.result["participant"]["video"]
    assert part["accounted"], part
    first, last = _span(outcome.result["participant"])
    by_n = {f.n: f for f in fs}
    never = [n for n in range(first, last + 1) if n not in by_n or by_n[n].complete_ms is None]
    late = [n for n in range(first, last + 1) if n in by_n and by_n[n].complete_ms is not None and not by_n[n].shown]
    # Chromium's own counters: frames it dropped, and frames it decoded that the page
    # never saw presented (a busy renderer); both are the browser's, not the network's.
    dec = outcome.result["participant"].get("decoder") or {}
    browser = dec.get("framesDropped", 0) + max(0, dec.get("framesDecoded", 0) - part["received"])
    print(f"down: {len(fs)} frames at the relay, span {first}-{last}: never complete {len(never)}, completed after "
          f"a later frame {len(late)}, browser's own {browser}; measured {part}; browser {dec}")
    # No frame the network lost is ever counted as fine; every frame not read is accounted for.
    assert len(never) <= part["lost"] <= len(never) + len(late) + browser, (part, never, late, dec)
    assert part["corrupt"] == 0, part


def test_up_frames_accounted_exactly(outcome: Outcome) -> None:
    # Chromium's VP8 has inter frames: after a loss, frames are spoiled until a key frame.
    fs = _video(outcome, "up")
    encoder = outcome.result["participant"]["encoder"]
    keys = ft.mark_key_frames(fs, encoder["keyFramesEncoded"])
    assert keys == encoder["keyFramesEncoded"], (keys, encoder, sorted(f.size for f in fs)[-12:])
    ft.mark_spoiled(fs)
    side = outcome.result["sidecar"]["video"]
    assert side["accounted"], side
    first, last = _span(outcome.result["sidecar"])
    by_n = {f.n: f for f in fs}
    never_sent = [n for n in range(first, last + 1) if n not in by_n]
    not_shown = [n for n in range(first, last + 1) if n in by_n and not by_n[n].shown]
    spoiled = [n for n in range(first, last + 1) if n in by_n and by_n[n].spoiled]
    print(f"up: {len(fs)} frames, {keys} key, span {first}-{last}; not from the encoder {len(never_sent)}, "
          f"not shown {len(not_shown)}, spoiled {len(spoiled)}; measured {side}")
    assert side["lost"] == len(never_sent) + len(not_shown) + len(spoiled), side
    # Unreadable frames handed out before the first readable one or after the last lie
    # outside the span (CI seed 364694625: one spoiled frame after the last, 7 against 6).
    assert side["corrupt"] - side["corruptAtStart"] - side["corruptAtEnd"] == len(spoiled), side


def test_freezes_found(outcome: Outcome) -> None:
    # A frame gap within the imposed jitter plus one display frame (17 ms) of the
    # rule's limit is borderline: either answer is right (docs/probe.md).
    band = outcome.plan.jitter_ms + 17.0
    scores = {}
    for direction, side in (("down", "participant"), ("up", "sidecar")):
        fs = _video(outcome, direction)
        if direction == "up":
            ft.mark_key_frames(fs, outcome.result["participant"]["encoder"]["keyFramesEncoded"])
            ft.mark_spoiled(fs)
        shown = sorted(f.complete_ms for f in fs if f.shown and not f.spoiled and f.complete_ms is not None)
        # The sidecar's meter (up) starts the rule's durations at the second frame; the page's at the first.
        certain, borderline = ft.freezes(shown, band, from_second=direction == "up")
        # Down, a frame completed only after a later one may still have been shown
        # (Chromium's jitter buffer): a freeze that such frames would fill is borderline.
        # (in frame order: a frame is shown no earlier than the one before it)
        late: list[float] = []
        for f in fs:
            if f.complete_ms is not None and not f.spoiled:
                late.append(max(f.complete_ms, late[-1]) if late else f.complete_ms)
        filled, _ = ft.freezes(late, band)
        kept = [c for c in certain if any(a < c[1] and c[0] < b for a, b in filled)]
        borderline += [c for c in certain if c not in kept]
        certain = kept
        # A freeze the meter found before its first reported interval began was warm-up, and
        # one still under way when the last interval ended was never found: outside the
        # measured span either answer is right.
        lo, hi = outcome.measured[side]
        outside = [c for c in certain if c[1] < lo + band or c[1] > hi - band]
        borderline += outside
        certain = [c for c in certain if c not in outside]
        found = [(float(e["t_ms"]), float(e["end_ms"])) for e in outcome.events
                 if e["kind"] == "probe.freeze" and e["data"].get("side") == side]
        scores[direction] = ft.f1(certain, borderline, found)
        t0 = outcome.plan.t0 or 0.0

        def show(xs: list[tuple[float, float]], t0: float = t0) -> list[tuple[float, float]]:
            return [(round((a - t0) / 1000, 2), round((b - a) / 1000, 2)) for a, b in xs]

        print(f"{direction}: freezes certain {show(certain)}, borderline {show(borderline)}, found {show(found)}")
        print(f"{direction}: intervals reported from {(lo - t0) / 1000:.2f} to {(hi - t0) / 1000:.2f} s")
        # The rule's first judgement needs 5 frame durations: how the first frames fell decides it.
        print(f"{direction}: first frames (n, key, shown, spoiled, complete s):",
              [(f.n, f.key, f.shown, f.spoiled, f.complete_ms and round((f.complete_ms - t0) / 1000, 3))
               for f in fs[:12]])
    assert min(scores.values()) >= 0.95, scores


def test_audio_gap_matches_the_outage(outcome: Outcome) -> None:
    # Audio is lost only in the outage: the dropout each receiver found there is the
    # outage's audio. Gaps elsewhere (a stalled browser under load) are printed.
    plan = outcome.plan
    t0 = plan.t0 or 0.0
    out_lo, out_hi = t0 + plan.outage[0] * 1000, t0 + plan.outage[1] * 1000
    for direction, side in (("up", "sidecar"), ("down", "participant")):
        audio = [c for c in outcome.record if c.direction == direction and c.pt == OPUS_PT]
        assert audio, direction
        steps = sorted((b.ts or 0) - (a.ts or 0) for a, b in zip(audio, audio[1:], strict=False))
        packet_ms = steps[len(steps) // 2] / 48
        dropped = sum(1 for c in audio if c.t_out is None)
        truth_ms = dropped * packet_ms
        # Around the outage: the audio time between the last packet through before it and
        # the first after it (RTP timestamps), against the packets dropped; more means the
        # sender skipped audio it never put on the wire (its own gap, not the network's).
        before = [c for c in audio if not c.dropped and c.t_in < out_lo]
        after_ = [c for c in audio if not c.dropped and c.t_in >= out_lo]
        if before and after_:
            span_ms = ((after_[0].ts or 0) - (before[-1].ts or 0)) / 48 - packet_ms
            seqs = ((after_[0].seq or 0) - (before[-1].seq or 0)) % 65536 - 1
            print(f"{direction}: around the outage {span_ms:.0f} ms of audio time missing, {seqs} sequence "
                  f"numbers, first after it arrived {(after_[0].t_in - out_hi):.0f} ms after the outage")
        mine = [e for e in outcome.events if e["kind"] == "probe.audio_dropout" and e["data"].get("side") == side]

        def overlap(e: dict[str, Any]) -> float:
            return min(out_hi, e["end_ms"] or e["t_ms"]) - max(out_lo, e["t_ms"])

        # The receiver's dropout at the outage: the one overlapping it most.
        at_outage = max(mine, key=overlap, default=None)
        rel = [(round((e["t_ms"] - out_lo) / 1000, 2), round(((e["end_ms"] or e["t_ms"]) - out_lo) / 1000, 2),
                e["data"]["blocks"] * 20) for e in mine]
        assert at_outage is not None and overlap(at_outage) > 0, (
            f"{direction}: no dropout at the outage ({out_hi - out_lo:.0f} ms); dropouts (start, end s from the "
            f"outage's start; ms): {rel}; whole run {outcome.result[side]['audio']}")
        data = at_outage["data"]
        if direction == "up":
            # The sidecar decodes each packet itself, so it tells blocks with no audio (the
            # network's) from blocks whose tones were wrong: Chromium's hybrid Opus predicts
            # across packets, and after a loss the next blocks may decode wrong in any
            # receiver (docs/probe.md: measured on Chromium's own packets). The network's
            # part is checked; the decoder's recovery is printed.
            found_ms = 20.0 * data["blocksMissing"]
            recovery = f" (+ {20 * (data['blocksUnreadable'] + data['blocksLate'])} ms unreadable or late)"
        else:
            # The page reads NetEq's output: concealment and merge are part of what it hears.
            found_ms, recovery = 20.0 * data["blocks"], ""
        after = [(round((e["t_ms"] - out_hi) / 1000, 2), e["data"]["blocks"] * 20) for e in mine if e is not at_outage]
        total = outcome.result[side]["audio"]
        print(f"{direction}: {packet_ms:.0f} ms packets, {dropped} dropped in the outage = {truth_ms:.0f} ms; "
              f"dropout found there {found_ms:.0f} ms{recovery}; other dropouts (s after the outage, ms) {after}; "
              f"whole run {total}")
        assert truth_ms >= 1000, (direction, truth_ms)
        assert abs(found_ms - truth_ms) <= 40, (direction, at_outage, truth_ms)
        if direction == "up":
            # Audio is lost only in the outage: the whole run's blocks with no audio are the
            # outage's, and wrong tones elsewhere are at most the decoder's recovery after it
            # (a block or two, not always next to the gap: docs/probe.md). Late blocks, a
            # stalled host's, are printed above. The reader ends the run in sync.
            assert total["missing"] == data["blocksMissing"], total
            assert total["unreadable"] - data["blocksUnreadable"] <= 2, total
            assert total["synced"] and total["resyncs"] == 0, total


def test_rtt_matches_applied_delay(outcome: Outcome) -> None:
    truth = 0.0
    for direction in ("up", "down"):
        delays = [c.t_out - c.t_in for c in outcome.record
                  if c.direction == direction and c.ssrc is None and c.t_out is not None]
        truth += sum(delays) / len(delays)
    for side in ("participant", "sidecar"):
        pings = outcome.result[side]["pings"]
        measured = pings["rttMedianMs"]
        print(f"{side}: RTT median {measured} ms, applied {truth:.1f} ms, {pings['rtts']} pings")
        assert pings["rtts"] >= 100
        assert abs(measured - truth) <= 5 + 0.05 * truth, (side, measured, truth)


def test_browser_kept_sending(outcome: Outcome) -> None:
    # Media the browser did not send is not the network's: name it when it happens
    # (docs/probe.md, "Browser participants": seen under heavy load, cause open).
    plan = outcome.plan
    t0 = plan.t0 or 0.0
    up = sorted(c.t_in for c in outcome.record if c.direction == "up" and c.ssrc is not None)
    end = max(c.t_in for c in outcome.record if c.direction == "up" and c.ssrc is None)
    lo, hi = t0 + plan.outage[0] * 1000 - 300, t0 + plan.outage[1] * 1000 + 1000
    stalls = [(round((a - t0) / 1000, 2), round((b - a) / 1000, 2)) for a, b in zip(up, [*up[1:], end], strict=False)
              if b - a > 1000 and not (a >= lo and b <= hi)]
    assert not stalls, f"Chromium sent no RTP for (start s, seconds) {stalls} outside the imposed outage"


def test_candidates_loopback_and_relay_only(outcome: Outcome) -> None:
    # A pair on an interface another test removes loses the call both ways
    # (tests/test_attribution_browser.py); here only the relay's loopback exists.
    print(f"selected candidate pairs (samples): {outcome.pairs}; relay clients {outcome.clients}")
    assert outcome.clients == {"127.0.0.1"}, f"the browser reached the relay from {outcome.clients}"
    assert len(outcome.pairs) == 1, f"the selected pair changed during the call: {outcome.pairs}"
    (pair,) = outcome.pairs
    local = pair.split(" -> ")[0].split()
    assert local == ["relay", "127.0.0.1"], pair
