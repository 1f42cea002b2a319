"""Property-based and fuzz tests against a real server process.

- schemathesis generates valid and invalid requests for every HTTP route of
  the app, the HTML pages and forms included (their schema is the app's
  own, with the routes hidden from the published one put back), as an API
  key caller, anonymously and as a logged-in clinician: never a 5xx, and
  afterwards the store holds no half-made session.
- hypothesis builds ingest batches where any sample may be corrupted, and
  sends them over HTTP: a batch is stored whole or not at all.
- hypothesis sends arbitrary messages over the WebSocket after auth: the
  server answers or closes with a documented 44xx code, never crashes.
- hypothesis mutates a real browser offer and sends it over the probe
  socket: an answer or a documented 44xx refusal, never a crash.
Every run draws a fresh seed (printed; tests/support/fuzz.py replays one).
Examples are bounded so the file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import websockets
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support.fuzz import fuzz
from tests.support.login import create_user, csrf_from, login
from tests.support.samples import SCHEMA, connect, sample
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("fuzz")
    srv = ServerProcess(db_url=str(d / "fuzz.db"), log_path=d / "server.log",
                        env={"BONDLINE_RATE_BURST": "100000", "BONDLINE_RATE_MESSAGES_PER_S": "100000",
                             # An answered offer holds its probe slot until its media connects or this
                             # runs out (the fuzzer never connects media).
                             "BONDLINE_PROBE_CONNECT_TIMEOUT_S": "2"})
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


def _fuzz_operation(op: Any, mode: GenerationMode, base: str, auth: dict[str, Any], failures: list[str],
                    calls: Iterator[int], examples: int) -> None:
    @fuzz(max_examples=examples)
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        next(calls)
        response = case.call(base_url=base, timeout=30, allow_redirects=False, **auth)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

    try:
        run()
    except Unsatisfiable:
        pass  # nothing in this operation can be made invalid (e.g. no parameters at all)


# Not fuzzed: the schema documents themselves, and the demo call (each GET
# makes a demo session; its telemetry view follows a live call).
SKIP = ("/openapi.json", "/docs", "/redoc", "/demo/call")


def _routes(routes: Any) -> Iterator[Any]:
    for r in routes:
        contexts = getattr(r, "effective_route_contexts", None)
        if contexts is None:
            yield r
            continue
        for c in contexts() if callable(contexts) else contexts:
            yield getattr(c, "route", c)


def full_schema() -> dict[str, Any]:
    """The app's OpenAPI schema with every HTTP route in it: the pages and
    forms the published schema leaves out (include_in_schema=False) too."""
    from server.app import create_app
    from server.config import Settings

    with tempfile.TemporaryDirectory() as d:
        app = create_app(Settings(database_url=f"{d}/schema.db", admin_api_key="x"))
        for route in _routes(app.routes):
            if hasattr(route, "include_in_schema") and hasattr(route, "methods"):
                route.include_in_schema = True
        app.openapi_schema = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # asset routes share one handler's operation id
            schema: dict[str, Any] = app.openapi()
        app.state.engine.dispose()
    schema["paths"] = {k: v for k, v in schema["paths"].items() if not k.startswith(SKIP)}
    return schema


def test_every_http_route_never_5xx(fuzz_server: ServerProcess) -> None:
    srv = fuzz_server
    for i in range(3):
        srv.create_session(f"C-F{i}")
    create_user(srv.db_url, "fuzz@example.org", "correct horse battery")
    srv.create_session("C-F-OWN", clinician="fuzz@example.org")
    raw = full_schema()
    published = httpx.get(srv.base + "/openapi.json").json()
    assert set(published["paths"]) < set(raw["paths"])  # the pages and forms are in
    assert {"/login", "/reports/sessions/{session_id}", "/clients/erase", "/survey/{token}"} <= set(raw["paths"])
    schema = schemathesis.openapi.from_dict(raw)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 40
    failures: list[str] = []
    calls = itertools.count()
    with httpx.Client() as clinician:
        login(clinician, srv.base, "fuzz@example.org", "correct horse battery")
        csrf = csrf_from(clinician.get(srv.base + "/account/password").text)
        logged_in = {"cookies": {"bl_session": clinician.cookies["bl_session"]},
                     "headers": {"X-CSRF-Token": csrf, "Origin": srv.base}}
        callers = {"key": {"headers": srv.admin_headers}, "anonymous": {}, "clinician": logged_in}
        for op in operations:
            json_api = op.path.startswith(("/api/", "/v1/"))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for name, auth in callers.items():
                    if name == "clinician" and op.path == "/logout":
                        continue  # would end the login the other operations run under
                    _fuzz_operation(op, mode, srv.base, auth, failures, calls, 6 if json_api else 4)
        # The clinician stayed logged in throughout, so every call above ran as one.
        assert clinician.get(srv.base + "/account/password", follow_redirects=False).status_code == 200
        assert clinician.get(srv.base + "/healthz").status_code == 200
    assert failures == [], "\n".join(failures[:20])
    assert next(calls) > 400
    _no_half_made_rows(srv.db_url)


# ---- ingest: a batch is stored whole or not at all -------------------------

CORRUPTIONS: list[tuple[str, Any]] = [
    ("seq", -1), ("seq", "7"), ("startMs", 5), ("intervalMs", 0), ("source", "carrier-pigeon"),
    ("streams", "none"), ("streams", [{"kind": "smell", "direction": "inbound"}]),
    ("connection", {"rttMs": -3}), ("startMs", 10**15), ("schema", "bondline.sample/0"),
]
seqs = itertools.count(1_000)


@st.composite
def batches(draw: st.DrawFn, corrupt: bool) -> tuple[list[dict[str, Any]], bool]:
    """A batch of valid samples; when `corrupt`, at least one of them is spoiled
    (a bad value or a missing required field) and any other may be too."""
    n = draw(st.integers(min_value=1, max_value=8))
    spoiled = draw(st.integers(min_value=0, max_value=n - 1)) if corrupt else -1
    out = []
    for i in range(n):
        s = sample(next(seqs))
        if corrupt and (i == spoiled or draw(st.booleans())):
            if draw(st.integers(0, 4)) == 0:
                s.pop(draw(st.sampled_from(["seq", "startMs", "intervalMs", "source"])))
            else:
                key, value = draw(st.sampled_from(CORRUPTIONS))
                s[key] = value
        out.append(s)
    return out, corrupt


def _stored(db: str, seq_list: list[int]) -> int:
    with sqlite3.connect(db) as conn:
        marks = ",".join("?" * len(seq_list))
        return int(conn.execute(f"select count(*) from sample where seq in ({marks})", seq_list).fetchone()[0])


def test_ingest_batches_all_or_nothing(fuzz_server: ServerProcess) -> None:
    srv = fuzz_server
    token = srv.create_session("C-ING")["tokens"]["client"]
    outcomes: dict[int, int] = {}

    def check(drawn: tuple[list[dict[str, Any]], bool]) -> None:
        samples, bad = drawn
        wanted = [s["seq"] for s in samples if isinstance(s.get("seq"), int) and s["seq"] >= 0]
        r = httpx.post(srv.base + "/v1/telemetry", timeout=30,
                       json={"token": token, "schema": SCHEMA, "samples": samples})
        outcomes[r.status_code] = outcomes.get(r.status_code, 0) + 1
        assert r.status_code < 500, r.text
        if bad:
            assert r.status_code != 200 and r.json()["code"] in (4400, 4413, 4415, 4422), r.text
            assert _stored(srv.db_url, wanted) == 0 if wanted else True
        else:
            assert r.status_code == 200 and r.json()["stored"] == len(samples), r.text
            assert _stored(srv.db_url, wanted) == len(samples)

    # Good and spoiled batches are drawn by separate runs so that each kind is
    # exercised a known number of times whatever the seed favours.
    @fuzz(max_examples=20)
    @given(drawn=batches(corrupt=False))
    def run_good(drawn: tuple[list[dict[str, Any]], bool]) -> None:
        check(drawn)

    @fuzz(max_examples=40)
    @given(drawn=batches(corrupt=True))
    def run_spoiled(drawn: tuple[list[dict[str, Any]], bool]) -> None:
        check(drawn)

    run_good()
    run_spoiled()
    # A good batch varies only in its length (1-8), so hypothesis stops once it has tried each.
    assert outcomes.get(200, 0) >= 5 and sum(v for k, v in outcomes.items() if k != 200) >= 20, outcomes


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

    @fuzz(max_examples=50)
    @given(message=messages)
    def run(message: str | bytes) -> None:
        asyncio.run(one(message))

    run()
    assert len(codes) >= 2, codes
    assert "Traceback" not in Path(srv.log_path).read_text()
    assert httpx.get(srv.base + "/healthz").status_code == 200


# ---- the probe socket: SDP offers of any shape -------------------------------

def browser_like_offer() -> str:
    """A real offer with audio, video and a data channel, as the probe's peers make it (aiortc)."""
    from aiortc import RTCPeerConnection

    async def make() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio")
        pc.addTransceiver("video")
        pc.createDataChannel("pings")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


