"""Hostile telemetry against a real server, on SQLite and PostgreSQL alike
(issue 18): a message the store cannot hold is refused at validation with
a code that tells the collector not to resend it, and the messages after it
are stored; unknown content is bounded in depth and size; numbers mean the
same over the WebSocket and HTTP; the sidecar's seq range is its own; and
whatever is already stored can be read back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from media.probe.profile import PROBE_SEQ_BASE, STREAM_PARTICIPANT, STREAM_SIDECAR, probe_seq
from server.config import normalise_database_url
from server.ingest.headline import headline_row
from server.store import tables as t
from server.store.db import make_engine
from server.store.telemetry import SampleRow, insert_samples
from tests.conftest import fresh_pg_database
from tests.support.samples import SCHEMA, batch, closed_with, connect, sample
from tests.support.server import ServerProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp(f"hostile-{request.param}")

    def run(url: str) -> Iterator[ServerProcess]:
        server = ServerProcess(db_url=url, log_path=d / "server.log").start()
        try:
            yield server
        finally:
            server.stop()

    if request.param == "sqlite":
        yield from run(str(d / "bondline.db"))
    else:
        with fresh_pg_database() as url:
            yield from run(url)


def _ws_outcome(server: ServerProcess, token: str, message: str) -> tuple[str, int | None, dict[str, Any] | None]:
    """('ack', None, ack) or ('closed', code, error message) for one message."""

    async def go() -> tuple[str, int | None, dict[str, Any] | None]:
        ws, _ = await connect(server.ws, token)
        await ws.send(message)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if reply["type"] == "ack":
            await ws.close()
            return "ack", None, reply
        code, _, _ = await closed_with(ws)
        return "closed", code, reply

    return asyncio.run(go())


def _http(server: ServerProcess, token: str, body: bytes) -> httpx.Response:
    return httpx.post(server.base + "/v1/telemetry", content=body, timeout=30,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def _stored(server: ServerProcess, session_id: int) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/samples", headers=server.admin_headers, timeout=30)
    assert r.status_code == 200, r.text[:500]
    out: list[dict[str, Any]] = orjson.loads(r.content)  # reads deeper JSON than Python's json module
    return out


def _collector_events(server: ServerProcess, session_id: int) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/events", headers=server.admin_headers, timeout=30)
    assert r.status_code == 200, r.text[:500]
    return [e for e in r.json() if e["origin"] == "collector"]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


# ---- 1. a poison message ------------------------------------------------------

POISON_KEYS = ["k\u0000x", "tab\tkey", "bell\u0007", "nl\nkey"]


@pytest.mark.parametrize("key", POISON_KEYS)
def test_poison_event_key_is_refused_and_what_follows_is_stored(srv: ServerProcess, key: str) -> None:
    s = srv.create_session("C-POISON")
    token = s["tokens"]["client"]
    ev = {"key": key, "kind": "connection.state", "tMs": sample(0)["startMs"], "state": "connected"}
    poison = batch([sample(0)], 0, [ev])
    kind, code, error = _ws_outcome(srv, token, poison)
    assert (kind, code) == ("closed", 4422), (kind, code, error)
    assert error is not None and "events.0.key" in error["reason"], error
    r = _http(srv, token, poison.encode())
    assert r.status_code == 422 and r.json()["code"] == 4422 and "events.0.key" in r.json()["error"], r.text
    # Nothing of the refused batch is stored; the collector's next batch is.
    assert _stored(srv, s["id"]) == []
    kind, _, ack = _ws_outcome(srv, token, batch([sample(1)], 1, [dict(ev, key="fine-key")]))
    assert kind == "ack" and ack is not None and ack["stored"] == 1 and ack["events"] == 1, ack
    assert [x["seq"] for x in _stored(srv, s["id"])] == [1]
    assert [e["data"] for e in _collector_events(srv, s["id"])] == [{"state": "connected"}]


def test_store_errors_never_answer_resend(srv: ServerProcess) -> None:
    """Every refusal of hostile content is a 44xx that says "do not resend",
    never the 1011 that makes a collector resend the same batch forever."""
    s = srv.create_session("C-POISON-2")
    token = s["tokens"]["client"]
    hostile = [
        sample(0, note="\u0000" * 10),  # NUL in unknown text is stored (escaped), not refused
        sample(1, streams=[{"kind": "audio", "direction": "inbound", "id": "a\u0000b"}]),
    ]
    for i, smp in enumerate(hostile):
        kind, code, reply = _ws_outcome(srv, token, batch([smp], i))
        assert kind == "ack" or (code is not None and 4400 <= code < 4500), (i, kind, code, reply)
    stored = {x["seq"]: x["data"] for x in _stored(srv, s["id"])}
    assert stored[0]["note"] == "\u0000" * 10
    assert stored[1]["streams"][0]["id"] == "a\u0000b"


# ---- 2. depth and size of unknown content -------------------------------------

@pytest.mark.parametrize("depth", [40, 300, 990, 5000])
def test_deep_unknown_content_is_refused_with_4422(srv: ServerProcess, depth: int) -> None:
    s = srv.create_session("C-DEEP")
    token = s["tokens"]["client"]
    if depth <= 300:
        msg = batch([sample(0, deep=_nested(depth))], 0)
    else:  # too deep for Python's json to write: build the text directly
        base = batch([sample(0)], 0)
        msg = base[:-3] + ', "deep": ' + '{"x": ' * depth + "1" + "}" * depth + "}]}"
        assert msg.endswith("}]}") and json.loads(base)  # the prefix is a valid batch
    kind, code, error = _ws_outcome(srv, token, msg)
    assert (kind, code) == ("closed", 4422), (kind, code, error)
    assert error is not None and "levels" in error["reason"], error
    if depth <= 40:  # deeper than the JSON parser's own limit, no field can be named
        assert error["reason"].startswith("samples.0.deep"), error
    r = _http(srv, token, msg.encode())
    assert r.status_code == 422 and "levels" in r.json()["error"], r.text[:300]
    assert _stored(srv, s["id"]) == []


def test_unknown_content_within_the_bounds_is_kept(srv: ServerProcess) -> None:
    s = srv.create_session("C-DEEP-OK")
    token = s["tokens"]["client"]
    # The documented limit: unknown content nests at most 16 levels below its field.
    kind, _, ack = _ws_outcome(srv, token, batch([sample(0, deep=_nested(15))], 0))
    assert kind == "ack" and ack is not None and ack["stored"] == 1, ack
    assert _stored(srv, s["id"])[0]["data"]["deep"] == _nested(15)


def test_large_unknown_content_is_refused_with_4413(srv: ServerProcess) -> None:
    s = srv.create_session("C-BIG")
    token = s["tokens"]["client"]
    msg = batch([sample(0, blob="x" * 70_000)], 0)
    kind, code, error = _ws_outcome(srv, token, msg)
    assert (kind, code) == ("closed", 4413), (kind, code, error)
    assert error is not None and "sample seq 0" in error["reason"], error
    r = _http(srv, token, msg.encode())
    assert r.status_code == 413, r.text[:300]
    ev = {"key": "e1", "kind": "note", "tMs": sample(0)["startMs"], "text": "y" * 9000}
    r = _http(srv, token, batch([sample(1)], 1, [ev]).encode())
    assert r.status_code == 413 and "event e1" in r.json()["error"], r.text[:300]
    assert _stored(srv, s["id"]) == []


def test_reads_survive_anything_already_stored(srv: ServerProcess) -> None:
    """Rows stored before the bounds existed (a deep or huge unknown field)
    must not break reading a session: both participants' samples come back."""
    s = srv.create_session("C-OLD-ROWS")
    kind, _, _ = _ws_outcome(srv, s["tokens"]["clinician"], batch([sample(0), sample(1)], 0))
    assert kind == "ack"
    engine = make_engine(normalise_database_url(srv.db_url))
    try:
        with engine.begin() as conn:
            pid = conn.execute(select(t.participant.c.id).where(t.participant.c.session_id == s["id"],
                                                                t.participant.c.role == "client")).scalar_one()
            rows = []
            for seq, depth in ((0, 300), (1, 960)):
                smp = sample(seq)
                text = json.dumps(smp)[:-1] + ', "deep": ' + '{"x": ' * depth + "1" + "}" * depth + "}"
                rows.append(SampleRow(pid, seq, smp["startMs"], 1000, "python", smp["startMs"],
                                      *headline_row(smp), text))
            insert_samples(conn, rows)
    finally:
        engine.dispose()
    got = _stored(srv, s["id"])
    assert sorted((x["role"], x["seq"]) for x in got) == [("client", 0), ("client", 1), ("clinician", 0),
                                                          ("clinician", 1)]
    deep = {x["seq"]: x["data"] for x in got if x["role"] == "client"}
    node = deep[0]["deep"]
    for _ in range(299):
        node = node["x"]
    assert node == {"x": 1}
    # The per-role read and the session's report page read the same rows.
    r = httpx.get(f"{srv.base}/api/v1/sessions/{s['id']}/samples", params={"role": "client", "after_seq": 0},
                  headers=srv.admin_headers, timeout=30)
    assert r.status_code == 200 and [x["seq"] for x in orjson.loads(r.content)] == [1]


