"""Ground truth: impair a real call by known amounts and check what was stored.

Two headless Chromium pages call each other with ``iceTransportPolicy:
'relay'`` through a local coturn; a UDP relay in front of coturn
(tests/support/udp_impair.py) impairs the TURN -> client crossing, which
every media packet passes exactly once on its way to the receiver. The test
then reads the stored headline figures (the ``sample`` table) and compares:

- 5% random RTP loss: stored loss within 1.5 pp of 5% (and of what the relay
  actually dropped for the same streams);
- +50 ms on that crossing, i.e. +100 ms round trip: stored RTT within 20 ms of
  baseline + 2 x the delay the relay measured applying;
- a 3 s outage both ways: a video freeze and an audio concealment burst
  stored at the outage's time, within 1 s.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.support.browser_call import ARTIFACTS, ONE_INTERFACE_ARGS, connect, launch, plugin_page, turn_config
from tests.support.quiet import wait_for_quiet
from tests.support.server import ServerProcess
from tests.support.turn import TurnServer
from tests.support.udp_impair import UdpImpair

pytestmark = pytest.mark.browser
ROLES = ("clinician", "client")


def now_ms() -> float:
    return time.time() * 1000


def read_samples(db: str, session_id: int) -> dict[str, list[dict[str, Any]]]:
    """The stored rows: headline columns plus the sample JSON."""
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in ROLES}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT p.role, s.* FROM sample s JOIN participant p ON p.id = s.participant_id "
            "WHERE p.session_id = ? ORDER BY s.seq", (session_id,)).fetchall()
    for r in rows:
        d = dict(r)
        d["data"] = orjson.loads(d["data"])
        out[d["role"]].append(d)
    return out


def within(rows: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [r for r in rows if r["t_ms"] >= start and r["t_ms"] + r["interval_ms"] <= end]


def media_loss(rows: list[dict[str, Any]]) -> tuple[float, dict[int, tuple[int, int]]]:
    """Stored loss over rows (the headline definition, summed), and (lost, expected) per SSRC."""
    per: dict[int, tuple[int, int]] = {}
    for r in rows:
        for st in r["data"]["streams"]:
            if st["direction"] != "inbound" or "packetsLost" not in st:
                continue
            fresh = st["packetsReceived"] - st.get("retransmittedPacketsReceived", 0)
            lost, exp = per.get(st["ssrc"], (0, 0))
            per[st["ssrc"]] = (lost + max(st["packetsLost"], 0), exp + max(st["packetsLost"], 0) + max(fresh, 0))
    lost = sum(v[0] for v in per.values())
    expected = sum(v[1] for v in per.values())
    return lost / expected, per


def badge(page: Page) -> str:
    return str(page.evaluate("() => Bondline.status().badge"))


def test_imposed_loss_delay_and_outage_are_what_is_stored(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    srv = sqlite_server
    print(wait_for_quiet())
    s = srv.create_session()
    turn = TurnServer(tmp_path / "turn").start()
    relay = UdpImpair(turn.port).start()
    marks: dict[str, float] = {}
    badges: dict[str, list[str]] = {}
    try:
        with sync_playwright() as pw:
            # One interface: a veth another test adds or removes cannot carry (and cut) the call.
            browser = launch(pw, ONE_INTERFACE_ARGS)
            pages = {role: plugin_page(browser, srv.base) for role in ROLES}
            for role, page in pages.items():
                page.evaluate("(o) => { Bondline.start(o); }",
                              {"server": srv.base, "token": s["tokens"][role], "intervalMs": 1000, "badge": True})
            connect(pages["clinician"], pages["client"], turn_config(relay.port, turn.user, turn.password))
            time.sleep(3)  # let the encoders ramp up
            marks["baseline"] = now_ms()
            time.sleep(5)
            badges["clean"] = [badge(p) for p in pages.values()]

            before = relay.snapshot()
            marks["loss"] = relay.set("down", loss=0.05, rtp_only=True)
            time.sleep(9)
            badges["loss"] = [badge(p) for p in pages.values()]
            marks["loss_end"] = relay.set("down", loss=0.0)
            after = relay.snapshot()

            marks["delay"] = relay.set("down", delay_ms=50)
            time.sleep(9)
            marks["delay_end"] = now_ms()
            applied = relay.measured_delay_ms("down")
            relay.set("down", delay_ms=0)

            time.sleep(2)
            marks["outage"] = relay.set_outage(True)
            time.sleep(2)
            badges["outage"] = [badge(p) for p in pages.values()]
            time.sleep(1)
            marks["outage_end"] = relay.set_outage(False)
            time.sleep(7)  # video waits for a key frame; the freeze is reported once it resumes
            for page in pages.values():
                assert page.evaluate("() => Bondline.stop(5000)") is True
            pages["client"].screenshot(path=str(ARTIFACTS / "plugin-ground-truth.png"))
            browser.close()
    finally:
        relay.stop()
        turn.stop()

    stored = read_samples(srv.db_url, s["id"])
    report: dict[str, Any] = {"marks": marks, "badges": badges}
    for role in ROLES:
        rows = stored[role]
        assert [r["seq"] for r in rows] == list(range(len(rows)))
        # Every packet went through TURN, so through the relay.
        assert {r["data"]["connection"].get("localCandidateType") for r in rows[2:]} == {"relay"}

        # 1. Loss. The relay's own count for the streams this participant receives is the truth.
        loss_rows = within(rows, marks["loss"] + 1000, marks["loss_end"])
        stored_loss, per_ssrc = media_loss(loss_rows)
        truth = {ssrc: (after.get(("down", ssrc), (0, 0))[1] - before.get(("down", ssrc), (0, 0))[1],
                        sum(after.get(("down", ssrc), (0, 0))) - sum(before.get(("down", ssrc), (0, 0))))
                 for ssrc in per_ssrc}
        relay_loss = sum(v[0] for v in truth.values()) / sum(v[1] for v in truth.values())
        headline_mean = statistics.fmean(r["loss_in"] for r in loss_rows)
        report[f"{role}.loss"] = (stored_loss, relay_loss, headline_mean, per_ssrc, truth)
        assert len(loss_rows) >= 6
        assert abs(stored_loss - 0.05) <= 0.015, report
        assert abs(headline_mean - 0.05) <= 0.015, report
        assert abs(stored_loss - relay_loss) <= 0.01, report

        # 2. Delay: the stored RTT (headline rtt_ms) against the clean baseline.
        base_rtt = statistics.median(r["rtt_ms"] for r in within(rows, marks["baseline"], marks["loss"])
                                     if r["rtt_ms"] is not None)  # null: no new measurement that second
        delay_rows = within(rows, marks["delay"] + 3000, marks["delay_end"])
        delayed_rtt = statistics.median(r["rtt_ms"] for r in delay_rows if r["rtt_ms"] is not None)
        assert applied is not None
        report[f"{role}.rtt"] = (base_rtt, delayed_rtt, applied, [r["rtt_ms"] for r in delay_rows])
        assert len(delay_rows) >= 4
        assert abs(delayed_rtt - (base_rtt + 2 * applied)) <= 20, report
        assert abs(2 * applied - 100) <= 5, report

        # 3. Outage: a freeze and a concealment burst at the outage's time.
        freeze = [r for r in rows if (r["freeze_ms_in"] or 0) >= 1500 and r["t_ms"] >= marks["outage"]]
        assert freeze, report
        first = freeze[0]
        freeze_start = first["t_ms"] + first["interval_ms"] / 2 - first["freeze_ms_in"]
        burst = [r for r in rows if (r["concealed_ratio_in"] or 0) >= 0.2 and r["t_ms"] >= marks["outage"] - 2000]
        assert burst, report
        burst_start = burst[0]["t_ms"]
        burst_end = max(r["t_ms"] + r["interval_ms"] for r in burst if r["t_ms"] < marks["outage_end"] + 3000)
        report[f"{role}.outage"] = (freeze_start - marks["outage"], first["freeze_ms_in"],
                                    burst_start - marks["outage"], burst_end - marks["outage_end"])
        assert abs(freeze_start - marks["outage"]) <= 1000, report
        assert abs(burst_start - marks["outage"]) <= 1000, report
        assert abs(burst_end - marks["outage_end"]) <= 1000, report

    assert badges["clean"] == ["good", "good"], report
    assert all(b in ("degraded", "poor") for b in badges["loss"]), report
    assert badges["outage"] == ["poor", "poor"], report
    print(report)
