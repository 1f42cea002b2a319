"""``bondline import webrtc-internals|rtcstats`` against a real server's database.

The dumps are built here in the documented formats (plugin/dumps.py) from a
scripted stats history whose per-interval figures are known exactly.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import cli
from server.config import get_settings
from tests.support.server import ServerProcess
from tests.support.shared_server import running_server
from tests.test_plugin_uplink import events, stored

T0 = 1_760_000_000_000.0
POLLS = 6


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for this module's tests that each use their own session."""
    with running_server(tmp_path_factory.mktemp("shared-server")) as srv:
        yield srv


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def history() -> list[tuple[float, dict[str, dict[str, Any]]]]:
    """Six polls a second apart. Per interval: video in 50 packets of which 2
    retransmissions and 1 lost (loss 1/49); audio in 48000 samples of which
    480 concealed; the audio stream is replaced (new id, counters from zero)
    at poll 4; the selected pair is relayed with a 50 ms interval RTT."""
    polls = []
    for i in range(POLLS):
        t = T0 + i * 1000 + (3 if i % 2 else 0)
        report: dict[str, dict[str, Any]] = {
            "T01": {"type": "transport", "selectedCandidatePairId": "CPa/b", "iceState": "connected"},
            "CPa/b": {"type": "candidate-pair", "localCandidateId": "Ia", "remoteCandidateId": "Ib",
                      "state": "succeeded", "nominated": True, "currentRoundTripTime": 0.05,
                      "totalRoundTripTime": 0.1 * i, "responsesReceived": 2 * i,
                      "bytesSent": 100_000 * i, "bytesReceived": 100_000 * i, "availableOutgoingBitrate": 1_500_000},
            "Ia": {"type": "local-candidate", "candidateType": "relay", "protocol": "udp", "relayProtocol": "udp"},
            "Ib": {"type": "remote-candidate", "candidateType": "relay", "protocol": "udp"},
            "IT01V1": {"type": "inbound-rtp", "kind": "video", "ssrc": 1, "packetsReceived": 100 + 50 * i,
                       "retransmittedPacketsReceived": 2 * i, "packetsLost": i, "bytesReceived": 40_000 * i,
                       "framesDecoded": 20 * i, "framesDropped": 0, "framesReceived": 20 * i, "framesPerSecond": 20,
                       "freezeCount": 0, "totalFreezesDuration": 0, "jitter": 0.004},
            "OT01V2": {"type": "outbound-rtp", "kind": "video", "ssrc": 2, "packetsSent": 60 * i,
                       "bytesSent": 50_000 * i, "framesEncoded": 20 * i, "framesSent": 20 * i,
                       "framesPerSecond": 20, "qualityLimitationReason": "bandwidth"},
        }
        audio_id, base = ("IT01A3", i) if i < 4 else ("IT01A4", i - 4)
        report[audio_id] = {"type": "inbound-rtp", "kind": "audio", "ssrc": 3 if i < 4 else 4,
                            "packetsReceived": 50 * base, "packetsLost": 0, "bytesReceived": 3000 * base,
                            "totalSamplesReceived": 48_000 * base, "concealedSamples": 480 * base,
                            "silentConcealedSamples": 0, "concealmentEvents": base, "jitter": 0.002}
        if i >= 1:
            # RTCP arrives on its own clock: this object's timestamp is not the poll's.
            report["RIV2"] = {"type": "remote-inbound-rtp", "kind": "video", "ssrc": 2, "localId": "OT01V2",
                              "packetsLost": 2 * i, "fractionLost": 0.03, "jitter": 0.006,
                              "roundTripTime": 0.041, "totalRoundTripTime": 0.04 * i,
                              "roundTripTimeMeasurements": i, "timestamp": t - 370}
        for sid, obj in report.items():
            obj["id"] = sid
            obj.setdefault("timestamp", t)
        polls.append((t, report))
    return polls


