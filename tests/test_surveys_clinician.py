"""The clinician's own rating form (behind login), caseload scoping of the
ratings API, and a clinic's own instrument files."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.login import create_user, csrf_from, login
from tests.support.server import ServerProcess

PASSWORD = "correct horse battery staple 42"
THERAPIST = {f"wai-sr-therapist:{n}": "4" for n in range(1, 13)}


def new_session(server: ServerProcess, clinician: str, code: str) -> dict:
    return server.create_session(client_code=code, clinician=clinician)


def test_therapist_rating_and_a_clinic_instrument(server_factory, sqlite_url: str, tmp_path: Path) -> None:
    # One server for both: the clinic's own instrument directory is set too.
    clinic = tmp_path / "instruments"
    clinic.mkdir()
    (clinic / "clinic-fit.yaml").write_text(yaml.safe_dump(_clinic_instrument()))
    server = server_factory(sqlite_url, {
        "BONDLINE_INSTRUMENTS_DIR": str(clinic),
        "BONDLINE_SURVEY_CLIENT_INSTRUMENTS": '["wai-sr-client", "clinic-fit"]',
    })
    therapist_rates_from_the_session_page(server, sqlite_url)
    clinic_instrument_needs_no_code(server)


def therapist_rates_from_the_session_page(server: ServerProcess, sqlite_url: str) -> None:
    create_user(sqlite_url, "ana@example.org", PASSWORD)
    create_user(sqlite_url, "ben@example.org", PASSWORD)
    mine = new_session(server, "ana@example.org", "C-1")
    theirs = new_session(server, "ben@example.org", "C-2")
    page_url = f"{server.base}/sessions/{mine['id']}/rating"

    # Not logged in: sent to the login page.
    r = httpx.get(page_url, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")

    with httpx.Client() as ana:
        login(ana, server.base, "ana@example.org", PASSWORD)
        form = ana.get(page_url)
        # The form says which client and session it is for.
        assert form.status_code == 200 and "Your rating of session 1 with client C-1" in form.text
        assert "I believe my client likes me." in form.text
        token = csrf_from(form.text)
        # Another clinician's session does not exist for her.
        assert ana.get(f"{server.base}/sessions/{theirs['id']}/rating").status_code == 404
        # No CSRF token: refused, nothing stored.
        assert ana.post(page_url, data=THERAPIST).status_code == 403
        # A blank answer comes back named, with the others kept.
        partial = {k: v for k, v in THERAPIST.items() if k != "wai-sr-therapist:9"}
        r = ana.post(page_url, data={**partial, "csrf_token": token})
        assert r.status_code == 422 and "WAI-SR-T, question 9: no answer chosen." in r.text
        r = ana.post(page_url, data={**THERAPIST, "wai-sr-therapist:2": "2", "csrf_token": token},
                     follow_redirects=False)
        assert r.status_code == 303
        saved = ana.get(page_url)
        # 11 x 4 + 2 = 46 -> mean 46/12 = 3.83
        assert "Rating saved" in saved.text and "mean 3.83, total 46" in saved.text
        assert "session 1 with client C-1" in saved.text and "?correct=1" in saved.text
        first_id = ana.get(f"{server.base}/api/v1/sessions/{mine['id']}/ratings").json()[0]["id"]
        # A sent rating can be corrected: the form comes back with the sent answers chosen.
        again = ana.get(page_url + "?correct=1")
        assert again.status_code == 200 and "You sent this rating already" in again.text
        assert 'id="q-wai-sr-therapist-2-2" name="wai-sr-therapist:2" value="2" checked' in again.text
        # A correction with a blank is refused like a first sending, and changes nothing.
        r = ana.post(page_url, data={**partial, "csrf_token": token})
        assert r.status_code == 422 and "You sent this rating already" in r.text
        assert "mean 3.83, total 46" in ana.get(page_url).text
        r = ana.post(page_url, data={**THERAPIST, "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303
        assert "mean 4.00, total 48" in ana.get(page_url).text
        corrected = ana.get(f"{server.base}/api/v1/sessions/{mine['id']}/ratings").json()
        # Corrected in place: still one rating, the same one, scored again.
        assert [(x["id"], x["total"]) for x in corrected] == [(first_id, 48.0)]
        # Put back as it was, for the checks below.
        r = ana.post(page_url, data={**THERAPIST, "wai-sr-therapist:2": "2", "csrf_token": token},
                     follow_redirects=False)
        assert r.status_code == 303
        # The therapist's link is the same single-use link: it is now answered.
        therapist_link = {x["respondent"]: x["url"] for x in mine["survey_links"]}["therapist"]
        assert httpx.get(therapist_link).status_code == 409

        # The ratings API, logged in: her own sessions only.
        got = ana.get(f"{server.base}/api/v1/sessions/{mine['id']}/ratings").json()
        assert [(x["respondent"], x["instrument_id"], x["total"]) for x in got] == [
            ("therapist", "wai-sr-therapist", 46.0)
        ]
        assert ana.get(f"{server.base}/api/v1/sessions/{theirs['id']}/ratings").status_code == 404
        assert ana.get(f"{server.base}/api/v1/fhir/QuestionnaireResponse/{got[0]['id']}").status_code == 200
        assert ana.get(f"{server.base}/api/v1/ratings", params={"client_code": "C-2"}).status_code == 404
        assert ana.get(f"{server.base}/api/v1/ratings", params={"client_code": "C-1"}).status_code == 200

    with httpx.Client() as ben:
        login(ben, server.base, "ben@example.org", PASSWORD)
        assert ben.get(f"{server.base}/api/v1/fhir/QuestionnaireResponse/{got[0]['id']}").status_code == 404


def _clinic_instrument() -> dict:
    return {
        "schema": "bondline.instrument/1",
        "id": "clinic-fit",
        "version": "3",
        "title": "Clinic session fit",
        "short_title": "Fit",
        "respondent": "client",
        "description": "Two questions a clinic wrote.",
        "instructions": "Rate 0 to 3.",
        "scales": {"s4": [{"value": v, "label": f"level {v}"} for v in range(4)]},
        "default_scale": "s4",
        "items": [{"id": "pace", "text": "The pace suited me."}, {"id": "rushed", "text": "I felt rushed.",
                                                                 "reverse": True}],
        "subscales": [],
        "scoring": {"shown": "sum", "max_missing": 0, "subscale_max_missing": 0, "missing_sum": "none"},
        "citation": "Clinic form.",
        "source": "Clinic.",
        "permission": "The clinic's own.",
    }


def clinic_instrument_needs_no_code(server: ServerProcess) -> None:
    listed = httpx.get(f"{server.base}/api/v1/instruments", headers=server.admin_headers).json()
    assert {i["id"] for i in listed} == {"wai-sr-client", "wai-sr-therapist", "bondline-telehealth", "clinic-fit"}
    s = server.create_session(client_code="C-7")
    url = {x["respondent"]: x["url"] for x in s["survey_links"]}["client"]
    page = httpx.get(url).text
    assert "Clinic session fit" in page and "Telehealth experience" not in page
    data = {f"wai-sr-client:{n}": "3" for n in range(1, 13)}
    data.update({"clinic-fit:pace": "2", "clinic-fit:rushed": "0"})
    assert httpx.post(url, data=data).status_code == 303
    got = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/ratings", headers=server.admin_headers).json()
    fit = next(r for r in got if r["instrument_id"] == "clinic-fit")
    assert fit["total"] == 5.0 and fit["instrument_version"] == "3" and fit["shown"] == "sum"  # 2 + (0+3-0)


def test_a_broken_instrument_file_stops_the_server(server_factory, sqlite_url: str, tmp_path: Path) -> None:
    clinic = tmp_path / "instruments"
    clinic.mkdir()
    broken = _clinic_instrument()
    broken["subscales"] = [{"id": "all", "title": "All", "items": ["pace", "missing_item"]}]
    (clinic / "clinic-fit.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(RuntimeError) as e:
        server_factory(sqlite_url, {"BONDLINE_INSTRUMENTS_DIR": str(clinic)})
    log = str(e.value)
    assert re.search(r"clinic-fit\.yaml: invalid instrument: .*subscale 'all' names unknown items", log), log
