"""Write a planned synthetic caseload into its own database.

Rows go in through the same service functions real use goes through
(accounts, sessions, survey links and submissions) and, for telemetry, as
the exact rows ingest would store. Samples are inserted in bulk, a session
per transaction, with SQLite's fsync off: the demo database is regenerable.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine

from server.analysis.quality import compute, store
from server.analysis.series import METRICS, EventRecord, SessionData, from_rows
from server.config import Settings, normalise_database_url
from server.demo.plan import PlannedClinician, PlannedSession, RatingModel, plan_caseload
from server.demo.telemetry import Figures, as_lists, sample_dict, synthesize
from server.ingest.protocol import sample_row
from server.ingest.schema import Sample
from server.sessions.service import create_session, participants
from server.store import tables as t
from server.store.db import make_engine, upgrade
from server.store.telemetry import EventRow, SampleRow, insert_events, insert_samples, mark_started

PLATFORM = "demo (synthetic data)"
_samples_adapter: TypeAdapter[list[Sample]] = TypeAdapter(list[Sample])


class DemoError(Exception):
    pass


@dataclass
class DemoResult:
    url: str
    seed: int
    model: RatingModel
    logins: list[tuple[str, str]] = field(default_factory=list)
    clients: int = 0
    sessions: int = 0
    samples: int = 0
    ratings: int = 0
    seconds: float = 0.0


def sample_rows(participant_id: int, f: Figures, start_ms: int, rng: np.random.Generator,
                verify_every: int) -> list[SampleRow]:
    """Rows for the sample table, built by ingest's own ``sample_row()``;
    every ``verify_every``-th sample (and the first) also goes through
    ingest's pydantic validation."""
    n = f.rtt.shape[0]
    lists = as_lists(f)
    delay = np.asarray(rng.integers(40, 400, size=n), dtype=np.int64)
    t_ms = start_ms + np.arange(n, dtype=np.int64) * 1000
    received = t_ms + 1000 + delay
    if f.late.any():
        # Buffered while disconnected: resent right after the reconnect ends the gap.
        idx = np.arange(n)
        resumed = np.minimum.accumulate(np.where(~f.late, idx, n)[::-1])[::-1]
        received = np.where(f.late, start_ms + resumed * 1000 + delay, received)
    t_list, rx_list = t_ms.tolist(), received.tolist()
    rows: list[SampleRow] = []
    checks: list[dict[str, Any]] = []
    for i in range(n):
        d = sample_dict(lists, i, i, t_list[i])
        rows.append(sample_row(participant_id, d, rx_list[i]))
        if verify_every and i % verify_every == 0:
            checks.append(d)
    if checks:
        try:
            _samples_adapter.validate_python(checks)
        except ValidationError as e:
            raise DemoError(f"a demo sample does not pass ingest validation: {e}") from None
    return rows


def _events(session_id: int, pids: dict[str, int], s: PlannedSession, start_ms: int) -> list[EventRow]:
    """Server-observed collector connects and disconnects, as ingest records them."""
    out: list[EventRow] = []
    end_ms = start_ms + s.duration_s * 1000

    def ev(role: str, kind: str, at: int, data: dict[str, Any]) -> None:
        out.append(EventRow(session_id, pids[role], kind, "server", at, None, None, None,
                            orjson.dumps(data).decode()))

    for role in pids:
        ev(role, "collector.connect", start_ms + 300, {"lastSeq": None, "channel": "websocket"})
        for e in s.episodes:
            if e.kind == "reconnect" and e.side == role:
                ev(role, "collector.disconnect", start_ms + e.start_s * 1000 + 2000, {"code": 1006})
                ev(role, "collector.connect", start_ms + e.end_s * 1000 + 500,
                   {"lastSeq": e.start_s - 1, "channel": "websocket"})
        ev(role, "collector.disconnect", end_ms + 800, {"code": 1000})
    return out


def _session_data(sid: int, s: PlannedSession, pids: dict[str, int], written: dict[str, list[SampleRow]],
                  events: list[EventRow]) -> SessionData:
    series = [from_rows(pids[role], role, [(r.t_ms, r.interval_ms, *(getattr(r, m) for m in METRICS)) for r in rows])
              for role, rows in written.items()]
    roles = {pid: role for role, pid in pids.items()}
    recs = [EventRecord(e.participant_id, roles.get(e.participant_id) if e.participant_id else None, e.kind,
                        e.origin, e.t_ms, e.end_ms, orjson.loads(e.data)) for e in events]
    all_rows = [r for rows in written.values() for r in rows]
    return SessionData(sid, s.start_ms, s.start_ms + s.duration_s * 1000, series, recs, len(all_rows),
                       max((r.received_ms for r in all_rows), default=0))


