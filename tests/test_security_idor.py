"""Cross-clinician access by id guessing, for every route the app has.

The route list is read from the application itself, so resource types that
other areas add (ratings, reports, exports, ...) are covered without this
file changing: every route with an id in its path is called by clinician B
with clinician A's ids. A must get her data (proving the id is real); B must
get 403 or 404, never A's data, and must change nothing.

Writes are requests that would succeed: each write route has, in OWNER_WRITES,
a request that A's own call completes (2xx, or the form's 303). B sends the
same request first and must get 404 (the same answer as an id that does not
exist) and change nothing; then A sends it and must succeed, which proves the
request reached the ownership check rather than failing before it. A write
route with ids that OWNER_WRITES does not know fails the test: add one."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select

from server.config import normalise_database_url
from server.store import tables as t
from tests.support.login import create_user, csrf_from, login
from tests.support.samples import batch, connect, sample
from tests.support.server import ServerProcess

PW = "correct horse battery"
CODE = "C-ALPHA-7"
MARK = "ALPHA-SECRET-MARK"
# Path parameters that name something owned by a clinician, and how to fill them.
OWNED = {"session_id", "client_id", "rating_id", "client_code", "participant_id"}
# Capability URLs (the token is the authority), shared reference data and admin-only objects.
NOT_OWNED = {"token", "name", "instrument_id", "clinician_id", "key_id"}


def app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every HTTP route of the real app."""
    from server.app import create_app
    from server.config import Settings

    with tempfile.TemporaryDirectory() as d:
        app = create_app(Settings(database_url=f"{d}/routes.db", admin_api_key="x"))
        out: list[tuple[str, str]] = []

        def walk(routes: Any) -> None:
            for r in routes:
                contexts = getattr(r, "effective_route_contexts", None)
                if contexts is not None:
                    for c in contexts() if callable(contexts) else contexts:
                        route = getattr(c, "route", c)
                        for m in getattr(route, "methods", None) or ():
                            out.append((m, getattr(c, "path", None) or route.path))
                else:
                    for m in getattr(r, "methods", None) or ():
                        out.append((m, r.path))

        walk(app.routes)
        app.state.engine.dispose()
    return sorted({(m, p) for m, p in out if m != "HEAD"})


