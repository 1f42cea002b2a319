"""The demo caseload: rows exactly as ingest would store them, ratings scored
as a real submission, logins that work, the stated effect recoverable end to
end (telemetry -> detected disruption -> model), and a separate database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from server.accounts.service import check_password
from server.analysis.caseload import Point, fit_model
from server.analysis.quality import compute, for_sessions
from server.analysis.scores import BOND, load_scores
from server.analysis.series import load_session
from server.config import AnalysisConfig, Settings, normalise_database_url
from server.demo.build import DemoError, build_demo
from server.demo.plan import RatingModel, plan_caseload
from server.ingest.headline import headline
from server.ingest.schema import sample_adapter
from server.store import tables as t
from server.store.db import make_engine
from server.surveys.registry import load_for
from server.surveys.scoring import score


def test_demo_rows_are_what_ingest_stores(db_url: str) -> None:
    # verify_every=1: the build itself checks every sample against headline().
    result = build_demo(db_url, 5, clinicians=1, clients_per_clinician=2, sessions=(3, 3), duration_s=(300, 300),
                        verify_every=1)
    assert (result.clients, result.sessions, result.samples) == (2, 6, 6 * 2 * 300)
    engine = make_engine(normalise_database_url(db_url))
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(select(t.sample).order_by(t.sample.c.participant_id, t.sample.c.seq)))
            assert len(rows) == result.samples
            for r in rows[:600]:
                sample = sample_adapter.validate_json(r.data)
                assert sample["seq"] == r.seq and sample["startMs"] == r.t_ms
                assert headline(sample) == {k: getattr(r, k) for k in headline(sample)}
            # Ratings: scored exactly as the instrument file says.
            registry = load_for(Settings())
            ratings = list(conn.execute(select(t.rating)))
            assert ratings
            for rt in ratings:
                sc = score(registry.get(rt.instrument_id), orjson.loads(rt.answers))
                assert (rt.total, rt.mean) == (sc.total, sc.mean)
                assert orjson.loads(rt.subscales) == sc.subscales_json()
            # The summaries cached at build time equal a fresh computation from the stored rows.
            ids = [i for (i,) in conn.execute(select(t.session.c.id))]
            cached = for_sessions(conn, ids, AnalysisConfig(), Settings())
            for sid in ids:
                fresh = compute(load_session(conn, sid), AnalysisConfig(), conn)
                assert cached[sid].summary == fresh.summary
                assert cached[sid].events == fresh.events
            links = conn.execute(select(func.count()).select_from(t.survey_link)).scalar_one()
            assert links >= len({rt.session_id for rt in ratings})
            email, password = result.logins[0]
            assert check_password(conn, email, password) is not None
            assert check_password(conn, email, password + "x") is None
            clinician = conn.execute(select(t.clinician).where(t.clinician.c.email == email)).one()
            assert clinician.display_name.startswith("Demo clinician")
            codes = [c for (c,) in conn.execute(select(t.client.c.code))]
            assert all(c.startswith("DEMO-") for c in codes)
    finally:
        engine.dispose()
    with pytest.raises(DemoError, match="already holds sessions"):
        build_demo(db_url, 6, clinicians=1, clients_per_clinician=1, sessions=(1, 1), duration_s=(120, 120))


def test_known_effect_recovered_end_to_end_from_telemetry(sqlite_url: str) -> None:
    """Ratings come from the planted episodes; the model sees only what the
    detector finds in the stored samples."""
    # The pure rating model: a planted rupture is an outlier on purpose (the
    # caseload page's attention column is tested on it), not part of the effect.
    model = RatingModel(ruptures_per_clinician=0)
    result = build_demo(sqlite_url, 11, clinicians=1, clients_per_clinician=8, sessions=(6, 9),
                        duration_s=(1200, 1200), model=model)
    plan = plan_caseload(11, clinicians=1, clients_per_clinician=8, sessions=(6, 9), duration_s=(1200, 1200),
                         model=model)
    truth = [s.disrupted_minutes for c in plan[0].clients for s in c.sessions]
    engine = make_engine(normalise_database_url(sqlite_url))
    try:
        with engine.begin() as conn:
            ses = list(conn.execute(select(t.session.c.id, t.session.c.client_id, t.session.c.number)
                                    .order_by(t.session.c.id)))
            ids = [s.id for s in ses]
            quality = for_sessions(conn, ids, AnalysisConfig(), Settings())
            scores = load_scores(conn, ids)
    finally:
        engine.dispose()
    detected = [quality[i].summary.disrupted_minutes for i in ids]
    assert len(detected) == len(truth) == result.sessions
    exact = sum(d == w for d, w in zip(detected, truth, strict=True))
    assert exact >= 0.9 * len(truth), list(zip(detected, truth, strict=True))
    assert all(abs(d - w) <= 2 for d, w in zip(detected, truth, strict=True))
    pts = [Point(s.id, s.client_id, s.number, float(quality[s.id].summary.disrupted_minutes),
                 scores[s.id].values[BOND])
           for s in ses if s.id in scores and BOND in scores[s.id].values]
    m = fit_model(pts, AnalysisConfig())
    assert m.ok, m.message
    w = m.coef("within")
    assert w.ci_low <= result.model.effect <= w.ci_high
    assert w.ci_high < 0


def test_cli_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    db.write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "server.cli", "demo", "--db", str(db)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--force" in r.stderr
    args = ["--force", "--clinicians", "1", "--clients", "1", "--sessions", "2", "2", "--seed", "3"]
    r = subprocess.run([sys.executable, "-m", "server.cli", "demo", "--db", str(db), *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "synthetic" in r.stdout.lower() and "demo.clinician.a@example.org  password: " in r.stdout


@pytest.mark.parametrize("seconds", [(120, 180), (61, 400)])
def test_short_sessions_build_with_whole_episodes_only(tmp_path: Path, seconds: tuple[int, int]) -> None:
    """A session too short for an episode (with its clear first and last
    minute) gets none of that kind instead of one cut off at the end."""
    plan = plan_caseload(3, clinicians=1, clients_per_clinician=6, sessions=(6, 6), duration_s=seconds)
    planned = [s for c in plan for cl in c.clients for s in cl.sessions]
    assert planned and all(60 <= e.start_s < e.end_s <= s.duration_s - 60 for s in planned for e in s.episodes)
    result = build_demo(str(tmp_path / "short.db"), 3, clinicians=1, clients_per_clinician=6, sessions=(6, 6),
                        duration_s=seconds)
    assert result.sessions == len(planned)
