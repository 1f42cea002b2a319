"""The one store-writing interface (server/store/telemetry.py), on both backends."""

from __future__ import annotations

from sqlalchemy import select

from server.config import normalise_database_url
from server.ingest.headline import headline
from server.ingest.protocol import event_row, sample_row
from server.sessions.service import create_session, ensure_clinician, participants
from server.sessions.tokens import TokenOwner
from server.store import tables as t
from server.store.db import make_engine, upgrade
from server.store.telemetry import (
    EVENT_COLUMNS,
    HEADLINE_COLUMNS,
    SAMPLE_COLUMNS,
    insert_events,
    insert_samples,
    mark_started,
)


def test_row_fields_are_the_table_columns_in_order() -> None:
    assert SAMPLE_COLUMNS == tuple(c.name for c in t.sample.columns)
    assert EVENT_COLUMNS == tuple(c.name for c in t.event.columns if c.name != "id")
    sample = {"seq": 0, "startMs": 1_700_000_000_000, "intervalMs": 1000, "source": "browser",
              "streams": [{"kind": "audio", "direction": "inbound", "packetsReceived": 49, "packetsLost": 1}]}
    assert tuple(headline(sample)) == HEADLINE_COLUMNS


def test_inserts_are_exactly_once_and_start_is_marked_once(db_url: str) -> None:
    url = normalise_database_url(db_url)
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cid = ensure_clinician(conn, "rows@example.org")
            sid = create_session(conn, clinician_id=cid, client_code="C-ROWS", platform="test").session_id
            pid = participants(conn, sid)["client"]
        owner = TokenOwner(participant_id=pid, session_id=sid, role="client")
        base = 1_700_000_000_000
        samples = [sample_row(pid, {"seq": i, "startMs": base + i * 1000, "intervalMs": 1000, "source": "python",
                                    "streams": [{"kind": "video", "direction": "inbound", "packetsReceived": 90,
                                                 "packetsLost": i}]}, base + 5000) for i in range(1200)]
        events = [event_row(owner, {"key": f"k{i}", "kind": "ice.state", "tMs": base + i, "state": "connected"})
                  for i in range(3)]
        with engine.begin() as conn:
            assert insert_samples(conn, samples) == 1200
            assert insert_events(conn, events) == 3
            mark_started(conn, [sid], base)
        with engine.begin() as conn:
            assert insert_samples(conn, samples[1000:] + samples[:10]) == 0
            assert insert_events(conn, events) == 0
            mark_started(conn, [sid], base + 99_000)
        with engine.connect() as conn:
            rows = list(conn.execute(select(t.sample).where(t.sample.c.participant_id == pid)
                                     .order_by(t.sample.c.seq)))
            assert len(rows) == 1200
            assert rows[7].video_loss_in == 7 / 97 and rows[7].t_ms == base + 7000
            assert conn.execute(select(t.session.c.started_ms).where(t.session.c.id == sid)).scalar_one() == base
            stored = list(conn.execute(select(t.event.c.client_key, t.event.c.origin)
                                       .where(t.event.c.participant_id == pid)))
            assert sorted(stored) == [("k0", "collector"), ("k1", "collector"), ("k2", "collector")]
    finally:
        engine.dispose()
