"""``bondline import webrtc-internals|rtcstats`` against a real server's database.

The dumps are built here in the documented formats (server/importers/dumps.py) from a
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
from server.importers.coverage import coverage_of
from server.importers.dump_import import build, select_connections
from server.importers.dumps import load_dump
from server.importers.model import PAGE_MAX_POINTS
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


def internals_dump(polls: list[tuple[float, dict[str, dict[str, Any]]]], key: str = "7-1",
                   setup: bool = True) -> dict[str, Any]:
    """The page's dump of one connection; ``setup``: the page was open when it was created."""
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
    log = [{"type": "transceiverAdded", "value": "{}", "timestamp": T0 - 1000}] if setup else []
    log += [{"type": kind, "value": json.dumps(state), "timestamp": t} for t, kind, state in STATE_LOG]
    return {"getUserMedia": [], "UserAgent": "test", "PeerConnections": {
        key: {"pid": 7, "rtcConfiguration": "{\"iceTransportPolicy\":\"relay\"}", "url": "https://x.test/call",
              "updateLog": log, "stats": series}}}


def rtcstats_dump(polls: list[tuple[float, dict[str, dict[str, Any]]]], line_lag_ms: float = 0.5) -> str:
    """The rtcstats dump of the same history; each getStats line is written ``line_lag_ms`` after
    its report's own time, as the page does."""
    lines = ["RTCStatsDump", json.dumps({"fileFormat": 3})]
    timed: list[tuple[float, list[Any]]] = [(T0 - 1000, ["create", None, {"hardwareConcurrency": 2}]),
                                            (T0 - 999, ["create", "7-1", {}, "https://x.test/call"]),
                                            (T0 - 998, ["addTrack", "7-1", ["audio", "a1", "s1"]])]
    timed += [(t, ["on" + kind, "7-1", json.dumps(state)]) for t, kind, state in STATE_LOG]
    timed += [(t + line_lag_ms, ["getStats", "7-1", report]) for t, report in polls]
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
    before = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    assert dict(os.environ) == before, "--db must reach the command without editing the environment"
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
        # The page writes each report's line up to half a second after the report's own time.
        path.write_bytes(gzip.compress(rtcstats_dump(polls, line_lag_ms=480).encode()))
    s = server.create_session()
    # The installed command line, as an operator runs it.
    res = run_import(server, "rtcstats" if fmt.startswith("rtc") else "webrtc-internals", path, s["id"],
                     subprocess_run=fmt == "internals-gz")
    assert res.returncode == 0, res.stderr
    assert f"imported {POLLS} samples" in res.stdout and "nothing missing at the start" in res.stdout
    rows = stored(server, s["id"], role="client")
    # Both dumps saw the connection created (T0 - 1000), so its first poll counts from zero.
    assert abs(rows[0]["start_ms"] - (T0 - 1000)) <= 1 and abs(rows[0]["data"]["intervalMs"] - 1000) <= 1
    assert rows[0]["data"]["streams"][0]["pc"] == "7-1"
    rows = rows[1:]
    for r in rows:
        r["seq"] -= 1
    _check_samples(rows)
    ev = [(e["kind"], e["data"]["state"]) for e in events(server, s["id"]) if e["kind"].endswith(".state")]
    assert ev == [("ice.state", "checking"), ("ice.state", "connected"), ("connection.state", "connected")]
    # Importing the same file again is refused and changes nothing.
    again = run_import(server, "webrtc-internals", path, s["id"])
    assert again.returncode == 2 and "was imported before" in again.stderr and "nothing was stored" in again.stderr
    assert len(stored(server, s["id"], role="client")) == len(rows) + 1


def _rtcstats_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()[2:]]


def _rtcstats_text(items: list[Any]) -> str:
    return "RTCStatsDump\n" + json.dumps({"fileFormat": 3}) + "\n" + "\n".join(json.dumps(i) for i in items) + "\n"


