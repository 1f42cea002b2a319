"""Property-based and fuzz tests against a real server process.

- schemathesis generates valid and invalid requests for every operation of
  the app's own OpenAPI schema (with an API key, and without): never a 5xx,
  and afterwards the store holds no half-made session.
- hypothesis builds ingest batches where any sample may be corrupted, and
  sends them over HTTP: a batch is stored whole or not at all.
- hypothesis sends arbitrary messages over the WebSocket after auth: the
  server answers or closes with a documented 44xx code, never crashes.
Examples are bounded so the file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support.samples import SCHEMA, connect, sample
from tests.support.server import ServerProcess

FUZZ = settings(max_examples=12, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("fuzz")
    srv = ServerProcess(db_url=str(d / "fuzz.db"), log_path=d / "server.log",
                        env={"BONDLINE_RATE_BURST": "100000", "BONDLINE_RATE_MESSAGES_PER_S": "100000"})
    srv.start()
    yield srv
    srv.stop()


def _no_half_made_rows(db: str) -> None:
    with sqlite3.connect(db) as conn:
        # Every session has both participants, every participant a session,
        # every client a clinician: nothing was left half-written by a refusal.
        bad = conn.execute("select s.id, count(p.id) from session s left join participant p on p.session_id = s.id "
                           "group by s.id having count(p.id) != 2").fetchall()
        assert bad == []
        assert conn.execute("select count(*) from participant where session_id not in "
                            "(select id from session)").fetchone() == (0,)
        assert conn.execute("select count(*) from client where clinician_id not in "
                            "(select id from clinician)").fetchone() == (0,)
        assert conn.execute("select count(*) from sample where participant_id not in "
                            "(select id from participant)").fetchone() == (0,)


def _fuzz_operation(op: Any, mode: GenerationMode, base: str, auth: dict[str, str], failures: list[str],
                    calls: Iterator[int]) -> None:
    @FUZZ
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        next(calls)
        response = case.call(base_url=base, headers=auth, timeout=30)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

    try:
        run()
    except Unsatisfiable:
        pass  # nothing in this operation can be made invalid (e.g. no parameters at all)


def test_openapi_operations_never_5xx(fuzz_server: ServerProcess) -> None:
    srv = fuzz_server
    for i in range(3):
        srv.create_session(f"C-F{i}")
    raw = httpx.get(srv.base + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []
    calls = itertools.count()
    with httpx.Client() as anon_probe:
        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for auth in (srv.admin_headers, {}):
                    _fuzz_operation(op, mode, srv.base, auth, failures, calls)
        assert anon_probe.get(srv.base + "/healthz").status_code == 200
    assert failures == [], "\n".join(failures[:20])
    assert next(calls) > 200
    _no_half_made_rows(srv.db_url)


# ---- ingest: a batch is stored whole or not at all -------------------------

CORRUPTIONS: list[tuple[str, Any]] = [
    ("seq", -1), ("seq", "7"), ("startMs", 5), ("intervalMs", 0), ("source", "carrier-pigeon"),
    ("streams", "none"), ("streams", [{"kind": "smell", "direction": "inbound"}]),
    ("connection", {"rttMs": -3}), ("startMs", 10**15), ("schema", "bondline.sample/0"),
]
seqs = itertools.count(1_000)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[dict[str, Any]], bool]:
    n = draw(st.integers(min_value=1, max_value=8))
    out = []
    bad = False
    for _ in range(n):
        s = sample(next(seqs))
        if draw(st.booleans()) and draw(st.booleans()):
            key, value = draw(st.sampled_from(CORRUPTIONS))
            s[key] = value
            bad = True
        if draw(st.integers(0, 9)) == 0:
            s.pop(draw(st.sampled_from(["seq", "startMs", "intervalMs", "source"])))
            bad = True
        out.append(s)
    return out, bad


def _stored(db: str, seq_list: list[int]) -> int:
    with sqlite3.connect(db) as conn:
        marks = ",".join("?" * len(seq_list))
        return int(conn.execute(f"select count(*) from sample where seq in ({marks})", seq_list).fetchone()[0])


def test_ingest_batches_all_or_nothing(fuzz_server: ServerProcess) -> None:
    srv = fuzz_server
    token = srv.create_session("C-ING")["tokens"]["client"]
    outcomes: dict[int, int] = {}

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(drawn=batches())
    def run(drawn: tuple[list[dict[str, Any]], bool]) -> None:
        samples, bad = drawn
        wanted = [s["seq"] for s in samples if isinstance(s.get("seq"), int) and s["seq"] >= 0]
        r = httpx.post(srv.base + "/v1/telemetry", timeout=30,
                       json={"token": token, "schema": SCHEMA, "samples": samples})
        outcomes[r.status_code] = outcomes.get(r.status_code, 0) + 1
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            assert not bad and r.json()["stored"] == len(samples)
            assert _stored(srv.db_url, wanted) == len(samples)
        else:
            assert bad and r.json()["code"] in (4400, 4413, 4415, 4422)
            assert _stored(srv.db_url, wanted) == 0 if wanted else True

    run()
    assert outcomes.get(200, 0) > 5 and sum(v for k, v in outcomes.items() if k != 200) > 5, outcomes


# ---- WebSocket: arbitrary messages after auth --------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = st.one_of(
    st.dictionaries(st.sampled_from(["type", "schema", "samples", "events", "batch", "t"]), json_values,
                    max_size=5).map(json.dumps),
    st.fixed_dictionaries({"type": st.just("samples"), "schema": st.just(SCHEMA),
                           "samples": st.lists(json_values, max_size=3)}).map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=60),
)


def test_websocket_messages_never_crash(fuzz_server: ServerProcess) -> None:
    srv = fuzz_server
    token = srv.create_session("C-WS")["tokens"]["client"]
    codes: dict[int, int] = {}

    async def one(message: str | bytes) -> None:
        ws, _ = await connect(srv.ws, token)
        await ws.send(message)
        try:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if reply["type"] in ("ack", "pong"):
                await ws.close()
                codes[1000] = codes.get(1000, 0) + 1
                return
            assert reply["type"] == "error", reply
            await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None, "dropped without a close frame"
            code = e.rcvd.code
            assert 4400 <= code < 4500, (code, e.rcvd.reason, message)
            codes[code] = codes.get(code, 0) + 1

    @settings(max_examples=50, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(message=messages)
    def run(message: str | bytes) -> None:
        asyncio.run(one(message))

    run()
    assert len(codes) >= 2, codes
    assert "Traceback" not in Path(srv.log_path).read_text()
    assert httpx.get(srv.base + "/healthz").status_code == 200
