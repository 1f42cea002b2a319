"""plugin/aiortc_collector.py: two real aiortc peers in one process, a real server."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from plugin.aiortc_collector import AiortcCollector, StatsDeltas
from plugin.uplink import Uplink
from tests.support.server import ServerProcess
from tests.test_plugin_uplink import stored


async def _drain(track: MediaStreamTrack) -> None:
    while True:
        await track.recv()


async def _call(srv: ServerProcess, tokens: dict[str, str], seconds: float) -> dict[str, Any]:
    pcs = {"clinician": RTCPeerConnection(), "client": RTCPeerConnection()}
    sinks: list[asyncio.Task[None]] = []
    for pc in pcs.values():
        pc.addTrack(AudioStreamTrack())
        pc.addTrack(VideoStreamTrack())

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            sinks.append(asyncio.ensure_future(_drain(track)))

    uplinks = {role: Uplink(srv.base, tokens[role]) for role in pcs}
    collectors = {role: AiortcCollector(pcs[role], uplinks[role], interval_s=0.5, from_start=True) for role in pcs}
    for role in pcs:
        await uplinks[role].start(wait_s=10)
        collectors[role].start()
    a, b = pcs["clinician"], pcs["client"]
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.sleep(seconds)
    for c in collectors.values():
        await c.stop()
    # One last poll each, so the sums below cover everything counted so far.
    finals = {}
    for role in pcs:
        await collectors[role].poll()
        finals[role] = {s["type"] + ":" + s["kind"]: s for s in collectors[role].last_stats
                        if s["type"] in ("inbound-rtp", "outbound-rtp")}
    for role in pcs:
        assert await uplinks[role].close(10)
    for t in sinks:
        t.cancel()
    for pc in pcs.values():
        await pc.close()
    return finals


def test_aiortc_collector_streams_python_samples(sqlite_server: ServerProcess) -> None:
    srv = sqlite_server
    s = srv.create_session()
    finals = asyncio.run(_call(srv, s["tokens"], 4.0))
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
