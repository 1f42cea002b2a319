"""Report speed: a 60-minute two-party session report, and the caseload
analysis over 1,000 sessions. Prints figures; the last line is
``report_ms: N`` (median server time of a session report rendered cold,
i.e. charts not cached).

Server time is measured in-process: the real FastAPI app (same routes,
login, templates, SQLite store) driven through Starlette's TestClient, so
no network or client parsing is counted.

    .venv/bin/python bench/report.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _ms(f) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1000


def _cpu_ms(f) -> float:  # type: ignore[no-untyped-def]
    """CPU time of the whole process (app threads included): what the work
    costs on an idle core, whatever else shares the machine."""
    t = time.process_time()
    f()
    return (time.process_time() - t) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bondline-bench-report-"))
    os.environ.setdefault("BONDLINE_ADMIN_API_KEY", "bench")

    from fastapi.testclient import TestClient
    from sqlalchemy import delete, select

    from server.analysis.quality import for_sessions
    from server.app import create_app
    from server.config import Settings, normalise_database_url
    from server.demo.build import build_demo
    from server.reports.cache import svg_cache
    from server.reports.views import analyse_caseload, caseload_rows
    from server.store import tables as t
    from server.store.db import make_engine
    from tests.support.login import login

    # --- 1. one 60-minute session, two participants: 7,200 samples ---------
    db1 = str(tmp / "session.db")
    r1 = build_demo(db1, 7, clinicians=1, clients_per_clinician=1, sessions=(1, 1), duration_s=(3600, 3600))
    print(f"session: {r1.samples} samples (60 min, 2 participants)")
    app = create_app(Settings(database_url=db1, admin_api_key="bench"))
    with TestClient(app) as client:
        login(client, "http://testserver", *r1.logins[0])
        sid = 1
        first = client.get(f"/reports/sessions/{sid}")
        assert first.status_code == 200 and "<svg" in first.text, first.status_code
        cold, warm, cold_cpu = [], [], []
        for _ in range(args.runs):
            svg_cache.clear()
            cold.append(_ms(lambda: client.get(f"/reports/sessions/{sid}")))
            svg_cache.clear()
            cold_cpu.append(_cpu_ms(lambda: client.get(f"/reports/sessions/{sid}")))
        for _ in range(args.runs):
            warm.append(_ms(lambda: client.get(f"/reports/sessions/{sid}")))
        js = [_ms(lambda: client.get(f"/reports/sessions/{sid}.json")) for _ in range(args.runs)]
    print(f"session report, charts rendered (cold): median {statistics.median(cold):.0f} ms, "
          f"max {max(cold):.0f} ms over {args.runs} runs; CPU {statistics.median(cold_cpu):.0f} ms")
    print(f"session report, charts cached (warm): median {statistics.median(warm):.0f} ms")
    print(f"session JSON (summary and events, no charts): median {statistics.median(js):.0f} ms")

    # --- 2. caseload of ~1,000 sessions --------------------------------------
    db2 = str(tmp / "caseload.db")
    began = time.perf_counter()
    r2 = build_demo(db2, 8, clinicians=1, clients_per_clinician=70, sessions=(12, 17), duration_s=(300, 300))
    print(f"caseload: {r2.sessions} sessions, {r2.clients} clients, {r2.samples} samples "
          f"(5-minute sessions; built in {time.perf_counter() - began:.1f} s)")
    engine = make_engine(normalise_database_url(db2))
    settings = Settings()
    cfg = settings.analysis
    analysis = []
    for _ in range(args.runs):
        def run() -> None:
            with engine.begin() as conn:
                rows = caseload_rows(conn, 1, cfg, settings)
            view = analyse_caseload(rows, "client.wai-sr-client.bond", cfg, int(time.time() * 1000))
            assert view.model.ok, view.model.message
        analysis.append(_ms(run))
    analysis_cpu = _cpu_ms(run)
    with engine.begin() as conn:
        ids = [i for (i,) in conn.execute(select(t.session.c.id))]
        conn.execute(delete(t.session_quality))
    cold_summaries = _ms(lambda: _fill(engine, ids, cfg, settings, for_sessions))
    engine.dispose()
    app2 = create_app(Settings(database_url=db2, admin_api_key="bench"))
    with TestClient(app2) as client:
        login(client, "http://testserver", *r2.logins[0])
        page = [_ms(lambda: client.get("/reports/caseload")) for _ in range(args.runs)]
    print(f"caseload analysis (summaries cached, ratings, mixed model, correlations) over {len(ids)} sessions: "
          f"median {statistics.median(analysis):.0f} ms; CPU {analysis_cpu:.0f} ms")
    print(f"caseload page (analysis plus scatter chart and template): median {statistics.median(page):.0f} ms")
    print(f"first view after the cache is emptied ({len(ids)} summaries from samples): {cold_summaries:.0f} ms")
    shutil.rmtree(tmp, ignore_errors=True)
    with open("/proc/loadavg") as f:
        print(f"load average during the run: {f.read().split()[0]} (2 cores)")
    print(f"report_ms: {statistics.median(cold):.0f}")
    return 0


def _fill(engine, ids, cfg, settings, for_sessions) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        for_sessions(conn, ids, cfg, settings)


if __name__ == "__main__":
    sys.exit(main())
