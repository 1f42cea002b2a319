"""Accounts in the store: create users, set and check passwords.

The ``clinician`` table is the account table. Functions take a Connection
so callers choose the transaction (pages, CLI and tests share them).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from server.accounts.identity import Identity
from server.accounts.passwords import hash_password, needs_rehash, verify_password
from server.store import tables as t
from server.timeutil import now_ms


class AccountError(Exception):
    """A refused account operation, with a message fit to show the user."""


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    display_name: str
    is_admin: bool
    disabled: bool
    has_password: bool
    must_change: bool
    created_ms: int

    @property
    def identity(self) -> Identity:
        return Identity(clinician_id=self.id, email=self.email, is_admin=self.is_admin)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _account_query():  # type: ignore[no-untyped-def]
    return select(
        t.clinician,
        t.credential_state.c.must_change,
    ).outerjoin(t.credential_state, t.credential_state.c.clinician_id == t.clinician.c.id)


def _to_account(row) -> Account:  # type: ignore[no-untyped-def]
    return Account(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        is_admin=bool(row.is_admin),
        disabled=bool(row.disabled),
        has_password=row.password_hash is not None,
        must_change=bool(row.must_change),
        created_ms=row.created_ms,
    )


def get_account(conn: Connection, clinician_id: int) -> Account | None:
    row = conn.execute(_account_query().where(t.clinician.c.id == clinician_id)).first()
    return _to_account(row) if row is not None else None


def find_account(conn: Connection, email: str) -> Account | None:
    row = conn.execute(_account_query().where(t.clinician.c.email == normalise_email(email))).first()
    return _to_account(row) if row is not None else None


def list_accounts(conn: Connection) -> list[Account]:
    return [_to_account(r) for r in conn.execute(_account_query().order_by(t.clinician.c.email))]


def set_password(conn: Connection, clinician_id: int, password: str, *, must_change: bool = False) -> None:
    """Store a new password hash; every existing login of the account ends."""
    if not password:
        raise AccountError("the password must not be empty")
    found = conn.execute(
        update(t.clinician).where(t.clinician.c.id == clinician_id).values(password_hash=hash_password(password))
    ).rowcount
    if not found:
        raise AccountError(f"no account {clinician_id}")
    conn.execute(delete(t.credential_state).where(t.credential_state.c.clinician_id == clinician_id))
    conn.execute(
        insert(t.credential_state).values(clinician_id=clinician_id, must_change=must_change, changed_ms=now_ms())
    )
    conn.execute(delete(t.login_session).where(t.login_session.c.clinician_id == clinician_id))


def create_user(
    conn: Connection, email: str, password: str, *, is_admin: bool = False, display_name: str = "",
    must_change: bool = False,
) -> int:
    """Create an account and return its clinician id (``must_change``: a
    one-time password, to be changed at first login).

    A clinician row that the sessions API created without a password (it
    cannot log in) is taken over: it gets the password and flags. An account
    that already has a password is refused.
    """
    email = normalise_email(email)
    if not email or "@" not in email or len(email) > 320:
        raise AccountError(f"not an email address: {email!r}")
    if not password:
        raise AccountError("the password must not be empty")
    existing = conn.execute(
        select(t.clinician.c.id, t.clinician.c.password_hash).where(t.clinician.c.email == email)
    ).first()
    if existing is not None:
        if existing.password_hash is not None:
            raise AccountError(f"an account for {email} already exists")
        clinician_id = int(existing.id)
        values: dict[str, object] = {"is_admin": is_admin}
        if display_name:
            values["display_name"] = display_name
        conn.execute(update(t.clinician).where(t.clinician.c.id == clinician_id).values(**values))
    else:
        clinician_id = int(
            conn.execute(
                insert(t.clinician)
                .values(email=email, display_name=display_name, is_admin=is_admin, created_ms=now_ms())
                .returning(t.clinician.c.id)
            ).scalar_one()
        )
    set_password(conn, clinician_id, password, must_change=must_change)
    return clinician_id


def check_password(conn: Connection, email: str, password: str) -> Account | None:
    """The account when ``email``/``password`` match an enabled account.

    Costs one argon2 verify whether or not the email exists."""
    row = conn.execute(
        select(t.clinician.c.id, t.clinician.c.password_hash, t.clinician.c.disabled).where(
            t.clinician.c.email == normalise_email(email)
        )
    ).first()
    stored = row.password_hash if row is not None else None
    if not verify_password(stored, password) or row is None or row.disabled:
        return None
    if stored is not None and needs_rehash(stored):
        fresh = hash_password(password)
        conn.execute(update(t.clinician).where(t.clinician.c.id == row.id).values(password_hash=fresh))
    return get_account(conn, int(row.id))


def set_disabled(conn: Connection, clinician_id: int, disabled: bool) -> None:
    conn.execute(update(t.clinician).where(t.clinician.c.id == clinician_id).values(disabled=disabled))
    if disabled:
        conn.execute(delete(t.login_session).where(t.login_session.c.clinician_id == clinician_id))


def set_admin(conn: Connection, clinician_id: int, is_admin: bool) -> None:
    conn.execute(update(t.clinician).where(t.clinician.c.id == clinician_id).values(is_admin=is_admin))


def admin_exists(conn: Connection) -> bool:
    return conn.execute(select(t.clinician.c.id).where(t.clinician.c.is_admin.is_(True)).limit(1)).first() is not None
