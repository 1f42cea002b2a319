import httpx

from tests.support.server import ServerProcess


def test_server_starts_and_creates_session(server: ServerProcess) -> None:
    assert httpx.get(server.base + "/healthz").json() == {"status": "ok", "store": "ok", "writes": "ok"}
    assert httpx.get(server.base + "/livez").json() == {"status": "ok"}
    s = server.create_session()
    assert set(s["tokens"]) == {"clinician", "client"}
    r = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}", headers=server.admin_headers)
    assert r.status_code == 200 and r.json()["number"] == 1
