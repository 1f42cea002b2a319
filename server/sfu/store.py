"""SFU statistics rows: written once per (participant, handle, medium, time), read per session."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from server.sfu.janus import LegStat
from server.store import tables as t

SOURCE_JANUS = "sfu"


@dataclass(frozen=True)
class Written:
    stored: int
    duplicates: int
    unmatched: int


def write(conn: Connection, stats: Iterable[LegStat], received_ms: int) -> Written:
    """Insert what maps to an existing participant; a row sent again is a no-op."""
    stats = list(stats)
    wanted = {(s.session_id, s.role) for s in stats}
    ids: dict[tuple[int, str], int] = {}
    if wanted:
        rows = conn.execute(select(t.participant.c.session_id, t.participant.c.role, t.participant.c.id)
                            .where(t.participant.c.session_id.in_({w[0] for w in wanted})))
        ids = {(r.session_id, r.role): r.id for r in rows}
    values = [{"participant_id": ids[(s.session_id, s.role)], "handle": s.handle, "media": s.media,
               "t_ms": s.t_ms, "source": SOURCE_JANUS, "leg": s.leg, "received_ms": received_ms,
               "data": orjson.dumps(s.figures).decode()} for s in stats if (s.session_id, s.role) in ids]
    stored = 0
    if values:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        result = conn.execute(insert(t.sfu_stat).values(values).on_conflict_do_nothing())
        stored = max(result.rowcount or 0, 0)
    return Written(stored, len(values) - stored, len(stats) - len(values))


def session_stats(conn: Connection, session_id: int) -> dict[str, list[dict[str, Any]]]:
    """Per role: the session's SFU rows in time order, figures unpacked."""
    q = (select(t.participant.c.role, t.sfu_stat).join(t.participant, t.participant.c.id == t.sfu_stat.c.participant_id)
         .where(t.participant.c.session_id == session_id).order_by(t.sfu_stat.c.t_ms))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(q):
        out.setdefault(r.role, []).append({"handle": r.handle, "media": r.media, "t_ms": r.t_ms, "leg": r.leg,
                                           "source": r.source, **orjson.loads(r.data)})
    return out