STATE_LOG = [(T0 - 800, "iceconnectionstatechange", "checking"), (T0 - 600, "iceconnectionstatechange", "connected"),
             (T0 - 590, "connectionstatechange", "connected")]


def internals_dump(polls: list[tuple[float, dict[str, dict[str, Any]]]]) -> dict[str, Any]:
    series: dict[str, dict[str, Any]] = {}
    for _, report in polls:
        for sid, obj in report.items():
            for name, value in obj.items():
                if name in ("id", "type"):
                    continue
                entry = series.setdefault(
                    f"{sid}-{name}", {"statsType": obj["type"], "startTime": _iso(obj["timestamp"]), "values": []}
                )
                entry["values"].append(value)
                entry["endTime"] = _iso(obj["timestamp"])
            if obj["type"] == "inbound-rtp" and obj["kind"] == "video":
                # A series the page computes; its name holds dashes.
                entry = series.setdefault(f"{sid}-[framesReceived-framesDecoded-framesDropped]",
                                          {"statsType": obj["type"], "startTime": _iso(obj["timestamp"]), "values": []})
                entry["values"].append(0)
                entry["endTime"] = _iso(obj["timestamp"])
    for entry in series.values():
        entry["values"] = json.dumps(entry["values"])
    log = [{"type": kind, "value": json.dumps(state), "timestamp": t} for t, kind, state in STATE_LOG]
    return {"getUserMedia": [], "UserAgent": "test", "PeerConnections": {
        "7-1": {"pid": 7, "rtcConfiguration": "{\"iceTransportPolicy\":\"relay\"}", "url": "https://x.test/call",
                "updateLog": log, "stats": series}}}


def rtcstats_dump(polls: list[tuple[float, dict[str, dict[str, Any]]]]) -> str:
    lines = ["RTCStatsDump", json.dumps({"fileFormat": 3})]
    timed: list[tuple[float, list[Any]]] = [(T0 - 1000, ["create", None, {"hardwareConcurrency": 2}]),
                                            (T0 - 999, ["create", "7-1", {}, "https://x.test/call"])]
    timed += [(t, ["on" + kind, "7-1", json.dumps(state)]) for t, kind, state in STATE_LOG]
    timed += [(t + 0.5, ["getStats", "7-1", report]) for t, report in polls]
    timed.sort(key=lambda x: x[0])
    prev: float | None = None
    for t, item in timed:
        lines.append(json.dumps(item + [t if prev is None else t - prev]))
        prev = t
    return "\n".join(lines) + "\n"


def expected_interval(i: int) -> dict[str, Any]:
    """What sample i (covering polls i -> i+1 of the internals dump) must hold."""
    audio_replaced = i + 1 == 4
    return {
        "video_in": {"packetsReceived": 50, "retransmittedPacketsReceived": 2, "packetsLost": 1,
                     "lossFraction": round(1 / 49, 4), "framesDecoded": 20, "framesDropped": 0, "jitterMs": 4},
        "audio_in": {"packetsReceived": 0 if audio_replaced else 50,
                     "totalSamplesReceived": 0 if audio_replaced else 48_000,
                     "concealedSamples": 0 if audio_replaced else 480},
        "connection": {"localCandidateType": "relay", "remoteCandidateType": "relay", "rttMs": 50,
                       "relayProtocol": "udp", "availableOutgoingBitrateKbps": 1500},
    }


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_import(srv: ServerProcess, fmt: str, path: Path, session: int, role: str = "client",
               *, subprocess_run: bool = False) -> Result:
    argv = ["import", fmt, str(path), "--session", str(session), "--role", role, "--db", srv.db_url]
    if subprocess_run:
        p = subprocess.run([sys.executable, "-m", "server.cli", *argv], capture_output=True, text=True, timeout=60)
        return Result(p.returncode, p.stdout, p.stderr)
    # In-process (the same argparse entry point) saves an interpreter start per call.
    saved = os.environ.get("BONDLINE_DATABASE_URL")
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        if saved is None:
            os.environ.pop("BONDLINE_DATABASE_URL", None)
        else:
            os.environ["BONDLINE_DATABASE_URL"] = saved
        get_settings.cache_clear()
    return Result(code, out.getvalue(), err.getvalue())


