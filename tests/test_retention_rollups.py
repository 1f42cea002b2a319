"""Roll-ups and pruning over the demo caseload, on both backends.

The demo caseload is drawn from a seed per run (printed; replay with
BONDLINE_FUZZ_SEED=N): its planted disruption episodes are the known
truth. Every report figure read back after the raw samples are deleted
must be the one the raw samples gave; the per-minute roll-up must hold the
median, 95th percentile and count of each minute's raw samples.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from server.analysis import rollup
from server.analysis.quality import for_session, for_sessions
from server.analysis.series import METRICS, load_session
from server.analysis.summary import MINUTE_MS
from server.config import Settings, normalise_database_url
from server.demo.build import build_demo
from server.reports import export
from server.reports.views import analyse_caseload, caseload_rows, course_view
from server.retention.prune import DAY_MS, prune
from server.retention.rollups import roll_up, sessions_due, sweep
from server.sessions.service import create_session, ensure_clinician, participants, set_session_time
from server.store import tables as t
from server.store.db import make_engine, upgrade
from server.store.retention import drop_samples
from server.store.telemetry import SampleRow, insert_samples
from tests.support.fuzz import FUZZ_SEED, SEED_ENV

# The demo's planned "now": every session is months older than that at the
# wall clock, so all are past the 30-day default.
DEMO_NOW = 1_790_000_000_000


def _views(conn: Connection, settings: Settings) -> dict[str, object]:
    """Everything a clinician reads, per clinician: caseload rows, model,
    export (CSV and JSON), each client's course, each session's report."""
    cfg = settings.analysis
    out: dict[str, object] = {}
    for (cid,) in conn.execute(select(t.clinician.c.id).order_by(t.clinician.c.id)):
        rows = caseload_rows(conn, cid, cfg, settings)
        view = analyse_caseload(rows, "client.wai-sr-client.bond", cfg, DEMO_NOW)
        out[f"csv{cid}"] = export.to_csv(rows)
        out[f"json{cid}"] = export.to_json(view, 0, {})
        out[f"model{cid}"] = view.model
        out[f"attention{cid}"] = view.clients
        for (client_id,) in conn.execute(select(t.client.c.id).where(t.client.c.clinician_id == cid)):
            out[f"course{client_id}"] = course_view(conn, cid, client_id, cfg, settings)[2]
    for (sid,) in conn.execute(select(t.session.c.id)):
        _, q = for_session(conn, sid, cfg, settings)
        out[f"session{sid}"] = (q.summary, q.events, q.attributions)  # whose connection survives the prune
    return out


def _raw_minutes(conn: Connection) -> dict[tuple[int, int], dict[str, float | int | None]]:
    """Ground truth for the minute table, from the raw samples."""
    out: dict[tuple[int, int], dict[str, float | int | None]] = {}
    for (sid,) in conn.execute(select(t.session.c.id)):
        data = load_session(conn, sid)
        t0 = data.t0_ms
        assert t0 is not None
        for p in data.participants:
            minute = (p.t_ms - t0) // MINUTE_MS
            for m in np.unique(minute).tolist():
                sel = minute == m
                rec: dict[str, float | int | None] = {"samples": int(sel.sum())}
                for name in METRICS:
                    v = p.col(name)[sel]
                    v = v[~np.isnan(v)]
                    rec[f"{name}_n"] = int(v.size)
                    rec[f"{name}_median"] = float(np.median(v)) if v.size else None
                    rec[f"{name}_p95"] = float(np.percentile(v, 95)) if v.size else None
                rec["no_media_ms"] = int(p.interval_ms[sel & np.isnan(p.col("loss_in"))].sum())
                out[(p.participant_id, int(m))] = rec
    return out


def _count(conn: Connection, table: object) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture
def demo(db_url: str) -> tuple[Engine, Settings]:
    print(f"demo caseload seed {FUZZ_SEED} (replay with {SEED_ENV}={FUZZ_SEED})")
    build_demo(db_url, FUZZ_SEED % 100_000, clinicians=1, clients_per_clinician=5, sessions=(6, 7),
               duration_s=(300, 420), now_ms=DEMO_NOW)
    settings = Settings(database_url=db_url)
    engine = make_engine(normalise_database_url(db_url))
    return engine, settings


def test_reports_read_from_rollups_give_what_raw_samples_gave(demo: tuple[Engine, Settings]) -> None:
    engine, settings = demo
    try:
        with engine.begin() as conn:
            before = _views(conn, settings)
            truth = _raw_minutes(conn)
            sessions = _count(conn, t.session)
            # Enough sessions and clients for the caseload model to be fitted, so its figures are compared too.
            assert all(getattr(v, "ok", True) for k, v in before.items() if k.startswith("model")), before
            samples = _count(conn, t.sample)
        # Someone looks at a report with other thresholds before the prune:
        # the cache is keyed by them, the roll-up is made with the settings'.
        report = prune(engine, settings)
        assert (report.sessions_pruned, report.samples_deleted) == (sessions, samples)
        with engine.begin() as conn:
            assert _count(conn, t.sample) == 0
            # The cached summaries go too: the roll-up alone must carry the reports.
            conn.execute(t.session_quality.delete())
            after = _views(conn, settings)
            for key, value in before.items():
                assert after[key] == value, key
            # The minute table: each minute's median, p95 and count as the raw samples had them.
            cols = [c for c in t.minute_rollup.c if c.name.endswith(("_median", "_p95", "_n"))]
            stored = {
                (r.participant_id, r.minute): r for r in conn.execute(select(t.minute_rollup))
            }
            assert {k for k, r in stored.items() if r.samples} == set(truth)
            for key, rec in truth.items():
                row = stored[key]
                assert row.samples == rec["samples"] and row.no_media_ms == rec["no_media_ms"]
                for c in cols:
                    want, got = rec[c.name], getattr(row, c.name)
                    assert (got is None) == (want is None), (key, c.name)
                    if want is not None:
                        # Stored as float8 on both backends: exact, up to the last bit of a p95's interpolation.
                        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (key, c.name)
            # Disrupted minutes: the summary's count is the minutes the stored events touch.
            for (sid,) in conn.execute(select(t.session.c.id)):
                q = for_sessions(conn, [sid], settings.analysis, settings)[sid]
                touched = {m for (m,) in conn.execute(
                    select(t.minute_rollup.c.minute).where(t.minute_rollup.c.session_id == sid,
                                                           t.minute_rollup.c.disrupted.is_(True)))}
                assert len(touched) == q.summary.disrupted_minutes
                evidence = list(conn.execute(select(t.event_rollup.c.kind, t.event_rollup.c.evidence)
                                             .where(t.event_rollup.c.session_id == sid)))
                assert len(evidence) == len(q.events)
                assert all('"config_hash"' in ev for _, ev in evidence)
        # Idempotent: a second run finds nothing to do and changes nothing.
        again = prune(engine, settings)
        assert (again.rolled_up, again.sessions_pruned, again.samples_deleted) == (0, 0, 0)
        with engine.begin() as conn:
            assert _views(conn, settings) == before
    finally:
        engine.dispose()


def test_only_sessions_older_than_retention_lose_samples(demo: tuple[Engine, Settings]) -> None:
    engine, settings = demo
    try:
        with engine.connect() as conn:
            ends = sorted(int(e) for (e,) in conn.execute(select(t.session.c.ended_ms)))
        # A "now" that puts the cut-off between the middle two sessions' ends.
        mid = (ends[len(ends) // 2 - 1] + ends[len(ends) // 2]) // 2
        now = mid + 30 * DAY_MS
        report = prune(engine, settings, now_ms=now)
        assert report.sessions_pruned == len(ends) // 2
        with engine.connect() as conn:
            rows = conn.execute(
                select(t.session.c.id, t.session.c.ended_ms, t.session_rollup.c.samples_pruned_ms)
                .join(t.session_rollup, t.session_rollup.c.session_id == t.session.c.id)
            ).all()
            for sid, ended, pruned in rows:
                n = conn.execute(select(func.count()).select_from(t.sample).join(t.participant)
                                 .where(t.participant.c.session_id == sid)).scalar_one()
                assert (pruned is not None) == (ended < mid)
                assert (n == 0) == (ended < mid)
    finally:
        engine.dispose()


def _sample(pid: int, seq: int, t_ms: int, rx: int, loss: float | None) -> SampleRow:
    return SampleRow(pid, seq, t_ms, 1000, "test", rx, 80.0, 5.0, loss, loss, loss, 900.0, 900.0, 25.0, 0.0, 0.0,
                     0.0, None, None, None, None, "{}")


def test_roll_up_at_end_idle_sweep_and_late_samples(db_url: str) -> None:
    url = normalise_database_url(db_url)
    upgrade(url)
    settings = Settings(database_url=db_url)
    engine = make_engine(url)
    t0 = 1_780_000_000_000
    idle_ms = int(settings.rollup_idle_hours * 3_600_000)
    try:
        with engine.begin() as conn:
            cid = ensure_clinician(conn, "c@example.org")
            ended = create_session(conn, clinician_id=cid, client_code="A", created_ms=t0).session_id
            idle = create_session(conn, clinician_id=cid, client_code="B", created_ms=t0).session_id
            live = create_session(conn, clinician_id=cid, client_code="C", created_ms=t0).session_id
            for sid in (ended, idle, live):
                pid = participants(conn, sid)["client"]
                # 90 s; seconds 30-39 received no media (null loss).
                insert_samples(conn, [_sample(pid, i, t0 + i * 1000, t0 + i * 1000 + 1500,
                                              None if 30 <= i < 40 else 0.0) for i in range(90)])
            set_session_time(conn, ended, "end", t0 + idle_ms)  # ended late: its tokens still live at "now"
            # The live one keeps receiving.
            pid = participants(conn, live)["client"]
            insert_samples(conn, [_sample(pid, 1000, t0 + idle_ms, t0 + idle_ms + 500, 0.0)])
        now = t0 + idle_ms + 120_000
        with engine.connect() as conn:
            assert sessions_due(conn, settings, now) == sorted([ended, idle])
        assert sweep(engine, settings, now) == 2
        assert sweep(engine, settings, now) == 0  # nothing changed: nothing rewritten
        with engine.begin() as conn:
            pid = participants(conn, ended)["client"]
            no_media = dict(conn.execute(select(t.minute_rollup.c.minute, t.minute_rollup.c.no_media_ms)
                                         .where(t.minute_rollup.c.participant_id == pid)).all())
            assert no_media == {0: 10_000, 1: 0}
            # A late sample (a collector's buffered resend) before the tokens expire: rebuilt.
            insert_samples(conn, [_sample(pid, 90, t0 + 90_000, now + 1000, 0.0)])
        assert sweep(engine, settings, now + 2000) == 1
        with engine.begin() as conn:
            count = conn.execute(select(t.session_rollup.c.sample_count)
                                 .where(t.session_rollup.c.session_id == ended)).scalar_one()
            assert count == 91
            # Not final yet (tokens live 6 h after the end): not prunable however old.
            assert prune(engine, settings, now_ms=now + 2000, days=1e-6).sessions_pruned == 0
        # Once the tokens have expired the roll-up is made final and the samples may go.
        later = t0 + int(settings.token_max_age_days * DAY_MS) + 1
        report = prune(engine, settings, now_ms=later, days=1e-6)
        assert report.sessions_pruned == 3
        with engine.begin() as conn:
            # A pruned session's roll-up is never rebuilt from nothing.
            assert roll_up(conn, ended, settings, later + 1) is False
            with pytest.raises(ValueError, match="pruned"):
                rollup.write(conn, rollup.Rollup({"session_id": ended}, [], []))
        # Samples with no roll-up standing in for them are never deleted.
        with engine.begin() as conn:
            pid = participants(conn, ended)["client"]
            # Through the store's one way in, which on PostgreSQL makes the
            # participant's week again if pruning dropped it.
            insert_samples(conn, [_sample(pid, 5000, t0, t0, 0.0)])
            conn.execute(t.session_rollup.delete().where(t.session_rollup.c.session_id == ended))
        with pytest.raises(RuntimeError, match="no roll-up"), engine.begin() as conn:
            drop_samples(conn, ended, later)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(t.sample)
                                .where(t.sample.c.participant_id == pid)).scalar_one() == 1
    finally:
        engine.dispose()


def test_prune_refuses_a_bad_period_and_changes_nothing(sqlite_url: str) -> None:
    import subprocess
    import sys

    from tests.support.server import isolated_env

    upgrade(normalise_database_url(sqlite_url))
    for bad in ("0",):
        out = subprocess.run([sys.executable, "-m", "server.cli", "db", "prune", "--db", sqlite_url, "--days", bad],
                             env=isolated_env(), capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "--days" in out.stderr, out.stderr
    out = subprocess.run([sys.executable, "-m", "server.cli", "db", "prune", "--db", sqlite_url],
                         env=isolated_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "deleted the raw samples of 0 sessions" in out.stdout
