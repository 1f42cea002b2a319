"""Admission of ingest connections: token lookups in groups, on one thread.

When a clinic's sessions start, or a server restarts, hundreds of collectors
connect within a second. One lookup per connection on a thread pool spent
most of its time handing Python's GIL between threads (each database call
releases it; getting it back from a busy event loop takes up to the 5 ms
switch interval): measured at 80 connections/s on this kind of machine,
far below what clinics need (docs/performance.md). Like the ingest writer,
the resolver drains whatever has queued and answers it with one query.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from media.probe.profile import PROBE_SEQ_BASE
from server.config import Settings
from server.ingest.grouping import GroupedWorker
from server.sessions.tokens import TOKEN_PREFIX, TokenError, TokenOwner, hash_token, token_expiry_ms
from server.store import tables as t
from server.timeutil import now_ms

log = logging.getLogger("bondline.ingest")


@dataclass(frozen=True)
class Admission:
    """What a connection learns when its token is accepted."""

    owner: TokenOwner
    # Highest collector seq already stored (probe samples excluded: they
    # live at seq >= PROBE_SEQ_BASE, see docs/probe.md "Samples").
    last_seq: int | None
    session_started: bool
    # When the token stops working, as the store said at this lookup (a
    # session ended later moves it earlier: open sockets look again).
    expires_ms: int

    @property
    def session_to_start(self) -> int | None:
        """The session the writer should mark as started with this
        connection's first write (the first collector starts a session)."""
        return None if self.session_started else self.owner.session_id


@dataclass
class _Lookup:
    token_hash: str
    future: asyncio.Future[Admission] = field(repr=False)


class TokenResolver(GroupedWorker[_Lookup]):
    """Resolves ingest tokens of one process, many per query."""

    def __init__(self, engine: Engine, settings: Settings, *, max_group: int = 500) -> None:
        super().__init__("bondline-resolver")
        self._engine = engine
        self._settings = settings
        self._max_group = max_group

    async def resolve(self, token: object) -> Admission:
        """The token's participant, or TokenError (unknown or expired)."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            raise TokenError("unknown token", expired=False)
        fut: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self._submit(_Lookup(hash_token(token), fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._queue.get()]
            while len(group) < self._max_group and not self._queue.empty():
                group.append(self._queue.get_nowait())
            group = [g for g in group if not g.future.cancelled()]
            if not group:
                continue
            try:
                found = await loop.run_in_executor(self._executor, self._lookup, [g.token_hash for g in group])
            except Exception as e:  # noqa: BLE001 - each waiter gets the store's error
                log.warning("ingest token lookup failed for %d connections: %s", len(group), e)
                for g in group:
                    if not g.future.done():
                        g.future.set_exception(e)
                continue
            now = now_ms()
            for g in group:
                if g.future.done():
                    continue
                hit = found.get(g.token_hash)
                if hit is None:
                    g.future.set_exception(TokenError("unknown token", expired=False))
                elif now >= hit.expires_ms:
                    g.future.set_exception(TokenError("token expired: the session ended", expired=True))
                else:
                    g.future.set_result(hit)

    def _lookup(self, hashes: list[str]) -> dict[str, Admission]:
        """One read-only query for the whole group: the admission by token
        hash. Read-only on purpose: with SQLite every write competes with the
        ingest writer for the one write lock."""
        p, s = t.participant, t.session
        last_seq = (
            select(func.max(t.sample.c.seq))
            .where(t.sample.c.participant_id == p.c.id, t.sample.c.seq < PROBE_SEQ_BASE)
            .scalar_subquery()
        )
        query = (
            select(p.c.token_hash, p.c.id, p.c.session_id, p.c.role, s.c.created_ms, s.c.ended_ms,
                   s.c.started_ms, last_seq.label("last_seq"))
            .join(s, s.c.id == p.c.session_id)
            .where(p.c.token_hash.in_(hashes))
        )
        out: dict[str, Admission] = {}
        with self._engine.connect() as conn:
            for row in conn.execute(query):
                owner = TokenOwner(participant_id=row.id, session_id=row.session_id, role=row.role)
                out[row.token_hash] = Admission(owner, row.last_seq, row.started_ms is not None,
                                                token_expiry_ms(self._settings, row.created_ms, row.ended_ms))
        return out
