"""The sidecar in a real server process: ``bondline probe`` end to end on
both backends, the probe socket's refusals, check links, and probe samples
keeping out of collectors' seq numbering."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from media.probe.profile import PROBE_SEQ_BASE, STREAM_PARTICIPANT, STREAM_SIDECAR
from tests.support.server import ServerProcess
from tests.support.shared_server import once_per_module

sqlite_server = once_per_module("sqlite_server")
server = once_per_module("server")


def _get(server: ServerProcess, path: str, **params: Any) -> Any:
    r = httpx.get(server.base + path, headers=server.admin_headers, params=params)
    r.raise_for_status()
    return r.json()


def test_python_agent_end_to_end(server: ServerProcess) -> None:
    s = server.create_session(client_code="C-AGENT")
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "probe", "--server", server.base, "--token", s["tokens"]["clinician"],
         "--duration", "7", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    report = orjson.loads(out.stdout.strip().splitlines()[-1])
    for side in ("participant", "sidecar"):
        v, a, p = report[side]["video"], report[side]["audio"], report[side]["pings"]
        assert v["accounted"] and v["received"] >= 25, (side, v)  # every stamped frame accounted for
        assert a["heard"] >= 250 and a["synced"], (side, a)
        assert p["rtts"] >= 20, (side, p)
    samples = _get(server, f"/api/v1/sessions/{s['id']}/samples", role="clinician")
    probe = [x for x in samples if x["source"] == "probe"]
    by_stream: dict[int, list[dict[str, Any]]] = {}
    for x in probe:
        by_stream.setdefault((x["seq"] - PROBE_SEQ_BASE) % 4, []).append(x["data"])
    assert set(by_stream) == {STREAM_SIDECAR, STREAM_PARTICIPANT}
    assert len(by_stream[STREAM_PARTICIPANT]) >= 5 and len(by_stream[STREAM_SIDECAR]) >= 5
    assert report["samples"] == len(by_stream[STREAM_PARTICIPANT])  # every sample the agent made is stored
    down = by_stream[STREAM_PARTICIPANT][1]
    assert down["probe"]["side"] == "participant" and down["connection"]["rttMs"] > 0
    kinds = [e["kind"] for e in _get(server, f"/api/v1/sessions/{s['id']}/events")]
    assert kinds.count("probe.start") == 1 and kinds.count("probe.end") == 1


async def _probe_socket(server: ServerProcess, first: dict[str, Any] | str,
                        then: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], int | None]:
    got: list[dict[str, Any]] = []
    async with connect(server.ws + "/v1/probe", open_timeout=10) as ws:
        await ws.send(first if isinstance(first, str) else orjson.dumps(first).decode())
        try:
            if then is not None:
                got.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))
                await ws.send(orjson.dumps(then).decode())
            while True:
                got.append(orjson.loads(await asyncio.wait_for(ws.recv(), 20)))
        except ConnectionClosed as e:
            return got, e.rcvd.code if e.rcvd else None
    return got, None


def test_probe_socket_refusals(sqlite_server: ServerProcess) -> None:
    server = sqlite_server
    s = server.create_session(client_code="C-REFUSE")
    token = s["tokens"]["client"]
    cases = [
        ({"type": "auth", "token": "blp_not-a-token"}, None, 4401),
        ("not json", None, 4400),
        ({"type": "hello"}, None, 4401),
        ({"type": "auth", "token": token}, {"type": "offer", "sdp": 5}, 4400),
        ({"type": "auth", "token": token}, {"type": "offer", "sdp": "v=0\r\nm=audio", "profile": {"fps": 500}}, 4422),
        ({"type": "auth", "token": token}, {"type": "offer", "sdp": "v=0\r\nm=audio", "profile": {"fps": "5"}}, 4422),
        ({"type": "auth", "token": token}, {"type": "offer", "sdp": "v=0\r\nm=nonsense"}, 4422),
    ]
    for first, then, code in cases:
        got, closed = asyncio.run(_probe_socket(server, first, then))
        assert closed == code, (first, then, got, closed)
        assert got[-1]["type"] == "error" and got[-1]["code"] == code
    # Nothing was stored by any of them.
    assert [x for x in _get(server, f"/api/v1/sessions/{s['id']}/samples") if x["source"] == "probe"] == []
    kinds = [e["kind"] for e in _get(server, f"/api/v1/sessions/{s['id']}/events")]
    assert not [k for k in kinds if k.startswith("probe.")]


def test_capacity_and_expired_tokens(server_factory: Any, sqlite_url: str) -> None:
    server = server_factory(sqlite_url, env={"BONDLINE_PROBE_MAX_PER_PROCESS": "0", "BONDLINE_TOKEN_TTL_HOURS": "0"})
    s = server.create_session(client_code="C-CAP")
    got, closed = asyncio.run(_probe_socket(server, {"type": "auth", "token": s["tokens"]["client"]}))
    assert closed == 4503 and "capacity" in got[-1]["reason"]
    httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/end", headers=server.admin_headers).raise_for_status()
    got, closed = asyncio.run(_probe_socket(server, {"type": "auth", "token": s["tokens"]["client"]}))
    assert closed == 4403


def test_check_link_api_and_page(sqlite_server: ServerProcess) -> None:
    server = sqlite_server
    s = server.create_session(client_code="C-LINK")
    assert httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/probe/check-link").status_code == 401
    assert httpx.post(f"{server.base}/api/v1/sessions/999999/probe/check-link",
                      headers=server.admin_headers).status_code == 404
    r = httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/probe/check-link", headers=server.admin_headers)
    assert r.status_code == 201
    url = r.json()["url"]
    page = httpx.get(url)
    assert page.status_code == 200 and "Check your connection" in page.text
    assert "<script>" not in page.text  # the CSP forbids inline script: the page loads files only
    js = httpx.get(server.base + "/plugin/bondline-probe.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "Bondline.probe" in js.text
    # A check link runs the probe in check mode (no samples) and returns a verdict.
    token = url.rsplit("/", 1)[1]
    out = subprocess.run([sys.executable, "-m", "server.cli", "probe", "--server", server.base, "--token", token,
                          "--json", "--quiet"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert report["verdict"]["level"] in ("good", "fair"), report["verdict"]
    events = _get(server, f"/api/v1/sessions/{s['id']}/events")
    assert [e["data"]["verdict"]["level"] for e in events if e["kind"] == "probe.check"] == [
        report["verdict"]["level"]]
    assert [x for x in _get(server, f"/api/v1/sessions/{s['id']}/samples") if x["source"] == "probe"] == []
    # A token of the wrong kind is refused.
    got, closed = asyncio.run(_probe_socket(server, {"type": "auth", "token": "blc_" + "x" * 30}))
    assert closed == 4401


def test_collectors_seq_ignores_probe_samples(sqlite_server: ServerProcess) -> None:
    """A collector starting after a probe continues its own numbering."""
    server = sqlite_server
    s = server.create_session(client_code="C-SEQ")
    token = s["tokens"]["client"]
    out = subprocess.run([sys.executable, "-m", "server.cli", "probe", "--server", server.base, "--token", token,
                          "--duration", "4", "--quiet", "--no-video"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr

    async def welcome() -> dict[str, Any]:
        async with connect(server.ws + "/v1/telemetry") as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
            msg: dict[str, Any] = orjson.loads(await ws.recv())
            return msg

    assert asyncio.run(welcome())["lastSeq"] is None


@pytest.mark.parametrize("bad", [
    {"samples": [{"seq": 3, "startMs": 1795612856000, "intervalMs": 1000, "source": "probe"}]},
    {"samples": [{"seq": PROBE_SEQ_BASE + 1795612856 * 4 + 1, "startMs": 1795612856000, "intervalMs": 1000,
                  "source": "browser"}]},
    {"events": [{"key": "k", "kind": "collector.fake", "tMs": 1795612856000}]},
])
def test_report_messages_are_checked(bad: dict[str, Any]) -> None:
    from server.sidecar.store import check_events, check_participant_samples

    assert (check_participant_samples(bad.get("samples", [])) or check_events(bad.get("events", []))) is not None


def test_agent_reconnects_after_a_server_crash(server_factory: Any, sqlite_url: str) -> None:
    """kill -9 of the server mid-probe: the agent comes back on its own, the
    sidecar records the reconnect, and samples of both runs are stored."""
    import time

    server = server_factory(sqlite_url)
    s = server.create_session(client_code="C-CRASH")
    agent = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "probe", "--server", server.base, "--token", s["tokens"]["client"],
         "--duration", "24", "--json", "--quiet"],  # room for a restart under load (7 s at load 4)
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the first run has stored a sample or two
            rows = _get(server, f"/api/v1/sessions/{s['id']}/samples")
            if len([r for r in rows if r["source"] == "probe"]) >= 4:
                break
            time.sleep(0.5)
        server.kill9()
        time.sleep(1.0)
        server.start()
        out, err = agent.communicate(timeout=90)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, (out, err)
    report = orjson.loads(out.strip().splitlines()[-1])
    assert report["runs"] >= 2
    events = _get(server, f"/api/v1/sessions/{s['id']}/events")
    reconnects = [e for e in events if e["kind"] == "probe.reconnect"]
    assert len(reconnects) == 1
    runs = {r["data"]["probe"]["run"] for r in _get(server, f"/api/v1/sessions/{s['id']}/samples")
            if r["source"] == "probe"}
    assert len(runs) >= 2 and reconnects[0]["data"]["previousRun"] in runs
