"""Stored ratings: writing a submitted survey once, and reading ratings back.

``ratings_for_sessions`` is the interface the reports read (see
/work/briefs/interfaces.md): one RatingRecord per (session, respondent,
instrument) with answers and subscales decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from server.store import tables as t
from server.surveys.instruments import Registry
from server.surveys.links import LinkRow
from server.surveys.scoring import score


@dataclass(frozen=True)
class RatingRecord:
    id: int
    session_id: int
    respondent: str
    instrument_id: str
    instrument_version: str
    answers: dict[str, int | None]
    total: float | None
    mean: float | None
    subscales: dict[str, dict[str, float | None]]
    submitted_ms: int


class AlreadyAnswered(Exception):
    """The link was used already (a double click, a retry, a replay)."""


def store_submission(
    conn: Connection,
    registry: Registry,
    link: LinkRow,
    answers: Mapping[str, Mapping[str, int | None]],
    now: int,
) -> list[int]:
    """Mark the link used and store one scored rating per instrument, in the
    caller's transaction. Claiming the link first is what makes a second
    submit lose: its UPDATE finds ``used_ms`` set (on PostgreSQL it waits for
    the first transaction's row lock, on SQLite for its write lock). The
    unique key on rating backs this up; the caller treats its violation as
    AlreadyAnswered too."""
    claimed = conn.execute(
        update(t.survey_link)
        .where(t.survey_link.c.id == link.id, t.survey_link.c.used_ms.is_(None))
        .values(used_ms=now)
    )
    if claimed.rowcount != 1:
        raise AlreadyAnswered()
    ids: list[int] = []
    for instrument_id in link.instruments:
        inst = registry.get(instrument_id)
        given = dict(answers[instrument_id])
        result = score(inst, given)
        full = {it.id: given.get(it.id) for it in inst.items}
        ids.append(
            int(
                conn.execute(
                    insert(t.rating)
                    .values(
                        session_id=link.session_id,
                        respondent=link.respondent,
                        instrument_id=inst.id,
                        instrument_version=inst.version,
                        answers=orjson.dumps(full).decode(),
                        total=result.total,
                        mean=result.mean,
                        subscales=orjson.dumps(result.subscales_json()).decode(),
                        submitted_ms=now,
                    )
                    .returning(t.rating.c.id)
                ).scalar_one()
            )
        )
    return ids


def correct_submission(
    conn: Connection,
    registry: Registry,
    link: LinkRow,
    answers: Mapping[str, Mapping[str, int | None]],
    now: int,
) -> list[int]:
    """Replace the answers of a used link's ratings with corrected ones, scored
    again, in the caller's transaction (the clinician's own rating: a slip of
    the finger should not stand for good). Each rating keeps its id; its time
    becomes the correction's. An instrument never answered is stored new."""
    ids: list[int] = []
    for instrument_id in link.instruments:
        inst = registry.get(instrument_id)
        given = dict(answers[instrument_id])
        result = score(inst, given)
        values = dict(
            instrument_version=inst.version,
            answers=orjson.dumps({it.id: given.get(it.id) for it in inst.items}).decode(),
            total=result.total, mean=result.mean, subscales=orjson.dumps(result.subscales_json()).decode(),
            submitted_ms=now,
        )
        key = (t.rating.c.session_id == link.session_id, t.rating.c.respondent == link.respondent,
               t.rating.c.instrument_id == inst.id)
        row = conn.execute(update(t.rating).where(*key).values(**values).returning(t.rating.c.id)).first()
        if row is None:
            new = insert(t.rating).values(session_id=link.session_id, respondent=link.respondent,
                                          instrument_id=inst.id, **values)
            row = conn.execute(new.returning(t.rating.c.id)).first()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def stored_answers(conn: Connection, link: LinkRow) -> dict[str, dict[str, int | None]]:
    """The answers stored for a link's instruments (to show a sent form again)."""
    out: dict[str, dict[str, int | None]] = {}
    for r in ratings_for_sessions(conn, [link.session_id])[link.session_id]:
        if r.respondent == link.respondent and r.instrument_id in link.instruments:
            out[r.instrument_id] = dict(r.answers)
    return out


def _record(r: Any) -> RatingRecord:
    return RatingRecord(
        id=r.id,
        session_id=r.session_id,
        respondent=r.respondent,
        instrument_id=r.instrument_id,
        instrument_version=r.instrument_version,
        answers=orjson.loads(r.answers),
        total=r.total,
        mean=r.mean,
        subscales=orjson.loads(r.subscales),
        submitted_ms=r.submitted_ms,
    )


def ratings_for_sessions(conn: Connection, session_ids: list[int]) -> dict[int, list[RatingRecord]]:
    """Ratings of each listed session (sessions without any map to [])."""
    out: dict[int, list[RatingRecord]] = {sid: [] for sid in session_ids}
    ids = sorted(set(session_ids))
    # Chunked so a long caseload stays under every backend's parameter limit.
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(t.rating)
            .where(t.rating.c.session_id.in_(ids[start:start + 500]))
            .order_by(t.rating.c.session_id, t.rating.c.respondent, t.rating.c.instrument_id)
        )
        for r in rows:
            out[r.session_id].append(_record(r))
    return out


def rating_by_id(conn: Connection, rating_id: int) -> RatingRecord | None:
    r = conn.execute(select(t.rating).where(t.rating.c.id == rating_id)).first()
    return None if r is None else _record(r)
