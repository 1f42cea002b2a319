"""Participant ingest tokens: random, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from server.config import Settings
from server.store import tables as t

TOKEN_PREFIX = "blp_"


def new_token() -> str:
    # 32 random bytes: guessing is hopeless, so a fast hash is enough to
    # keep a database leak from exposing live tokens.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenOwner:
    participant_id: int
    session_id: int
    role: str


class TokenError(Exception):
    """Raised for an unusable token; ``expired`` separates the two cases."""

    def __init__(self, message: str, *, expired: bool) -> None:
        super().__init__(message)
        self.expired = expired


def token_expiry_ms(settings: Settings, created_ms: int, ended_ms: int | None) -> int:
    absolute = created_ms + int(settings.token_max_age_days * 86_400_000)
    if ended_ms is None:
        return absolute
    return min(absolute, ended_ms + int(settings.token_ttl_hours * 3_600_000))


def resolve_token(conn: Connection, settings: Settings, token: str, now: int) -> TokenOwner:
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise TokenError("unknown token", expired=False)
    row = conn.execute(
        select(t.participant.c.id, t.participant.c.session_id, t.participant.c.role, t.session.c.created_ms,
               t.session.c.ended_ms)
        .join(t.session, t.session.c.id == t.participant.c.session_id)
        .where(t.participant.c.token_hash == hash_token(token))
    ).first()
    if row is None:
        raise TokenError("unknown token", expired=False)
    if now >= token_expiry_ms(settings, row.created_ms, row.ended_ms):
        raise TokenError("token expired: the session ended", expired=True)
    return TokenOwner(participant_id=row.id, session_id=row.session_id, role=row.role)
