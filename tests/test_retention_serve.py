"""Retention inside a running ``bondline serve`` (one process, and
``--workers 2``): the schedule prunes old sessions once (with workers, in
the supervisor, not in each worker), the
report pages of pruned sessions show what the raw samples gave, and ending
a session through the API writes its roll-up."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from server.analysis.quality import for_session
from server.config import Settings, normalise_database_url
from server.demo.build import build_demo
from server.store import tables as t
from server.store.db import make_engine
from tests.support.fuzz import FUZZ_SEED, SEED_ENV
from tests.support.login import login
from tests.support.server import ServerProcess

DEMO_NOW = 1_790_000_000_000


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_prunes_on_schedule_and_pages_read_rollups(tmp_path: Path, workers: int) -> None:
    print(f"demo caseload seed {FUZZ_SEED} (replay with {SEED_ENV}={FUZZ_SEED})")
    db = tmp_path / "bondline.db"
    result = build_demo(str(db), FUZZ_SEED % 100_000, clinicians=1, clients_per_clinician=2, sessions=(2, 3),
                        duration_s=(300, 300), now_ms=DEMO_NOW)
    settings = Settings(database_url=str(db))
    engine = make_engine(normalise_database_url(str(db)))
    try:
        with engine.begin() as conn:
            ids = [int(i) for (i,) in conn.execute(select(t.session.c.id))]
            expected = {}
            for sid in ids:
                _, q = for_session(conn, sid, settings.analysis, settings)
                # Each event with its attribution (whose connection), which must survive the prune.
                expected[sid] = (q.summary.as_dict(), json.loads(json.dumps(
                    [{**e.as_dict(), "attribution": a.as_dict()} for e, a in zip(q.events, q.attributions,
                                                                                   strict=True)])))
        # 0.05 min: the first run 3 s after start.
        srv = ServerProcess(db_url=str(db), log_path=tmp_path / "server.log", args=["--workers", str(workers)],
                            env={"BONDLINE_RETENTION_INTERVAL_MINUTES": "0.05"}).start()
        try:
            deadline = time.monotonic() + 90
            pruned = 0
            while time.monotonic() < deadline and pruned < len(ids):
                time.sleep(0.5)
                with engine.connect() as conn:
                    pruned = conn.execute(select(func.count()).select_from(t.session_rollup)
                                          .where(t.session_rollup.c.samples_pruned_ms.is_not(None))).scalar_one()
            assert pruned == len(ids), (tmp_path / "server.log").read_text()[-3000:]
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(t.sample)).scalar_one() == 0
            with httpx.Client(timeout=60) as c:
                login(c, srv.base, *result.logins[0])
                for sid in ids:
                    r = c.get(f"{srv.base}/reports/sessions/{sid}.json")
                    assert r.status_code == 200
                    got = r.json()
                    assert (got["summary"], got["events"]) == expected[sid]
                page = c.get(f"{srv.base}/reports/sessions/{ids[0]}")
                assert page.status_code == 200
                assert "data-pruned" in page.text and page.text.count("<svg") >= 2
                assert c.get(srv.base + "/reports/export.csv").status_code == 200
            # The integrator API: raw samples are gone (410, saying so), the minutes are there.
            gone = httpx.get(f"{srv.base}/api/v1/sessions/{ids[0]}/samples", headers=srv.admin_headers, timeout=30)
            assert gone.status_code == 410 and "retention" in gone.json()["detail"]
            minutes = httpx.get(f"{srv.base}/api/v1/sessions/{ids[0]}/minutes", headers=srv.admin_headers,
                                timeout=30)
            assert minutes.status_code == 200
            rows = minutes.json()
            assert {r["role"] for r in rows} == {"client", "clinician"}
            assert len(rows) == 2 * expected[ids[0]][0]["minutes"]
            assert sum(r["samples"] for r in rows) == sum(p["samples"] for p in expected[ids[0]][0]["participants"])
            # Ending a session through the API rolls it up at once.
            created = srv.create_session("C-END")
            r = httpx.post(f"{srv.base}/api/v1/sessions/{created['id']}/end", headers=srv.admin_headers, timeout=30)
            assert r.status_code == 200, r.text
            with engine.connect() as conn:
                row = conn.execute(select(t.session_rollup)
                                   .where(t.session_rollup.c.session_id == created["id"])).one()
                assert row.final is False or row.final == 0
                assert row.samples_pruned_ms is None
        finally:
            srv.stop()
        log = (tmp_path / "server.log").read_text()
        # One process ran it: one line, every session.
        lines = [ln for ln in log.splitlines() if "pruned raw samples of" in ln]
        assert len(lines) == 1 and f"pruned raw samples of {len(ids)} sessions" in lines[0], lines
    finally:
        engine.dispose()