def _check_samples(rows: list[dict[str, Any]]) -> None:
    assert [r["source"] for r in rows] == ["import"] * (POLLS - 1)
    assert [r["seq"] for r in rows] == list(range(POLLS - 1))
    for i, r in enumerate(rows):
        data = r["data"]
        exp = expected_interval(i)
        assert r["start_ms"] == pytest.approx(T0 + i * 1000 + (3 if i % 2 else 0), abs=1)
        assert data["intervalMs"] in (997, 1003)
        by = {(s["kind"], s["direction"]): s for s in data["streams"]}
        for k, v in exp["video_in"].items():
            assert by[("video", "inbound")][k] == v, (i, k)
        audio = [s for s in data["streams"] if s["kind"] == "audio"]
        if i + 1 != 4:
            assert len(audio) == 1
            for k, v in exp["audio_in"].items():
                assert audio[0][k] == v, (i, k)
        else:
            # The new stream's first report counts from zero; nothing negative or huge.
            assert [a["packetsReceived"] for a in audio] == [0]
        for k, v in exp["connection"].items():
            assert data["connection"][k] == v, (i, k)
        assert data["connection"]["state"] == "connected" and data["connection"]["iceState"] == "connected"
        out = by[("video", "outbound")]
        assert out["packetsSent"] == 60 and out["qualityLimitationReason"] == "bandwidth"
        if i >= 1:  # the remote report exists from poll 1 on
            assert out["rttMs"] == 40 and out["packetsLost"] == 2 and out["lossFraction"] == 0.03


def test_import_dump_on_both_backends(server: ServerProcess, tmp_path: Path) -> None:
    _import_and_check(server, tmp_path, "internals-gz")


@pytest.mark.parametrize("fmt", ["internals-txt", "rtcstats-gz"])
def test_import_each_dump_format(shared_server: ServerProcess, tmp_path: Path, fmt: str) -> None:
    _import_and_check(shared_server, tmp_path, fmt)


def _import_and_check(server: ServerProcess, tmp_path: Path, fmt: str) -> None:
    polls = history()
    if fmt == "internals-txt":
        path = tmp_path / "webrtc_internals_dump.txt"
        path.write_text(json.dumps(internals_dump(polls), indent=1))
    elif fmt == "internals-gz":
        path = tmp_path / "webrtc_internals_dump.gz"
        path.write_bytes(gzip.compress(json.dumps(internals_dump(polls)).encode()))
    else:
        path = tmp_path / "rtcstats_dump.gz"
        path.write_bytes(gzip.compress(rtcstats_dump(polls).encode()))
    s = server.create_session()
    # The installed command line, as an operator runs it.
    res = run_import(server, "rtcstats" if fmt.startswith("rtc") else "webrtc-internals", path, s["id"],
                     subprocess_run=fmt == "internals-gz")
    assert res.returncode == 0, res.stderr
    created_seen = fmt.startswith("rtcstats")
    assert f"imported {POLLS if created_seen else POLLS - 1} samples" in res.stdout
    rows = stored(server, s["id"], role="client")
    if fmt.startswith("rtcstats"):
        # The rtcstats dump saw the connection created, so its first poll counts too.
        assert rows[0]["data"]["intervalMs"] == 1000
        rows = rows[1:]
        for r in rows:
            r["seq"] -= 1
    _check_samples(rows)
    ev = [(e["kind"], e["data"]["state"]) for e in events(server, s["id"]) if e["origin"] == "collector"]
    assert ev == [("ice.state", "checking"), ("ice.state", "connected"), ("connection.state", "connected")]
    # Importing the same file again is refused and changes nothing.
    again = run_import(server, "webrtc-internals", path, s["id"])
    assert again.returncode == 2 and "already has" in again.stderr and "nothing was stored" in again.stderr
    assert len(stored(server, s["id"], role="client")) == len(rows) + (1 if fmt.startswith("rtcstats") else 0)


