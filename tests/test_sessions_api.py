"""Sessions API over a real server, on both backends."""

from __future__ import annotations

import httpx

from tests.support.server import ServerProcess


def test_api_requires_a_key(sqlite_server: ServerProcess) -> None:
    assert httpx.get(sqlite_server.base + "/api/v1/sessions").status_code == 401
    r = httpx.get(sqlite_server.base + "/api/v1/sessions", headers={"Authorization": "Bearer wrong"})
    assert r.status_code in (401, 403)


def test_session_lifecycle(server: ServerProcess) -> None:
    h = server.admin_headers
    a = server.create_session("C-17")
    b = server.create_session("C-17")
    other = server.create_session("C-99")
    assert (a["number"], b["number"], other["number"]) == (1, 2, 1)
    assert a["status"] == "scheduled" and a["client_code"] == "C-17"
    roles = {p["role"]: p for p in a["participants"]}
    assert roles["client"]["token"] != roles["clinician"]["token"]
    assert roles["client"]["token"] in roles["client"]["snippet"]
    assert "/plugin/bondline.js" in roles["client"]["snippet"]

    listed = httpx.get(server.base + "/api/v1/sessions", params={"client_code": "C-17"}, headers=h).json()
    assert [s["id"] for s in listed] == [b["id"], a["id"]]
    one = httpx.get(f"{server.base}/api/v1/sessions/{a['id']}", headers=h).json()
    assert "token" not in str(one) and "participants" not in one

    started = httpx.post(f"{server.base}/api/v1/sessions/{a['id']}/start", headers=h).json()
    assert started["status"] == "live" and started["started_at"]
    ended = httpx.post(f"{server.base}/api/v1/sessions/{a['id']}/end", headers=h).json()
    assert ended["status"] == "ended" and ended["ended_at"] >= ended["started_at"]
    again = httpx.post(f"{server.base}/api/v1/sessions/{a['id']}/start", headers=h)
    assert again.status_code == 409
    assert httpx.get(f"{server.base}/api/v1/sessions/999999", headers=h).status_code == 404
    assert httpx.get(f"{server.base}/api/v1/sessions/999999/samples", headers=h).status_code == 404


def test_client_codes_must_be_codes(sqlite_server: ServerProcess) -> None:
    r = httpx.post(
        sqlite_server.base + "/api/v1/sessions",
        json={"clinician": "c@example.org", "client_code": "Jane Doe"},
        headers=sqlite_server.admin_headers,
    )
    assert r.status_code == 422
    r = httpx.post(
        sqlite_server.base + "/api/v1/sessions",
        json={"clinician": "not-an-email", "client_code": "C1"},
        headers=sqlite_server.admin_headers,
    )
    assert r.status_code == 422
    assert httpx.get(sqlite_server.base + "/api/v1/sessions", headers=sqlite_server.admin_headers).json() == []


def test_openapi_lists_the_contract(sqlite_server: ServerProcess) -> None:
    spec = httpx.get(sqlite_server.base + "/openapi.json").json()
    paths = spec["paths"]
    for p in ("/api/v1/sessions", "/api/v1/sessions/{session_id}", "/api/v1/sessions/{session_id}/samples",
              "/api/v1/sessions/{session_id}/events", "/v1/telemetry"):
        assert p in paths, p