# ---- 3. the same numbers over both channels ------------------------------------

@pytest.mark.parametrize("literal", ["1e400", "-1e400", str(2**70), str(-(2**64))])
def test_out_of_range_numbers_are_refused_alike_on_both_channels(srv: ServerProcess, literal: str) -> None:
    s = srv.create_session("C-NUM")
    token = s["tokens"]["client"]
    base = batch([sample(0)], 0)
    msg = base[:-3] + f', "odd": {literal}' + "}]}"
    kind, code, error = _ws_outcome(srv, token, msg)
    r = _http(srv, token, msg.encode())
    assert (kind, code) == ("closed", 4422), (literal, kind, code, error)
    assert r.status_code == 422, (literal, r.text)
    assert error is not None and error["reason"] == r.json()["error"], (error, r.text)
    assert "samples.0.odd" in error["reason"]
    assert _stored(srv, s["id"]) == []


def test_64_bit_integers_are_stored_exactly_on_both_channels(srv: ServerProcess) -> None:
    s = srv.create_session("C-INT64")
    token = s["tokens"]["client"]
    big = 2**63 - 1
    kind, _, ack = _ws_outcome(srv, token, batch([sample(0, odd=big, small=-(2**63))], 0))
    assert kind == "ack", ack
    assert _http(srv, token, batch([sample(1, odd=big, small=-(2**63))], 1).encode()).status_code == 200
    got = {x["seq"]: x["data"] for x in _stored(srv, s["id"])}
    assert got[0]["odd"] == got[1]["odd"] == big and got[0]["small"] == got[1]["small"] == -(2**63)


