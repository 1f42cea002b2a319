"""The group-commit writer isolates a request the store (or its driver)
cannot take: the requests grouped with it and those after it are stored,
on both backends (issue 18: a store error about one message never blocks
the messages after it)."""

from __future__ import annotations

import asyncio

from server.config import normalise_database_url
from server.ingest.headline import headline_row
from server.ingest.writer import IngestWriter, WriteResult
from server.sessions import service
from server.store.db import make_engine, upgrade
from server.store.telemetry import SampleRow
from tests.support.samples import sample


def _row(pid: int, seq: int, data: str | None = None) -> SampleRow:
    s = sample(seq)
    return SampleRow(pid, seq, s["startMs"], 1000, "python", s["startMs"], *headline_row(s),
                     data if data is not None else '{"ok": true}')


def test_one_unstorable_request_fails_alone(db_url: str) -> None:
    url = normalise_database_url(db_url)
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cid = service.ensure_clinician(conn, "w@example.org")
            created = service.create_session(conn, clinician_id=cid, client_code="C-W")
            pid = int(service.participants(conn, created.session_id)["client"])

        async def go() -> tuple[list[WriteResult | BaseException], WriteResult]:
            writer = IngestWriter(engine)
            await writer.start()
            try:
                # A lone surrogate: no UTF-8 driver can send it (not a database error at all).
                bad = _row(pid, 1, '{"x": "\ud800"}')
                grouped = await asyncio.wait_for(asyncio.gather(
                    writer.write([_row(pid, 0)], []), writer.write([bad], []), writer.write([_row(pid, 2)], []),
                    return_exceptions=True), 60)
                after = await asyncio.wait_for(writer.write([_row(pid, 3)], []), 60)
                return grouped, after
            finally:
                await writer.stop()

        grouped, after = asyncio.run(go())
        assert isinstance(grouped[1], BaseException), grouped
        assert [r.stored for r in grouped if isinstance(r, WriteResult)] == [1, 1]
        assert after.stored == 1
        with engine.connect() as conn:
            assert [r.seq for r in service.sample_rows(conn, pid, after_seq=-1, limit=10)] == [0, 2, 3]
    finally:
        engine.dispose()
