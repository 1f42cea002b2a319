"""Survey links: random, single-use, expiring, carrying no names.

A link is ``<base>/survey/<token>``; the store keeps only the token's
SHA-256. Expiry (docs/surveys.md): a link works until
``survey_link_ttl_hours`` after its session ends; a session that never ends
stops its links ``survey_link_max_age_days`` after it was created (or
scheduled, if later).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from server.config import Settings
from server.sessions.tokens import hash_token
from server.store import tables as t
from server.surveys.instruments import RESPONDENTS, Registry, Respondent

TOKEN_PREFIX = "bls_"
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
Selection = dict[Respondent, list[str]]


class SurveyLinkOut(BaseModel):
    respondent: Respondent
    url: str = Field(description="Survey link; single-use, shown only in this response.")


class LinkStatus(Enum):
    OK = "ok"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class LinkRow:
    id: int
    session_id: int
    clinician_id: int
    respondent: Respondent
    instruments: list[str]
    used_ms: int | None
    expires_ms: int


def new_token() -> str:
    # 32 random bytes, as for ingest tokens: unguessable, so a fast hash suffices.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def well_formed(token: str) -> bool:
    body = token[len(TOKEN_PREFIX):]
    return token.startswith(TOKEN_PREFIX) and 20 <= len(body) <= 100 and set(body) <= TOKEN_CHARS


def survey_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/survey/{token}"


def expiry_ms(settings: Settings, *, created_ms: int, scheduled_ms: int | None, ended_ms: int | None) -> int:
    if ended_ms is not None:
        return ended_ms + int(settings.survey_link_ttl_hours * 3_600_000)
    anchor = max(created_ms, scheduled_ms or 0)
    return anchor + int(settings.survey_link_max_age_days * 86_400_000)


def resolve_selection(registry: Registry, chosen: Selection | None) -> Selection:
    """The instruments each respondent is asked for: the session's choice
    where it made one, else the server's defaults. InstrumentError if bad."""
    out: Selection = {}
    for respondent in RESPONDENTS:
        if chosen is not None and respondent in chosen:
            out[respondent] = registry.check_selection(respondent, list(chosen[respondent]))
        else:
            out[respondent] = list(registry.defaults.get(respondent, []))
    return out


def create_links(conn: Connection, session_id: int, selection: Selection, created_ms: int) -> dict[Respondent, str]:
    """Insert one link per respondent with instruments; returns the tokens."""
    tokens: dict[Respondent, str] = {}
    for respondent, ids in selection.items():
        if not ids:
            continue
        token = new_token()
        conn.execute(
            insert(t.survey_link).values(
                session_id=session_id,
                respondent=respondent,
                token_hash=hash_token(token),
                instruments=orjson.dumps(ids).decode(),
                created_ms=created_ms,
            )
        )
        tokens[respondent] = token
    return tokens


def _select() -> Any:
    return select(
        t.survey_link.c.id,
        t.survey_link.c.session_id,
        t.survey_link.c.respondent,
        t.survey_link.c.instruments,
        t.survey_link.c.used_ms,
        t.session.c.clinician_id,
        t.session.c.created_ms,
        t.session.c.scheduled_ms,
        t.session.c.ended_ms,
    ).join(t.session, t.session.c.id == t.survey_link.c.session_id)


def _row(settings: Settings, r: Any) -> LinkRow:
    return LinkRow(
        id=r.id,
        session_id=r.session_id,
        clinician_id=r.clinician_id,
        respondent=r.respondent,
        instruments=list(orjson.loads(r.instruments)),
        used_ms=r.used_ms,
        expires_ms=expiry_ms(settings, created_ms=r.created_ms, scheduled_ms=r.scheduled_ms, ended_ms=r.ended_ms),
    )


def find_by_token(conn: Connection, settings: Settings, token: str) -> LinkRow | None:
    if not well_formed(token):
        return None
    r = conn.execute(_select().where(t.survey_link.c.token_hash == hash_token(token))).first()
    return None if r is None else _row(settings, r)


def find_for_session(conn: Connection, settings: Settings, session_id: int, respondent: Respondent) -> LinkRow | None:
    r = conn.execute(
        _select().where(t.survey_link.c.session_id == session_id, t.survey_link.c.respondent == respondent)
    ).first()
    return None if r is None else _row(settings, r)


def list_for_session(conn: Connection, settings: Settings, session_id: int) -> list[LinkRow]:
    rows = conn.execute(_select().where(t.survey_link.c.session_id == session_id).order_by(t.survey_link.c.id))
    return [_row(settings, r) for r in rows]


def status(link: LinkRow, now: int) -> LinkStatus:
    # A used link says so even after it expired: that is the truer answer.
    if link.used_ms is not None:
        return LinkStatus.USED
    if now >= link.expires_ms:
        return LinkStatus.EXPIRED
    return LinkStatus.OK


class LinkUsed(Exception):
    pass


def issue(conn: Connection, session_id: int, respondent: Respondent, instruments: list[str], now: int) -> str:
    """A fresh token for a respondent's link (a lost link, or a session made
    without one). The old token stops working. LinkUsed if it was answered."""
    token = new_token()
    existing = conn.execute(
        select(t.survey_link.c.id, t.survey_link.c.used_ms).where(
            t.survey_link.c.session_id == session_id, t.survey_link.c.respondent == respondent
        )
    ).first()
    if existing is None:
        create = {respondent: instruments}
        return create_links(conn, session_id, create, now)[respondent]
    if existing.used_ms is not None:
        raise LinkUsed(f"the {respondent}'s survey for this session was already answered")
    done = conn.execute(
        update(t.survey_link)
        .where(t.survey_link.c.id == existing.id, t.survey_link.c.used_ms.is_(None))
        .values(token_hash=hash_token(token), instruments=orjson.dumps(instruments).decode())
    )
    if done.rowcount != 1:
        raise LinkUsed(f"the {respondent}'s survey for this session was already answered")
    return token