def snapshot(db_url: str) -> dict[str, Any]:
    """Everything B could have changed about A's data."""
    engine = create_engine(normalise_database_url(db_url))
    try:
        with engine.connect() as conn:
            counts = {}
            for name, table in t.metadata.tables.items():
                # Logs, logins, server-observed events and the derived quality cache
                # (filled when A views her reports) are not B's to change anyway.
                if name in ("audit_log", "login_session", "login_attempt", "event", "session_quality"):
                    continue
                counts[name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
            counts["collector_events"] = conn.execute(
                select(func.count()).select_from(t.event).where(t.event.c.origin != "server")).scalar_one()
            sessions = [tuple(r) for r in conn.execute(select(t.session).order_by(t.session.c.id))]
            links = [tuple(r) for r in conn.execute(select(t.metadata.tables["survey_link"]))] \
                if "survey_link" in t.metadata.tables else []
            accounts = [tuple(r) for r in conn.execute(select(t.clinician).order_by(t.clinician.c.id))]
            return {"counts": counts, "sessions": sessions, "links": links, "accounts": accounts}
    finally:
        engine.dispose()


def seed_alpha(server: ServerProcess) -> dict[str, Any]:
    """Clinician A's data: a session with samples, events, a survey link and a rating."""
    s = server.create_session(CODE, clinician="ann@example.org")

    async def stream() -> None:
        ws, _ = await connect(server.ws, s["tokens"]["client"])
        await ws.send(batch([sample(i, marker=MARK) for i in range(30)], 0,
                            [{"key": "k1", "kind": "freeze", "tMs": sample(3)["startMs"], "note": MARK}]))
        assert json.loads(await ws.recv())["stored"] == 30
        await ws.close()

    asyncio.run(stream())
    # Left open (not ended), so that ending it is a write A can still make.
    r = httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/survey-links/therapist", headers=server.admin_headers)
    ids: dict[str, Any] = {"session_id": s["id"], "client_code": CODE}
    engine = create_engine(normalise_database_url(server.db_url))
    with engine.begin() as conn:
        ids["client_id"] = conn.execute(select(t.client.c.id).where(t.client.c.code == CODE)).scalar_one()
        ids["participant_id"] = conn.execute(select(t.participant.c.id)
                                             .where(t.participant.c.session_id == s["id"])).scalars().first()
        if "rating" in t.metadata.tables:
            ids["rating_id"] = conn.execute(t.metadata.tables["rating"].insert().values(
                session_id=s["id"], respondent="client", instrument_id="wai-sr-client", instrument_version="1",
                answers=json.dumps({"1": 4}), total=4.0, mean=4.0, subscales="{}", submitted_ms=1_700_000_000_000,
            ).returning(t.metadata.tables["rating"].c.id)).scalar_one()
    engine.dispose()
    ids["survey_link_status"] = r.status_code
    return ids


def fill(path: str, ids: dict[str, Any]) -> str | None:
    params = re.findall(r"{(\w+)(?::\w+)?}", path)
    if not params or any(p in NOT_OWNED for p in params) or not any(p in OWNED for p in params):
        return None
    out = path
    for p in params:
        value = ids.get(p) if p in OWNED else {"action": "end", "respondent": "client"}.get(p)
        if value is None:
            return None
        out = re.sub(r"{" + p + r"(?::\w+)?}", str(value), out)
    return out


_RADIO_RE = re.compile(r'<input type="radio" id="[^"]*" name="([^"]+)" value="([^"]*)"')


def rating_form(client: httpx.Client, url: str) -> dict[str, str]:
    """A complete therapist rating: the first choice of every question on A's own form."""
    page = client.get(url)
    assert page.status_code == 200, page.text[:300]
    answers: dict[str, str] = {}
    for name, value in _RADIO_RE.findall(page.text):
        answers.setdefault(name, value)
    assert answers, "no questions on the rating form"
    return answers


# A request each write route completes for the session's owner: (method,
# path with A's ids, how to send its body). The order is the order A sends
# them in (erasure last: it removes everything else).
OWNER_WRITES: dict[str, tuple[str, dict[str, Any]]] = {
    "POST /api/v1/sessions/{session_id}/probe/check-link": ("/api/v1/sessions/{session_id}/probe/check-link",
                                                            {"json": {"role": "client"}}),
    "POST /api/v1/sessions/{session_id}/survey-links/{respondent}": (
        "/api/v1/sessions/{session_id}/survey-links/client", {}),
    "POST /sessions/{session_id}/rating": ("/sessions/{session_id}/rating", {"form": True}),
    "POST /api/v1/sessions/{session_id}/{action}": ("/api/v1/sessions/{session_id}/end", {}),
    "DELETE /api/v1/clients/{client_code}": ("/api/v1/clients/{client_code}", {}),
}


def test_no_cross_clinician_access_on_any_route(sqlite_server: ServerProcess) -> None:
    server = sqlite_server
    create_user(server.db_url, "ann@example.org", PW)
    create_user(server.db_url, "bob@example.org", PW)
    server.create_session("C-BOB-1", clinician="bob@example.org")
    ids = seed_alpha(server)
    routes = app_routes()
    with httpx.Client() as ann, httpx.Client() as bob:
        login(ann, server.base, "ann@example.org", PW)
        login(bob, server.base, "bob@example.org", PW)
        bob_csrf = csrf_from(bob.get(server.base + "/account/password").text)
        ann_csrf = csrf_from(ann.get(server.base + "/account/password").text)
        before = snapshot(server.db_url)

        checked_reads: list[str] = []
        writes: list[str] = []
        for method, template in routes:
            path = fill(template, ids)
            if path is None:
                continue
            url = server.base + path
            if method == "GET":
                own = ann.get(url)
                theirs = bob.get(url)
                assert theirs.status_code in (403, 404), (template, theirs.status_code, theirs.text[:300])
                assert MARK not in theirs.text and CODE not in theirs.text.replace(f"'{CODE}'", "")
                if own.status_code == 200:
                    checked_reads.append(template)
            else:
                key = f"{method} {template}"
                assert key in OWNER_WRITES, f"{key}: add a request that succeeds for the owner to OWNER_WRITES"
                writes.append(key)
        # B's writes, each exactly as A's will be: 404, and nothing of A's in the answer.
        requests: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for key, (path, how) in OWNER_WRITES.items():
            method = key.split(" ", 1)[0]
            url = server.base + path.format(**ids)
            body = dict(how)
            if body.pop("form", False):
                body["data"] = rating_form(ann, url)
            requests[key] = (method, url, body)
        for key in writes:
            method, url, body = requests[key]
            data = dict(body.get("data", {}), csrf_token=bob_csrf) if "data" in body else None
            r = bob.request(method, url, json=body.get("json"), data=data,
                            headers={"Origin": server.base, "X-CSRF-Token": bob_csrf}, follow_redirects=False)
            assert r.status_code == 404, (key, r.status_code, r.text[:300])
            assert MARK not in r.text
        # Lists and exports without ids in the path: B sees only B's caseload.
        for method, template in routes:
            if method != "GET" or "{" in template or template.startswith(("/static", "/docs", "/redoc")):
                continue
            if template == "/demo/call":
                continue  # creates a demo session by design (loopback-only by default; server/demo/call.py)
            r = bob.get(server.base + template, params={"client_code": CODE, "client_id": ids["client_id"],
                                                        "session_id": ids["session_id"], "client": CODE})
            assert r.status_code < 500, (template, r.status_code)
            assert MARK not in r.text, template
            if r.status_code == 200 and "json" in r.headers.get("content-type", ""):
                assert CODE not in r.text, template
        after = snapshot(server.db_url)
        changed = {k: (before["counts"][k], after["counts"].get(k)) for k in before["counts"]
                   if before["counts"][k] != after["counts"].get(k)}
        assert not changed, changed
        assert after == before
        # The same requests succeed for A: they were real writes, refused for B by ownership alone.
        for key in [k for k in OWNER_WRITES if k in writes]:
            method, url, body = requests[key]
            data = dict(body.get("data", {}), csrf_token=ann_csrf) if "data" in body else None
            r = ann.request(method, url, json=body.get("json"), data=data,
                            headers={"Origin": server.base, "X-CSRF-Token": ann_csrf}, follow_redirects=False)
            assert 200 <= r.status_code < 300 or (r.status_code == 303 and "data" in body), (
                key, r.status_code, r.text[:300])
        assert snapshot(server.db_url)["counts"]["client"] == before["counts"]["client"] - 1  # A erased her client
    # The test means something only if A really could read and write these.
    for must in ("/api/v1/sessions/{session_id}", "/api/v1/sessions/{session_id}/samples",
                 "/api/v1/sessions/{session_id}/events"):
        assert must in checked_reads, checked_reads
    assert len(checked_reads) >= 5 and len(writes) >= 4, (checked_reads, writes)