def test_a_missing_value_is_missing_never_zero_or_the_previous_one(shared_server: ServerProcess,
                                                                   tmp_path: Path) -> None:
    """rtcstats: a field absent from one report is absent in that poll (no stale frame rate through
    an outage), and a counter whose previous value is missing gives no interval figure at all,
    never its whole total."""
    polls = history()
    for i in (2, 3):
        v = polls[i][1]["IT01V1"]
        v["framesDecoded"] = polls[1][1]["IT01V1"]["framesDecoded"]  # video stalled
        del v["framesPerSecond"]  # as Chromium leaves it out when no frame was decoded
    del polls[3][1]["IT01V1"]["packetsLost"]
    path = tmp_path / "rtcstats_dump"
    path.write_text(rtcstats_dump(polls))
    s = shared_server.create_session()
    assert run_import(shared_server, "rtcstats", path, s["id"]).returncode == 0
    rows = stored(shared_server, s["id"], role="client")
    video = [next(st for st in r["data"]["streams"] if (st["kind"], st["direction"]) == ("video", "inbound"))
             for r in rows]
    # Sample k covers poll k-1 -> k (sample 0 runs from creation to poll 0).
    assert [v["framesPerSecond"] for v in video[1:]] == [20, 0, 0, 20, 20]
    assert [v.get("packetsLost") for v in video[1:]] == [1, 1, None, None, 1]


def test_one_participant_with_two_connections(tmp_path: Path) -> None:
    """Two connections of one participant (a P2P/bridge switch): each keeps its own labelled
    streams and facts; a poll one of them missed makes the sample span both seconds, so a
    figure is never squeezed into a second it does not cover."""
    a = internals_dump(history(), key="7-1")
    other = history()
    for _, report in other:
        for obj in report.values():
            if "ssrc" in obj:
                obj["ssrc"] += 100
            if obj["type"] == "inbound-rtp" and obj["kind"] == "video":
                obj["freezeCount"] = 0 if obj["timestamp"] < T0 + 2500 else 1
                obj["totalFreezesDuration"] = 0 if obj["timestamp"] < T0 + 2500 else 1.5
    del other[2]  # this connection's poll of T0+2000 is missing
    b = internals_dump(other, key="7-2")
    a["PeerConnections"].update(b["PeerConnections"])
    path = tmp_path / "two.txt"
    path.write_text(json.dumps(a))
    dump = load_dump(path)
    timelines = select_connections(dump, None)  # one participant: not refused
    built = build(timelines)
    spans = [(s["startMs"] - T0, s["intervalMs"]) for s in built.samples]
    assert spans == [(-1000, 1000), (0, 1003), (1003, 2000), (3003, 997), (4000, 1003)]
    for s in built.samples:
        assert {st["pc"] for st in s["streams"]} == {"7-1", "7-2"}
        assert s["connection"]["connections"] == 2 and [c["pc"] for c in s["connection"]["pcs"]] == ["7-1", "7-2"]
    freeze = [(s["startMs"] - T0, st["totalFreezesDurationMs"]) for s in built.samples for st in s["streams"]
              if st["pc"] == "7-2" and st.get("totalFreezesDurationMs")]
    assert freeze == [(1003, 1500)]  # it grew between T0+1003 and T0+3003: that sample, whole
    # The two-second sample holds each connection's two-second figures.
    two = built.samples[2]
    assert {st["pc"]: st["packetsReceived"] for st in two["streams"]
            if (st["kind"], st["direction"]) == ("video", "inbound")} == {"7-1": 100, "7-2": 100}


def _bomb(path: Path, unpacked: int) -> None:
    """A small gzip that unpacks to ``unpacked`` bytes: a dump's opening, then one endless string
    (gzip members one after another, as gzip allows: the same 1 MiB member repeated)."""
    block = gzip.compress(b"A" * (1 << 20), 9)
    with path.open("wb") as f:
        f.write(gzip.compress(b'{"PeerConnections": {"1-1": {"stats": {"x-packetsLost": {"values": "'))
        for _ in range(unpacked >> 20):
            f.write(block)


