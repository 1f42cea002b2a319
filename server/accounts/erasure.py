"""Right to erasure: deleting a client removes every row about them.

Deletion walks the schema rather than a fixed list, so tables other areas
add later (ratings, survey links, cached reports) are covered as long as
they reference ``client``, ``session`` or ``participant``. The audit trail
keeps its entries (no foreign keys) and gains one for the erasure.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy import Table, delete, select
from sqlalchemy.engine import Connection
from starlette.responses import Response

from server.accounts import service as accounts
from server.accounts.deps import api_identity, page_identity, verify_csrf
from server.accounts.identity import Identity
from server.audit import log as audit
from server.store import tables as t
from server.web.pages import render

router = APIRouter()


class ErasureResult(BaseModel):
    client_code: str
    clinician: str
    deleted: dict[str, int]


def _references(table: Table, target: Table) -> str | None:
    for fk in table.foreign_keys:
        if fk.column.table is target:
            return str(fk.parent.name)
    return None


def erase_client(conn: Connection, client_id: int) -> dict[str, int]:
    """Delete the client and everything hanging off it; returns rows deleted per table."""
    session_ids = [r[0] for r in conn.execute(select(t.session.c.id).where(t.session.c.client_id == client_id))]
    participant_ids = (
        [r[0] for r in conn.execute(select(t.participant.c.id).where(t.participant.c.session_id.in_(session_ids)))]
        if session_ids else []
    )
    counts: dict[str, int] = {}
    # Children before parents, so it works with or without ON DELETE CASCADE.
    for table in reversed(t.metadata.sorted_tables):
        if table in (t.client, t.session, t.participant):
            continue
        where = None
        for target, ids in ((t.participant, participant_ids), (t.session, session_ids), (t.client, [client_id])):
            column = _references(table, target)
            if column is not None and ids:
                clause = table.c[column].in_(ids)
                where = clause if where is None else (where | clause)
        if where is not None:
            n = conn.execute(delete(table).where(where)).rowcount
            if n:
                counts[table.name] = n
    for table, clause in (
        (t.participant, t.participant.c.session_id.in_(session_ids)),
        (t.session, t.session.c.client_id == client_id),
        (t.client, t.client.c.id == client_id),
    ):
        counts[table.name] = conn.execute(delete(table).where(clause)).rowcount
    return counts


def _erase(request: Request, clinician_id: int, client_code: str) -> ErasureResult:
    with request.app.state.engine.begin() as conn:
        row = conn.execute(
            select(t.client.c.id, t.clinician.c.email)
            .join(t.clinician, t.clinician.c.id == t.client.c.clinician_id)
            .where(t.client.c.clinician_id == clinician_id, t.client.c.code == client_code)
        ).first()
        if row is None:
            raise HTTPException(404, f"no client {client_code!r} in this caseload")
        # Recorded first so it names the client while the row still exists.
        audit.record(conn, request, "erase", client_id=row.id, client_code=client_code)
        counts = erase_client(conn, row.id)
        conn.execute(
            t.audit_log.update()
            .where(t.audit_log.c.action == "erase", t.audit_log.c.client_id == row.id)
            .values(detail=", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        )
    return ErasureResult(client_code=client_code, clinician=row.email, deleted=counts)


@router.delete("/api/v1/clients/{client_code}", response_model=ErasureResult, tags=["clients"],
               responses={401: {}, 403: {}, 404: {}})
def erase_api(
    request: Request,
    client_code: str,
    identity: Annotated[Identity | None, Depends(api_identity)],
    clinician: Annotated[str | None, Query(max_length=320, description="Key callers: whose client.")] = None,
) -> ErasureResult:
    """Erase a client: their sessions, samples, events, ratings and everything else
    recorded about them. A logged-in clinician erases from their own caseload; an
    API key caller names the clinician."""
    if identity is not None:
        return _erase(request, identity.clinician_id, client_code)
    if not clinician:
        raise HTTPException(422, "API key callers must name the clinician (?clinician=email)")
    with request.app.state.engine.connect() as conn:
        account = accounts.find_account(conn, clinician)
    if account is None:
        raise HTTPException(404, f"no clinician {clinician!r}")
    return _erase(request, account.id, client_code)


@router.get("/clients/erase", include_in_schema=False)
def erase_form(request: Request, identity: Annotated[Identity, Depends(page_identity)]) -> Response:
    return render(request, "erase.html", {"identity": identity, "error": None, "done": None})


@router.post("/clients/erase", include_in_schema=False, dependencies=[Depends(verify_csrf)])
def erase_submit(
    request: Request,
    identity: Annotated[Identity, Depends(page_identity)],
    client_code: Annotated[str, Form(max_length=64)] = "",
    confirm: Annotated[str, Form(max_length=64)] = "",
    clinician: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    def again(error: str, code: int) -> Response:
        return render(request, "erase.html", {"identity": identity, "error": error, "done": None}, status_code=code)

    if not client_code or confirm != client_code:
        return again("Type the client code twice, exactly, to confirm.", 400)
    owner_id = identity.clinician_id
    if clinician and identity.is_admin:
        with request.app.state.engine.connect() as conn:
            account = accounts.find_account(conn, clinician)
        if account is None:
            return again(f"No clinician {clinician}.", 404)
        owner_id = account.id
    try:
        result = _erase(request, owner_id, client_code)
    except HTTPException as e:
        return again(str(e.detail), e.status_code)
    done: dict[str, Any] = result.model_dump()
    return render(request, "erase.html", {"identity": identity, "error": None, "done": done})
