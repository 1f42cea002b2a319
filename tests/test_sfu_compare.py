"""The browser/SFU comparison from stored rows (server/sfu/compare.py) and Janus post parsing."""

from __future__ import annotations

from typing import Any

import pytest

from server.sfu.compare import compare
from server.sfu.janus import BadEvents, parse


def sample(direction: str, lost: int, far_end: str = "sfu", rtt: float = 5.0) -> dict[str, Any]:
    return {"streams": [{"kind": "audio", "direction": direction, "packetsLost": lost, "farEnd": far_end}],
            "connection": {"rttMs": rtt}}


def row(leg: str, t: int, handle: str = "h1", **figures: Any) -> dict[str, Any]:
    return {"handle": handle, "media": "audio", "t_ms": t, "leg": leg, "source": "sfu", **figures}


def test_hang_up_report_does_not_erase_janus_counts() -> None:
    samples = {"client": [sample("outbound", 4), sample("outbound", 3), sample("inbound", 2)]}
    sfu = {"client": [row("uplink", 1, lost=5), row("uplink", 2, lost=7), row("uplink", 3, lost=0),
                      row("downlink", 1, "h2", lostByRemote=2, rttMs=6.0), row("downlink", 2, "h2", lostByRemote=0)]}
    table = {c.figure: c for c in compare(samples, sfu)}
    up = table["packets lost sending (uplink)"]
    down = table["packets lost receiving (downlink)"]
    assert (up.browser, up.sfu, up.disagree) == (7.0, 7.0, False)
    assert (down.browser, down.sfu, down.disagree) == (2.0, 2.0, False)
    assert table["round trip to the SFU (median)"].sfu == 6.0


def test_disagreement_and_peer_streams() -> None:
    # A peer-to-peer stream is not the SFU's business; a missing leg is a disagreement.
    samples = {"clinician": [sample("outbound", 50), sample("outbound", 9, far_end="peer")]}
    sfu = {"clinician": [row("uplink", 1, lost=30)]}
    table = compare(samples, sfu)
    assert [(c.browser, c.sfu, c.disagree) for c in table[:2]] == [(50.0, 30.0, True), (None, None, False)]
    assert compare(samples, {}) == []


def test_parse_maps_handles_to_legs_and_refuses_bad_posts() -> None:
    base: dict[str, Any] = {"type": 32, "timestamp": 1_796_000_000_000_000, "handle_id": 5,
                            "opaque_id": "bondline-7-client"}
    up: dict[str, Any] = {**base, "event": {"media": "video", "lost": 1, "packets-received": 10, "packets-sent": 0}}
    down = {**base, "handle_id": 6, "event": {"media": "audio", "lost-by-remote": 2, "packets-sent": 10}}
    idle = {**base, "handle_id": 8, "event": {"media": "audio", "packets-sent": 0}}
    got = parse([up, down, idle, {**up, "opaque_id": None}, {"type": 64, "event": {"plugin": "x"}}])
    assert [(s.session_id, s.role, s.leg, s.media, s.t_ms) for s in got.stats] == [
        (7, "client", "uplink", "video", 1_796_000_000_000), (7, "client", "downlink", "audio", 1_796_000_000_000)]
    assert (got.unmatched, got.ignored) == (1, 2)
    for bad in ({"type": "32"}, [{**up, "event": {**up["event"], "lost": -1}}], [{**up, "timestamp": 5}],
                [{**up, "event": {**up["event"], "jitter-local": "1"}}], "text"):
        with pytest.raises(BadEvents):
            parse(bad)


def test_sfu_rows_stored_once_and_pruned_with_the_samples(sqlite_url: str) -> None:
    from server.config import normalise_database_url
    from server.sessions.service import create_session, ensure_clinician
    from server.sfu.janus import LegStat
    from server.sfu.store import session_stats, write
    from server.store.db import make_engine, upgrade
    from server.store.retention import drop_samples

    url = normalise_database_url(sqlite_url)
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            clinician = ensure_clinician(conn, "c@example.org")
            sid = create_session(conn, clinician_id=clinician, client_code="C-1").session_id
            stats = [LegStat(sid, "client", "5", "audio", 1_796_000_000_000, "uplink", {"lost": 2}),
                     LegStat(sid + 1, "client", "5", "audio", 1_796_000_000_000, "uplink", {"lost": 2})]
            first, again = write(conn, stats, 1), write(conn, stats[:1], 2)
            assert (first.stored, first.duplicates, first.unmatched) == (1, 0, 1)
            assert (again.stored, again.duplicates) == (0, 1)
            assert [r["lost"] for r in session_stats(conn, sid)["client"]] == [2]
            drop_samples(conn, sid, 3)
            assert session_stats(conn, sid) == {}
    finally:
        engine.dispose()
