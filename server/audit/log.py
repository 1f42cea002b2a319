"""Writing and reading the audit trail (table ``audit_log``).

Pages and endpoints that show or export a client's data call ``record`` (or
``record_view`` with its own transaction) with the session or client they
showed. The actor comes from the request: the logged-in clinician's email,
or ``key:<name>`` for an API key caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from server.store import tables as t
from server.timeutil import now_ms

ACTIONS = ("view", "export", "erase", "login", "password.change", "user.create", "user.update",
           "key.create", "key.revoke")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    t_ms: int
    actor: str
    action: str
    client_id: int | None
    client_code: str | None
    session_id: int | None
    detail: str
    ip: str


def client_ip(request: Request) -> str:
    # Behind a proxy this is the forwarded address when uvicorn is told to
    # trust the proxy (--forwarded-allow-ips; see docs/deploy.md).
    return request.client.host if request.client else ""


def record(
    conn: Connection,
    request: Request | None,
    action: str,
    *,
    session_id: int | None = None,
    client_id: int | None = None,
    client_code: str | None = None,
    detail: str = "",
    actor: str | None = None,
    actor_clinician_id: int | None = None,
) -> None:
    """Append one entry. A session id fills in its client when not given."""
    if session_id is not None and client_id is None:
        row = conn.execute(
            select(t.session.c.client_id, t.client.c.code)
            .join(t.client, t.client.c.id == t.session.c.client_id)
            .where(t.session.c.id == session_id)
        ).first()
        if row is not None:
            client_id, client_code = row.client_id, row.code
    elif client_id is not None and client_code is None:
        client_code = conn.execute(select(t.client.c.code).where(t.client.c.id == client_id)).scalar()
    state = request.state if request is not None else None
    if actor is None:
        actor = str(getattr(state, "actor", None) or "anonymous")
    if actor_clinician_id is None and state is not None:
        actor_clinician_id = getattr(state, "actor_clinician_id", None)
    conn.execute(
        insert(t.audit_log).values(
            t_ms=now_ms(),
            actor=actor[:320],
            actor_clinician_id=actor_clinician_id,
            action=action[:40],
            client_id=client_id,
            client_code=client_code,
            session_id=session_id,
            detail=detail[:2000],
            ip=(client_ip(request) if request is not None else "")[:64],
        )
    )


def record_view(
    request: Request,
    action: str = "view",
    *,
    session_id: int | None = None,
    client_id: int | None = None,
    detail: str = "",
) -> None:
    """``record`` in its own transaction, for read-only handlers."""
    with request.app.state.engine.begin() as conn:
        record(conn, request, action, session_id=session_id, client_id=client_id, detail=detail)


def entries(
    conn: Connection, *, client_code: str | None = None, actor: str | None = None, limit: int = 200,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """Newest first, with the total count for paging."""
    where = []
    if client_code:
        where.append(t.audit_log.c.client_code == client_code)
    if actor:
        where.append(t.audit_log.c.actor == actor)
    total = int(conn.execute(select(func.count()).select_from(t.audit_log).where(*where)).scalar_one())
    rows = conn.execute(
        select(t.audit_log).where(*where).order_by(t.audit_log.c.id.desc()).limit(limit).offset(offset)
    )
    return [
        AuditEntry(r.id, r.t_ms, r.actor, r.action, r.client_id, r.client_code, r.session_id, r.detail, r.ip)
        for r in rows
    ], total