def _bad_cases(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    good = json.dumps(internals_dump(history())).encode()
    rtc = rtcstats_dump(history())
    missing_ts = internals_dump(history())
    del missing_ts["PeerConnections"]["7-1"]["stats"]["IT01V1-timestamp"]
    nan = internals_dump(history())
    nan["PeerConnections"]["7-1"]["stats"]["IT01V1-packetsLost"]["values"] = "[0,1,NaN,3,4,5]"
    null = internals_dump(history())
    null["PeerConnections"]["7-1"]["stats"]["IT01V1-packetsReceived"]["values"] = "[100,150,null,250,300,350]"
    rtc_nan = _rtcstats_lines(rtc)
    rtc_nan[-1][2]["IT01V1"]["jitter"] = float("nan")
    delta = _rtcstats_lines(rtc)
    del delta[-1][2]["IT01V1"]["type"]
    # The demo call's dump (one page, both peers) with one connection's stats removed.
    demo = json.loads(gzip.decompress((DATA / "plugin_webrtc_internals_dump.gz").read_bytes()))
    demo["PeerConnections"]["9-2"]["stats"] = {}
    # The client's real dump with its candidate pairs' series taken out.
    client = json.loads((DATA / "dumps" / "client_webrtc_internals_dump.txt").read_text())
    (pc,) = client["PeerConnections"].values()
    pc["stats"] = {k: v for k, v in pc["stats"].items() if not k.startswith("CP")}
    return {
        "empty.txt": (b"", "the file is empty (0 bytes)"),
        "empty.gz": (gzip.compress(b""), "the file is empty (an empty gzip stream)"),
        "blank.txt": (b"  \n\n ", "holds only white space"),
        "bom.txt": (b"\xef\xbb\xbf" + good, "starts with a UTF-8 byte-order mark"),
        "truncated.gz": (gzip.compress(good)[:-40], "the gzip data is truncated"),
        "truncated.txt": (good[: len(good) // 2], "(truncated?)"),
        "rtcstats-truncated.txt": (rtc[: len(rtc) - 300].encode(), ": not valid JSON (truncated?)"),
        "other.json": (b'{"hello": 1}', "no 'PeerConnections' object: not a webrtc-internals dump"),
        "binary.bin": (b"\x00\xff\xfe" * 10, "not a WebRTC dump"),
        "no-timestamps.txt": (json.dumps(missing_ts).encode(), "has no matching '<id>-timestamp' series"),
        "nan.txt": (json.dumps(nan).encode(), "stats series 'IT01V1-packetsLost' of connection 7-1 holds NaN"),
        "null.txt": (json.dumps(null).encode(), "IT01V1 at 1760000002000.packetsReceived is null"),
        "nan-rtcstats.txt": (_rtcstats_text(rtc_nan).encode(), "line 14: 2.IT01V1.jitter is NaN, not a finite number"),
        "delta-rtcstats.txt": (_rtcstats_text(delta).encode(), "a delta-compressed report"),
        "connection-missing.txt": (json.dumps(demo).encode(), "connection 9-2 (http://127.0.0.1:53337/demo/call) "
                                   "carried media according to its log"),
        "pairs-removed.txt": (json.dumps(client).encode(), "refers to selectedCandidatePairId"),
        "long-value.txt": (good[:-2] + b', "x": "' + b"A" * (9 << 20) + b'"}', "holds a value longer than"),
    }


def test_import_refuses_bad_and_truncated_files(shared_server: ServerProcess, tmp_path: Path) -> None:
    srv = shared_server
    s = srv.create_session()
    for name, (content, message) in _bad_cases(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(content)
        res = run_import(srv, "webrtc-internals", path, s["id"])
        assert res.returncode == 2, (name, res.stdout)
        assert message in res.stderr and "nothing was stored" in res.stderr, (name, res.stderr)
    ok = tmp_path / "ok.txt"
    ok.write_bytes(json.dumps(internals_dump(history())).encode())
    bad_role = run_import(srv, "webrtc-internals", ok, 999_999)
    assert bad_role.returncode == 2 and "has no participant" in bad_role.stderr
    assert stored(srv, s["id"], role="client") == []
    r = httpx.get(f"{srv.base}/api/v1/sessions/{s['id']}/events", headers=srv.admin_headers)
    assert [e for e in r.json() if e["origin"] == "collector"] == []


def test_a_decompression_bomb_is_refused_within_bounded_memory(shared_server: ServerProcess,
                                                               tmp_path: Path) -> None:
    """A 0.5 MB gzip that unpacks to 512 MB: refused at the documented limit, reading it as a
    stream (the command's peak memory stays far below the file's size), and nothing stored."""
    path = tmp_path / "bomb.gz"
    _bomb(path, 512 << 20)
    assert path.stat().st_size < 2 << 20
    s = shared_server.create_session()
    # The peak of this process's own memory (VmHWM starts afresh at exec; ru_maxrss would carry
    # the forking test process's peak over).
    code = ("import sys\nfrom server import cli\nrc = cli.main(sys.argv[1:])\n"
            "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
            "print('maxrss_kb', hwm, file=sys.stderr)\nsys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", code, "import", "webrtc-internals", str(path), "--session",
                        str(s["id"]), "--role", "client", "--db", shared_server.db_url],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "unpacks to more than" in p.stderr, p.stderr
    rss_mb = int(p.stderr.split("maxrss_kb")[1].split()[0]) / 1024
    print(f"decompression bomb: peak RSS {rss_mb:.0f} MB")
    assert rss_mb < 300, p.stderr
    assert stored(shared_server, s["id"], role="client") == []


DATA = Path(__file__).resolve().parent / "data"


def test_a_dump_of_both_participants_is_refused_with_a_listing(shared_server: ServerProcess) -> None:
    """The demo call's dumps (Chromium 156, headless) hold both peers of one call in one page: a
    participant is one side, so the import lists the connections and asks for --pc; with it, both
    formats give the same samples, each stream labelled with its connection."""
    srv = shared_server
    got = {}
    dumps = (("webrtc-internals", "plugin_webrtc_internals_dump.gz"), ("rtcstats", "plugin_rtcstats_dump.gz"))
    for fmt, name in dumps:
        s = srv.create_session(client_code="C-REAL-DUMP")
        res = run_import(srv, fmt, DATA / name, s["id"], "clinician")
        assert res.returncode == 2 and "more than one participant" in res.stderr
        assert "9-1 and 9-2 are the two ends of one call" in res.stderr
        for key in ("9-1", "9-2"):
            assert f"--pc {key}: http://127.0.0.1:53337/demo/call, 2026-11-25 13:03:33.72" in res.stderr
        assert "receiving video (SSRC 1097662309)" in res.stderr and "sending audio (SSRC 3791413119)" in res.stderr
        assert stored(srv, s["id"], role="clinician") == []
        argv = ["import", fmt, str(DATA / name), "--session", str(s["id"]), "--role", "clinician", "--db",
                srv.db_url, "--pc", "9-1"]
        assert cli.main(argv) == 0
        got[fmt] = stored(srv, s["id"], role="clinician")
        assert {st["pc"] for r in got[fmt] for st in r["data"]["streams"]} == {"9-1"}
    internals, rtcstats = got["webrtc-internals"], got["rtcstats"]
    assert len(internals) >= 6 and len(rtcstats) >= len(internals)
    by_start = {r["start_ms"]: r for r in rtcstats}
    for a in internals[1:]:  # the first runs from creation, which each format stamps its own way
        b = by_start[a["start_ms"]]
        key = lambda st: (st["kind"], st["direction"], st["ssrc"])  # noqa: E731
        assert sorted(a["data"]["streams"], key=key) == sorted(b["data"]["streams"], key=key)
        assert a["data"]["connection"] == b["data"]["connection"]
    video_in = [st for r in internals[1:] for st in r["data"]["streams"]
                if (st["kind"], st["direction"]) == ("video", "inbound")]
    assert all(st["framesPerSecond"] >= 15 and st["packetsLost"] == 0 for st in video_in)


def test_a_history_cut_by_the_pages_point_limit(tmp_path: Path) -> None:
    """The page keeps the last 1,000 points of each series: a dump of a longer call starts late
    even though its log saw the connection created. The first kept poll's totals are then the
    'before the dump' interval from the creation, not a first second holding the whole call."""
    cut = 200  # polls the page dropped
    polls = []
    for i in range(cut, cut + PAGE_MAX_POINTS):
        t = T0 + i * 1000
        polls.append((t, {"IT01A3": {"id": "IT01A3", "type": "inbound-rtp", "kind": "audio", "ssrc": 3,
                                     "timestamp": t, "packetsReceived": 50 * (i + 1), "packetsLost": i // 10,
                                     "totalSamplesReceived": 48_000 * (i + 1), "concealedSamples": 0}}))
    path = tmp_path / "long.txt"
    path.write_text(json.dumps(internals_dump(polls)))
    dump = load_dump(path)
    (tl,) = select_connections(dump, None)
    assert tl.truncated and tl.watched_from_creation
    built = build([tl])
    (before,) = built.before
    assert before["startBasis"] == "created" and before["tMs"] == T0 - 1000 and before["endMs"] == T0 + cut * 1000
    assert before["streams"][0]["packetsReceived"] == 50 * (cut + 1)
    assert len(built.samples) == PAGE_MAX_POINTS - 1
    assert all(st["packetsReceived"] == 50 for s in built.samples for st in s["streams"])
    text = "\n".join(coverage_of(tl, built.before).lines())
    assert "keeps the last 1000 polls" in text and "from its creation at" in text
