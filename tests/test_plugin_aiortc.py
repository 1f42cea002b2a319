"""plugin/aiortc_collector.py: two real aiortc peers in one process, a real server."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiortc import RTCPeerConnection

from plugin.aiortc_collector import StatsDeltas
from tests.support.aiortc_call import (
    AiortcCall,
    RttLog,
    assert_rtt_only_where_measured,
    disruptions,
    payload_types,
)
from tests.support.gt_seed import GT_SEED, gt_line
from tests.support.impaired_transport import Impairment, Record
from tests.support.server import ServerProcess, stored


async def _call(srv: ServerProcess, tokens: dict[str, str], seconds: float,
                rtts: RttLog) -> dict[str, Any]:
    call = AiortcCall(srv.base, tokens, interval_s=0.5, from_start=True)
    for pc in call.pcs.values():
        for sender in pc.getSenders():
            rtts.watch(sender)
    await call.start()
    await call.negotiate("clinician")
    await asyncio.sleep(seconds)
    await call.stop_collectors()
    # One last poll each, so the sums below cover everything counted so far.
    finals = {}
    for role, collector in call.collectors.items():
        await collector.poll()
        finals[role] = {s["type"] + ":" + s["kind"]: s for s in collector.last_stats
                        if s["type"] in ("inbound-rtp", "outbound-rtp")}
    await call.close()
    return finals


def test_aiortc_collector_streams_python_samples(sqlite_server: ServerProcess) -> None:
    srv = sqlite_server
    s = srv.create_session()
    measured = RttLog()
    finals = asyncio.run(_call(srv, s["tokens"], 4.0, measured))
    for role in ("clinician", "client"):
        rows = stored(srv, s["id"], role=role)
        assert len(rows) >= 6
        assert [r["seq"] for r in rows] == list(range(len(rows)))
        assert all(r["source"] == "python" for r in rows)
        streams = [st for r in rows for st in r["data"]["streams"]]
        # What aiortc does not measure is absent (null), never a made-up zero.
        for st in streams:
            for missing in ("framesDropped", "freezeCount", "totalFreezesDurationMs", "concealedSamples",
                            "framesPerSecond"):
                assert missing not in st
        for kind in ("audio", "video"):
            inbound = [st for st in streams if st["direction"] == "inbound" and st["kind"] == kind]
            outbound = [st for st in streams if st["direction"] == "outbound" and st["kind"] == kind]
            # The deltas add up to the cumulative counters aiortc holds.
            final_in, final_out = finals[role][f"inbound-rtp:{kind}"], finals[role][f"outbound-rtp:{kind}"]
            assert sum(st["packetsReceived"] for st in inbound) == final_in["packetsReceived"]
            assert sum(st["packetsSent"] for st in outbound) == final_out["packetsSent"]
            # Jitter converted from RTP units with the codec clock: a loopback call has a few ms at most.
            jitters = [st["jitterMs"] for st in inbound if "jitterMs" in st]
            assert jitters and all(0 <= j < 50 for j in jitters)
            rate = 48_000 if kind == "audio" else 90_000
            last_jitter = finals[role][f"inbound-rtp:{kind}"]["jitter"] / rate * 1000
            assert abs(inbound[-1]["jitterMs"] - last_jitter) < 0.01
        rtts = [st["rttMs"] for st in streams if "rttMs" in st]
        assert rtts and all(0 <= r < 100 for r in rtts)
        assert all(r["data"]["connection"]["state"] in ("new", "connecting", "connected") for r in rows)
        assert_rtt_only_where_measured(role, rows, measured)
    # An unimpaired call: no disruption for either participant, first and last second included.
    found = disruptions(srv.db_url, s["id"])
    assert found == [], [(e.kind, e.role, e.start_ms, e.duration_ms) for e in found]


def test_aiortc_deltas_survive_counter_reset_and_baseline() -> None:
    clock = ({}, {"audio": 48_000})
    d = StatsDeltas(from_start=False)
    base = [{"type": "inbound-rtp", "id": "in1", "kind": "audio", "ssrc": 1, "packetsReceived": 500,
             "packetsLost": 5, "jitter": 480}]
    assert d.reduce(base, 1000, clock) is None  # history before we watched: baseline only
    nxt = [dict(base[0], packetsReceived=550, packetsLost=6)]
    f = d.reduce(nxt, 1000, clock)
    assert f == [{"kind": "audio", "direction": "inbound", "ssrc": 1, "packetsReceived": 50, "packetsLost": 1,
                  "lossFraction": round(1 / 51, 4), "jitterMs": 10.0}]
    # A new connection reuses the id and restarts its counters from zero.
    again = [dict(base[0], packetsReceived=20, packetsLost=0)]
    f = d.reduce(again, 1000, clock)
    assert f is not None and f[0]["packetsReceived"] == 20 and f[0]["packetsLost"] == 0
    # A stream that disappears and a new one that appears: counted from zero.
    new = [{"type": "inbound-rtp", "id": "in2", "kind": "audio", "ssrc": 2, "packetsReceived": 30, "packetsLost": 0}]
    f = d.reduce(new, 1000, clock)
    assert f is not None and [x["packetsReceived"] for x in f] == [30]


def _truth(records: list[Record]) -> dict[str, int]:
    """Delivered packets, and lost ones as a receiver can count them (between
    its first and last delivered packet, in sending order)."""
    got = [r.t_out is not None for r in sorted(records, key=lambda r: r.t_in)]
    if True not in got:
        return {"delivered": 0, "lost": 0}
    first, last = got.index(True), len(got) - 1 - got[::-1].index(True)
    return {"delivered": sum(got), "lost": got[first: last + 1].count(False)}


async def _edge_call(srv: ServerProcess, tokens: dict[str, str], rng: random.Random) -> dict[str, Any]:
    """A call whose collectors are attached before negotiation (not from_start:
    the attach path) and whose ends are a close() on one side and a stop()
    on the other, with seeded loss, delay and jitter from the first packet."""
    call = AiortcCall(srv.base, tokens, interval_s=0.5, from_start=False)
    pcs, collectors = call.pcs, call.collectors
    await call.start()
    imp_seed = rng.randrange(2**32)  # drawn first, as always: a printed seed replays the same call
    drawn = {"loss": {(d, c): rng.uniform(0.005, 0.10) for d in ("up", "down") for c in ("audio", "video")},
             "delay_ms": {d: rng.uniform(5, 30) for d in ("up", "down")},
             "jitter_ms": {d: rng.uniform(0, 10) for d in ("up", "down")}, "call_s": rng.uniform(3, 5)}
    imps: list[Impairment] = []

    def impair(a: RTCPeerConnection) -> None:
        imp = Impairment(imp_seed, payload_types(a.localDescription.sdp))
        imp.attach(a.getTransceivers()[0].sender.transport.transport)
        imp.loss, imp.delay_ms, imp.jitter_ms = dict(drawn["loss"]), dict(drawn["delay_ms"]), dict(drawn["jitter_ms"])
        imp.active = True
        imps.append(imp)

    await call.negotiate("clinician", impair)
    imp = imps[0]
    await asyncio.sleep(drawn["call_s"])
    for pc in pcs.values():
        for sender in pc.getSenders():
            sender.replaceTrack(None)
    await asyncio.sleep(0.3 + max(drawn["delay_ms"].values()) / 1000 + max(drawn["jitter_ms"].values()) / 1000)
    await pcs["clinician"].close()  # the clinician's collector polls once more on close
    await collectors["client"].stop()  # the client's once more on stop
    await collectors["clinician"].stop()
    await call.close()
    imp.close()
    truth = {"clinician": {k: _truth(imp.select("down", k)) for k in ("audio", "video", "rtp")},
             "client": {k: _truth(imp.select("up", k)) for k in ("audio", "video", "rtp")}}
    return {"drawn": drawn, "truth": truth}


def test_aiortc_collector_counts_first_and_last_second_exactly(sqlite_server: ServerProcess) -> None:
    print(gt_line())
    srv = sqlite_server
    s = srv.create_session()
    out = asyncio.run(_edge_call(srv, s["tokens"], random.Random(GT_SEED)))
    report: dict[str, Any] = {"seed": GT_SEED, **out}
    for role in ("clinician", "client"):
        rows = stored(srv, s["id"], role=role)
        streams = [st for r in rows for st in r["data"]["streams"] if st["direction"] == "inbound"]
        for kind in ("audio", "video"):
            mine = [st for st in streams if st["kind"] == kind]
            got = {"received": sum(st["packetsReceived"] for st in mine), "lost": sum(st["packetsLost"] for st in mine)}
            report[f"{role}.{kind}"] = got
    print(report)
    for role in ("clinician", "client"):
        for kind in ("audio", "video"):
            got = report[f"{role}.{kind}"]
            truth = out["truth"][role][kind]
            assert got["lost"] == truth["lost"], report
            assert got["received"] == truth["delivered"], report


def test_aiortc_rtt_repeated_from_an_old_receiver_report_is_left_out() -> None:
    clock = ({}, {"audio": 48_000})
    d = StatsDeltas(from_start=True)

    def report(sent: int, rr_at: int, rtt: float) -> list[dict[str, Any]]:
        return [{"type": "outbound-rtp", "id": "outbound-rtp_1", "kind": "audio", "ssrc": 7, "packetsSent": sent,
                 "bytesSent": sent * 100},
                {"type": "remote-inbound-rtp", "id": "remote-inbound-rtp_1", "kind": "audio", "ssrc": 9,
                 "timestamp": rr_at, "roundTripTime": rtt, "packetsLost": 0}]

    # (receiver report's stamp, RTT): no new report; then a new report that answered an
    # older sender report, which aiortc stamps anew with the old smoothed RTT in it.
    reports = [(1, 0.05), (2, 0.052), (2, 0.052), (3, 0.0531), (4, 0.0531), (5, 0.054)]
    got = [d.reduce(report(50 * i, at, rtt), 1000, clock) for i, (at, rtt) in enumerate(reports, start=1)]
    assert [(f or [{}])[0].get("rttMs") for f in got] == [50.0, 52.0, None, 53.1, None, 54.0]
