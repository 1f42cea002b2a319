"""Server-side login sessions and the login throttle, both in the store so
every worker behind a load balancer sees the same state."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection

from server.accounts.identity import Identity
from server.config import Settings
from server.store import tables as t
from server.timeutil import now_ms

COOKIE_NAME = "bl_session"
# Refresh last_seen at most this often: a write per page view buys nothing.
_TOUCH_EVERY_MS = 60_000


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Login:
    id: int
    identity: Identity
    csrf_token: str
    must_change: bool
    expires_ms: int


def start_login(conn: Connection, settings: Settings, clinician_id: int) -> str:
    """Create a login session and return the cookie value (shown only here)."""
    token = secrets.token_urlsafe(32)
    now = now_ms()
    conn.execute(
        insert(t.login_session).values(
            token_hash=_hash(token),
            clinician_id=clinician_id,
            csrf_token=secrets.token_urlsafe(32),
            created_ms=now,
            last_seen_ms=now,
            expires_ms=now + int(settings.login_max_hours * 3_600_000),
        )
    )
    # Housekeeping that needs no scheduler: expired logins go as new ones come.
    conn.execute(delete(t.login_session).where(t.login_session.c.expires_ms < now))
    return token


def resolve_login(conn: Connection, settings: Settings, token: str | None) -> Login | None:
    """The live login for a cookie value, or None (unknown, idle, expired, disabled)."""
    if not token or len(token) > 200:
        return None
    now = now_ms()
    row = conn.execute(
        select(
            t.login_session.c.id,
            t.login_session.c.csrf_token,
            t.login_session.c.last_seen_ms,
            t.login_session.c.expires_ms,
            t.clinician.c.id.label("clinician_id"),
            t.clinician.c.email,
            t.clinician.c.is_admin,
            t.clinician.c.disabled,
            t.credential_state.c.must_change,
        )
        .join(t.clinician, t.clinician.c.id == t.login_session.c.clinician_id)
        .outerjoin(t.credential_state, t.credential_state.c.clinician_id == t.clinician.c.id)
        .where(t.login_session.c.token_hash == _hash(token))
    ).first()
    if row is None or row.disabled:
        return None
    idle_ms = int(settings.login_idle_minutes * 60_000)
    if now >= row.expires_ms or now - row.last_seen_ms >= idle_ms:
        conn.execute(delete(t.login_session).where(t.login_session.c.id == row.id))
        return None
    if now - row.last_seen_ms >= _TOUCH_EVERY_MS:
        conn.execute(update(t.login_session).where(t.login_session.c.id == row.id).values(last_seen_ms=now))
    return Login(
        id=row.id,
        identity=Identity(clinician_id=row.clinician_id, email=row.email, is_admin=bool(row.is_admin)),
        csrf_token=row.csrf_token,
        must_change=bool(row.must_change),
        expires_ms=row.expires_ms,
    )


def end_login(conn: Connection, token: str | None) -> None:
    if token:
        conn.execute(delete(t.login_session).where(t.login_session.c.token_hash == _hash(token)))


def end_other_logins(conn: Connection, clinician_id: int, keep_token: str | None) -> None:
    q = delete(t.login_session).where(t.login_session.c.clinician_id == clinician_id)
    if keep_token:
        q = q.where(t.login_session.c.token_hash != _hash(keep_token))
    conn.execute(q)


# ---------------------------------------------------------------------------
# Throttle: recent failures per email (since its last success) and per address.
# ---------------------------------------------------------------------------


def _failures(conn: Connection, column, value: str, since: int, *, reset_on_success: bool) -> int:  # type: ignore[no-untyped-def]
    if not reset_on_success:
        return int(
            conn.execute(
                select(func.count()).where(
                    and_(column == value, t.login_attempt.c.success.is_(False), t.login_attempt.c.t_ms >= since)
                )
            ).scalar_one()
        )
    last_ok = conn.execute(
        select(func.max(t.login_attempt.c.t_ms)).where(
            and_(column == value, t.login_attempt.c.success.is_(True), t.login_attempt.c.t_ms >= since)
        )
    ).scalar()
    floor = max(since, int(last_ok) + 1) if last_ok is not None else since
    return int(
        conn.execute(
            select(func.count()).where(
                and_(column == value, t.login_attempt.c.success.is_(False), t.login_attempt.c.t_ms >= floor)
            )
        ).scalar_one()
    )


def _serialise(conn: Connection, email: str, ip: str) -> None:
    """PostgreSQL: one attempt at a time per address and per email, across
    every worker, until this transaction ends (always address first, so two
    attempts never wait on each other in a cycle). SQLite needs nothing: the
    attempt's insert takes the database's one write lock until commit."""
    if conn.dialect.name == "postgresql":
        for key in (f"login-ip:{ip}", f"login-email:{email}"):
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


def admit_attempt(conn: Connection, settings: Settings, email: str, ip: str) -> int | None:
    """Record a login attempt before its password is checked, and decide
    whether it may be checked at all: the id of the attempt (a failure until
    ``settle_attempt`` says otherwise), or None when this email or address
    has failed too often recently.

    The row goes in first and the count includes it, in one serialised
    transaction: checking first and inserting after the (slow) password
    check let concurrent guesses on two workers all pass the check."""
    _serialise(conn, email, ip)
    now = now_ms()
    attempt = int(conn.execute(
        insert(t.login_attempt).values(email=email[:320], ip=ip[:64], t_ms=now, success=False)
        .returning(t.login_attempt.c.id)
    ).scalar_one())
    since = now - int(settings.login_window_minutes * 60_000)
    # A success resets the email's count (its owner got in) but not the
    # address's, so one valid account cannot launder guesses at others.
    blocked = (
        _failures(conn, t.login_attempt.c.email, email[:320], since, reset_on_success=True)
        > settings.login_max_failures
        or _failures(conn, t.login_attempt.c.ip, ip[:64], since, reset_on_success=False)
        > settings.login_ip_max_failures
    )
    if blocked:
        # A refused attempt guessed nothing: it does not extend the lockout.
        conn.execute(delete(t.login_attempt).where(t.login_attempt.c.id == attempt))
        return None
    # Attempts older than the window no longer matter to anyone.
    conn.execute(delete(t.login_attempt).where(t.login_attempt.c.t_ms < since - 3_600_000))
    return attempt


def settle_attempt(conn: Connection, attempt: int, success: bool) -> None:
    """The outcome of an admitted attempt (it counts as a failure until now)."""
    if success:
        conn.execute(update(t.login_attempt).where(t.login_attempt.c.id == attempt).values(success=True))
