"""Survey links and forms against a real server, on SQLite and PostgreSQL:
single use, expiry, bad input refused with nothing stored, double submit
stored once, ratings API and FHIR export."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from sqlalchemy import func, select, update

from server.config import normalise_database_url
from server.store import tables as t
from server.store.db import make_engine
from server.timeutil import now_ms
from tests.support.server import ServerProcess

TELEHEALTH = ("tech_interfered", "felt_heard_seen", "session_changed", "hard_to_talk")


def links_of(session: dict[str, Any]) -> dict[str, str]:
    return {x["respondent"]: x["url"] for x in session["survey_links"]}


def client_answers(wai: list[int], tele: list[int]) -> dict[str, str]:
    data = {f"wai-sr-client:{n}": str(v) for n, v in enumerate(wai, start=1)}
    data.update({f"bondline-telehealth:{k}": str(v) for k, v in zip(TELEHEALTH, tele, strict=True)})
    return data


def count(db_url: str, table: Any) -> int:
    engine = make_engine(normalise_database_url(db_url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def ratings(server: ServerProcess, session_id: int) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.base}/api/v1/sessions/{session_id}/ratings", headers=server.admin_headers)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()
    return out


def test_client_link_end_to_end(server: ServerProcess, db_url: str) -> None:
    s = server.create_session(client_code="C-0101")
    urls = links_of(s)
    assert set(urls) == {"client", "therapist"}
    assert all(u.startswith(server.base + "/survey/bls_") for u in urls.values())
    url = urls["client"]

    page = httpx.get(url)
    assert page.status_code == 200
    assert "collaborate on setting goals" in page.text and "Telehealth experience" in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"

    good = client_answers([5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4], [2, 5, 1, 2])

    # A partly filled form: 422, every problem named, answers kept, nothing stored.
    partial = dict(good)
    del partial["wai-sr-client:3"]
    r = httpx.post(url, data=partial)
    assert r.status_code == 422
    assert "WAI-SR, question 3: no answer chosen." in r.text
    assert 'name="wai-sr-client:4" value="2" checked' in r.text
    # Out of range: named, nothing stored.
    r = httpx.post(url, data={**good, "wai-sr-client:5": "6"})
    assert r.status_code == 422 and "question 5: choose one of the answers" in r.text
    # Tampered bodies: 400 / 413 / 415, nothing stored.
    assert httpx.post(url, data={**good, "session_id": "1"}).status_code == 400
    assert httpx.post(url, content=b"x=" + b"1" * 100_000,
                      headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413
    assert httpx.post(url, json=good).status_code == 415
    assert ratings(server, s["id"]) == [] and count(db_url, t.rating) == 0

    # Tampered and unknown links say nothing about any session.
    token = url.rsplit("/", 1)[1]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (flipped, "bls_short", "blp_" + token[4:], "nonsense", token + "x" * 200):
        r = httpx.get(f"{server.base}/survey/{bad}")
        assert r.status_code == 404 and "This link does not work" in r.text, bad
        assert httpx.post(f"{server.base}/survey/{bad}", data=good).status_code == 404

    # The good submit: 303 to the thank-you page; the link is then used.
    r = httpx.post(url, data=good)
    assert r.status_code == 303 and r.headers["location"] == "/survey/thanks"
    assert "Thank you" in httpx.get(server.base + "/survey/thanks").text
    again = httpx.get(url)
    assert again.status_code == 409 and "Already answered" in again.text
    assert "C-0101" not in again.text
    assert httpx.post(url, data=good).status_code == 409  # a replay stores nothing

    got = {r["instrument_id"]: r for r in ratings(server, s["id"])}
    assert set(got) == {"wai-sr-client", "bondline-telehealth"} and count(db_url, t.rating) == 2
    wai = got["wai-sr-client"]
    # Task 1,2,10,12 = 5+4+1+4; Bond 3,5,7,9 = 3+1+4+2; Goal 4,6,8,11 = 2+5+3+5.
    assert wai["total"] == 39.0 and wai["mean"] == pytest.approx(3.25) and wai["shown"] == "mean"
    assert wai["subscales"] == {"task": {"sum": 14.0, "mean": 3.5}, "bond": {"sum": 10.0, "mean": 2.5},
                                "goal": {"sum": 15.0, "mean": 3.75}}
    assert wai["answers"]["1"] == 5 and wai["respondent"] == "client" and wai["instrument_version"] == "1.0"
    tele = got["bondline-telehealth"]
    assert tele["answers"]["felt_heard_seen"] == 5  # stored raw; reversed only in the score
    assert tele["total"] == 6.0 and tele["mean"] == 1.5

    states = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/survey-links", headers=server.admin_headers).json()
    assert {x["respondent"]: x["status"] for x in states} == {"client": "answered", "therapist": "open"}

    # FHIR: the instrument and the stored response, validated.
    q = httpx.get(f"{server.base}/api/v1/fhir/Questionnaire/wai-sr-client", headers=server.admin_headers)
    assert q.status_code == 200 and q.headers["content-type"].startswith("application/fhir+json")
    Questionnaire.model_validate(q.json())
    qr = httpx.get(f"{server.base}/api/v1/fhir/QuestionnaireResponse/{wai['id']}", headers=server.admin_headers)
    assert qr.status_code == 200
    res = QuestionnaireResponse.model_validate(qr.json())
    assert res.questionnaire == q.json()["url"] + "|1.0"
    assert res.subject.identifier.value == "C-0101"
    assert httpx.get(f"{server.base}/api/v1/fhir/Questionnaire/nope", headers=server.admin_headers).status_code == 404

    # The client's course: sessions in order, each with its ratings.
    s2 = server.create_session(client_code="C-0101")
    course = httpx.get(f"{server.base}/api/v1/ratings", params={"client_code": "C-0101"},
                       headers=server.admin_headers).json()
    assert [x["number"] for x in course["sessions"]] == [1, 2]
    assert len(course["sessions"][0]["ratings"]) == 2 and course["sessions"][1]["ratings"] == []
    assert course["sessions"][1]["session_id"] == s2["id"]
    assert httpx.get(f"{server.base}/api/v1/ratings", params={"client_code": "nobody"},
                     headers=server.admin_headers).status_code == 404
    assert httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/ratings").status_code == 401

    # Double submit (double click, retry): eight at once store one response.
    s3 = server.create_session(client_code="C-0202")
    url3 = links_of(s3)["client"]
    body = client_answers([4] * 12, [1, 4, 1, 1])
    with httpx.Client() as c, ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: c.post(url3, data=body).status_code, range(8)))
    assert codes == [303] + [409] * 7
    assert len(ratings(server, s3["id"])) == 2 and count(db_url, t.rating) == 4


def test_expiry_reissue_and_instrument_choice(sqlite_server: ServerProcess, sqlite_url: str) -> None:
    server = sqlite_server
    engine = make_engine(normalise_database_url(sqlite_url))
    hour = 3_600_000

    def set_times(session_id: int, **values: int) -> None:
        with engine.begin() as conn:
            conn.execute(update(t.session).where(t.session.c.id == session_id).values(**values))

    # Ended 71 h ago: still open. Ended 73 h ago: expired (72 h default).
    s = server.create_session(client_code="C-0303")
    url = links_of(s)["client"]
    set_times(s["id"], started_ms=now_ms() - 72 * hour, ended_ms=now_ms() - 71 * hour)
    assert httpx.get(url).status_code == 200
    set_times(s["id"], ended_ms=now_ms() - 73 * hour)
    r = httpx.get(url)
    assert r.status_code == 410 and "expired" in r.text and "C-0303" not in r.text
    assert httpx.post(url, data=client_answers([3] * 12, [1] * 4)).status_code == 410
    assert count(sqlite_url, t.rating) == 0

    # A session that never ends: its links stop 30 days after it was made.
    s = server.create_session(client_code="C-0304")
    url = links_of(s)["client"]
    set_times(s["id"], created_ms=now_ms() - 29 * 24 * hour)
    assert httpx.get(url).status_code == 200
    set_times(s["id"], created_ms=now_ms() - 31 * 24 * hour)
    assert httpx.get(url).status_code == 410

    # Re-issue: a new link works, the old one no longer does; once answered, 409.
    s = server.create_session(client_code="C-0305")
    old = links_of(s)["client"]
    r = httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/survey-links/client", headers=server.admin_headers)
    assert r.status_code == 200, r.text
    new = r.json()["url"]
    assert new != old and httpx.get(old).status_code == 404 and httpx.get(new).status_code == 200
    assert httpx.post(new, data=client_answers([5] * 12, [1] * 4)).status_code == 303
    r = httpx.post(f"{server.base}/api/v1/sessions/{s['id']}/survey-links/client", headers=server.admin_headers)
    assert r.status_code == 409
    engine.dispose()

    # A session chooses its instruments; bad ids are a 422 that stores nothing.
    def create(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{server.base}/api/v1/sessions", headers=server.admin_headers,
                          json={"clinician": "clin@example.org", "client_code": "C-0404", **body})

    before = count(sqlite_url, t.session)
    links_before = count(sqlite_url, t.survey_link)
    for choice, message in (
        ({"client": ["nope"]}, "unknown instrument 'nope'"),
        ({"client": ["wai-sr-therapist"]}, "is for the therapist"),
        ({"client": ["wai-sr-client", "wai-sr-client"]}, "listed twice"),
    ):
        r = create({"survey_instruments": choice})
        assert r.status_code == 422 and message in r.text, r.text
    assert count(sqlite_url, t.session) == before and count(sqlite_url, t.survey_link) == links_before

    r = create({"survey_instruments": {"client": ["bondline-telehealth"], "therapist": []}})
    assert r.status_code == 201, r.text
    urls = links_of(r.json())
    assert set(urls) == {"client"}
    page = httpx.get(urls["client"]).text
    assert "Telehealth experience" in page and "Working Alliance" not in page
