"""Connection-check links: one per request, tied to a session's client.

A link's token (``blc_...``) is random, shown once and stored as its
SHA-256, like participant tokens. It lets the client's browser run a probe
as that participant (for the connection check only) until it expires.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from server.store import tables as t

CHECK_PREFIX = "blc_"


@dataclass(frozen=True)
class CheckLink:
    token: str
    session_id: int
    participant_id: int
    expires_ms: int


@dataclass(frozen=True)
class CheckOwner:
    session_id: int
    participant_id: int
    role: str
    link_id: int


class LinkError(Exception):
    def __init__(self, message: str, *, expired: bool) -> None:
        super().__init__(message)
        self.expired = expired


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_check_link(conn: Connection, session_id: int, role: str, now: int, days: float) -> CheckLink:
    """A new link for the ``role`` participant of ``session_id``; KeyError if none."""
    pid = conn.execute(
        select(t.participant.c.id).where(t.participant.c.session_id == session_id, t.participant.c.role == role)
    ).scalar()
    if pid is None:
        raise KeyError(f"session {session_id} has no {role} participant")
    token = CHECK_PREFIX + secrets.token_urlsafe(24)
    expires = now + int(days * 86_400_000)
    conn.execute(
        insert(t.probe_check_link).values(
            session_id=session_id, participant_id=pid, token_hash=_hash(token), created_ms=now, expires_ms=expires
        )
    )
    return CheckLink(token=token, session_id=session_id, participant_id=int(pid), expires_ms=expires)


def resolve_check_link(conn: Connection, token: str, now: int) -> CheckOwner:
    if not isinstance(token, str) or not token.startswith(CHECK_PREFIX) or len(token) > 200:
        raise LinkError("unknown check link", expired=False)
    row = conn.execute(
        select(t.probe_check_link, t.participant.c.role)
        .join(t.participant, t.participant.c.id == t.probe_check_link.c.participant_id)
        .where(t.probe_check_link.c.token_hash == _hash(token))
    ).first()
    if row is None:
        raise LinkError("unknown check link", expired=False)
    if now >= row.expires_ms:
        raise LinkError("this check link has expired", expired=True)
    conn.execute(update(t.probe_check_link).where(t.probe_check_link.c.id == row.id).values(last_used_ms=now))
    return CheckOwner(session_id=row.session_id, participant_id=row.participant_id, role=row.role, link_id=row.id)
