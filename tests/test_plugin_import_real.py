"""Importing real Chromium dumps of an impaired call, against the relay's own truth.

The corpus (tests/data/dumps, README there) was saved by two headless
Chromium browsers with the page's own buttons during one call through the
impairment relay: the client's chrome://webrtc-internals was open before the
call, the clinician's was opened mid-call. Each file is imported with the
command as docs/integrate-browser.md shows it, and what is stored is held
against the relay's per-stream packet counts and against the dump's own
values at their own poll times (read plainly, tests/support/dump_truth.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dump_truth import DUMPS, RawDump, Relay
from tests.support.server import ServerProcess
from tests.support.shared_server import running_server
from tests.test_plugin_import import run_import
from tests.test_plugin_uplink import events, stored

RELAY = Relay()
M = RELAY.marks
FILES = {
    "client_webrtc_internals_dump.txt": "webrtc-internals",
    "client_webrtc_internals_dump.gz": "webrtc-internals",
    "client_rtcstats_dump.gz": "rtcstats",
    "clinician_webrtc_internals_dump.txt": "webrtc-internals",
    "clinician_webrtc_internals_dump.gz": "webrtc-internals",
    "clinician_rtcstats_dump.gz": "rtcstats",
}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every corpus file imported once, each into a session of its own, as its browser's participant."""
    with running_server(tmp_path_factory.mktemp("real-dumps")) as srv:
        out: dict[str, Any] = {"srv": srv}
        for name, fmt in FILES.items():
            role = name.split("_")[0]
            s = srv.create_session(client_code="C-DUMP")
            res = run_import(srv, fmt, DUMPS / name, s["id"], role)
            assert res.returncode == 0, (name, res.stderr)
            ev = [e for e in events(srv, s["id"]) if e["origin"] == "collector"]
            out[name] = {"session": s, "role": role, "result": res, "rows": stored(srv, s["id"], role=role),
                         "events": ev}
        yield out


def _raw(name: str) -> RawDump:
    return RawDump(DUMPS / (name.split("_")[0] + "_webrtc_internals_dump.txt"))


def _inbound(rows: list[dict[str, Any]], kind: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(r, st) for r in rows for st in r["data"]["streams"] if st["direction"] == "inbound" and st["kind"] == kind]