# ---- 5. the sidecar's seq range -------------------------------------------------

def test_collectors_cannot_write_the_sidecars_seq_range(srv: ServerProcess) -> None:
    s = srv.create_session("C-SEQ")
    token = s["tokens"]["client"]
    start = (sample(0)["startMs"] // 1000) * 1000
    claims = [  # the sidecar's own interval, a reserved stream, a participant seq off its startMs, the top
        dict(sample(0), seq=probe_seq(start, STREAM_SIDECAR), startMs=start, source="probe"),
        dict(sample(0), seq=probe_seq(start, 2), startMs=start, source="probe"),
        dict(sample(0), seq=probe_seq(start + 1000, STREAM_PARTICIPANT), startMs=start, source="probe"),
        dict(sample(0), seq=probe_seq(start, STREAM_PARTICIPANT), startMs=start, source="python"),
        dict(sample(0), seq=2**53),
    ]
    for smp in claims:
        msg = batch([smp], 0)
        kind, code, error = _ws_outcome(srv, token, msg)
        assert (kind, code) == ("closed", 4422), (smp["seq"], kind, code, error)
        assert error is not None and "samples.0.seq" in error["reason"] and "probe" in error["reason"]
        r = _http(srv, token, msg.encode())
        assert r.status_code == 422 and "samples.0.seq" in r.json()["error"], r.text
    assert _stored(srv, s["id"]) == []
    # A collector's own range, and a probe agent's own sample, are still written.
    top = dict(sample(0), seq=PROBE_SEQ_BASE - 1)
    own = dict(sample(0), seq=probe_seq(start, STREAM_PARTICIPANT), startMs=start, source="probe")
    kind, _, ack = _ws_outcome(srv, token, batch([top, own], 0))
    assert kind == "ack" and ack is not None and ack["stored"] == 2, ack


def test_http_and_websocket_store_the_same_json(srv: ServerProcess) -> None:
    s = srv.create_session("C-SAME")
    token = s["tokens"]["client"]
    extra = {"f": 1.5, "i": 7, "neg": -0.0, "tiny": 5e-324, "s": "NaN inside a string", "l": [1, [2, [3]]]}
    kind, _, _ = _ws_outcome(srv, token, json.dumps({"type": "samples", "schema": SCHEMA, "batch": 0,
                                                    "samples": [sample(0, **extra)]}))
    assert kind == "ack"
    assert _http(srv, token, json.dumps({"schema": SCHEMA, "samples": [sample(1, **extra)]}).encode()
                 ).status_code == 200
    got = {x["seq"]: x["data"] for x in _stored(srv, s["id"])}
    first, second = dict(got[0]), dict(got[1])
    for d in (first, second):
        d.pop("seq"), d.pop("startMs")
    assert first == second
