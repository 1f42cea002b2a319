"""The first admin: created on first start with a one-time password."""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import exc
from sqlalchemy.engine import Engine

from server.accounts import service
from server.config import Settings

log = logging.getLogger("bondline.accounts")


def ensure_first_admin(engine: Engine, settings: Settings) -> str | None:
    """Create the admin account when no admin exists; returns the one-time
    password (also printed) or None when an admin already exists.

    The password must be changed at first login. Two workers starting on one
    empty database race here; the unique email makes one of them lose."""
    try:
        with engine.begin() as conn:
            if service.admin_exists(conn):
                return None
            password = secrets.token_urlsafe(12)
            email = service.normalise_email(settings.first_admin_email)
            existing = service.find_account(conn, email)
            if existing is not None:
                service.set_admin(conn, existing.id, True)
                service.set_password(conn, existing.id, password, must_change=True)
            else:
                service.create_user(conn, email, password, is_admin=True, display_name="Administrator",
                                    must_change=True)
    except exc.IntegrityError:
        return None
    line = (f"First start: created admin account {email} with one-time password {password} "
            "(log in at /login; you will be asked to choose a new password)")
    print(line, flush=True)
    log.warning("created first admin account %s (one-time password printed on stdout)", email)
    return password