def test_import_refuses_bad_and_truncated_files(shared_server: ServerProcess, tmp_path: Path) -> None:
    srv = shared_server
    s = srv.create_session()
    good = json.dumps(internals_dump(history())).encode()
    rtc = rtcstats_dump(history())
    missing_ts = internals_dump(history())
    series = missing_ts["PeerConnections"]["7-1"]["stats"]
    del series["IT01V1-timestamp"]
    cases = {
        "truncated.gz": (gzip.compress(good)[:-40], "gzip data is truncated"),
        "truncated.txt": (good[: len(good) // 2], "not valid JSON"),
        "rtcstats-truncated.txt": (rtc[: len(rtc) - 300].encode(), "is not valid JSON (truncated?)"),
        "other.json": (b'{"hello": 1}', "not a webrtc-internals dump"),
        "no-timestamps.txt": (json.dumps(missing_ts).encode(), "has no matching '<id>-timestamp' series"),
        "binary.bin": (b"\x00\xff\xfe" * 10, "not UTF-8"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        res = run_import(srv, "webrtc-internals", path, s["id"])
        assert res.returncode == 2, name
        assert message in res.stderr and "nothing was stored" in res.stderr, (name, res.stderr)
    ok = tmp_path / "ok.txt"
    ok.write_bytes(good)
    bad_role = run_import(srv, "webrtc-internals", ok, 999_999)
    assert bad_role.returncode == 2 and "has no participant" in bad_role.stderr
    assert stored(srv, s["id"], role="client") == []
    r = httpx.get(f"{srv.base}/api/v1/sessions/{s['id']}/events", headers=srv.admin_headers)
    assert [e for e in r.json() if e["origin"] == "collector"] == []


DATA = Path(__file__).resolve().parent / "data"


def test_real_chromium_dumps_of_one_call_agree(shared_server: ServerProcess) -> None:
    """Both dumps were saved from chrome://webrtc-internals (Chromium 156, headless) during one demo
    call; they record the same getStats() polls, so both imports must give the same samples."""
    srv = shared_server
    got = {}
    dumps = (("webrtc-internals", "plugin_webrtc_internals_dump.gz"), ("rtcstats", "plugin_rtcstats_dump.gz"))
    for fmt, name in dumps:
        s = srv.create_session(client_code="C-REAL-DUMP")
        res = run_import(srv, fmt, DATA / name, s["id"], "clinician")
        assert res.returncode == 0, res.stderr
        assert "from 2 connection(s)" in res.stdout  # both peers of the demo call were in this browser
        got[fmt] = stored(srv, s["id"], role="clinician")
    internals, rtcstats = got["webrtc-internals"], got["rtcstats"]
    assert len(internals) >= 4 and len(rtcstats) >= len(internals)
    matched = 0
    for a in internals:
        b = [r for r in rtcstats if abs(r["start_ms"] - a["start_ms"]) <= 10]
        if not b:
            continue
        matched += 1
        key = lambda st: (st["kind"], st["direction"], st["ssrc"])  # noqa: E731
        sa, sb = sorted(a["data"]["streams"], key=key), sorted(b[0]["data"]["streams"], key=key)
        assert sa == sb
        assert a["data"]["connection"] == b[0]["data"]["connection"]
    assert matched >= 3
    video_in = [st for r in internals for st in r["data"]["streams"]
                if (st["kind"], st["direction"]) == ("video", "inbound")]
    assert all(st["framesPerSecond"] >= 15 and st["packetsLost"] == 0 for st in video_in)