def _before(ev: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [st for e in ev if e["kind"] == "import.before_dump" for st in e["data"]["streams"]]


def _end(r: dict[str, Any]) -> int:
    return int(r["data"]["startMs"] + r["data"]["intervalMs"])


def _at(series: dict[float, Any], t: float) -> Any:
    hit = [v for when, v in series.items() if abs(when - t) <= 1.5]
    assert len(hit) == 1, (t, sorted(series)[:3])
    return hit[0]


@pytest.mark.parametrize("name", list(FILES))
def test_lost_packets_are_the_relays_drops(imported: dict[str, Any], name: str) -> None:
    """Per stream: audio and video lost before the outage equal the relay's drops on the impaired
    crossing, exactly, and every interval's count sits at its own time (the running total at each
    sample's end lies between the relay's count 250 ms earlier and its next count, 100 ms apart). Video's total
    also counts the outage's drops on both crossings; audio's does not (Chromium restarts an audio
    stream after a gap of over a second: that shows as concealment, checked below)."""
    got = imported[name]
    rows, before = got["rows"], _before(got["events"])
    assert rows and all(r["source"] == "import" for r in rows)
    for kind in ("audio", "video"):
        streams = _inbound(rows, kind)
        (ssrc,) = {st["ssrc"] for _, st in streams}
        pre = sum(st.get("packetsLost", 0) for st in before if st["direction"] == "inbound" and st["ssrc"] == ssrc)
        running = pre
        for r, st in streams:
            running += st["packetsLost"]
            if _end(r) <= M["outage"]:
                assert RELAY.dropped(_end(r) - 250, ssrc) <= running <= RELAY.dropped_by(_end(r), ssrc), (name, r)
        before_outage = pre + sum(st["packetsLost"] for r, st in streams if _end(r) <= M["outage"])
        assert before_outage == RELAY.dropped(M["outage"], ssrc), (name, kind)
        assert before_outage > 0  # the loss phase was seen on this stream
        if kind == "video":
            total = pre + sum(st["packetsLost"] for _, st in streams)
            assert total == RELAY.dropped(RELAY.end, ssrc, ("up", "down")), name


@pytest.mark.parametrize("name", list(FILES))
def test_freezes_concealment_jitter_rtt_at_their_own_time(imported: dict[str, Any], name: str) -> None:
    """Each stored interval figure is the dump's own counters at the two polls it spans (freezes,
    concealment exactly; jitter at the dump's 1 ms resolution; RTT as the interval mean of the
    dump's totals), and the outage reads as what the relay imposed."""
    got, raw = imported[name], _raw(name)
    rows = got["rows"]
    polls = raw.times(raw.ids("transport")[0])
    video = _inbound(rows, "video")
    audio = _inbound(rows, "audio")
    vid = raw.stream_id("inbound-rtp", video[0][1]["ssrc"])
    aid = raw.stream_id("inbound-rtp", audio[0][1]["ssrc"])
    fc, fd = raw.series(vid, "freezeCount"), raw.series(vid, "totalFreezesDuration")
    jit = raw.series(vid, "jitter")
    cs, ts = raw.series(aid, "concealedSamples"), raw.series(aid, "totalSamplesReceived")
    checked = 0
    for (r, v), (_, a) in zip(video, audio, strict=True):
        t0, t1 = r["data"]["startMs"], _end(r)
        if t1 > polls[-1] + 2 or t0 < polls[0] - 2:
            continue  # a poll the .txt (saved at another moment) does not hold
        checked += 1
        assert v["freezeCount"] == _at(fc, t1) - _at(fc, t0)
        assert v["totalFreezesDurationMs"] == pytest.approx((_at(fd, t1) - _at(fd, t0)) * 1000, abs=0.051)
        assert v["jitterMs"] == pytest.approx(_at(jit, t1) * 1000, abs=1e-6)
        assert a["concealedSamples"] == _at(cs, t1) - _at(cs, t0)
        assert a["totalSamplesReceived"] == _at(ts, t1) - _at(ts, t0)
    assert checked >= 30
    # The outage: video frozen at least as long as the network was cut, reported once it resumed;
    # audio concealed (at 48 kHz) for the outage's length.
    outage_s = (M["outage_end"] - M["outage"]) / 1000
    after = [(r, v) for r, v in video if M["outage_end"] - 500 <= _end(r) <= M["outage_end"] + 4000]
    frozen = sum(v["totalFreezesDurationMs"] for _, v in after)
    assert outage_s * 1000 - 100 <= frozen <= outage_s * 1000 + 2000, (name, frozen)
    during = sum(a["concealedSamples"] for r, a in audio if _end(r) > M["outage"] and r["data"]["startMs"] <
                 M["outage_end"] + 1000)
    assert (outage_s - 0.25) * 48000 <= during <= (outage_s + 1) * 48000, (name, during)


@pytest.mark.parametrize("name", list(FILES))
def test_rtt_follows_the_imposed_delay(imported: dict[str, Any], name: str) -> None:
    """The relay delayed the TURN -> browser crossing, which RTCP crosses once each way: the
    video round trip grows by twice the delay. Queueing on a busy machine only ever adds, so the
    least round trip of each phase is compared: the rise lies between twice the delay set and
    twice the mean delay the relay measured applying."""
    rows = imported[name]["rows"]
    rtt = [(r["data"]["startMs"], st["rttMs"]) for r in rows for st in r["data"]["streams"]
           if st["direction"] == "outbound" and st["kind"] == "video" and "rttMs" in st]
    clean = [v for t, v in rtt if M["connected"] + 2000 <= t and t + 1000 <= M["loss"]]
    delayed = [v for t, v in rtt if M["delay"] + 1000 <= t and t + 1000 <= M["delay_end"]]
    rise = min(delayed) - min(clean)
    plan = RELAY.doc["plan"]
    assert 2 * plan["delay_ms"] - 10 <= rise <= 2 * RELAY.doc["measured_delay_ms"] + 10, (name, clean, delayed)


@pytest.mark.parametrize("name", ["client_webrtc_internals_dump.txt", "client_rtcstats_dump.gz"])
def test_a_dump_that_saw_the_connection_created_counts_from_its_creation(imported: dict[str, Any],
                                                                          name: str) -> None:
    """The client's page was open before the call: the first interval runs from the connection's
    creation to the first poll, with counters from zero; nothing is missing; the last ends at the
    last poll."""
    got, raw = imported[name], _raw(name)
    rows = got["rows"]
    created = next(e["timestamp"] for e in raw.log if e["type"] in ("addTrack", "transceiverAdded"))
    assert abs(rows[0]["data"]["startMs"] - created) <= 5
    first_poll = raw.times(raw.ids("transport")[0])[0]
    assert abs(_end(rows[0]) - first_poll) <= 1
    (v,) = [st for st in rows[0]["data"]["streams"] if st["direction"] == "inbound" and st["kind"] == "video"]
    vid = raw.stream_id("inbound-rtp", v["ssrc"])
    assert v["packetsReceived"] == _at(raw.series(vid, "packetsReceived"), first_poll)
    assert [e for e in got["events"] if e["kind"] == "import.before_dump"] == []
    assert "nothing missing at the start" in got["result"].stdout
    # The connection's real state changes, at their times.
    states = [(e["kind"], e["data"]["state"]) for e in got["events"] if e["kind"].endswith(".state")]
    assert ("connection.state", "connected") in states and ("ice.state", "checking") in states
    assert all(_end(a) == b["data"]["startMs"] for a, b in zip(rows, rows[1:], strict=False))


@pytest.mark.parametrize("name", ["clinician_webrtc_internals_dump.txt", "clinician_webrtc_internals_dump.gz",
                                  "clinician_rtcstats_dump.gz"])
def test_a_dump_from_a_page_opened_mid_call(imported: dict[str, Any], name: str) -> None:
    """The clinician's page was opened mid-call: the span covered and the span missing are said;
    the first poll's totals are one 'before the dump' interval; the page's open-time snapshot of
    the connection's state is not stored as events."""
    got, raw = imported[name], _raw(name)
    rows, ev = got["rows"], got["events"]
    first_poll = raw.times(raw.ids("transport")[0])[0]
    assert abs(rows[0]["data"]["startMs"] - first_poll) <= 1
    (before,) = [e for e in ev if e["kind"] == "import.before_dump"]
    assert abs(before["end_ms"] - first_poll) <= 1 and before["t_ms"] < M["clinician_internals_open"]
    # Totals before the dump plus every interval after = the counters at the last poll: nothing lost.
    for st in before["data"]["streams"]:
        if st["direction"] != "inbound":
            continue
        sid = raw.stream_id("inbound-rtp", st["ssrc"])
        for field in ("packetsReceived", "packetsLost", "concealedSamples", "freezeCount"):
            if field not in st:
                continue
            series = raw.series(sid, field)
            assert st[field] == _at(series, first_poll), (field, st)
            last = max(_end(r) for r in rows if _end(r) <= max(series) + 2)
            later = [s2[field] for r in rows for s2 in r["data"]["streams"]
                     if s2.get("ssrc") == st["ssrc"] and s2["direction"] == "inbound" and _end(r) <= last]
            assert st[field] + sum(later) == _at(series, last), field
    if name.endswith(".txt") or name.endswith(".gz") and "rtcstats" not in name:
        assert before["data"]["startBasis"] == "audio-playout" and before["data"]["startKnown"] is False
    else:
        # An rtcstats dump keeps the connection's real creation time even when opened mid-call.
        assert before["data"]["startBasis"] == "created" and before["data"]["startKnown"] is True
    out = got["result"].stdout
    assert "missing:" in out and "opened after the connection began" in out
    assert "log entries the page wrote when it was opened" in out
    # The snapshot (stable / completed / connected, stamped at opening) is not a state change.
    assert [e for e in ev if e["kind"].endswith(".state")] == []


def test_the_txt_and_gz_of_one_call_agree(imported: dict[str, Any]) -> None:
    """Both buttons record the same polls (the .gz was saved a moment before the .txt): every
    sample the two share is the same, figures, times and connection facts."""
    for who in ("client", "clinician"):
        gz = {r["data"]["startMs"]: r["data"] for r in imported[f"{who}_webrtc_internals_dump.gz"]["rows"]}
        txt = {r["data"]["startMs"]: r["data"] for r in imported[f"{who}_webrtc_internals_dump.txt"]["rows"]}
        common = set(gz) & set(txt)
        assert len(common) >= len(gz) - 1 >= 30
        for t in common:
            assert {**gz[t], "seq": 0} == {**txt[t], "seq": 0}, (who, t)


def test_importing_the_same_call_again_stores_nothing_and_says_why(imported: dict[str, Any]) -> None:
    srv: ServerProcess = imported["srv"]
    got = imported["client_webrtc_internals_dump.gz"]
    sid, before_rows = got["session"]["id"], len(got["rows"])
    before_events = len(events(srv, sid))
    again = run_import(srv, "webrtc-internals", DUMPS / "client_webrtc_internals_dump.gz", sid, "client")
    assert again.returncode == 2 and "was imported before" in again.stderr and "nothing was stored" in again.stderr
    txt = run_import(srv, "webrtc-internals", DUMPS / "client_webrtc_internals_dump.txt", sid, "client")
    assert txt.returncode == 2, txt.stdout
    assert "earlier import of client_webrtc_internals_dump.gz" in txt.stderr, txt.stderr
    rtc = run_import(srv, "rtcstats", DUMPS / "client_rtcstats_dump.gz", sid, "client")
    assert rtc.returncode == 2 and "earlier import of client_webrtc_internals_dump.gz" in rtc.stderr
    assert len(stored(srv, sid, role="client")) == before_rows
    assert len(events(srv, sid)) == before_events


@pytest.mark.parametrize("name", ["client_webrtc_internals_dump.gz", "clinician_rtcstats_dump.gz"])
def test_an_outage_second_imports_as_no_media_not_zero_loss(imported: dict[str, Any], name: str) -> None:
    """A second inside the relay's outage received nothing: stored loss is null, flagged "no media"."""
    import sqlite3

    got = imported[name]
    with sqlite3.connect(f"file:{imported['srv'].db_url}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT s.t_ms, s.interval_ms, s.no_media_in, s.loss_in, s.audio_loss_in, s.video_loss_in FROM sample s "
            "JOIN participant p ON p.id = s.participant_id WHERE p.session_id = ? AND p.role = ? ORDER BY s.seq",
            (got["session"]["id"], got["role"])).fetchall()
    inside = [r for r in rows if r[0] >= M["outage"] + 100 and r[0] + r[1] <= M["outage_end"]]
    assert inside, name
    assert all(r[2] == 1 and r[3:] == (None, None, None) for r in inside), (name, inside)
    assert all(r[2] == 0 for r in rows if r[0] + r[1] < M["outage"] - 100 and r[0] > rows[2][0]), name


@pytest.mark.parametrize("name", ["client_webrtc_internals_dump.gz", "clinician_rtcstats_dump.gz"])
def test_an_imported_outage_is_placed_from_the_receivers_packet_stamps(imported: dict[str, Any], name: str) -> None:
    """The dumps' lastPacketReceivedTimestamp is stored as the sample column the analysis places an
    interruption's edges from: the one interruption is the relay's outage, within 100 ms each edge
    (the relay's marks are when it switched; audio packets come every 20 ms either side)."""
    from sqlalchemy import create_engine

    from server.analysis.events import detect_interruptions
    from server.analysis.series import load_session
    from server.config import AnalysisConfig

    got = imported[name]
    engine = create_engine(f"sqlite:///{imported['srv'].db_url}")
    try:
        with engine.connect() as conn:
            (s,) = [p for p in load_session(conn, got["session"]["id"]).participants if p.role == got["role"]]
    finally:
        engine.dispose()
    stamped = s.col("last_packet_in_ms")
    assert (stamped[s.col("audio_packets_in") > 0] >= s.t_ms[s.col("audio_packets_in") > 0] - 1).all(), name
    ev = detect_interruptions(s, AnalysisConfig())
    errors = [(int(e.start_ms - M["outage"]), int(e.end_ms - M["outage_end"])) for e in ev]
    print(name, "interruption edge errors (start, end) ms:", errors)
    assert len(ev) == 1, (name, errors)
    assert all(abs(x) <= 100 for x in errors[0]), (name, errors)
