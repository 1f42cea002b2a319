"""Right to erasure and the audit trail, on both backends."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import create_engine, func, select

from server.config import normalise_database_url
from server.store import tables as t
from tests.support.login import create_user, csrf_from, login
from tests.support.samples import batch, connect, sample
from tests.support.server import ServerProcess
from tests.support.shared_server import once_per_module

sqlite_server = once_per_module("sqlite_server")
server = once_per_module("server")

PW = "correct horse battery"


def _stream(server: ServerProcess, token: str, n: int) -> None:
    async def run() -> None:
        ws, _ = await connect(server.ws, token)
        events = [{"key": f"e{i}", "kind": "reconnect", "tMs": sample(i)["startMs"]} for i in range(3)]
        await ws.send(batch([sample(i) for i in range(n)], 0, events))
        ack = json.loads(await ws.recv())
        assert ack["stored"] == n and ack["events"] == 3
        await ws.close()

    asyncio.run(run())


def _counts(db_url: str) -> dict[str, int]:
    engine = create_engine(normalise_database_url(db_url))
    try:
        with engine.connect() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(t.metadata.tables[name])).scalar_one())
                for name in ("client", "session", "participant", "sample", "event", "rating", "survey_link",
                             "session_quality", "audit_log")
                if name in t.metadata.tables
            }
    finally:
        engine.dispose()


def _events_of(db_url: str, session_ids: list[int]) -> int:
    engine = create_engine(normalise_database_url(db_url))
    try:
        with engine.connect() as conn:
            q = select(func.count()).select_from(t.event).where(t.event.c.session_id.in_(session_ids))
            return int(conn.execute(q).scalar_one())
    finally:
        engine.dispose()


def _rollups_of(db_url: str, session_ids: list[int]) -> tuple[int, int]:
    """(session roll-ups, per-minute roll-up rows) of these sessions."""
    engine = create_engine(normalise_database_url(db_url))
    try:
        with engine.connect() as conn:
            return tuple(  # type: ignore[return-value]
                int(conn.execute(select(func.count()).select_from(table)
                                 .where(table.c.session_id.in_(session_ids))).scalar_one())
                for table in (t.session_rollup, t.minute_rollup)
            )
    finally:
        engine.dispose()


def _add_rating(db_url: str, session_id: int) -> None:
    if "rating" not in t.metadata.tables:
        return
    engine = create_engine(normalise_database_url(db_url))
    with engine.begin() as conn:
        conn.execute(t.metadata.tables["rating"].insert().values(
            session_id=session_id, respondent="client", instrument_id="wai-sr-client", instrument_version="1",
            answers="{}", subscales="{}", submitted_ms=1_700_000_000_000))
    engine.dispose()


def test_erasing_a_client_removes_all_their_data(server: ServerProcess) -> None:
    create_user(server.db_url, "ann@example.org", PW)
    gone = [server.create_session("C-GONE", clinician="ann@example.org") for _ in range(2)]
    kept = server.create_session("C-KEPT", clinician="ann@example.org")
    other = server.create_session("C-GONE", clinician="bob@example.org")  # same code, other caseload
    for s in (*gone, kept, other):
        _stream(server, s["tokens"]["client"], 5)
        _stream(server, s["tokens"]["clinician"], 4)
        _add_rating(server.db_url, s["id"])
        # Ended: each gets its roll-up (per-minute figures and events), which must go with it too.
        r = httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/end", headers=server.admin_headers, timeout=30)
        assert r.status_code == 200
    assert _rollups_of(server.db_url, [s["id"] for s in (*gone, kept, other)]) == (4, 8)
    before = _counts(server.db_url)

    with httpx.Client() as ann:
        login(ann, server.base, "ann@example.org", PW)
        # Viewing a client's data is audited.
        assert ann.get(f"{server.base}/api/v1/sessions/{gone[0]['id']}/samples").status_code == 200
        page = ann.get(server.base + "/clients/erase")
        token = csrf_from(page.text)
        r = ann.post(server.base + "/clients/erase",
                     data={"csrf_token": token, "client_code": "C-GONE", "confirm": "C-GONE-typo"})
        assert r.status_code == 400
        assert _counts(server.db_url)["sample"] == before["sample"]
        r = ann.post(server.base + "/clients/erase",
                     data={"csrf_token": token, "client_code": "C-GONE", "confirm": "C-GONE"})
        assert r.status_code == 200 and "Erased client C-GONE" in r.text

    after = _counts(server.db_url)
    assert after["client"] == before["client"] - 1
    assert after["session"] == before["session"] - 2
    assert after["participant"] == before["participant"] - 4
    assert after["sample"] == before["sample"] - 2 * 9
    assert _rollups_of(server.db_url, [s["id"] for s in gone]) == (0, 0)
    assert _rollups_of(server.db_url, [kept["id"], other["id"]]) == (2, 4)
    # Events (collector ones and the server's connect/disconnect ones) went with their sessions.
    assert _events_of(server.db_url, [s["id"] for s in gone]) == 0
    assert _events_of(server.db_url, [kept["id"], other["id"]]) >= 2 * 2 * 3
    if "rating" in after:
        assert after["rating"] == before["rating"] - 2
    for s in gone:
        r = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}", headers=server.admin_headers)
        assert r.status_code == 404
    for s in (kept, other):
        r = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/samples", headers=server.admin_headers)
        assert len(r.json()) == 9

    # The same via the JSON API, by an API key caller naming the clinician.
    r = httpx.delete(f"{server.base}/api/v1/clients/C-GONE", headers=server.admin_headers)
    assert r.status_code == 422
    r = httpx.delete(f"{server.base}/api/v1/clients/C-GONE", params={"clinician": "bob@example.org"},
                     headers=server.admin_headers)
    assert r.status_code == 200 and r.json()["deleted"]["sample"] == 9
    r = httpx.delete(f"{server.base}/api/v1/clients/C-GONE", params={"clinician": "bob@example.org"},
                     headers=server.admin_headers)
    assert r.status_code == 404

    # The audit trail names who viewed and who erased which client.
    create_user(server.db_url, "boss@example.org", PW, is_admin=True)
    with httpx.Client() as boss:
        login(boss, server.base, "boss@example.org", PW)
        page = boss.get(server.base + "/admin/audit", params={"client_code": "C-GONE"}).text
        assert page.count("erase") >= 2 and "ann@example.org" in page and "key:admin-key" in page
        assert "view" in page and "sample=" in page


def test_clinician_cannot_erase_another_caseload(sqlite_server: ServerProcess) -> None:
    create_user(sqlite_server.db_url, "ann@example.org", PW)
    s = sqlite_server.create_session("C-BOB", clinician="bob@example.org")
    _stream(sqlite_server, s["tokens"]["client"], 3)
    with httpx.Client() as ann:
        login(ann, sqlite_server.base, "ann@example.org", PW)
        r = ann.delete(f"{sqlite_server.base}/api/v1/clients/C-BOB", headers={"Origin": sqlite_server.base},
                       params={"clinician": "bob@example.org"})
        assert r.status_code == 404
        token = csrf_from(ann.get(sqlite_server.base + "/clients/erase").text)
        r = ann.post(sqlite_server.base + "/clients/erase",
                     data={"csrf_token": token, "client_code": "C-BOB", "confirm": "C-BOB",
                           "clinician": "bob@example.org"})
        assert r.status_code == 404
        # Without the CSRF token nothing happens either.
        r = ann.delete(f"{sqlite_server.base}/api/v1/clients/C-BOB")
        assert r.status_code == 403
    assert _counts(sqlite_server.db_url)["sample"] == 3