def _rate(conn: Connection, session_id: int, clinician_id: int, s: PlannedSession, settings: Settings,
          registry: Any) -> int:
    """Store the planned answers through the survey link, as a real submit does."""
    from server.surveys.instruments import Respondent
    from server.surveys.links import LinkRow, create_links
    from server.surveys.ratings import store_submission

    by_resp: dict[str, dict[str, dict[str, int | None]]] = {}
    for (respondent, instrument), given in s.answers.items():
        by_resp.setdefault(respondent, {})[instrument] = given
    created = s.start_ms - 3_600_000
    selection: dict[Any, list[str]] = {"client": ["wai-sr-client", "bondline-telehealth"],
                                       "therapist": ["wai-sr-therapist"]}
    create_links(conn, session_id, selection, created)
    stored = 0
    for respondent, answers in by_resp.items():
        who: Respondent = "client" if respondent == "client" else "therapist"
        link_id = conn.execute(
            select(t.survey_link.c.id).where(t.survey_link.c.session_id == session_id,
                                             t.survey_link.c.respondent == respondent)
        ).scalar_one()
        link = LinkRow(id=int(link_id), session_id=session_id, clinician_id=clinician_id, respondent=who,
                       instruments=list(answers), used_ms=None, expires_ms=s.submitted_ms + 1)
        stored += len(store_submission(conn, registry, link, answers, s.submitted_ms))
    return stored


def _empty(engine: Engine) -> bool:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.session)).scalar_one()) == 0


def build_demo(
    url: str,
    seed: int = 1,
    *,
    clinicians: int = 3,
    clients_per_clinician: int = 4,
    sessions: tuple[int, int] = (6, 20),
    duration_s: tuple[int, int] = (45 * 60, 50 * 60),
    model: RatingModel | None = None,
    verify_every: int = 50,
    progress: Callable[[str], None] | None = None,
    settings: Settings | None = None,
    now_ms: int | None = None,
) -> DemoResult:
    """Generate the demo caseload into the (empty) database at ``url``."""
    from server.accounts.service import create_user
    from server.surveys.registry import load_for

    began = time.perf_counter()
    model = model or RatingModel()
    sa_url = normalise_database_url(url)
    upgrade(sa_url)
    engine = make_engine(sa_url, sqlite_synchronous="OFF")
    settings = settings or Settings()
    registry = load_for(settings)
    result = DemoResult(url=sa_url, seed=seed, model=model)
    cfg = settings.analysis
    try:
        if not _empty(engine):
            raise DemoError(f"{url} already holds sessions; the demo only writes into an empty database")
        plan: list[PlannedClinician] = plan_caseload(
            seed, clinicians=clinicians, clients_per_clinician=clients_per_clinician, sessions=sessions,
            duration_s=duration_s, model=model,
            now_ms=int(time.time() * 1000) if now_ms is None else now_ms,
        )
        rng = np.random.default_rng(seed + 1_000_003)
        for pc in plan:
            password = secrets.token_urlsafe(9)
            with engine.begin() as conn:
                cid = create_user(conn, pc.email, password, display_name=pc.display_name)
            result.logins.append((pc.email, password))
            for client in pc.clients:
                result.clients += 1
                base_rtt = float(rng.uniform(25, 110))
                for s in client.sessions:
                    with engine.begin() as conn:
                        created_ms = s.start_ms - 86_400_000
                        created = create_session(conn, clinician_id=cid, client_code=client.code, platform=PLATFORM,
                                                 scheduled_ms=s.start_ms, created_ms=created_ms)
                        sid = created.session_id
                        end = s.start_ms + s.duration_s * 1000
                        mark_started(conn, [sid], s.start_ms)
                        conn.execute(update(t.session).where(t.session.c.id == sid).values(ended_ms=end))
                        pids = participants(conn, sid)
                        figs = synthesize(rng, s.duration_s, s.episodes, base_rtt)
                        written: dict[str, list[SampleRow]] = {}
                        for role, pid in sorted(pids.items()):
                            written[role] = sample_rows(pid, figs[role], s.start_ms, rng, verify_every)
                            insert_samples(conn, written[role])
                            result.samples += len(written[role])
                        events = _events(sid, pids, s, s.start_ms)
                        insert_events(conn, events)
                        result.ratings += _rate(conn, sid, cid, s, settings, registry)
                        # Summarise from the rows just written (what load_session would read back).
                        data = _session_data(sid, s, pids, written, events)
                        store(conn, data, compute(data, cfg, conn), cfg, settings, created_ms, end)
                    result.sessions += 1
                if progress:
                    progress(f"  {pc.display_name}: client {client.code}, {len(client.sessions)} sessions")
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - began
    return result
