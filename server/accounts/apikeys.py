"""Per-integrator API keys: random, shown once, stored as SHA-256.

The bootstrap key from ``BONDLINE_ADMIN_API_KEY`` keeps working beside them
(it is how an operator creates the first integrator key from a script).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from server.store import tables as t
from server.timeutil import now_ms

KEY_PREFIX = "blk_"
_TOUCH_EVERY_MS = 60_000


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    created_ms: int
    revoked_ms: int | None
    last_used_ms: int | None


def _hash(key: str) -> str:
    # 32 random bytes cannot be guessed, so a fast hash suffices (as for
    # ingest tokens); argon2 here would cost tens of ms per API call.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(conn: Connection, name: str, created_by: int | None = None) -> tuple[int, str]:
    """Create a key; returns (id, key). The key is not stored and not shown again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a key needs a name of 1 to 100 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = conn.execute(
        insert(t.api_key)
        .values(name=name, key_hash=_hash(key), prefix=key[:10], created_by=created_by, created_ms=now_ms())
        .returning(t.api_key.c.id)
    ).scalar_one()
    return int(key_id), key


def revoke_key(conn: Connection, key_id: int) -> bool:
    res = conn.execute(
        update(t.api_key).where(t.api_key.c.id == key_id, t.api_key.c.revoked_ms.is_(None)).values(revoked_ms=now_ms())
    )
    return bool(res.rowcount)


def list_keys(conn: Connection) -> list[ApiKey]:
    rows = conn.execute(select(t.api_key).order_by(t.api_key.c.created_ms.desc(), t.api_key.c.id.desc()))
    return [ApiKey(r.id, r.name, r.prefix, r.created_ms, r.revoked_ms, r.last_used_ms) for r in rows]


def check_key(conn: Connection, key: str) -> ApiKey | None:
    """The live key matching ``key``, or None (unknown or revoked)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = conn.execute(select(t.api_key).where(t.api_key.c.key_hash == _hash(key))).first()
    if row is None or row.revoked_ms is not None:
        return None
    now = now_ms()
    if row.last_used_ms is None or now - row.last_used_ms >= _TOUCH_EVERY_MS:
        conn.execute(update(t.api_key).where(t.api_key.c.id == row.id).values(last_used_ms=now))
    return ApiKey(row.id, row.name, row.prefix, row.created_ms, row.revoked_ms, row.last_used_ms)
