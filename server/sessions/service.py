"""Creating, starting, ending and reading sessions: the store-side logic.

Functions take a Connection so callers choose the transaction; the API
layer (server/api/sessions.py) and the CLI/demo share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Row

from server.sessions.tokens import hash_token, new_token
from server.store import tables as t
from server.timeutil import now_ms

ROLES = ("clinician", "client")


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


@dataclass
class CreatedSession:
    session_id: int
    clinician_id: int
    client_id: int
    number: int
    tokens: dict[str, str]


def ensure_clinician(conn: Connection, email: str, display_name: str = "") -> int:
    email = email.strip().lower()
    found = conn.execute(select(t.clinician.c.id).where(t.clinician.c.email == email)).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            insert(t.clinician)
            .values(email=email, display_name=display_name, created_ms=now_ms())
            .returning(t.clinician.c.id)
        ).scalar_one()
    )


def ensure_client(conn: Connection, clinician_id: int, code: str) -> int:
    found = conn.execute(
        select(t.client.c.id).where(t.client.c.clinician_id == clinician_id, t.client.c.code == code)
    ).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            insert(t.client)
            .values(clinician_id=clinician_id, code=code, created_ms=now_ms())
            .returning(t.client.c.id)
        ).scalar_one()
    )


def create_session(
    conn: Connection,
    *,
    clinician_id: int,
    client_code: str,
    platform: str = "",
    scheduled_ms: int | None = None,
    created_ms: int | None = None,
) -> CreatedSession:
    client_id = ensure_client(conn, clinician_id, client_code)
    number = (
        conn.execute(select(func.coalesce(func.max(t.session.c.number), 0)).where(t.session.c.client_id == client_id))
        .scalar_one()
        + 1
    )
    created = created_ms if created_ms is not None else now_ms()
    session_id = int(
        conn.execute(
            insert(t.session)
            .values(
                clinician_id=clinician_id,
                client_id=client_id,
                number=number,
                platform=platform,
                scheduled_ms=scheduled_ms,
                created_ms=created,
            )
            .returning(t.session.c.id)
        ).scalar_one()
    )
    tokens: dict[str, str] = {}
    for role in ROLES:
        token = new_token()
        tokens[role] = token
        conn.execute(
            insert(t.participant).values(
                session_id=session_id, role=role, token_hash=hash_token(token), created_ms=created
            )
        )
    return CreatedSession(session_id, clinician_id, client_id, number, tokens)


def get_session_row(conn: Connection, session_id: int, clinician_id: int | None = None) -> Row[Any]:
    q = (
        select(
            t.session,
            t.client.c.code.label("client_code"),
            t.clinician.c.email.label("clinician_email"),
        )
        .join(t.client, t.client.c.id == t.session.c.client_id)
        .join(t.clinician, t.clinician.c.id == t.session.c.clinician_id)
        .where(t.session.c.id == session_id)
    )
    if clinician_id is not None:
        q = q.where(t.session.c.clinician_id == clinician_id)
    row = conn.execute(q).first()
    if row is None:
        raise NotFound(f"no session {session_id}")
    return row


def list_session_rows(
    conn: Connection,
    *,
    clinician_id: int | None = None,
    client_code: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Row[Any]]:
    q = (
        select(t.session, t.client.c.code.label("client_code"), t.clinician.c.email.label("clinician_email"))
        .join(t.client, t.client.c.id == t.session.c.client_id)
        .join(t.clinician, t.clinician.c.id == t.session.c.clinician_id)
        .order_by(t.session.c.created_ms.desc(), t.session.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if clinician_id is not None:
        q = q.where(t.session.c.clinician_id == clinician_id)
    if client_code is not None:
        q = q.where(t.client.c.code == client_code)
    return list(conn.execute(q))


def set_session_time(conn: Connection, session_id: int, which: str, when_ms: int | None = None) -> None:
    """Mark a session started or ended; ending an unstarted one starts it too."""
    row = get_session_row(conn, session_id)
    when = when_ms if when_ms is not None else now_ms()
    if which == "start":
        if row.ended_ms is not None:
            raise Conflict("session already ended")
        if row.started_ms is None:
            conn.execute(update(t.session).where(t.session.c.id == session_id).values(started_ms=when))
    elif which == "end":
        if row.ended_ms is not None:
            return
        values: dict[str, int] = {"ended_ms": when}
        if row.started_ms is None:
            values["started_ms"] = when
        conn.execute(update(t.session).where(t.session.c.id == session_id).values(**values))
    else:
        raise ValueError(which)


def participants(conn: Connection, session_id: int) -> dict[str, int]:
    rows = conn.execute(
        select(t.participant.c.role, t.participant.c.id).where(t.participant.c.session_id == session_id)
    )
    return {r.role: r.id for r in rows}


def sample_rows(
    conn: Connection, participant_id: int, *, after_seq: int = -1, limit: int = 100_000
) -> list[Row[Any]]:
    return list(
        conn.execute(
            select(t.sample)
            .where(t.sample.c.participant_id == participant_id, t.sample.c.seq > after_seq)
            .order_by(t.sample.c.seq)
            .limit(limit)
        )
    )


def event_rows(conn: Connection, session_id: int) -> list[Row[Any]]:
    return list(
        conn.execute(
            select(t.event, t.participant.c.role)
            .outerjoin(t.participant, t.participant.c.id == t.event.c.participant_id)
            .where(t.event.c.session_id == session_id)
            .order_by(t.event.c.t_ms, t.event.c.id)
        )
    )


def decode(data: str) -> Any:
    return orjson.loads(data)