@st.composite
def mutated_offers(draw: st.DrawFn, base: list[str]) -> str:
    lines = list(base)
    for _ in range(draw(st.integers(0, 6))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "token", "garbage", "swap", "truncate"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "token":
            parts = lines[i].split(" ")
            j = draw(st.integers(0, len(parts) - 1))
            parts[j] = draw(st.one_of(st.text(max_size=12), st.integers(-(2**70), 2**70).map(str),
                                      st.sampled_from(["", "0", "-1", "65536", "4294967296", "a=", "m=", ":"])))
            lines[i] = " ".join(parts)
        elif action == "garbage":
            lines.insert(i, draw(st.text(max_size=40)))
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    return "\r\n".join(lines) + "\r\n"


def test_probe_offers_never_crash(fuzz_server: ServerProcess) -> None:
    srv = fuzz_server
    tokens = [tok for i in range(8) for tok in srv.create_session(f"C-SDP{i}")["tokens"].values()]
    base = browser_like_offer().strip("\r\n").split("\r\n")
    outcomes: dict[str, int] = {}
    turn = itertools.count()

    async def one(sdp: str) -> str:
        from websockets.asyncio.client import connect as ws_connect

        async with ws_connect(srv.ws + "/v1/probe", open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "auth", "token": tokens[next(turn) % len(tokens)]}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert welcome["type"] == "welcome", welcome
            await ws.send(json.dumps({"type": "offer", "sdp": sdp}))
            try:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
            except websockets.ConnectionClosed as e:
                raise AssertionError(f"closed without an answer or error: {e.rcvd}") from None
            if reply["type"] == "answer":
                return "answer"
            assert reply["type"] == "error" and reply["code"] in (4400, 4422), reply
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except websockets.ConnectionClosed as e:
                assert e.rcvd is not None and e.rcvd.code == reply["code"], (e.rcvd, reply)
            return str(reply["code"])

    @fuzz(max_examples=20)
    @given(sdp=mutated_offers(base))
    def run(sdp: str) -> None:
        got = asyncio.run(one(sdp))
        outcomes[got] = outcomes.get(got, 0) + 1

    run()
    assert asyncio.run(one("\r\n".join(base) + "\r\n")) == "answer"  # the unmutated offer is answered
    assert "Traceback" not in Path(srv.log_path).read_text()
    assert sum(outcomes.values()) >= 20, outcomes
